#!/usr/bin/env bats
# cloop (read-only): images built here, read by img and by qemu-img as the oracle.
bats_require_minimum_version 1.5.0
load helpers

# mkcloop FILE [BLOCK_SIZE N_BLOCKS BREAK]: zlib blocks of patterns
mkcloop() {
	python3 - "$@" <<'PY'
import struct, sys, zlib
f = sys.argv[1]
bs = int(sys.argv[2], 0) if len(sys.argv) > 2 else 65536
n = int(sys.argv[3], 0) if len(sys.argv) > 3 else 8
brk = sys.argv[4] if len(sys.argv) > 4 else ""
pre = (b"#!/bin/sh\n#V2.0 Format\n"
       b"modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n")
pre = pre.ljust(128, b"\0")
real = min(n, 64)
blocks = [zlib.compress(bytes([(b * 7 + i // 512) % 256 for i in range(bs)]) if bs <= 1 << 20 else b"")
          for b in range(real)]
off = 128 + 8 + 8 * (real + 1)
offs = [off]
for b in blocks:
    off += len(b)
    offs.append(off)
if brk == "order":
    offs[2], offs[3] = offs[3], offs[2]
out = pre + struct.pack(">II", bs, n) + struct.pack(">%dQ" % len(offs), *offs)
open(f, "wb").write(out + b"".join(blocks))
PY
}

@test "fmt-cloop: content, info and map as qemu-img reads them" {
	need_qemu
	for bs in 512 65536 1048576; do
		mkcloop c.img $bs 5
		qimg convert -O raw c.img want.raw
		img cat c.img > got.raw
		cmp want.raw got.raw
		same_as_qemu info c.img
		same_as_qemu info --output=json c.img
		same_as_qemu map --output=json c.img
	done
}

@test "fmt-cloop: hostile headers get qemu-img's one-line errors" {
	need_qemu
	for args in "1000 4" "0 4" "0x8000000 1" "65536 0xffffffff" \
	    "65536 0x4000001" "65536 8 order"; do
		mkcloop c.img $args
		wstat=0 gstat=0
		want=$(command qemu-img info -f cloop c.img 2>&1) || wstat=$?
		got=$(img info -f cloop c.img 2>&1) || gstat=$?
		[ "${want//qemu-img/img}" = "$got" ] || { echo "$args"; diff <(echo "$want") <(echo "$got"); false; }
		[ "$wstat" = "$gstat" ]
	done
}

@test "fmt-cloop: a corrupt block is an error, not zeroes" {
	mkcloop c.img 65536 4
	printf 'garbage!' | dd of=c.img bs=1 seek=200 conv=notrunc status=none
	run -1 --separate-stderr img cat c.img
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ $stderr == *"does not decompress"* ]]
}
