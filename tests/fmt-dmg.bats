#!/usr/bin/env bats
# dmg (read-only): images built here, read by img and by qemu-img as the oracle.
bats_require_minimum_version 1.5.0
load helpers

# mkdmg FILE [SECTORS_OF_LAST_CHUNK LENGTH_OF_LAST_CHUNK]: a UDIF image whose
# plist holds one mish block: a zlib chunk, a raw chunk, zero chunks (with a
# 4th argument a bzip2 chunk instead, skipped as in Debian's qemu) and zlib.
mkdmg() {
	python3 - "$@" <<'PY'
import base64, struct, sys, zlib
f = sys.argv[1]
last_sectors = int(sys.argv[2]) if len(sys.argv) > 2 else 64
last_len = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else None
bz2 = len(sys.argv) > 4
def pattern(n, seed):
    return bytes((seed + i // 512 + i % 7) % 256 for i in range(n * 512))
data = b""
chunks = []
def chunk(t, sector, count, payload):
    global data
    chunks.append((t, sector, count, len(data), len(payload)))
    data += payload
chunk(0x80000005, 0, 16, zlib.compress(pattern(16, 1)))
chunk(1, 16, 8, pattern(8, 2))
chunk(2, 24, 40, b"")
if bz2:
    chunk(0x80000006, 64, 8, b"BZh9junk")
else:
    chunk(2, 64, 8, b"")
chunk(0x80000005, 72, last_sectors, zlib.compress(pattern(min(last_sectors, 64), 3)))
if last_len is not None:
    t, s, c, o, l = chunks[-1]
    chunks[-1] = (t, s, c, o, last_len)
mish = bytearray(204)
struct.pack_into(">IIQQQ", mish, 0, 0x6d697368, 1, 0, 72 + last_sectors, 0)
for t, s, c, o, l in chunks + [(0xffffffff, 72 + last_sectors, 0, len(data), 0)]:
    mish += struct.pack(">IIQQQQ", t, 0, s, c, o, l)
b64 = base64.b64encode(bytes(mish)).decode()
plist = ('<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">\n<dict>\n'
         '<key>resource-fork</key><dict><key>blkx</key><array><dict>\n'
         '<key>Data</key>\n<data>\n' + "\n".join(b64[i:i + 52] for i in range(0, len(b64), 52)) +
         '\n</data>\n</dict></array></dict>\n</dict>\n</plist>\n').encode()
koly = bytearray(512)
struct.pack_into(">I", koly, 0, 0x6b6f6c79)
struct.pack_into(">I", koly, 4, 4)
struct.pack_into(">Q", koly, 0xd8, len(data))
struct.pack_into(">Q", koly, 0xe0, len(plist))
struct.pack_into(">Q", koly, 0x1ec, 72 + last_sectors)
open(f, "wb").write(data + plist + bytes(koly))
PY
}

@test "fmt-dmg: content, info and map as qemu-img reads them" {
	need_qemu
	mkdmg d.dmg
	qimg convert -O raw d.dmg want.raw 2>/dev/null
	img cat d.dmg > got.raw
	cmp want.raw got.raw
	for c in info "info --output=json" "map --output=json"; do
		diff <(command qemu-img $c d.dmg 2>/dev/null) <(img $c d.dmg)
	done
}

@test "fmt-dmg: hostile chunk tables are refused in one line with qemu's reason" {
	# qemu prints the reason on a line of its own, then "Invalid argument"
	mkdmg d.dmg 140000
	run -1 --separate-stderr img info d.dmg
	[ "$stderr" = "img: Could not open 'd.dmg': sector count 140000 for chunk 4 is larger than max (131072)" ]
	mkdmg d.dmg 64 70000000
	run -1 --separate-stderr img info d.dmg
	[ "$stderr" = "img: Could not open 'd.dmg': length 70000000 for chunk 4 is larger than max (67108864)" ]
	head -c 300 /dev/urandom > short.dmg
	run -1 --separate-stderr img info -f dmg short.dmg
	[ "$stderr" = "img: Could not open 'short.dmg': Could not locate UDIF trailer in dmg file" ]
	head -c 4096 /dev/zero > none.dmg
	run -1 --separate-stderr img info none.dmg
	[ "$stderr" = "img: Could not open 'none.dmg': Could not locate UDIF trailer in dmg file" ]
}

@test "fmt-dmg: a bzip2 chunk is a hole no one reads, as in Debian's qemu" {
	need_qemu
	mkdmg d.dmg 64 "" bz2
	run -0 img info d.dmg
	run -1 --separate-stderr img cat d.dmg
	[[ $stderr == *"sector 64 is in no chunk"* ]]
	run -1 qimg convert -O raw d.dmg q.raw
}

@test "fmt-dmg: read-only; a corrupt chunk is an error, not zeroes" {
	mkdmg d.dmg
	run -1 --separate-stderr img create -f dmg x.dmg 1M
	[ "$stderr" = "img: x.dmg: Format driver 'dmg' does not support image creation" ]
	printf 'garbage!' | dd of=d.dmg bs=1 seek=2 conv=notrunc status=none
	run -1 --separate-stderr img cat d.dmg
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ $stderr == *"does not decompress"* ]]
}
