#!/usr/bin/env bats
# The qed driver: qemu's images read by img, img's images read by qemu,
# backing chains, zero clusters, the need-check bit, hostile headers.
load helpers
bats_require_minimum_version 1.5.0
FMT=qed BAD=bad.qed

# patterned IMG FMT: qemu-io writes three patterns and a zeroed range
patterned() {
	qio -f "$2" -c 'write -P 0x11 0 4k' -c 'write -P 0x22 1536k 700k' \
	    -c 'write -P 0x33 5M 1k' -c 'write -z 6M 128k' "$1" >/dev/null
}

# reads_patterns IMG: qemu-io reads back what patterned wrote
reads_patterns() {
	run -0 qio -f qed -c 'read -P 0x11 0 4k' -c 'read -P 0x22 1536k 700k' \
	    -c 'read -P 0x33 5M 1k' -c 'read -P 0 4k 1020k' -c 'read -P 0 3M 2M' \
	    -c 'read -P 0 6M 128k' "$1"
	[[ "$output" != *fail* ]] || { echo "$output"; return 1; }
}

@test "qed: an empty qemu image: info, map, content" {
	qimg create -q -f qed e.qed 64M
	same_view e.qed
	same check e.qed
}

@test "qed: qemu-io patterns and zero clusters read the same" {
	qimg create -q -f qed p.qed 8M
	patterned p.qed qed
	same_view p.qed
	same info -f qed p.qed
	same check p.qed
	same check --output=json p.qed
}

@test "qed: a qemu convert of a patterned raw reads the same" {
	patterned_raw
	qimg convert -O qed -o cluster_size=4k,table_size=2 p.raw p.qed
	same_view p.qed
	cmp <(img cat p.qed) p.raw
}

@test "qed: a backing chain reads through, as qemu" {
	qimg create -q -f qcow2 base.qcow2 8M
	qio -f qcow2 -c 'write -P 0x55 0 8M' base.qcow2 >/dev/null
	qimg create -q -f qed -b base.qcow2 -F qcow2 top.qed
	qio -f qed -c 'write -P 0x66 100k 10k' -c 'write -z 1M 64k' top.qed >/dev/null
	same_view top.qed
	same info --backing-chain top.qed
	same compare top.qed base.qcow2
	# a raw backing file is recorded by the no-probe feature bit
	qimg create -q -f raw r.raw 4M
	qimg create -q -f qed -b r.raw -F raw r.qed
	same info --output=json r.qed
	run -0 img info --output=json r.qed
	[[ "$output" == *'"backing-filename-format": "raw"'* ]]
}

@test "qed: create prints qemu's line and makes qemu's layout" {
	same create -f qed a.qed 64M
	run -0 img create -f qed ours.qed 3M
	[ "$output" = "Formatting 'ours.qed', fmt=qed size=3145728 cluster_size=65536" ]
	qimg create -q -f qed theirs.qed 3M
	cmp ours.qed theirs.qed
	qimg create -q -f raw b.raw 1M
	img create -q -f qed -b b.raw -F raw -o cluster_size=4k,table_size=1 ours.qed
	qimg create -q -f qed -b b.raw -F raw -o cluster_size=4k,table_size=1 theirs.qed
	cmp ours.qed theirs.qed
	same create -f qed -b b.raw -F raw x.qed
	same create -f qed x.qed 1000
	same info x.qed
}

@test "qed: -o help and bad options as qemu-img" {
	same create -f qed -o help
	same create -f qed -o cluster_size=3k x.qed 1M
	same create -f qed -o cluster_size=128M x.qed 1M
	same create -f qed -o table_size=32 x.qed 1M
	same create -f qed x.qed 100T
	same create -f qed -o cluster_size=4k,table_size=1 x.qed 1G
}

@test "qed: img convert makes what qemu makes, byte for byte" {
	patterned_raw
	run -0 img convert -O qed p.raw ours.qed
	qimg convert -O qed p.raw theirs.qed
	cmp ours.qed theirs.qed
	run -0 qimg check ours.qed
	run -0 qimg compare p.raw ours.qed
	reads_patterns ours.qed
	same map --output=json ours.qed
}

@test "qed: img writes into its own image; qemu checks and reads it" {
	img create -q -f qed w.qed 7M
	patterned_raw
	img write -f qed w.qed <p.raw
	run -0 qimg check w.qed
	run -0 qimg compare w.qed p.raw
	reads_patterns w.qed
	# clean shutdown: the need-check bit is clear again
	[ "$(xxd -s 16 -l 1 -p w.qed)" = 00 ]
}

@test "qed: writes over a backing file copy the rest of the cluster" {
	qimg create -q -f qcow2 base.qcow2 8M
	qio -f qcow2 -c 'write -P 0x55 0 8M' base.qcow2 >/dev/null
	qimg create -q -f qed -b base.qcow2 -F qcow2 w1.qed
	cp w1.qed w2.qed
	head -c 5000 /dev/urandom >pat
	img write -f qed --offset=3000000 w1.qed <pat
	qio -f qed -c 'write -s pat 3000000 5000' w2.qed >/dev/null
	cmp w1.qed w2.qed
	run -0 qimg check w1.qed
	run -0 qimg compare w1.qed w2.qed
}

@test "qed: zero writes of whole clusters make zero clusters, as qemu-io -z" {
	qimg create -q -f qcow2 base.qcow2 8M
	qio -f qcow2 -c 'write -P 0x55 0 8M' base.qcow2 >/dev/null
	qimg create -q -f qed -b base.qcow2 -F qcow2 z1.qed
	cp z1.qed z2.qed
	head -c 1M /dev/zero >z
	img write -f qed --offset=1M z1.qed <z
	qio -f qed -c 'write -z 1M 1M' z2.qed >/dev/null
	cmp z1.qed z2.qed
	same map --output=json z1.qed
	run -0 qimg check z1.qed
}

@test "qed: a dirty image is checked and cleaned when opened for writing" {
	qimg create -q -f qed p.qed 8M
	patterned p.qed qed
	poke p.qed 16 '\x02'
	same info p.qed
	same check p.qed
	head -c 512 /dev/zero | img write -f qed --offset=7M p.qed
	[ "$(xxd -s 16 -l 1 -p p.qed)" = 00 ]
	run -0 qimg check p.qed
}

@test "qed: check finds bad table entries and repairs them as qemu" {
	qimg create -q -f qed c.qed 8M
	patterned c.qed qed
	poke c.qed $((0x10004)) '\0\0\0\x10'
	same check c.qed
	same check --output=json c.qed
	same map c.qed
	cp c.qed d.qed
	run -3 qimg check -r all c.qed
	run -3 img check -r all d.qed
	cmp c.qed d.qed
	# a bad L2 entry
	qimg create -q -f qed e.qed 8M
	patterned e.qed qed
	l2=$(xxd -s $((0x10000)) -l 4 -e e.qed | awk '{print $2}')
	poke e.qed $((0x$l2 + 4)) '\0\0\0\x10'
	same check e.qed
	same map --output=json e.qed
	cp e.qed f.qed
	qimg check -r all e.qed >/dev/null || true
	img check -r all f.qed >/dev/null || true
	cmp e.qed f.qed
}

@test "qed: resize and rebase -u as qemu" {
	qimg create -q -f qed a.qed 8M
	cp a.qed b.qed
	qimg resize a.qed 16M >/dev/null
	img resize b.qed 16M >/dev/null
	cmp a.qed b.qed
	same resize a.qed 8M
	same resize -f qed a.qed +1000
	qimg create -q -f raw r.raw 1M
	qimg rebase -u -b r.raw -F raw a.qed
	img rebase -u -b r.raw -F raw b.qed
	cmp a.qed b.qed
}

@test "qed: probing finds it" {
	qimg create -q -f qed p.qed 1M
	run -0 img info --output=json p.qed
	[[ "$output" == *'"format": "qed"'* ]]
}

@test "qed: bad magic, features, sizes, offsets: qemu's one line" {
	bad 0 'X'
	refused "Image not in QED format"
	bad 17 '\x01'
	refused "Unsupported QED features: 100"
	bad 5 '\x11'
	refused "QED cluster size is invalid"
	bad 8 '\x03'
	refused "QED table size is invalid"
	bad 48 '\x01'
	refused "QED image size is invalid"
	bad 55 '\x01'
	refused "QED image size is invalid"
	bad 42 '\x09'
	refused "QED table offset is invalid"
	bad 41 '\x01'
	refused "QED table offset is invalid"
	# a one-cluster table never passes qemu's offset check
	bad 8 '\x01'
	refused "QED table offset is invalid"
	# a header larger than the L1 table's offset
	bad 12 '\0\0\x01'
	refused "QED table offset is invalid"
	bad 16 '\x01'
	poke bad.qed 56 '\x40\0\0\0\0\0\x01\0'
	refused "QED backing filename offset is invalid"
}

@test "qed: truncated headers and garbage: one line, exit 1" {
	qimg create -q -f qed t.qed 8M
	head -c 30 t.qed >bad.qed
	refused "QED table offset is invalid"
	head -c 70000 t.qed >bad.qed
	refused "QED table offset is invalid"
	head -c 4096 /dev/urandom >bad.qed
	run -1 --separate-stderr img info -f qed bad.qed
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ "$stderr" == "img: Could not open 'bad.qed': "* ]]
}

@test "qed: a table entry past the end of the file: qemu's error" {
	qimg create -q -f qed h.qed 8M
	qio -f qed -c 'write -P 7 0 1M' h.qed >/dev/null
	poke h.qed $((0x10004)) '\0\0\0\x10'
	same map h.qed
	run -1 --separate-stderr img cat h.qed
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ "$stderr" == *"Invalid argument" ]]
}

@test "fmt-qed: a file cut inside its last cluster reads as qemu's (zeroes past the end)" {
	cut_copies qed
	same_view c.qed
	img convert -O qcow2 c.qed o.qcow2
	qimg compare o.qcow2 c.qed
	# cut in half: an L2 table past the end is qemu's bare EINVAL
	same map h.qed
	run -1 --separate-stderr img convert -O raw h.qed o.raw
	[ "$stderr" = "img: error while reading block status at offset 0: Invalid argument" ]
}
