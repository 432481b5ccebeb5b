#!/usr/bin/env bats
# The vdi driver: qemu's images read by img, img's images read by qemu,
# hostile headers refused in one line.
load helpers
bats_require_minimum_version 1.5.0
FMT=vdi BAD=bad.vdi

@test "vdi: an empty qemu image: info, map, content" {
	qimg create -q -f vdi e.vdi 64M
	same_view e.vdi
}

@test "vdi: qemu-io patterns in a qemu image read the same" {
	qimg create -q -f vdi p.vdi 8M
	patterned p.vdi vdi
	same_view p.vdi
	same info -f vdi p.vdi
}

@test "vdi: a static qemu image maps its file's holes as zeroes" {
	qimg create -q -f vdi -o static=on s.vdi 8M
	patterned s.vdi vdi
	same_view s.vdi
}

@test "vdi: a qemu convert of a patterned raw reads the same" {
	patterned_raw
	qimg convert -O vdi p.raw p.vdi
	same_view p.vdi
	cmp <(img cat p.vdi) p.raw
}

@test "vdi: odd sizes round up to whole sectors, as qemu" {
	same create -f vdi o.vdi 3000
	same info o.vdi
	qimg create -q -f vdi z.vdi 0
	same_view z.vdi
}

@test "vdi: create prints qemu's line and makes qemu's layout" {
	same create -f vdi a.vdi 64M
	run -0 img create -f vdi ours.vdi 3M
	[ "$output" = "Formatting 'ours.vdi', fmt=vdi size=3145728 static=off" ]
	qimg create -q -f vdi theirs.vdi 3M
	# all but the two random UUIDs at 0x188..0x1a7
	cmp <(xxd ours.vdi | grep -v '^00000180\|^00000190\|^000001a0') \
	    <(xxd theirs.vdi | grep -v '^00000180\|^00000190\|^000001a0')
	run -0 qimg check ours.vdi
}

@test "vdi: a static create matches qemu's" {
	run -0 img create -f vdi -o static s.vdi 3M
	[ "$output" = "Formatting 's.vdi', fmt=vdi size=3145728 static=on" ]
	qimg create -q -f vdi -o static=on t.vdi 3M
	[ "$(stat -c %s s.vdi)" = "$(stat -c %s t.vdi)" ]
	run -0 qimg check s.vdi
	same_view s.vdi
}

@test "vdi: -o help and bad options as qemu-img" {
	same create -f vdi -o help
	same create -f vdi -o cluster_size=2M x.vdi 1M
	same create -f vdi -o static=maybe x.vdi 1M
}

@test "vdi: sizes past qemu's maximum are refused at create" {
	run -1 --separate-stderr img create -q -f vdi big.vdi 2P
	[ "$stderr" = "img: big.vdi: Unsupported VDI image size (size is 0x8000000000000, max supported is 0x1fffff8000000)" ]
	[ ! -e big.vdi ]
	run -0 img create -q -f vdi top.vdi $((0x1fffff8000000))
	same info top.vdi
}

@test "vdi: img convert makes what qemu makes, and qemu reads it" {
	patterned_raw
	run -0 img convert -O vdi p.raw ours.vdi
	qimg convert -O vdi p.raw theirs.vdi
	[ "$(stat -c %s ours.vdi)" = "$(stat -c %s theirs.vdi)" ]
	run -0 qimg check ours.vdi
	run -0 qimg compare p.raw ours.vdi
	reads_patterns ours.vdi
	same map --output=json ours.vdi
}

@test "vdi: img writes into its own image; qemu checks and reads it" {
	img create -q -f vdi w.vdi 7M
	patterned_raw
	img write -f vdi w.vdi <p.raw
	run -0 qimg check w.vdi
	run -0 qimg compare w.vdi p.raw
	reads_patterns w.vdi
}

@test "vdi: writes into a qemu image with blocks allocated" {
	qimg create -q -f vdi q.vdi 8M
	qio -f vdi -c 'write -P 0x55 2M 1M' q.vdi >/dev/null
	qimg create -q -f raw p.raw 8M
	patterned p.raw raw
	qio -f raw -c 'write -P 0x55 2M 1M' p.raw >/dev/null
	patterned p.raw raw
	img convert -n -O vdi p.raw q.vdi
	run -0 qimg check q.vdi
	run -0 qimg compare q.vdi p.raw
	same map --output=json q.vdi
}

@test "vdi: check reports what qemu reports" {
	qimg create -q -f vdi c.vdi 8M
	qio -f vdi -c 'write -P 1 0 1M' -c 'write -P 2 3M 1M' c.vdi >/dev/null
	same check c.vdi
	same check --output=json c.vdi
	# block 1 shares block 0's data, block 2 points past the map, count off
	poke c.vdi $((0x204)) '\0\0\0\0\x99\0\0\0'
	poke c.vdi $((0x184)) '\x05'
	same check c.vdi
	same check --output=json c.vdi
	same check -r all c.vdi
}

@test "vdi: probing finds it; qemu's probe score" {
	qimg create -q -f vdi p.vdi 1M
	run -0 img info --output=json p.vdi
	[[ "$output" == *'"format": "vdi"'* ]]
}

@test "vdi: bad signature, version, offsets, sizes: qemu's one line" {
	bad $((0x40)) 'XXXX'
	refused "Image not in VDI format (bad signature 58585858)"
	bad $((0x44)) '\x02\0\x01\0'
	refused "unsupported VDI image (version 1.2)"
	bad $((0x154)) '\x01\x02'
	refused "unsupported VDI image (unaligned block map offset 0x201)"
	bad $((0x158)) '\x01\x04'
	refused "unsupported VDI image (unaligned data offset 0x401)"
	bad $((0x168)) '\0\x10'
	refused "unsupported VDI image (sector size 4096 is not 512)"
	bad $((0x178)) '\0\0\x20'
	refused "unsupported VDI image (block size 2097152 is not 1048576)"
	bad $((0x180)) '\x04'
	refused "unsupported VDI image (disk size 8388608, image bitmap has room for 4194304)"
	bad $((0x1a8)) '\x01'
	refused "unsupported VDI image (non-NULL link UUID)"
	bad $((0x1b8)) '\x01'
	refused "unsupported VDI image (non-NULL parent UUID)"
	bad $((0x170)) '\0\0\0\0\0\0\x10'
	refused "Unsupported VDI image size (size is 0x10000000000000, max supported is 0x1fffff8000000)"
	bad $((0x180)) '\0\0\0\x20'
	refused "unsupported VDI image (too many blocks 536870912, max is 536870784)"
	same info -f vdi bad.vdi
}

@test "vdi: a block map past the end of the file reads as zeroes, as qemu" {
	# qemu's largest map (2 GiB): kept in memory only as far as the file goes
	bad $((0x170)) '\0\0\0\xf8\xff\xff\x01\0'
	poke bad.vdi $((0x180)) '\x80\xff\xff\x1f'
	same info bad.vdi
	same info --output=json bad.vdi
	# the map past the end: every block is data block 0, as qemu sees it
	bad $((0x154)) '\0\0\0\x10'
	same map --output=json bad.vdi
	same_content bad.vdi
}

@test "vdi: a truncated header and garbage: one line, exit 1" {
	qimg create -q -f vdi t.vdi 8M
	head -c 100 t.vdi >bad.vdi
	refused "unsupported VDI image (sector size 0 is not 512)"
	same info -f vdi bad.vdi
	same info bad.vdi
	head -c 68 t.vdi >bad.vdi
	same info bad.vdi
	head -c 67 t.vdi >bad.vdi
	same info bad.vdi
	head -c 4096 /dev/urandom >bad.vdi
	run -1 --separate-stderr img info -f vdi bad.vdi
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ "$stderr" == "img: Could not open 'bad.vdi': "* ]]
}

@test "vdi: block entries past the end of the file read as zeroes, as qemu" {
	qimg create -q -f vdi h.vdi 8M
	qio -f vdi -c 'write -P 7 0 1M' h.vdi >/dev/null
	poke h.vdi $((0x208)) '\xff\xff\xff\x7f'
	same map --output=json h.vdi
	same_content h.vdi
	# but img does not write there: the entry is out of the map's range
	head -c 512 /dev/zero >z
	run -1 --separate-stderr img write -f vdi --offset=2M h.vdi <z
	[ "$stderr" = "img: h.vdi: VDI block map entry 2 (2147483647) is out of range" ] ||
	    { echo "$stderr"; false; }
}

@test "vdi: a discarded block (0xfffffffe) reads as zeroes, and is rewritten" {
	qimg create -q -f vdi d.vdi 4M
	qio -f vdi -c 'write -P 9 0 2M' d.vdi >/dev/null
	poke d.vdi $((0x204)) '\xfe\xff\xff\xff'
	same map --output=json d.vdi
	same map d.vdi
	same_content d.vdi
	head -c 4096 /dev/zero | tr '\0' '\011' >nine
	img write -f vdi --offset=1M d.vdi <nine
	run -0 qio -f vdi -c 'read -P 9 1M 4k' -c 'read -P 0 1028k 1020k' d.vdi
	[[ "$output" != *fail* ]]
	same map --output=json d.vdi
}
