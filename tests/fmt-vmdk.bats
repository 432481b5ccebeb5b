#!/usr/bin/env bats
# The vmdk driver: qemu's images in every subformat read by us, our images
# checked, compared and read by qemu, hostile headers and descriptors.
load helpers
bats_require_minimum_version 1.5.0

SUBFORMATS="monolithicSparse monolithicFlat twoGbMaxExtentSparse
twoGbMaxExtentFlat streamOptimized"

# pattern FILE: a 4 MiB raw file, every third 64 KiB grain filled
pattern() {
	python3 -c '
import sys
b = bytearray(4 << 20)
for i in range(0, len(b), 65536):
    if (i // 65536) % 3 == 0:
        b[i:i + 65536] = bytes([i // 65536 % 251 + 1]) * 65536
b[5000:5010] = b"0123456789"
open(sys.argv[1], "wb").write(b)' "$1"
}

# same_read IMG: info, map (both outputs) and content equal qemu-img's
same_read() {
	same info "$1" || return 1
	same info --output=json "$1" || return 1
	same map "$1" || return 1
	same map --output=json "$1" || return 1
	img cat "$1" >ours.raw
	qimg convert -O raw "$1" theirs.raw
	cmp ours.raw theirs.raw
}

# no_cid FILE: the file without its random CID (the descriptor sectors of a
# sparse extent keep their size: a CID one digit shorter moves no grain)
no_cid() {
	python3 -c '
import re, sys
d = open(sys.argv[1], "rb").read()
lo, hi = (512, 10752) if d[:4] == b"KDMV" else (0, len(d))
r = re.sub(rb"\nCID=[0-9a-f]*\n", b"\nCID=x\n", d[lo:hi], count=1)
if lo:
    r = r.rstrip(b"\0").ljust(hi - lo, b"\0")
sys.stdout.buffer.write(d[:lo] + r + d[hi:])' "$1"
}

# refused MESSAGE: img info bad.vmdk fails with exactly this one line
refused() {
	run -1 --separate-stderr img info bad.vmdk
	[ -z "$output" ] || { echo "stdout: $output"; return 1; }
	[ "${#stderr_lines[@]}" -eq 1 ] || { echo "$stderr"; return 1; }
	[ "$stderr" = "img: Could not open 'bad.vmdk': $1" ] ||
	    { echo "got: $stderr"; echo "want: $1"; return 1; }
}

# bad OFFSET BYTES: bad.vmdk is a fresh 4 MiB sparse image with a poke
bad() {
	rm -f bad.vmdk
	qimg create -q -f vmdk bad.vmdk 4M
	poke bad.vmdk "$1" "$2"
}

# desc FILE LINES...: a descriptor file of these extent lines
desc() {
	local f=$1
	shift
	printf '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n# Extent description\n' >"$f"
	printf '%s\n' "$@" >>"$f"
}

@test "qemu's images in every subformat read as qemu reads them" {
	pattern pat.raw
	for s in $SUBFORMATS; do
		qimg convert -f raw -O vmdk -o subformat=$s pat.raw $s.vmdk
		same_read $s.vmdk
	done
}

@test "qemu-io's writes, zeroed grains and split extents read the same" {
	qimg create -q -f vmdk ms.vmdk 8M
	qio -f vmdk -c 'write -P 0x11 0 64k' -c 'write -P 0x22 100k 200k' \
	    -c 'write -P 0x33 7M 64k' ms.vmdk >/dev/null
	same_read ms.vmdk
	qimg create -q -f vmdk -o zeroed_grain=on zg.vmdk 8M
	qio -f vmdk -c 'write -P 0x11 0 1M' -c 'write -z 128k 256k' \
	    -c 'write -z 2M 1M' zg.vmdk >/dev/null
	same_read zg.vmdk
	qimg create -q -f vmdk -o subformat=twoGbMaxExtentSparse sp.vmdk 5G
	qio -f vmdk -c 'write -P 0x44 2047M 2M' -c 'write -P 0x45 4G 64k' \
	    sp.vmdk >/dev/null
	same info sp.vmdk
	same map --output=json sp.vmdk
	same map sp.vmdk
	# small sparse extents behind one descriptor, read whole
	qimg create -q -f vmdk e1.vmdk 1M
	qimg create -q -f vmdk -o zeroed_grain=on e2.vmdk 2M
	qio -f vmdk -c 'write -P 0x61 960k 64k' e1.vmdk >/dev/null
	qio -f vmdk -c 'write -P 0x62 0 1M' -c 'write -z 64k 64k' e2.vmdk >/dev/null
	printf '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="twoGbMaxExtentSparse"\nRW 2048 SPARSE "e1.vmdk"\nRW 4096 SPARSE "e2.vmdk"\n' >two.vmdk
	same_read two.vmdk
	run -0 qio -f vmdk -c 'read -P 0x61 960k 64k' -c 'read -P 0x62 1M 64k' two.vmdk
}

@test "a backing chain: parentFileNameHint, COW of partial grains" {
	qimg create -q -f vmdk base.vmdk 4M
	qio -f vmdk -c 'write -P 0xaa 0 4M' base.vmdk >/dev/null
	img create -q -f vmdk -b base.vmdk -F vmdk top.vmdk
	printf hello | img write -f vmdk --offset=70000 top.vmdk
	run -0 qimg check top.vmdk
	[ "$output" = "No errors were found on the image." ]
	run -0 qio -f vmdk -c 'read -P 0xaa 0 70000' -c 'read -P 0xaa 70005 4123147' top.vmdk
	[ "$(img cat top.vmdk | dd bs=1 skip=70000 count=5 status=none)" = hello ]
	same_read top.vmdk
	same info --backing-chain top.vmdk
}

@test "img create: qemu's Formatting line, descriptor and layout" {
	for spec in "x.vmdk 64M" "-o subformat=monolithicFlat f.vmdk 5M" \
	    "-o subformat=twoGbMaxExtentSparse s.vmdk 5G" \
	    "-o subformat=twoGbMaxExtentFlat t 3G" \
	    "-o subformat=streamOptimized so.vmdk 300M" \
	    "-o zeroed_grain=on,adapter_type=buslogic,hwversion=9,toolsversion=1 z.vmdk 1000" \
	    "-o compat6=on,adapter_type=legacyESX e.vmdk 10G"; do
		mkdir -p q i
		(cd q && qimg create -f vmdk $spec) >q.out
		(cd i && img create -f vmdk $spec) >i.out
		cmp q.out i.out
	done
	for f in $(cd q && ls); do
		if [ "$(stat -c %s q/$f)" -lt 100000000 ]; then
			cmp <(no_cid q/$f) <(no_cid i/$f)
		else
			[ "$(stat -c %s q/$f)" = "$(stat -c %s i/$f)" ]
		fi
	done
	for f in x.vmdk f.vmdk s.vmdk t so.vmdk z.vmdk e.vmdk; do
		run -0 qimg check i/$f
		run -0 qimg compare q/$f i/$f
	done
}

@test "img create: bad options fail as qemu-img's" {
	same create -f vmdk -o adapter_type=foo a.vmdk 1M
	same create -f vmdk -o subformat=foo a.vmdk 1M
	same create -f vmdk -o hwversion=7,compat6=on a.vmdk 1M
	qimg create -q -f raw r.raw 1M
	same create -f vmdk -b r.raw -F raw a.vmdk
	[ ! -e a.vmdk ]
	same create -f vmdk -u -b missing.vmdk -F vmdk u.vmdk 1M
	same create -f vmdk -o help
}

@test "img convert -O vmdk: every subformat checks clean and compares identical" {
	pattern pat.raw
	for s in $SUBFORMATS; do
		img convert -f raw -O vmdk -o subformat=$s pat.raw $s.vmdk
		run -0 qimg check $s.vmdk
		[ "$output" = "No errors were found on the image." ]
		run -0 qimg compare -f raw -F vmdk pat.raw $s.vmdk
		run -0 qio -f vmdk -c 'read -P 1 0 5000' -c 'read -P 0 65536 131072' $s.vmdk
	done
	# byte for byte what qemu-img writes, but for the random CID
	mkdir q
	for s in streamOptimized monolithicSparse; do
		qimg convert -f raw -O vmdk -o subformat=$s pat.raw q/$s.vmdk
		cmp <(no_cid q/$s.vmdk) <(no_cid $s.vmdk)
	done
}

@test "writes: grains at the end, both grain tables, a new CID" {
	img create -q -f vmdk w.vmdk 4M
	qimg create -q -f vmdk q.vmdk 4M
	old=$(img info --output=json w.vmdk | grep '"cid"')
	head -c 100000 /dev/urandom >data
	img write -f vmdk --offset=300000 w.vmdk <data
	qio -f vmdk -c 'write -P 0 300000 100000' q.vmdk >/dev/null
	[ "$(img info --output=json w.vmdk | grep '"cid"')" != "$old" ]
	run -0 qimg check w.vmdk
	run -0 qio -f vmdk -c 'read -P 0 0 300000' -c 'read -P 0 400000 3794304' w.vmdk
	img cat w.vmdk | cmp -s -i 300000:0 -n 100000 - data
	# the redundant grain table says the same as the primary (qemu's layout)
	same map --output=json w.vmdk
	[ "$(qimg map --output=json q.vmdk | sed 's/"offset".*//')" = \
	    "$(qimg map --output=json w.vmdk | sed 's/"offset".*//')" ]
	cmp <(dd if=w.vmdk bs=512 skip=22 count=4 status=none) \
	    <(dd if=w.vmdk bs=512 skip=27 count=4 status=none)
}

@test "zeroed grains: write_zeroes sets GTE 1 as qemu-io write -z does" {
	img create -q -f vmdk -o zeroed_grain=on z.vmdk 4M
	qio -f vmdk -c 'write -P 1 0 4M' z.vmdk >/dev/null
	cp z.vmdk q.vmdk
	head -c 131072 /dev/zero | img write -f vmdk --offset=65536 z.vmdk
	qio -f vmdk -c 'write -z 65536 131072' q.vmdk >/dev/null
	[ "$(qimg map --output=json z.vmdk)" = "$(qimg map --output=json q.vmdk)" ]
	run -0 qimg compare z.vmdk q.vmdk
	run -0 qimg check z.vmdk
}

@test "streamOptimized: an allocated grain is not rewritten" {
	pattern pat.raw
	img convert -f raw -O vmdk -o subformat=streamOptimized pat.raw s.vmdk
	run -1 --separate-stderr img write -f vmdk s.vmdk <pat.raw
	[ "${#stderr_lines[@]}" -eq 1 ]
	run -0 qimg compare -f raw pat.raw s.vmdk
}

@test "descriptor files: relative extents, FLAT offsets, VMFS" {
	mkdir sub
	head -c 1048576 /dev/urandom >sub/a.raw
	head -c 524288 /dev/urandom >sub/b.raw
	desc sub/d.vmdk 'RW 1024 FLAT "a.raw" 1024' 'RW 1024 VMFS "b.raw"' \
	    'RDONLY 8 FLAT "a.raw" 0' 'RW 16 ZERO'
	same_read sub/d.vmdk
	same check sub/d.vmdk
}

@test "probe: a sparse header and a text descriptor are vmdk" {
	qimg create -q -f vmdk s.vmdk 1M
	qimg create -q -f vmdk -o subformat=monolithicFlat f.vmdk 1M
	[ "$(img info --output=json s.vmdk | grep '"format": "vmdk"')" ]
	[ "$(img info --output=json f.vmdk | grep '"format": "vmdk"')" ]
	printf '# c\n   \nversion=1\r\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 8 FLAT "f-flat.vmdk" 0\n' >crlf.vmdk
	same info crlf.vmdk
	printf '# c\nxversion=1\n' >no.vmdk
	same info no.vmdk
}

@test "check: qemu's words for a grain past the end of the file" {
	bad $((27 * 512 + 16)) '\x00\x00\x00\x70'
	same check bad.vmdk
	run -1 img check bad.vmdk
	same map --output=json bad.vmdk
	qimg create -q -f vmdk ok.vmdk 1M
	same check ok.vmdk
	same check --output=json ok.vmdk
}

@test "hostile headers: one line each, qemu's words" {
	bad 4 '\x07'
	refused "Unsupported VMDK version 7"
	bad 20 '\x00\x00\x40\x00'
	refused "Invalid granularity, image may be corrupt"
	bad 44 '\x00\x04\x00\x00'
	refused "L2 table size too big"
	bad 44 '\x00\x00\x00\x00'
	refused "L1 entry size is invalid"
	bad 12 '\x00\x00\x00\x00\x00\x10\x00\x00'
	refused "L1 size too big"
	bad 64 '\x00\x00\x01\x00'
	refused "File truncated, expecting at least 33554432 bytes"
	bad 56 '\xff\xff\xff\xff\xff\xff\xff\xff'
	refused "Invalid footer"
	bad 56 '\x00\x00\x00\x00\x00\x00\x40\x00'
	refused "Could not read l1 table from extent 'bad.vmdk': Input/output error"
	same info bad.vmdk
	qimg create -q -f vmdk g.vmdk 4M
	head -c 40 g.vmdk >bad.vmdk
	refused "L1 entry size is invalid"
	{ echo version=1; head -c 100000 /dev/urandom | tr -d '"'; } >bad.vmdk
	refused "invalid VMDK image descriptor"
}

@test "a grain directory past the end of the file reads as empty, as in qemu" {
	bad 56 '\x00\x00\x00\x10'
	same_read bad.vmdk
	same check bad.vmdk
}

@test "hostile descriptors: one line each" {
	desc bad.vmdk 'RW 100 FLAT "missing.raw" 0'
	refused "Could not open 'missing.raw': No such file or directory"
	same info bad.vmdk
	desc bad.vmdk 'RW 100 FLAT "x.raw"'
	refused 'Invalid extent line: RW 100 FLAT "x.raw"'
	printf '# Disk DescriptorFile\nversion=1\ncreateType="foo"\n' >bad.vmdk
	refused "Unsupported image type 'foo'"
	same info bad.vmdk
	printf '# Disk DescriptorFile\nversion=1\nCID=1\n' >bad.vmdk
	refused "invalid VMDK image descriptor"
	# a descriptor naming itself as a sparse extent must not loop
	desc bad.vmdk 'RW 100 SPARSE "bad.vmdk"'
	run -1 --separate-stderr img info bad.vmdk
	[ "${#stderr_lines[@]}" -eq 1 ]
}

@test "streamOptimized from a source with small clusters: grains assembled" {
	qimg create -q -f qcow2 -o cluster_size=512 sq.qcow2 8M
	qio -f qcow2 -c 'write -P 0xa 0 512' -c 'write -P 0xb 10240 512' \
	    -c 'write -P 0xc 1M 4k' sq.qcow2 >/dev/null
	mkdir q
	qimg convert -f qcow2 -O vmdk -o subformat=streamOptimized sq.qcow2 q/s.vmdk
	img convert -f qcow2 -O vmdk -o subformat=streamOptimized sq.qcow2 s.vmdk
	cmp <(no_cid q/s.vmdk) <(no_cid s.vmdk)
	run -0 qimg compare -f qcow2 -F vmdk sq.qcow2 s.vmdk
	run -0 qimg check s.vmdk
	# a disk ending inside a grain: the last grain is compressed short
	head -c 100000 /dev/urandom >odd.raw
	qimg convert -f raw -O vmdk -o subformat=streamOptimized odd.raw q/o.vmdk
	img convert -f raw -O vmdk -o subformat=streamOptimized odd.raw o.vmdk
	cmp <(no_cid q/o.vmdk) <(no_cid o.vmdk)
	same_read o.vmdk
}

# cowd FILE: a 2 MiB VMDK3 ("COWD") image with 4 KiB grains, three allocated
cowd() {
	python3 -c '
import struct, sys
f = bytearray(512 * 80)
h = struct.pack(">I", 0x434f5744) + struct.pack("<10I", 1, 3, 4096, 8, 20, 1, 0, 0, 0, 0)
f[:len(h)] = h
d = b"# Disk DescriptorFile\nversion=1\nCID=abcdef01\nparentCID=ffffffff\ncreateType=\"vmfsSparse\"\n"
f[512:512 + len(d)] = d
struct.pack_into("<I", f, 20 * 512, 21)
for i, s in ((0, 60), (5, 68), (6, 76)):
    struct.pack_into("<I", f, 21 * 512 + 4 * i, s)
f[60 * 512:61 * 512] = b"A" * 512
f[68 * 512:76 * 512] = b"B" * 4096
f[76 * 512:80 * 512] = b"C" * 2048
open(sys.argv[1], "wb").write(bytes(f))' "$1"
}

@test "VMDK3 (COWD) extents: read and written as qemu does" {
	cowd c.vmdk
	same_read c.vmdk
	same check c.vmdk
	printf xyz | img write -f vmdk --offset=100000 c.vmdk
	run -0 qimg check c.vmdk
	run -0 qio -f vmdk -c 'read -P 0x41 0 512' -c 'read -P 0x42 20480 4096' c.vmdk
	[ "$(qio -f vmdk -c 'read -v 100000 3' c.vmdk | head -1)" = "000186a0:  78 79 7a  xyz" ]
	same_read c.vmdk
}

@test "flat subformats refuse zeroed grains, after the compat6 check" {
	same create -f vmdk -o subformat=monolithicFlat,zeroed_grain=on f.vmdk 1M
	[ ! -e f.vmdk ] && [ ! -e f-flat.vmdk ]
	same create -f vmdk -o subformat=twoGbMaxExtentFlat,zeroed_grain=on,compat6=on,hwversion=4 f.vmdk 1M
}

@test "a write that copies from a changed parent fails, as in qemu" {
	qimg create -q -f vmdk b.vmdk 1M
	img create -q -f vmdk -b b.vmdk -F vmdk t.vmdk
	qio -f vmdk -c 'write 0 512' b.vmdk >/dev/null
	run -1 --separate-stderr bash -c 'printf x | img write -f vmdk t.vmdk'
	[ "${#stderr_lines[@]}" -eq 1 ]
	run -1 qio -f vmdk -c 'write 0 512' t.vmdk
	[ "$output" = "write failed: Invalid argument" ]
	# reads through to the changed parent fail too; the map does not read
	same compare b.vmdk t.vmdk
	same map t.vmdk
	run -1 img cat t.vmdk
}

@test "check -r, resize, amend, measure, rebase -u: qemu-img's refusals" {
	qimg create -q -f vmdk b.vmdk 1M
	qimg create -q -f vmdk c.vmdk 1M
	same check -r all b.vmdk
	same check -r leaks b.vmdk
	same resize b.vmdk 2M
	same amend -o zeroed_grain=on b.vmdk
	same measure -O vmdk --size 1G
	same rebase -u -b c.vmdk -F vmdk b.vmdk
}

# sesparse DIR: DIR/x.vmdk, a 32 MiB seSparse disk: data, zero and unmapped
# grains in two grain tables
sesparse() {
	python3 -c '
import struct, sys
d = sys.argv[1]
c = bytearray(512)
vals = [0xcafebabe, 0x200000001, 65536, 8, 64, 0, 0, 0, 0, 0, 1, 1,
    0, 0, 0, 0, 2, 1, 8, 128, 0, 0, 0, 0, 200, 1000]
for i, v in enumerate(vals):
    struct.pack_into("<Q", c, 8 * i, v)
f = bytearray(512 * 300)
f[0:512] = c
struct.pack_into("<Q", f, 512, 0xcafecafe)
struct.pack_into("<Q", f, 1024, 0x1000000000000000)
struct.pack_into("<Q", f, 1032, 0x1000000000000001)
def grain(n):
    return (3 << 60) | ((n & 0xfff) << 48) | (n >> 12)
for t, i, v in ((0, 0, grain(0)), (0, 1, grain(1)), (0, 5, 2 << 60),
    (0, 6, 1 << 60), (1, 3, grain(2))):
    struct.pack_into("<Q", f, (8 + 64 * t) * 512 + 8 * i, v)
for g, ch in ((0, b"a"), (1, b"b"), (2, b"c")):
    f[(200 + 8 * g) * 512:(200 + 8 * g) * 512 + 4096] = ch * 4096
open(d + "/x-sesparse.vmdk", "wb").write(bytes(f))
open(d + "/x.vmdk", "w").write("# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"seSparse\"\n\n# Extent description\nRW 65536 SESPARSE \"x-sesparse.vmdk\"\n")' "$1"
}

@test "seSparse extents: read as qemu reads them, never written" {
	mkdir se
	sesparse se
	same_read se/x.vmdk
	same check se/x.vmdk
	same snapshot -c s se/x.vmdk
	poke se/x-sesparse.vmdk 0 '\xbf'
	same info se/x.vmdk
}

@test "a header without capacity points at a descriptor, as qemu reads it" {
	qimg create -q -f vmdk z.vmdk 0
	same info z.vmdk
	run -1 --separate-stderr img info z.vmdk
	[ "$stderr" = "img: Could not open 'z.vmdk': Unsupported image type 'monolithicSparse'" ]
}

@test "mixed extents: no cluster size nor dirty flag, zero writes fall back" {
	qimg create -q -f vmdk e1.vmdk 1M
	qimg create -q -f vmdk -o zeroed_grain=on e3.vmdk 1M
	head -c 1048576 /dev/urandom >f.raw
	qio -f vmdk -c 'write -P 7 0 64k' e1.vmdk >/dev/null
	printf '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="vmfs"\nRW 2048 SPARSE "e1.vmdk"\nRW 2048 FLAT "f.raw" 0\nRW 2048 VMFS "f.raw"\n' >m.vmdk
	same_read m.vmdk
	printf '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="vmfs"\nRW 2048 FLAT "f.raw" 0\nRW 2048 SPARSE "e1.vmdk"\n' >m2.vmdk
	same_read m2.vmdk
	# zeroed grains in one extent only: qemu writes zero data everywhere
	printf '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="twoGbMaxExtentSparse"\nRW 2048 SPARSE "e3.vmdk"\nRW 2048 SPARSE "e1.vmdk"\n' >m3.vmdk
	head -c 2097152 /dev/zero | img write -f vmdk m3.vmdk
	run -0 qimg map --output=json m3.vmdk
	[ "${lines[0]}" = '[{ "start": 0, "length": 1048576, "depth": 0, "present": true, "zero": false, "data": true, "offset": 65536},' ]
	same_read m3.vmdk
}

@test "streamOptimized with its grain directory in the footer" {
	pattern pat.raw
	qimg convert -f raw -O vmdk -o subformat=streamOptimized pat.raw s.vmdk
	python3 -c '
import struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
hdr = bytes(d[0:512])
d[56:64] = struct.pack("<Q", 0xffffffffffffffff)
d += bytes(-len(d) % 512)
fm = bytearray(512)
struct.pack_into("<QII", fm, 0, 1, 0, 3)
d += fm + hdr + bytes(512)
open(sys.argv[2], "wb").write(bytes(d))' s.vmdk foot.vmdk
	same_read foot.vmdk
	same check foot.vmdk
	# a footer without its end-of-stream marker is refused
	truncate -s -512 foot.vmdk
	cp foot.vmdk bad.vmdk
	refused "Invalid footer"
	same info bad.vmdk
}
