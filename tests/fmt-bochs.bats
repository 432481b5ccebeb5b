#!/usr/bin/env bats
# bochs (read-only): images built here, read by img and by qemu-img as the oracle.
bats_require_minimum_version 1.5.0
load helpers

# mkbochs FILE [VERSION EXTENT CATALOG DISK]: a growing redolog with extent 1
# allocated (catalog slot 0) and every other sector of it present.
mkbochs() {
	python3 - "$@" <<'PY'
import struct, sys
f = sys.argv[1]
ver = int(sys.argv[2], 0) if len(sys.argv) > 2 else 0x20000
ext = int(sys.argv[3], 0) if len(sys.argv) > 3 else 65536
cat = int(sys.argv[4], 0) if len(sys.argv) > 4 else 16
disk = int(sys.argv[5], 0) if len(sys.argv) > 5 else 16 * 65536
bitmap = 512
h = bytearray(512)
h[0:22] = b"Bochs Virtual HD Image"
h[32:39] = b"Redolog"
h[48:55] = b"Growing"
struct.pack_into("<IIIII", h, 64, ver, 512, cat, bitmap, ext)
if ver == 0x10000:
    struct.pack_into("<Q", h, 84, disk)
else:
    struct.pack_into("<Q", h, 88, disk)
catalog = [0xffffffff] * min(cat, 4096)
if cat:
    catalog[1 % len(catalog)] = 0
out = bytes(h) + struct.pack("<%dI" % len(catalog), *catalog)
bm = bytearray(bitmap)
nsec = min(ext // 512, bitmap * 8, 128)
for s in range(0, nsec, 2):
    bm[s // 8] |= 1 << (s % 8)
data = b"".join(bytes([0x40 + (s % 64)]) * 512 for s in range(nsec))
open(f, "wb").write(out + bytes(bm) + data)
PY
}

@test "fmt-bochs: content, info and map as qemu-img reads them" {
	need_qemu
	for v in 0x20000 0x10000; do
		mkbochs b.img $v
		qimg convert -O raw b.img want.raw
		img cat b.img > got.raw
		cmp want.raw got.raw
		same_as_qemu info b.img
		same_as_qemu info --output=json b.img
		same_as_qemu map --output=json b.img
	done
}

@test "fmt-bochs: hostile headers get qemu-img's one-line errors" {
	need_qemu
	for args in "0x20000 1000" "0x20000 256" "0x20000 0x1000000" \
	    "0x20000 65536 0x100001" "0x20000 65536 2 0x100000000"; do
		mkbochs b.img $args
		wstat=0 gstat=0
		want=$(command qemu-img info b.img 2>&1) || wstat=$?
		got=$(img info b.img 2>&1) || gstat=$?
		[ "${want//qemu-img/img}" = "$got" ] || { echo "$args"; diff <(echo "$want") <(echo "$got"); false; }
		[ "$wstat" = "$gstat" ]
	done
}

@test "fmt-bochs: truncated catalog, read-only, no creation" {
	mkbochs b.img
	truncate -s 540 b.img
	run -1 --separate-stderr img info -f bochs b.img
	[ "${#stderr_lines[@]}" -eq 1 ]
	mkbochs b.img
	run -1 --separate-stderr img create -f bochs x.img 1M
	[ "$stderr" = "img: x.img: Format driver 'bochs' does not support image creation" ]
	[ ! -e x.img ]
	run -1 --separate-stderr img write -f bochs b.img < /dev/null
	[[ $stderr == *"Image is read-only" ]]
}
