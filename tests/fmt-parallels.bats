#!/usr/bin/env bats
# The parallels driver: qemu's images read by img, img's images read by
# qemu, the in-use mark, check and repair, hostile headers.
load helpers
bats_require_minimum_version 1.5.0
FMT=parallels BAD=bad.prl

# bad OFFSET BYTES: bad.prl is an 8 MiB qemu image with two clusters, poked
bad() {
	rm -f bad.prl
	qimg create -q -f parallels bad.prl 8M
	qio -f parallels -c 'write -P 1 0 1M' -c 'write -P 2 3M 1k' bad.prl >/dev/null
	poke bad.prl "$1" "$2"
}

@test "parallels: an empty qemu image: info, map, content" {
	qimg create -q -f parallels e.prl 64M
	same_view e.prl
	same check e.prl
	same check --output=json e.prl
}

@test "parallels: qemu-io patterns read the same" {
	qimg create -q -f parallels p.prl 8M
	patterned p.prl parallels
	same_view p.prl
	same info -f parallels p.prl
	same check p.prl
}

@test "parallels: a qemu convert with small clusters reads the same" {
	patterned_raw
	qimg convert -O parallels -o cluster_size=64k p.raw p.prl
	same_view p.prl
	cmp <(img cat p.prl) p.raw
}

@test "parallels: old-style WithoutFreeSpace images (BAT in sectors)" {
	qimg create -q -f parallels o.prl 8M
	patterned o.prl parallels
	# one-cluster-per-entry images become sector offsets: 2048 sectors a cluster
	poke o.prl 0 'WithoutFreeSpace'
	same_view o.prl
}

@test "parallels: create prints qemu's line and makes qemu's layout" {
	same create -f parallels a.prl 64M
	run -0 img create -f parallels ours.prl 3M
	[ "$output" = "Formatting 'ours.prl', fmt=parallels size=3145728 cluster_size=1048576" ]
	qimg create -q -f parallels theirs.prl 3M
	cmp ours.prl theirs.prl
	img create -q -f parallels -o cluster_size=1000 ours.prl 100000
	qimg create -q -f parallels -o cluster_size=1000 theirs.prl 100000
	cmp ours.prl theirs.prl
	same info ours.prl
}

@test "parallels: -o help and bad options as qemu-img" {
	same create -f parallels -o help
	same create -f parallels x.prl 0
	same create -f parallels -o cluster_size=4T x.prl 1M
	same create -f parallels -o cluster_size=512 x.prl 4T
	same create -f parallels -b x.raw x.prl 1M
}

@test "parallels: img convert makes what qemu makes, byte for byte" {
	patterned_raw
	run -0 img convert -O parallels p.raw ours.prl
	qimg convert -O parallels p.raw theirs.prl
	cmp ours.prl theirs.prl
	run -0 qimg check ours.prl
	run -0 qimg compare p.raw ours.prl
	reads_patterns ours.prl
	same map --output=json ours.prl
}

@test "parallels: img writes into images; qemu checks and reads them" {
	img create -q -f parallels w.prl 7M
	patterned_raw
	img write -f parallels w.prl <p.raw
	run -0 qimg check w.prl
	run -0 qimg compare w.prl p.raw
	reads_patterns w.prl
	# into a qemu image with clusters allocated: same bytes as qemu-io
	qimg create -q -f parallels w1.prl 8M
	patterned w1.prl parallels
	cp w1.prl w2.prl
	head -c 5000 /dev/urandom >pat
	img write -f parallels --offset=3000000 w1.prl <pat
	qio -f parallels -c 'write -s pat 3000000 5000' w2.prl >/dev/null
	cmp w1.prl w2.prl
	# the in-use mark is cleared on close
	[ "$(xxd -s 44 -l 4 -p w1.prl)" = 00000000 ]
}

@test "parallels: an image not closed cleanly: read-only, check repairs" {
	bad 44 'Ynot'
	same info bad.prl
	same map bad.prl
	same check bad.prl
	same check --output=json bad.prl
	head -c 512 /dev/zero >z
	run -1 --separate-stderr img write -f parallels bad.prl <z
	[ "$stderr" = "img: Could not open 'bad.prl': parallels: Image was not closed correctly; cannot be opened read/write" ]
	cp bad.prl b2.prl
	qimg check -r all bad.prl >q.out 2>q.err || true
	img check -r all b2.prl >i.out 2>i.err || true
	cmp q.out i.out
	cmp q.err i.err
	cmp bad.prl b2.prl
}

@test "parallels: clusters outside the image and leaks: qemu's check" {
	bad 68 '\xff\xff\0\0'
	same check bad.prl
	same map bad.prl
	cp bad.prl b2.prl
	qimg check -r all bad.prl >q.out 2>q.err || true
	img check -r all b2.prl >i.out 2>i.err || true
	cmp q.out i.out
	cmp q.err i.err
	cmp bad.prl b2.prl
	bad 0 'W'
	truncate -s 10M bad.prl
	same check bad.prl
	same check --output=json bad.prl
	cp bad.prl b2.prl
	qimg check -r leaks bad.prl >/dev/null 2>&1 || true
	img check -r leaks b2.prl >/dev/null 2>&1 || true
	cmp bad.prl b2.prl
}

@test "parallels: probing finds it" {
	qimg create -q -f parallels p.prl 1M
	run -0 img info --output=json p.prl
	[[ "$output" == *'"format": "parallels"'* ]]
}

@test "parallels: bad magic, version, geometry: qemu's one line" {
	bad 0 'X'
	refused "Image not in Parallels format"
	bad 16 '\x03'
	refused "Image not in Parallels format"
	bad 28 '\0\0\0\0'
	refused "Invalid image: Zero sectors per track"
	bad 28 '\0\0\0\x10'
	refused "Invalid image: Too big cluster"
	bad 32 '\0\0\0\x40'
	refused "Catalog too large"
}

@test "parallels: truncated headers, huge sizes and garbage: one line, exit 1" {
	qimg create -q -f parallels t.prl 8M
	# the rest reads as zeroes: an empty disk, as qemu says
	head -c 30 t.prl >bad.prl
	same info -f parallels bad.prl
	head -c 10 t.prl >bad.prl
	refused "Image not in Parallels format"
	bad 36 '\0\0\0\0\0\0\0\x01'
	run -1 --separate-stderr img info bad.prl
	[ "${#stderr_lines[@]}" -eq 1 ]
	head -c 4096 /dev/urandom >bad.prl
	run -1 --separate-stderr img info -f parallels bad.prl
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ "$stderr" == "img: Could not open 'bad.prl': "* ]]
}

@test "parallels: a BAT past the end of the file, a disk past the BAT" {
	# the BAT claims more entries than the file holds: they read as unallocated
	bad 32 '\0\0\x10'
	same info bad.prl
	same map --output=json bad.prl
	same_content bad.prl
	# a disk larger than its BAT covers: qemu asserts, img maps it
	bad 36 '\0\0\0\0\0\x01'
	run -0 img map --output=json bad.prl
	[[ "$output" == *'{ "start": 4194304, "length": 562949949227008, "depth": 0, "present": false, "zero": true, "data": false}]' ]]
}

# ext BYTES [bad]: e.prl, a clean 8 MiB qemu image whose Format Extension
# cluster (at 2 MiB) starts with BYTES, its MD5 right unless "bad"
ext() {
	qimg create -q -f parallels e.prl 8M
	qio -f parallels -c 'write -P 1 0 1M' e.prl >/dev/null
	poke e.prl 56 '\0\x10'
	printf "$1" >x
	truncate -s 1M x
	if [ "${2:-}" = bad ]; then
		poke x 8 'xxxxxxxxxxxxxxxx'
	else
		tail -c +25 x | md5sum | cut -c1-32 | xxd -r -p | dd of=x bs=1 seek=8 conv=notrunc status=none
	fi
	dd if=x of=e.prl bs=1M seek=2 conv=notrunc status=none
}

@test "parallels: the Format Extension is checked on read-only opens, as qemu" {
	m='\x87\xea\xdc\x23\xef\x4c\x23\xab'
	z='\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0'
	ext "$m" bad
	same info e.prl
	[[ "$(cat i.err)" == *"Wrong checksum in Format Extension header. Format extension is corrupted." ]]
	ext "$m"
	same info e.prl
	same map --output=json e.prl
	ext "$m$z\x1f"
	same info e.prl
	[[ "$(cat i.err)" == *"Unknown feature: 0x1f" ]]
	ext "$m$z\x4a\xb3\x2c\x25\xae\x5f\x38\x20\0\0\0\0\0\0\0\0\x10"
	same info e.prl
	ext "$m$z\x4a\xb3\x2c\x25\xae\x5f\x38\x20\0\0\0\0\0\0\0\0\x20\0\0\0\0\0\0\0"
	same info e.prl
	ext "$m$z\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\xff\xff\x1f\0"
	same info e.prl
	[[ "$(cat i.err)" == *"Feature data_size exceedes Format Extension cluster" ]]
	# writers ignore it (and allocate over it), as qemu does
	ext "$m"
	cp e.prl f.prl
	head -c 512 /dev/zero | img write -f parallels --offset=4M e.prl
	qio -f parallels -c 'write -P 0 4M 512' f.prl >/dev/null
	cmp e.prl f.prl
}
