#!/usr/bin/env bats
# The vhdx driver (Hyper-V VHDX, dynamic and fixed): qemu's images read by
# img, img's images read by qemu, the log replayed or refused as qemu,
# hostile headers, tables and BAT entries refused in one line.
load helpers
bats_require_minimum_version 1.5.0
FMT=vhdx BAD=bad.vhdx

# same_view IMG: info and map, human and json, and the bytes as qemu-img's
same_view() {
	same info "$1" && same info --output=json "$1" &&
	    same map "$1" && same map --output=json "$1" &&
	    same check "$1" && same_content "$1"
}

# patterned IMG FMT: qemu-io writes three patterns (and zeroes) into IMG
patterned() {
	qio -f "$2" -c 'write -P 0x11 0 4k' -c 'write -P 0x22 1536k 700k' \
	    -c 'write -P 0x33 9M 1k' -c 'write -z 10M 1M' "$1" >/dev/null
}

# reads_patterns IMG: qemu-io reads back what patterned wrote
reads_patterns() {
	run -0 qio -f vhdx -c 'read -P 0x11 0 4k' -c 'read -P 0x22 1536k 700k' \
	    -c 'read -P 0x33 9M 1k' -c 'read -P 0 4k 1020k' \
	    -c 'read -P 0 3M 6M' -c 'read -P 0 10M 2M' "$1"
	[[ "$output" != *fail* ]] || { echo "$output"; return 1; }
}

# same_layout A B: two vhdx files alike but for GUIDs, sequence numbers
# and checksums (headers at 64 KiB and 128 KiB, page 83 data)
same_layout() {
	cmp <(xxd "$1" | grep -v '^000[12]00[0-4]0: ' | grep -v '^0*[0-9a-f]*10010: ') \
	    <(xxd "$2" | grep -v '^000[12]00[0-4]0: ' | grep -v '^0*[0-9a-f]*10010: ')
}

# bad OFFSET BYTES: bad.vhdx is a fresh 64 MiB qemu image with one block
# written, poked
bad() {
	rm -f bad.vhdx
	qimg create -q -f vhdx bad.vhdx 64M
	qio -f vhdx -c 'write -P 0x11 0 4k' bad.vhdx >/dev/null
	[ $# -eq 0 ] || poke bad.vhdx "$1" "$2"
}

# refused MESSAGE: img refuses bad.vhdx in one line (qemu-img words some of
# these in two)
refused() {
	img_refuses "$1"
}

# csum OFFSET LENGTH: store the CRC-32C of bad.vhdx's structure at OFFSET
csum() {
	python3 - "$1" "$2" <<-'EOF'
	import struct, sys
	off, n = int(sys.argv[1]), int(sys.argv[2])
	f = open('bad.vhdx', 'r+b')
	f.seek(off)
	b = bytearray(f.read(n))
	b[4:8] = bytes(4)
	t = []
	for i in range(256):
	    k = i
	    for _ in range(8):
	        k = (k >> 1) ^ 0x82f63b78 if k & 1 else k >> 1
	    t.append(k)
	c = 0xffffffff
	for x in b:
	    c = t[(c ^ x) & 0xff] ^ (c >> 8)
	f.seek(off + 4)
	f.write(struct.pack('<I', c ^ 0xffffffff))
	EOF
}

EINVAL="Could not open 'bad.vhdx': Invalid argument"
ENOTSUP="Could not open 'bad.vhdx': Operation not supported"

@test "vhdx: an empty dynamic qemu image: info, map, check, content" {
	qimg create -q -f vhdx e.vhdx 64M
	same_view e.vhdx
}

@test "vhdx: qemu-io patterns and zero writes read the same" {
	qimg create -q -f vhdx p.vhdx 16M
	patterned p.vhdx vhdx
	same_view p.vhdx
}

@test "vhdx: fixed images and several block sizes read the same" {
	qimg create -q -f vhdx -o subformat=fixed f.vhdx 16M
	patterned f.vhdx vhdx
	same_view f.vhdx
	qimg create -q -f vhdx -o block_size=1M,block_state_zero=off b1.vhdx 16M
	patterned b1.vhdx vhdx
	same_view b1.vhdx
	qimg create -q -f vhdx -o block_size=32M,log_size=2M b32.vhdx 40M
	patterned b32.vhdx vhdx
	same_view b32.vhdx
}

@test "vhdx: qemu converts of a patterned raw read the same" {
	qimg create -q -f raw p.raw 15M
	patterned p.raw raw
	qimg convert -O vhdx p.raw d.vhdx
	same_view d.vhdx
	qimg convert -O vhdx -o subformat=fixed,block_size=2M p.raw f.vhdx
	same_view f.vhdx
	cmp <(img cat f.vhdx) p.raw
}

@test "vhdx: probing by the vhdxfile signature" {
	qimg create -q -f vhdx d.vhdx 1M
	same info d.vhdx
	run -0 img info --output=json d.vhdx
	[[ "$output" == *'"format": "vhdx"'* ]]
}

@test "vhdx: create makes qemu's layout, for every subformat and option" {
	local o
	for o in "" subformat=fixed block_size=1M,log_size=3M \
	    block_state_zero=off subformat=fixed,block_state_zero=off \
	    log_size=1 block_size=256M block_size=1; do
		rm -f ours.vhdx theirs.vhdx
		qimg create -f vhdx ${o:+-o $o} theirs.vhdx 100M >want
		run -0 img create -f vhdx ${o:+-o $o} ours.vhdx 100M
		[ "$output" = "$(sed s/theirs/ours/ want)" ]
		same_layout ours.vhdx theirs.vhdx
		run -0 qimg check ours.vhdx
		run -0 qimg compare ours.vhdx theirs.vhdx
	done
}

@test "vhdx: create sizes, -o help and bad options as qemu-img" {
	same create -f vhdx -o help
	same create -f vhdx x.vhdx 65T
	same create -f vhdx -o subformat=sparse x.vhdx 1M
	same create -f vhdx -o block_state_zero=maybe x.vhdx 1M
	same create -f vhdx -o log_size=5G x.vhdx 1M
	same create -f vhdx -o block_size=3M x.vhdx 1M
	same create -f vhdx -o block_size=300M x.vhdx 1M
	same create -f vhdx -o block_size=1G x.vhdx 1M
	rm -f x.vhdx
	same create -f vhdx x.vhdx 1000
	same info x.vhdx
	rm -f x.vhdx
	same create -f vhdx x.vhdx 0
	same info x.vhdx
}

@test "vhdx: img convert makes what qemu makes, and qemu reads it" {
	local sub
	qimg create -q -f raw p.raw 15M
	patterned p.raw raw
	for sub in dynamic fixed; do
		rm -f ours.vhdx theirs.vhdx
		run -0 img convert -O vhdx -o subformat=$sub p.raw ours.vhdx
		qimg convert -O vhdx -o subformat=$sub p.raw theirs.vhdx
		run -0 qimg check ours.vhdx
		run -0 qimg compare -f vhdx -F vhdx ours.vhdx theirs.vhdx
		run -0 qimg compare -f vhdx -F raw ours.vhdx p.raw
		reads_patterns ours.vhdx
	done
}

@test "vhdx: img writes into qemu's image: blocks at the end, qemu reads them" {
	qimg create -q -f vhdx q.vhdx 16M
	qio -f vhdx -c 'write -P 0x55 13M 1M' q.vhdx >/dev/null
	qimg create -q -f raw p.raw 16M
	qio -f raw -c 'write -P 0x55 13M 1M' p.raw >/dev/null
	patterned p.raw raw
	img convert -n -O vhdx p.raw q.vhdx
	run -0 qimg check q.vhdx
	[ "$output" = "No errors were found on the image." ]
	run -0 qimg compare -f vhdx -F raw q.vhdx p.raw
	reads_patterns q.vhdx
	# every block lies 1 MiB aligned inside the file
	[ $(( $(stat -c %s q.vhdx) % 1048576 )) -eq 0 ]
	same map --output=json q.vhdx
}

@test "vhdx: img write into a fixed image" {
	img create -q -f vhdx -o subformat=fixed f.vhdx 15M
	qimg create -q -f raw p.raw 15M
	patterned p.raw raw
	img write -f vhdx f.vhdx <p.raw
	reads_patterns f.vhdx
	run -0 qimg check f.vhdx
	run -0 qimg compare -f vhdx -F raw f.vhdx p.raw
}

@test "vhdx: a dirty log: refused read-only, replayed by check -r all" {
	local s=${IMG_SAMPLES:-$HOME/.cache/img-acceptance/qemu-7.2.0/tests/qemu-iotests/sample_images}
	[ -f "$s/iotest-dirtylog-10G-4M.vhdx.bz2" ] || skip "qemu's sample images not fetched"
	bzcat "$s/iotest-dirtylog-10G-4M.vhdx.bz2" >d.vhdx
	cp d.vhdx q.vhdx
	same info d.vhdx
	same check d.vhdx
	run -1 --separate-stderr img info d.vhdx
	[ "${stderr_lines[0]}" = "img: Could not open 'd.vhdx': VHDX image file 'd.vhdx' opened read-only, but contains a log that needs to be replayed" ]
	run -0 img check -r all d.vhdx
	[ "${lines[0]}" = "The following inconsistencies were found and repaired:" ]
	[ "${lines[2]}" = "    1 corruptions" ]
	qimg check -q -r all q.vhdx
	run -0 qimg compare d.vhdx q.vhdx
	run -0 qio -r -c 'read -P 0xa5 0 18M' d.vhdx
	same_view d.vhdx
}

@test "vhdx: bad headers, region table, metadata: qemu's one line" {
	bad $((0x10010)) '\xff'
	same info bad.vhdx
	poke bad.vhdx $((0x20010)) '\xff'
	refused "No valid VHDX header found"
	bad $((0x30010)) '\xff'
	refused "$EINVAL"
	bad $((0x300000)) 'X'
	refused "$EINVAL"
	bad $((0x30000a)) '\xff\xff'
	refused "$EINVAL"
	bad $((0x300020)) '\0'
	refused "$ENOTSUP"
	bad $((0x310020)) '\0\x10\0\0'
	refused "$ENOTSUP"
	bad $((0x310000)) '\0\0\x30\0'
	refused "$EINVAL"
	bad $((0x310000)) '\0\x01\0\0'
	refused "$EINVAL"
	bad $((0x310004)) '\x02'
	refused "$EINVAL"
	same info bad.vhdx
}

@test "vhdx: huge sizes and tables past the end: one line, exit 1" {
	bad $((0x310008)) '\0\0\0\0\0\0\x40\0'
	refused "$EINVAL"
	same info bad.vhdx
	bad $((0x310008)) '\0\0\0\0\0\0\0\x01'
	refused "$EINVAL"
	bad $((0x30028)) '\0\0\0\0'
	csum $((0x30000)) 65536
	refused "$EINVAL"
	bad $((0x30020)) '\0\0\x10\0'
	csum $((0x30000)) 65536
	refused "VHDX region 1048576-2097152 overlaps with region 1048576-2097152"
	bad $((0x30020)) '\0\0\0\x7f'
	csum $((0x30000)) 65536
	refused "$EINVAL"
}

@test "vhdx: BAT entries past the end or over metadata: qemu's reason, check counts" {
	bad $((0x200000)) '\x06\0\xf0\xff'
	# qemu says why, then refuses the open bare: two lines, as here
	same info bad.vhdx
	[ "$(head -1 i.err)" = "qemu-img: VHDX BAT entry 0 start offset 4293918720 points after end of file (16777216). Image has probably been truncated." ]
	same check bad.vhdx
	same check --output=json bad.vhdx
	bad $((0x200000)) '\x06\0\x10\0'
	refused "VHDX region 1048576-9437184 overlaps with region 3145728-4194304"
	same check bad.vhdx
	bad
	truncate -s 9M bad.vhdx
	same info bad.vhdx
	[ "$(head -1 i.err)" = "qemu-img: VHDX BAT entry 0 end offset 16777215 points after end of file (9437184). Image has probably been truncated." ]
	same check bad.vhdx
}

@test "vhdx: truncated files and garbage: one line, exit 1" {
	bad
	truncate -s 100K bad.vhdx
	refused "$EINVAL"
	bad
	truncate -s 65576 bad.vhdx
	refused "No valid VHDX header found"
	bad
	truncate -s 2500K bad.vhdx
	refused "$EINVAL"
	head -c 1M /dev/urandom >bad.vhdx
	poke bad.vhdx 0 'vhdxfile'
	refused "No valid VHDX header found"
	printf vhdxfile >bad.vhdx
	refused "No valid VHDX header found"
	same info bad.vhdx
}

@test "vhdx: a partially present block fails the read, as qemu" {
	bad $((0x200000)) '\x07'
	same info bad.vhdx
	run -1 img cat bad.vhdx
}

# dirty IMG: point IMG's current header at the GUID of its log's last
# entry, so the log qemu left (already applied) must be replayed again
dirty() {
	python3 - "$1" <<-'EOF'
	import struct, sys
	f = open(sys.argv[1], 'r+b')
	def crc(b):
	    t = []
	    for i in range(256):
	        k = i
	        for _ in range(8):
	            k = (k >> 1) ^ 0x82f63b78 if k & 1 else k >> 1
	        t.append(k)
	    c = 0xffffffff
	    for x in b:
	        c = t[(c ^ x) & 0xff] ^ (c >> 8)
	    return c ^ 0xffffffff
	f.seek(0x100000)
	log = f.read(0x100000)
	guid, pos = None, 0
	while pos < len(log) and log[pos:pos + 4] == b'loge':
	    guid = log[pos + 32:pos + 48]
	    pos += struct.unpack('<I', log[pos + 8:pos + 12])[0]
	hs = []
	for off in (0x10000, 0x20000):
	    f.seek(off + 8)
	    hs.append((struct.unpack('<Q', f.read(8))[0], off))
	off = max(hs)[1]
	f.seek(off)
	h = bytearray(f.read(4096))
	h[48:64] = guid
	h[4:8] = bytes(4)
	h[4:8] = struct.pack('<I', crc(h))
	f.seek(off)
	f.write(h)
	EOF
}

@test "vhdx: qemu's log replayed by img restores the BAT, as qemu's replay" {
	qimg create -q -f vhdx l.vhdx 32M
	qio -f vhdx -c 'write -P 0x42 0 64k' -c 'write -P 0x43 20M 64k' l.vhdx >/dev/null
	dirty l.vhdx
	# the BAT entry of block 0 lost: only the log has it
	poke l.vhdx $((0x200000)) '\x02\0\0\0\0\0\0\0'
	cp l.vhdx q.vhdx
	same info l.vhdx
	run -1 img cat l.vhdx
	run -0 img check -r all l.vhdx
	[ "${lines[2]}" = "    1 corruptions" ]
	qimg check -q -r all q.vhdx
	run -0 qimg compare l.vhdx q.vhdx
	run -0 qio -r -c 'read -P 0x42 0 64k' -c 'read -P 0x43 20M 64k' l.vhdx
	[[ "$output" != *fail* ]]
	same check l.vhdx
	# a read-write open by a writer replays too
	cp q.vhdx w.vhdx
	dirty w.vhdx
	poke w.vhdx $((0x200000)) '\x02\0\0\0\0\0\0\0'
	printf 'abc' | img write -f vhdx --offset=1M w.vhdx
	run -0 qio -r -c 'read -P 0x42 0 64k' -c 'read -P 0x43 20M 64k' w.vhdx
	[[ "$output" != *fail* ]]
	run -0 qimg check w.vhdx
}

@test "fmt-vhdx: convert skips blocks the BAT says are empty: 1 TiB in seconds" {
	qimg create -q -f vhdx big.vhdx 1T
	qio -f vhdx -c 'write -P 5 512G 1M' big.vhdx >/dev/null
	# qemu-img reads all of it; img-map --sparse lets the zeroes stay map lines
	run -0 timeout 10 img convert -O qcow2 big.vhdx big.qcow2
	run -0 qio -f qcow2 -c 'read -P 5 512G 1M' -c 'read -P 0 0 1M' big.qcow2
	[[ $output != *"verification failed"* ]]
	# the map a user sees stays qemu-img's
	diff <(qimg map --output=json big.vhdx) <(img map --output=json big.vhdx)
}

@test "fmt-vhdx: a truncated file is refused as qemu refuses it, in its two lines" {
	cut_copies vhdx
	same info c.vhdx
	[ "$(wc -l <i.err)" -eq 2 ]
	same map c.vhdx
	same check c.vhdx
	same info h.vhdx
	run -1 --separate-stderr img convert -O raw h.vhdx o.raw
	[ "${#stderr_lines[@]}" -eq 2 ] && [ ! -e o.raw ]
	[[ ${stderr_lines[1]} == "img: Could not open 'h.vhdx': Could not open 'h.vhdx': Invalid argument" ]]
}
