#!/usr/bin/env bats
# qemu's blkverify node: reads go to a raw copy and a test image and are
# compared (a mismatch prints qemu's line and exits 1); writes go to both.
load helpers
bats_require_minimum_version 1.5.0

# a.raw: 64k of 1s in a 1M disk; b.qcow2 the same; c.qcow2 differs in its
# second sector; d.qcow2 has data where a.raw has a hole
images() {
	qimg create -q -f raw a.raw 1M
	qio -f raw -c 'write -P 1 0 64k' a.raw >/dev/null
	qimg convert -O qcow2 a.raw b.qcow2
	cp b.qcow2 c.qcow2
	qio -f qcow2 -c 'write -P 2 512 512' c.qcow2 >/dev/null
	cp b.qcow2 d.qcow2
	qio -f qcow2 -c 'write -P 9 512k 4k' d.qcow2 >/dev/null
}

holder=

teardown() {
	[ -z "$holder" ] || { kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null; }
	true
}

J_NODE="json:{'driver':'blkverify','raw':{'driver':'file','filename':'a.raw'},'test':{'driver':'qcow2','file':{'driver':'file','filename':'b.qcow2'}}}"
J_RAW="json:{'driver':'raw','file':{'driver':'blkverify','x-raw':'a.raw','x-image':'b.qcow2'}}"

@test "blkverify: info and map of blkverify:RAW:TEST match qemu-img's" {
	images
	same info blkverify:a.raw:b.qcow2
	same info --output=json blkverify:a.raw:b.qcow2
	same map blkverify:a.raw:b.qcow2
	same map --output=json blkverify:a.raw:b.qcow2
	same info -f raw blkverify:a.raw:b.qcow2
	same map --output=json blkverify:a.raw:d.qcow2
	same_content blkverify:a.raw:b.qcow2
}

@test "blkverify: a test image's backing chain, and a node as a backing file, as qemu-img" {
	images
	mkdir sub
	cp a.raw b.qcow2 sub/
	(cd sub && qimg create -q -f qcow2 -b b.qcow2 -F qcow2 top.qcow2)
	same_view blkverify:sub/a.raw:sub/top.qcow2
	same info --backing-chain blkverify:sub/a.raw:sub/top.qcow2
	same compare blkverify:sub/a.raw:sub/top.qcow2 sub/a.raw
	qimg create -q -f qcow2 -b blkverify:a.raw:b.qcow2 -F raw over.qcow2
	same_view over.qcow2
	same info --backing-chain over.qcow2
	same create -f qcow2 -b blkverify:a.raw:c.qcow2 over2.qcow2
}

@test "blkverify: json: and --image-opts forms, node and raw above it, match qemu-img's" {
	images
	local n
	for n in "$J_NODE" "$J_RAW"; do
		same info "$n"
		same info --output=json "$n"
		same map "$n"
		same map --output=json "$n"
	done
	for n in driver=blkverify,raw.filename=a.raw,test.file.filename=b.qcow2 \
	    driver=blkverify,raw.driver=file,raw.filename=a.raw,test.driver=qcow2,test.file.filename=b.qcow2 \
	    driver=blkverify,x-raw=a.raw,x-image=b.qcow2 \
	    driver=raw,file.driver=blkverify,file.x-raw=a.raw,file.x-image=b.qcow2; do
		same info --image-opts "$n"
		same info --output=json --image-opts "$n"
		same map --output=json --image-opts "$n"
	done
}

@test "blkverify: a mismatch prints qemu's line and exits 1: convert, dd, compare" {
	images
	same convert -O raw blkverify:a.raw:c.qcow2 out.raw
	grep -qx 'blkverify: read offset=0 bytes=65536 contents mismatch at offset 512' i.err
	[ "$(cat i.rc)" = 1 ]
	rm -f out.raw
	same convert -O qcow2 blkverify:a.raw:c.qcow2 out.qcow2
	rm -f out.qcow2
	same dd if=blkverify:a.raw:c.qcow2 of=dd.raw bs=4k count=2
	rm -f dd.raw
	same dd if=blkverify:a.raw:c.qcow2 of=dd.raw bs=256 count=4
	rm -f dd.raw
	same dd if=blkverify:a.raw:d.qcow2 of=dd.raw bs=64k
	rm -f dd.raw
	same dd -f raw if=blkverify:a.raw:c.qcow2 of=dd.raw bs=1M
	same compare blkverify:a.raw:c.qcow2 a.raw
	same compare blkverify:a.raw:d.qcow2 d.qcow2
	same compare d.qcow2 blkverify:a.raw:d.qcow2
	same compare blkverify:a.raw:b.qcow2 blkverify:a.raw:d.qcow2
}

@test "blkverify: a mismatch in a long extent is named by qemu-img's 2 MiB piece" {
	qimg create -q -f raw e.raw 8M
	qio -f raw -c 'write -P 1 0 8M' e.raw >/dev/null
	qimg convert -O qcow2 e.raw e.qcow2
	cp e.qcow2 g.qcow2
	qio -f qcow2 -c 'write -P 2 5M 512' g.qcow2 >/dev/null
	local a
	for a in "-O raw" "-O qcow2" "-O qcow2 -c" "-O raw -S 0"; do
		# shellcheck disable=SC2086
		same convert $a blkverify:e.raw:g.qcow2 out
		rm -f out
	done
	grep -qx 'blkverify: read offset=4194304 bytes=2097152 contents mismatch at offset 5242880' i.err
	same compare blkverify:e.raw:g.qcow2 e.qcow2
	same compare e.qcow2 blkverify:e.raw:g.qcow2
	same dd if=blkverify:e.raw:g.qcow2 of=out bs=3M
}

@test "blkverify: a first sector that differs fails the probe, as in qemu-img" {
	images
	qio -f qcow2 -c 'write -P 3 0 512' c.qcow2 >/dev/null
	same info blkverify:a.raw:c.qcow2
	grep -qx 'blkverify: read offset=0 bytes=512 contents mismatch at offset 0' i.err
	same map blkverify:a.raw:c.qcow2
}

@test "blkverify: convert reads only data extents, as qemu-img does" {
	images
	# d.qcow2 differs only inside a.raw's hole, which convert never reads
	same convert -O raw blkverify:a.raw:d.qcow2 out.raw
	cmp out.raw a.raw
	rm out.raw
	same convert -O raw -S 0 blkverify:a.raw:d.qcow2 out.raw
	cmp out.raw a.raw
	same convert -O qcow2 -c blkverify:a.raw:b.qcow2 out.qcow2
	qimg compare out.qcow2 a.raw
}

@test "blkverify: img-cat and img-dd read every byte, holes included" {
	images
	img cat blkverify:a.raw:b.qcow2 >out.raw
	cmp out.raw a.raw
	run -1 --separate-stderr img-cat blkverify:a.raw:d.qcow2
	[ "$stderr" = 'blkverify: read offset=0 bytes=1048576 contents mismatch at offset 524288' ]
	run -1 --separate-stderr img-cat --offset=512k --length=4k blkverify:a.raw:d.qcow2
	[ "$stderr" = 'blkverify: read offset=524288 bytes=4096 contents mismatch at offset 524288' ]
	run -0 img-cat --offset=0 --length=512k blkverify:a.raw:d.qcow2
}

@test "blkverify: img-cat's message is qemu-io's for the same read" {
	images
	run -1 --separate-stderr qio -r -c 'read 0 64k' blkverify:a.raw:c.qcow2
	want=$stderr
	run -1 --separate-stderr img-cat --length=64k blkverify:a.raw:c.qcow2
	[ "$stderr" = "$want" ]
	[ -z "$output" ]
}

@test "blkverify: img-write reaches both images as qemu-io's write does" {
	images
	for p in q i; do cp a.raw $p.raw; cp b.qcow2 $p.qcow2; done
	qio -f raw -c 'write -P 0x33 4096 8k' -c 'write -P 0x44 700k 4k' \
	    blkverify:q.raw:q.qcow2 >/dev/null
	head -c 8192 /dev/zero | tr '\0' '\063' |
	    img-write -f raw --offset=4096 blkverify:i.raw:i.qcow2
	head -c 4096 /dev/zero | tr '\0' '\104' |
	    img-write -f raw --offset=700k blkverify:i.raw:i.qcow2
	cmp q.raw i.raw
	qimg compare q.qcow2 i.qcow2
	qimg check q.qcow2
	qimg check i.qcow2
	img cat blkverify:i.raw:i.qcow2 | cmp - i.raw
}

@test "blkverify: convert -n into a blkverify target writes both, as qemu-img" {
	images
	qimg create -q -f raw full.raw 1M
	qio -f raw -c 'write -P 5 0 1M' full.raw >/dev/null
	for p in q i; do cp a.raw $p.raw; cp b.qcow2 $p.qcow2; done
	qimg convert -n -O raw full.raw blkverify:q.raw:q.qcow2
	img convert -n -O raw full.raw blkverify:i.raw:i.qcow2
	cmp q.raw i.raw
	cmp i.raw full.raw
	qimg compare q.qcow2 i.qcow2
	same map --output=json i.qcow2
	qimg check i.qcow2
	# a raw test image probed for writing: qemu's warning for it, once
	cp a.raw x.raw
	cp a.raw y.raw
	same convert -n -O raw full.raw blkverify:x.raw:y.raw
	grep -c "Image format was not specified for 'y.raw'" i.err | grep -qx 1
	cmp y.raw full.raw
}

@test "blkverify: zeroes written through the node reach both images" {
	images
	qimg create -q -f qcow2 src.qcow2 1M
	qio -f qcow2 -c 'write -P 5 0 4k' -c 'write -P 6 256k 8k' src.qcow2 >/dev/null
	cp a.raw i.raw
	cp b.qcow2 i.qcow2
	img convert -n -O raw src.qcow2 blkverify:i.raw:i.qcow2
	qimg compare src.qcow2 i.raw
	qimg compare src.qcow2 i.qcow2
	qimg check i.qcow2
}

@test "blkverify: resize truncates the raw file alone, as qemu-img" {
	images
	local a
	for a in "- 2M" "-f,raw 2M" "--shrink,-f,raw 512k" "-f,raw,--preallocation=falloc 2M"; do
		set -- ${a% *}
		local opts=(${1//,/ }) size=${a#* }
		[ "${opts[0]}" = - ] && opts=()
		for p in q i; do cp a.raw $p.raw; cp b.qcow2 $p.qcow2; done
		command qemu-img resize "${opts[@]}" blkverify:q.raw:q.qcow2 "$size" >q.out 2>&1
		img resize "${opts[@]}" blkverify:i.raw:i.qcow2 "$size" >i.out 2>&1
		sed 's/q\.\(raw\|qcow2\)/i.\1/g; s/^qemu-img:/img:/' q.out | diff - i.out
		cmp q.raw i.raw
		cmp q.qcow2 i.qcow2
	done
	[ "$(stat -c %s i.raw)" = 2097152 ]
}

@test "blkverify: a test image qemu-io holds is locked as in qemu-img" {
	images
	qimg create -q -f raw full.raw 1M
	command qemu-io -f qcow2 -c 'sleep 30000' b.qcow2 >/dev/null 2>&1 3>&- &
	holder=$!
	local i ino
	ino=$(stat -c %i b.qcow2)
	for i in $(seq 50); do
		grep -q "OFDLCK.*:$ino " /proc/locks && break
		sleep 0.1
	done
	cp a.raw a0.raw
	same info blkverify:a.raw:b.qcow2
	[ "$(cat i.rc)" = 1 ]
	same info -U blkverify:a.raw:b.qcow2
	same convert -n -O raw full.raw blkverify:a.raw:b.qcow2
	cmp a.raw a0.raw
}

@test "blkverify: check says what qemu-img says" {
	images
	same check blkverify:a.raw:b.qcow2
	same check --output=json blkverify:a.raw:b.qcow2
}

@test "blkverify: bad names and options fail as in qemu-img, nothing written" {
	images
	local a
	for a in blkverify:onlyone blkverify:nope.raw:b.qcow2 \
	    blkverify:a.raw:nope.qcow2 blkverify::b.qcow2 blkverify:a.raw:; do
		same info "$a"
		same convert -O raw "$a" out.raw
		[ ! -e out.raw ]
	done
	same info -f qcow2 blkverify:a.raw:b.qcow2
	same info -f blkverify a.raw
	for a in driver=blkverify,x-raw=a.raw,x-image=b.qcow2,foo=1 \
	    driver=blkverify,x-raw=a.raw driver=blkverify,x-image=a.raw \
	    driver=raw,file.driver=blkverify,file.x-raw=a.raw,file.x-image=b.qcow2,file.bar=1 \
	    driver=blkverify,raw.driver=file,test.file.filename=b.qcow2 \
	    driver=blkverify,raw=n0,x-image=b.qcow2 driver=blkverify,x-raw=a.raw,test=n1 \
	    driver=blkverify,x-raw=a.raw,raw.filename=b.qcow2,x-image=b.qcow2 \
	    driver=blkverify,x-raw=a.raw,test.driver=nope,test.file.filename=b.qcow2; do
		same info --image-opts "$a"
	done
	same create -f blkverify x.img 1M
	[ ! -e x.img ]
	# a blkverify target must exist: qemu-img cannot create one
	cp a.raw x.raw
	cp b.qcow2 y.qcow2
	same convert -O raw a.raw blkverify:x.raw:y.qcow2
	same dd if=a.raw of=blkverify:x.raw:y.qcow2
	same create -f raw blkverify:x.raw:y.qcow2 1M
	[ -z "$(compgen -G 'blkverify:*')" ]
	cmp x.raw a.raw
	cmp y.qcow2 b.qcow2
	cp a.raw w.raw
	cp b.qcow2 w.qcow2
	run -1 --separate-stderr img-write -f raw --offset=0 blkverify:w.raw:nope.qcow2 </dev/null
	[ "$stderr" = "img-write: Could not open 'blkverify:w.raw:nope.qcow2': Could not open 'nope.qcow2': No such file or directory" ]
	cmp w.raw a.raw
	cmp w.qcow2 b.qcow2
}
