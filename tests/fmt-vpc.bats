#!/usr/bin/env bats
# The vpc driver (VHD, fixed and dynamic): qemu's images read by img, img's
# images read by qemu, hostile footers and headers refused in one line.
load helpers
bats_require_minimum_version 1.5.0
FMT=vpc BAD=bad.vpc

# same_layout A B: two vpc files alike but for UUIDs, timestamps, checksums
same_layout() {
	cmp <(xxd "$1" | grep -v '^[0-9a-f]*[02468ace][145]0: ') \
	    <(xxd "$2" | grep -v '^[0-9a-f]*[02468ace][145]0: ')
}

@test "vpc: an empty dynamic qemu image: info, map, content" {
	qimg create -q -f vpc e.vpc 64M
	same_view e.vpc
}

@test "vpc: qemu-io patterns in a dynamic qemu image read the same" {
	qimg create -q -f vpc p.vpc 8M
	patterned p.vpc vpc
	same_view p.vpc
}

@test "vpc: a fixed qemu image maps its file's holes as zeroes" {
	qimg create -q -f vpc -o subformat=fixed f.vpc 8M
	patterned f.vpc vpc
	same info -f vpc f.vpc
	same info --output=json -f vpc f.vpc
	same map --output=json -f vpc f.vpc
	same map -f vpc f.vpc
	img cat -f vpc f.vpc >ours.raw
	qimg convert -f vpc -O raw f.vpc theirs.raw
	cmp ours.raw theirs.raw
}

@test "vpc: qemu converts of a patterned raw read the same" {
	patterned_raw
	qimg convert -O vpc p.raw d.vpc
	same_view d.vpc
	qimg convert -O vpc -o subformat=fixed p.raw f.vpc
	same map --output=json -f vpc f.vpc
	cmp <(img cat -f vpc f.vpc | head -c 7340032) p.raw
}

@test "vpc: force_size_calc picks CHS or current_size, as qemu" {
	qimg create -q -f vpc -o force_size c.vpc 10000000
	same info c.vpc
	same map --output=json --image-opts \
	    "driver=vpc,force_size_calc=chs,file.filename=c.vpc"
	same map --output=json --image-opts \
	    "driver=vpc,force_size_calc=current_size,file.filename=c.vpc"
	same map --output=json --image-opts \
	    "driver=vpc,force_size_calc=nonsense,file.filename=c.vpc"
}

@test "vpc: create rounds sizes to CHS geometry exactly as qemu" {
	local sz opt
	for sz in 1 3000 1M 64M 100M 1000000000 33822350848 33822351360 127G 130G 2040G; do
		for opt in subformat=dynamic force_size; do
			rm -f o.vpc
			same create -f vpc -o $opt o.vpc $sz
			mv o.vpc theirs.vpc
			ln -sf "$IMG_BIN/img" ours/qemu-img
			ours/qemu-img create -q -f vpc -o $opt o.vpc $sz
			same info o.vpc
			same_layout o.vpc theirs.vpc
		done
	done
}

@test "vpc: fixed create makes qemu's file" {
	run -0 img create -f vpc -o subformat=fixed ours.vpc 5M
	[ "$output" = "Formatting 'ours.vpc', fmt=vpc size=5242880 subformat=fixed" ]
	qimg create -q -f vpc -o subformat=fixed theirs.vpc 5M
	same_layout ours.vpc theirs.vpc
	same info -f vpc ours.vpc
}

@test "vpc: -o help, bad options and sizes past 2040 GiB as qemu-img" {
	same create -f vpc -o help
	same create -f vpc -o subformat=sparse x.vpc 1M
	same create -f vpc -o force_size=maybe x.vpc 1M
	same create -f vpc -o static=on x.vpc 1M
	same create -f vpc x.vpc 2041G
	same create -f vpc -o force_size x.vpc 3T
	run -1 img create -q -f vpc y.vpc 3T
	[ ! -e y.vpc ]
}

@test "vpc: img convert makes what qemu makes, and qemu reads it" {
	patterned_raw
	for sub in dynamic fixed; do
		rm -f ours.vpc theirs.vpc
		run -0 img convert -O vpc -o subformat=$sub p.raw ours.vpc
		qimg convert -O vpc -o subformat=$sub p.raw theirs.vpc
		same_layout ours.vpc theirs.vpc
		run -0 qimg compare -f vpc -F vpc ours.vpc theirs.vpc
		reads_patterns ours.vpc
	done
}

@test "vpc: img writes into qemu's image; the footer moves, qemu reads it" {
	qimg create -q -f vpc q.vpc 8M
	qio -f vpc -c 'write -P 0x55 2M 1M' q.vpc >/dev/null
	qimg create -q -f raw p.raw 8M
	qio -f raw -c 'write -P 0x55 2M 1M' p.raw >/dev/null
	patterned p.raw raw
	patterned p.raw raw
	img convert -n -O vpc p.raw q.vpc
	run -0 qimg compare -f vpc -F raw q.vpc p.raw
	reads_patterns q.vpc
	same map --output=json q.vpc
	# the footer copy ends the file
	cmp <(tail -c 512 q.vpc) <(head -c 512 q.vpc)
}

@test "vpc: img write into a fixed image" {
	img create -q -f vpc -o subformat=fixed f.vpc 7M
	patterned_raw
	img write -f vpc f.vpc <p.raw
	reads_patterns f.vpc
	run -0 qimg compare -f vpc -F raw f.vpc p.raw
}

@test "vpc: check is not supported, as qemu" {
	qimg create -q -f vpc c.vpc 1M
	same check c.vpc
}

@test "vpc: probing: a dynamic image by its cookie, a fixed one is raw" {
	qimg create -q -f vpc d.vpc 1M
	qimg create -q -f vpc -o subformat=fixed f.vpc 1M
	same info d.vpc
	same info f.vpc
}

@test "vpc: bad checksum, magic, block size, table sizes: qemu's one line" {
	bad 64 'x'
	refused "Incorrect header checksum"
	bad 512 'xx'
	refused "Invalid header magic"
	bad $((512 + 32)) '\0\0\0\0'
	refused "Invalid block size 0"
	bad $((512 + 32)) '\x12\x34\x56\x78'
	refused "Invalid block size 305419896"
	bad $((512 + 28)) '\0\0\0\x01'
	refused "Page table too small"
	bad $((512 + 28)) '\x40\0\0\x01'
	refused "Max Table Entries too large (1073741825)"
	bad $((512 + 28)) '\xff\xff\xff\xff'
	refused "Max Table Entries too large (-1)"
}

@test "vpc: BAT and blocks past the end of the file: qemu's truncation line" {
	bad 1536 '\0\0\x10\0'
	refused "block-vpc: free_data_block_offset points after the end of file. The image has been truncated."
	bad $((512 + 16)) '\0\0\0\0\0\x10\0\0'
	refused "block-vpc: free_data_block_offset points after the end of file. The image has been truncated."
	bad $((512 + 16)) '\x7f\xff\xff\xff\xff\xff\xff\xff'
	refused "Error reading pagetable"
	bad 16 '\x7f\xff\xff\xff\xff\xff\xff\xff'
	refused "Incorrect header checksum"
}

@test "vpc: truncated files and garbage: one line, exit 1" {
	qimg create -q -f vpc t.vpc 8M
	head -c 1000 t.vpc >bad.vpc
	refused "block-vpc: free_data_block_offset points after the end of file. The image has been truncated."
	head -c 100 t.vpc >bad.vpc
	refused "Invalid header magic"
	: >bad.vpc
	refused "File too small for a VHD header"
	head -c 100 /dev/urandom >bad.vpc
	refused "invalid VPC image"
	head -c 4096 /dev/urandom >bad.vpc
	refused "invalid VPC image"
}

@test "vpc: a footer size past 2040 GiB is refused as qemu" {
	qimg create -q -f vpc -o force_size bad.vpc 2040G
	# current_size 2041 GiB, checksum fixed up
	python3 - <<-'EOF'
	import struct
	f = open('bad.vpc', 'r+b')
	b = bytearray(f.read(512))
	b[48:56] = struct.pack('>Q', 2041 << 30)
	b[64:68] = bytes(4)
	b[64:68] = struct.pack('>I', ~sum(b) & 0xffffffff)
	f.seek(0)
	f.write(b)
	EOF
	refused "Could not open 'bad.vpc': File too large"
}

@test "vpc: a write marks the block's sector bitmap all in use, as qemu" {
	qimg create -q -f vpc b.vpc 4M
	qio -f vpc -c 'write -P 7 0 4k' b.vpc >/dev/null
	# block 0's bitmap is the sector at 2048 (after the 512-byte BAT)
	head -c 512 /dev/zero | dd of=b.vpc bs=512 seek=4 conv=notrunc status=none
	cp b.vpc q.vpc
	head -c 512 /dev/zero | tr '\0' '\010' >eight
	img write -f vpc --offset=8192 b.vpc <eight
	qio -f vpc -c 'write -P 8 8k 512' q.vpc >/dev/null
	cmp <(dd if=b.vpc bs=512 skip=4 count=1 status=none) \
	    <(dd if=q.vpc bs=512 skip=4 count=1 status=none)
	cmp b.vpc q.vpc
}
