#!/usr/bin/env bats
# The qcow (version 1) driver: qemu's images, plain and compressed, read by
# img; img's images read by qemu; backing chains; hostile headers.
load helpers
bats_require_minimum_version 1.5.0
FMT=qcow BAD=bad.qcow

@test "qcow: an empty qemu image: info, map, content" {
	qimg create -q -f qcow e.qcow 64M
	same_view e.qcow
	same check e.qcow
}

@test "qcow: qemu-io patterns read the same" {
	qimg create -q -f qcow p.qcow 8M
	patterned p.qcow qcow
	same_view p.qcow
	same info -f qcow p.qcow
}

@test "qcow: qemu's compressed clusters read the same" {
	patterned_raw
	# qemu-img 7.2 writes the image but exits 1 without a word
	run qimg convert -c -O qcow p.raw c.qcow
	same_view c.qcow
	cmp <(img cat c.qcow) p.raw
	# a partial write into a compressed cluster keeps the rest of it
	cp c.qcow d.qcow
	qio -f qcow -c 'write -P 0x44 1536k 100' c.qcow >/dev/null
	head -c 100 /dev/zero | tr '\0' 'D' >d100
	img write -f qcow --offset=1572864 d.qcow <d100
	cmp c.qcow d.qcow
	run -0 qimg compare c.qcow d.qcow
}

@test "qcow: a backing chain reads through, as qemu" {
	qimg create -q -f qcow2 base.qcow2 8M
	qio -f qcow2 -c 'write -P 0x55 0 8M' base.qcow2 >/dev/null
	qimg create -q -f qcow -b base.qcow2 -F qcow2 top.qcow
	qio -f qcow -c 'write -P 0x66 100k 10k' top.qcow >/dev/null
	same_view top.qcow
	same info --backing-chain top.qcow
	same compare top.qcow base.qcow2
	run -0 qio -f qcow -c 'read -P 0x55 0 100k' -c 'read -P 0x66 100k 10k' \
	    -c 'read -P 0x55 110k 1M' top.qcow
}

@test "qcow: create prints qemu's line and makes qemu's layout" {
	same create -f qcow a.qcow 64M
	run -0 img create -f qcow ours.qcow 3M
	[ "$output" = "Formatting 'ours.qcow', fmt=qcow size=3145728" ]
	qimg create -q -f qcow theirs.qcow 3M
	cmp ours.qcow theirs.qcow
	qimg create -q -f raw b.raw 1M
	img create -q -f qcow -b b.raw -F raw ours.qcow
	qimg create -q -f qcow -b b.raw -F raw theirs.qcow
	cmp ours.qcow theirs.qcow
	same create -f qcow -b b.raw -F raw x.qcow
	same create -f qcow x.qcow 1000
	same info x.qcow
}

@test "qcow: -o help and bad options as qemu-img" {
	same create -f qcow -o help
	same create -f qcow x.qcow 0
	same create -f qcow -o cluster_size=4k x.qcow 1M
	same create -f qcow -o encryption=on x.qcow 1M
	same create -f qcow -o encrypt.format=luks x.qcow 1M
}

@test "qcow: img convert makes what qemu makes, byte for byte" {
	patterned_raw
	run -0 img convert -O qcow p.raw ours.qcow
	qimg convert -O qcow p.raw theirs.qcow
	cmp ours.qcow theirs.qcow
	run -0 qimg compare p.raw ours.qcow
	reads_patterns ours.qcow
	same map --output=json ours.qcow
}

@test "qcow: img writes into its own image; qemu reads it" {
	img create -q -f qcow w.qcow 7M
	patterned_raw
	img write -f qcow w.qcow <p.raw
	run -0 qimg compare w.qcow p.raw
	reads_patterns w.qcow
}

@test "qcow: writes over a backing file land where qemu's do" {
	qimg create -q -f qcow2 base.qcow2 8M
	qio -f qcow2 -c 'write -P 0x55 0 8M' base.qcow2 >/dev/null
	qimg create -q -f qcow -b base.qcow2 -F qcow2 w1.qcow
	cp w1.qcow w2.qcow
	head -c 5000 /dev/urandom >pat
	img write -f qcow --offset=3000000 w1.qcow <pat
	qio -f qcow -c 'write -s pat 3000000 5000' w2.qcow >/dev/null
	cmp w1.qcow w2.qcow
	run -0 qimg compare w1.qcow w2.qcow
}

@test "qcow: commit empties the top as qemu" {
	mkdir q i
	qimg create -q -f raw q/base.raw 4M
	qimg create -q -f qcow -b base.raw -F raw q/t.qcow
	qio -f qcow -c 'write -P 0x12 1M 64k' q/t.qcow >/dev/null
	cp q/base.raw q/t.qcow i/
	qimg commit -q q/t.qcow
	img commit -q i/t.qcow
	cmp q/base.raw i/base.raw
	cmp q/t.qcow i/t.qcow
}

@test "qcow: probing finds it" {
	qimg create -q -f qcow p.qcow 1M
	run -0 img info --output=json p.qcow
	[[ "$output" == *'"format": "qcow"'* ]]
}

@test "qcow: bad magic, version, sizes: qemu's one line" {
	bad 0 'X'
	refused "Image not in qcow format"
	bad 7 '\x05'
	refused "qcow (v1) does not support qcow version 5"
	bad 24 '\0\0\0\0\0\0\0\x01'
	refused "Image size is too small (must be at least 2 bytes)"
	bad 32 '\x08'
	refused "Cluster size must be between 512 and 64k"
	bad 32 '\x11'
	refused "Cluster size must be between 512 and 64k"
	bad 33 '\x05'
	refused "L2 table size must be between 512 and 64k"
	bad 33 '\x0e'
	refused "L2 table size must be between 512 and 64k"
	bad 39 '\x02'
	refused "invalid encryption method in qcow header"
	bad 24 '\x7f\xff\xff\xff\xff\xff\xff\xff'
	refused "Image too large"
	bad 8 '\0\0\0\0\0\0\0\x30\0\0\x04\x00'
	refused "Backing file name too long"
	# version 2 gets qemu's hint on a second line
	bad 7 '\x02'
	same info -f qcow bad.qcow
}

@test "qcow: truncated headers and garbage: one line, exit 1" {
	qimg create -q -f qcow t.qcow 8M
	head -c 20 t.qcow >bad.qcow
	refused "Image size is too small (must be at least 2 bytes)"
	head -c 100 t.qcow >bad.qcow
	same info bad.qcow
	same map bad.qcow
	head -c 4096 /dev/urandom >bad.qcow
	run -1 --separate-stderr img info -f qcow bad.qcow
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ "$stderr" == "img: Could not open 'bad.qcow': "* ]]
}

@test "qcow: tables past the end of the file read as zeroes, as qemu" {
	# a huge disk whose L1 table is mostly past the end of the file
	bad 24 '\0\0\x10\0\0\0\0\0'
	same info bad.qcow
	# qemu asks about 4G clusters one by one: we skip absent tables
	run -0 img map --output=json bad.qcow
	[ "$output" = '[{ "start": 0, "length": 17592186044416, "depth": 0, "present": false, "zero": true, "data": false}]' ]
	bad 40 '\0\0\x10\0\0\0\0\0'
	same map --output=json bad.qcow
	# entries pointing past the end
	qimg create -q -f qcow h.qcow 8M
	patterned h.qcow qcow
	poke h.qcow 51 '\x10'
	same map --output=json h.qcow
	same_content h.qcow
	qimg create -q -f qcow g.qcow 8M
	patterned g.qcow qcow
	poke g.qcow $((0x1002)) '\x10\x01'
	same map --output=json g.qcow
	same_content g.qcow
}

@test "qcow: a bad compressed cluster: one error line" {
	qimg create -q -f raw p.raw 1M
	qio -f raw -c 'write -P 0x22 0 1M' p.raw >/dev/null
	run qimg convert -c -O qcow p.raw c.qcow
	l2=$(xxd -s 48 -l 8 -p c.qcow)
	poke c.qcow $((0x$l2)) '\x80\x10'
	same map --output=json c.qcow
	run -1 --separate-stderr img cat c.qcow
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ "$stderr" == *"Input/output error" ]]
}

@test "qcow: AES-encrypted images (encrypt.format=aes), both ways with qemu" {
	local sec="--object secret,id=sec0,data=pass" js
	js='json:{"driver":"qcow","encrypt":{"key-secret":"sec0"},"file":{"filename":"ours.qcow"}}'
	qimg create -q $sec -f qcow -o encrypt.format=aes,encrypt.key-secret=sec0 theirs.qcow 1M
	same create $sec -f qcow -o encrypt.format=aes,encrypt.key-secret=sec0 ours.qcow 1M
	cmp ours.qcow theirs.qcow
	qio $sec --image-opts driver=qcow,encrypt.key-secret=sec0,file.filename=theirs.qcow \
	    -c 'write -P 0x41 1000 3000' -c 'write -P 0x42 64k 4k' >/dev/null
	same info theirs.qcow
	same info --output=json $sec --image-opts driver=qcow,encrypt.key-secret=sec0,file.filename=theirs.qcow
	same map --output=json $sec --image-opts driver=qcow,encrypt.key-secret=sec0,file.filename=theirs.qcow
	same convert -O raw theirs.qcow x.raw
	img cat $sec --image-opts driver=qcow,encrypt.key-secret=sec0,file.filename=theirs.qcow >ours.raw
	qimg convert $sec --image-opts driver=qcow,encrypt.key-secret=sec0,file.filename=theirs.qcow -O raw theirs.raw
	cmp ours.raw theirs.raw
	# a write of part of a sector, into a new cluster: qemu reads it back
	printf 'hello' | img write $sec --offset=70000 "$js"
	run -0 qio $sec --image-opts driver=qcow,encrypt.key-secret=sec0,file.filename=ours.qcow \
	    -c 'read -P 0 0 70000' -c 'read -v 70000 5' -c 'read -P 0 70005 1000'
	[[ $output == *hello* ]] && [[ $output != *fail* ]]
	img convert $sec -O qcow -o encrypt.format=aes,encrypt.key-secret=sec0 theirs.raw conv.qcow
	run -0 qimg compare $sec --image-opts driver=raw,file.filename=theirs.raw \
	    driver=qcow,encrypt.key-secret=sec0,file.filename=conv.qcow
	same convert -c $sec -O qcow -o encrypt.format=aes,encrypt.key-secret=sec0 theirs.raw c.qcow
	same create $sec -f qcow -o encryption=on,encrypt.key-secret=nosuch n.qcow 1M
}

@test "fmt-qcow: a misaligned data cluster fails to read in convert too, as qemu's" {
	qimg create -q -f qcow a.qcow 4M
	qio -f qcow -c 'write -P 1 0 1M' -c 'write -P 2 2M 64k' a.qcow >/dev/null
	poke a.qcow 6711 '\x36'		# an L2 entry: host offset 54
	same map --output=json a.qcow
	run -1 --separate-stderr qemu-img convert -O raw a.qcow q.raw
	local want=${stderr#qemu-img: }
	run -1 --separate-stderr img convert -O raw a.qcow o.raw
	[ "$stderr" = "img: $want" ] && [ ! -e o.raw ]
	[ "$want" = "error while reading at byte 1335296: Input/output error" ]
}
