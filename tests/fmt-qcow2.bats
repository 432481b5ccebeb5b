#!/usr/bin/env bats
# The qcow2 driver: header checks (one poke each, as qemu-iotests 080),
# reads against qemu-io's images, creation and writes checked by qemu-img.
load helpers
bats_require_minimum_version 1.5.0

# fresh IMG: a new 64 MiB qcow2 image made by qemu-img
fresh() {
	rm -f "$1"
	qimg create -q -f qcow2 "$1" 64M
}

# bad OFFSET BYTES [OFFSET BYTES]: bad.qcow2 is a fresh image with pokes
bad() {
	fresh bad.qcow2
	poke bad.qcow2 "$1" "$2"
	[ $# -lt 4 ] || poke bad.qcow2 "$3" "$4"
}

# refused MESSAGE: img info bad.qcow2 fails with exactly this one line
refused() {
	run -1 --separate-stderr img info bad.qcow2
	[ -z "$output" ] || { echo "stdout: $output"; return 1; }
	[ "${#stderr_lines[@]}" -eq 1 ] || { echo "$stderr"; return 1; }
	[ "$stderr" = "img: Could not open 'bad.qcow2': $1" ] ||
	    { echo "got: $stderr"; echo "want: $1"; return 1; }
}

# refused_as_qemu MESSAGE: refused, and qemu-img info says the same
refused_as_qemu() {
	refused "$1" || return 1
	same info bad.qcow2
}

# clean IMG: qemu-img check finds no errors and no leaks
clean() {
	run -0 qimg check "$1"
	[[ $output == "No errors were found on the image."* ]]
}

# mkchain [OPTS]: a chain with every cluster kind (data, zero, compressed,
# partial, backing), top.qcow2 made with -o OPTS
mkchain() {
	fresh base.qcow2
	qio -f qcow2 -c 'write -P 1 0 2M' -c 'write -P 2 10M 1M' base.qcow2 >/dev/null
	rm -f top.qcow2
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 ${1:+-o "$1"} top.qcow2 64M
	qio -f qcow2 -c 'write -P 3 64k 64k' -c 'write -P 4 1000 3000' \
	    -c 'write -z 10M 128k' -c 'write -c -P 5 20M 256k' \
	    -c 'write -z 1536k 4k' -c 'write -P 6 40M 1M' top.qcow2 >/dev/null
}

@test "fmt-qcow2: magic, version and cluster size are checked as qemu" {
	bad 0 'XXXX'
	run -1 --separate-stderr img info -f qcow2 bad.qcow2
	[ "$stderr" = "img: Could not open 'bad.qcow2': Image is not in qcow2 format" ]
	bad 4 '\x00\x00\x00\x04'
	refused_as_qemu "Unsupported qcow2 version 4"
	bad 4 '\x00\x00\x00\x01'
	run -1 --separate-stderr img info -f qcow2 bad.qcow2
	[ "$stderr" = "img: Could not open 'bad.qcow2': Unsupported qcow2 version 1" ]
	bad 20 '\x00\x00\x00\x08'
	refused_as_qemu "Unsupported cluster size: 2^8"
	bad 20 '\x00\x00\x00\x16'
	refused_as_qemu "Unsupported cluster size: 2^22"
}

@test "fmt-qcow2: header length and extensions stay inside the header cluster" {
	bad 100 '\xff\xff\xff\xff'
	refused_as_qemu "qcow2 header exceeds cluster size"
	bad 100 '\x7f\xff\xff\xff'
	refused_as_qemu "qcow2 header exceeds cluster size"
	bad 100 '\x00\x00\x00\x60'
	refused_as_qemu "qcow2 header too short"
	bad 8 '\xff\xff\xff\xff\xff\xff\xff\xff'
	refused_as_qemu "Invalid backing file offset"
	# an unknown extension claiming 2 GiB, with and without a backing name
	bad 8 '\x00\x00\x00\x00\x00\x00\x00\x74' 112 '\x12\x34\x56\x78\x7f\xff\xff\xff'
	refused_as_qemu "Header extension too large"
	bad 112 '\x12\x34\x56\x78\x7f\xff\xff\xff'
	refused_as_qemu "Header extension too large"
	bad 8 '\x00\x00\x00\x00\x00\x00\x10\x00' 16 '\xff\xff\xff\xff'
	refused_as_qemu "Backing file name too long"
	# a backing format name longer than qemu's 16-byte buffer
	bad 112 '\xe2\x79\x2a\xca\x00\x00\x00\x10'
	refused_as_qemu "ERROR: ext_backing_format: len=16 too large (>=16)"
}

@test "fmt-qcow2: refcount, snapshot and L1 tables are bounded as qemu" {
	bad 56 '\xff\xff\xff\xff'
	refused_as_qemu "Reference count table too large"
	bad 56 '\x00\x02\x00\x01'
	refused_as_qemu "Reference count table too large"
	bad 56 '\x00\x00\x00\x00'
	refused_as_qemu "Image does not contain a reference count table"
	bad 48 '\x12\x34\x56\x78\x90\xab\xcd\xef'
	refused_as_qemu "Reference count table offset invalid"
	bad 48 '\xff\xff\xff\xff\xff\xff\x00\x00' 56 '\x00\x00\x00\x7f'
	refused_as_qemu "Reference count table offset invalid"
	bad 60 '\xff\xff\xff\xff'
	refused_as_qemu "Snapshot table too large"
	bad 64 '\x12\x34\x56\x78\x90\xab\xcd\xef'
	refused_as_qemu "Snapshot table offset invalid"
	bad 36 '\xff\xff\xff\xff'
	refused_as_qemu "Active L1 table too large"
	bad 36 '\x7f\xff\xff\xff'
	refused_as_qemu "Active L1 table too large"
	bad 40 '\x7f\xff\xff\xff\xff\xff\x00\x00' 36 '\x00\x00\xff\xff'
	refused_as_qemu "Active L1 table offset invalid"
	bad 40 '\x12\x34\x56\x78\x90\xab\xcd\xef' 36 '\x00\x00\x00\x01'
	refused_as_qemu "Active L1 table offset invalid"
	bad 36 '\x00\x00\x00\x00'
	refused_as_qemu "L1 table is too small"
	bad 24 '\x00\x00\x01\x00\x00\x00\x00\x00'
	refused_as_qemu "L1 table is too small"
	bad 24 '\x7f\xff\xff\xff\xff\xff\xff\xff'
	refused_as_qemu "Image is too big"
	# a size that is no multiple of 512 counts whole sectors
	bad 24 '\x00\x00\x00\x00\x00\x0f\x42\x41'
	same info --output=json bad.qcow2
	same map --output=json bad.qcow2
}

@test "fmt-qcow2: tables past the end of the file read as zeroes, as qemu's" {
	# qemu's file driver pads a short read with zeroes: so do we
	bad 40 '\x00\x00\x00\x00\x10\x00\x00\x00'
	same_view bad.qcow2
	bad 48 '\x00\x00\x00\x00\x10\x00\x00\x00'
	same_view bad.qcow2
	same check bad.qcow2
	fresh bad.qcow2
	truncate -s 70000 bad.qcow2
	same_view bad.qcow2
	# data clusters past the end too: mapped, read as zeroes, never spliced
	fresh t.qcow2
	qio -c 'write -P 1 0 4M' t.qcow2 >/dev/null
	truncate -s 300k t.qcow2
	same_view t.qcow2
	same compare t.qcow2 bad.qcow2
	img convert -O qcow2 t.qcow2 o.qcow2
	qimg compare o.qcow2 t.qcow2
	# names read before the failing check are freed (the ASan run checks)
	fresh base.qcow2
	rm -f bad.qcow2
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 bad.qcow2
	poke bad.qcow2 40 '\x00\x00\x00\x00\x10\x00\x00\x00'
	same_view bad.qcow2
	# opened for writing, tables the file lacks are refused in one line
	run -1 --separate-stderr img-write -f qcow2 bad.qcow2 </dev/null
	[ "$stderr" = "img-write: Could not open 'bad.qcow2': L1 table at 0x10000000 is past the end of the file" ]
	cp base.qcow2 b2.qcow2
	truncate -s 70000 b2.qcow2
	run -1 --separate-stderr img resize b2.qcow2 +1M
	[ "$stderr" = "img: Could not open 'b2.qcow2': L1 table at 0x30000 is past the end of the file" ]
}

@test "fmt-qcow2: feature bits: unknown refused by name, dirty and corrupt read" {
	bad 72 '\x00\x00\x00\x00\x00\x00\x00\x20'
	refused_as_qemu "Unsupported qcow2 feature(s): Unknown incompatible feature: 20"
	bad 72 '\x80\x00\x00\x00\x00\x00\x00\x00'
	refused_as_qemu "Unsupported qcow2 feature(s): Unknown incompatible feature: 8000000000000000"
	# a name from the image's own feature table (entry 1 renamed to bit 5)
	bad 72 '\x00\x00\x00\x00\x00\x00\x00\x20' 169 '\x05'
	refused_as_qemu "Unsupported qcow2 feature(s): corrupt bit"
	# a table shorter than one entry (qemu-iotests 036)
	bad 72 '\x80\x00\x00\x00\x00\x00\x00\x00' \
	    112 '\x68\x03\xf8\x57\x00\x00\x00\x0e\x00\x3fTest feature\0\0\0\0\0\0\0\0\0\0'
	refused_as_qemu "Unsupported qcow2 feature(s): Test feature"
	bad 104 '\x02'
	refused_as_qemu "qcow2: unknown compression type: 2"
	bad 104 '\x01'
	refused_as_qemu "qcow2: Compression type incompatible feature bit must be set"
	bad 72 '\x00\x00\x00\x00\x00\x00\x00\x08'
	refused_as_qemu "qcow2: Compression type incompatible feature bit must not be set"
	bad 96 '\x00\x00\x00\x07'
	refused_as_qemu "Reference count entry width too large; may not exceed 64 bits"
	bad 32 '\x00\x00\x00\x03'
	refused_as_qemu "Unsupported encryption method 3"
	# what we do not implement is refused by name, never guessed at
	bad 72 '\x00\x00\x00\x00\x00\x00\x00\x04'	# no data file extension
	same info bad.qcow2	# qemu-img info needs no data file
	run -1 --separate-stderr img map bad.qcow2
	[ "$stderr" = "img: Could not open 'bad.qcow2': 'data-file' is required for this image" ]
	bad 32 '\x00\x00\x00\x01'	# AES: shown without a key, read with one
	same info bad.qcow2
	same map bad.qcow2
	# dirty (lazy refcounts) and corrupt images read fine
	bad 72 '\x00\x00\x00\x00\x00\x00\x00\x01'
	same info bad.qcow2
	same info --output=json bad.qcow2
	bad 72 '\x00\x00\x00\x00\x00\x00\x00\x02'
	same info --output=json bad.qcow2
	same_content bad.qcow2
}

@test "fmt-qcow2: corrupt L2 tables and compressed data fail in one line" {
	fresh l.qcow2
	qio -f qcow2 -c 'write -P 1 0 64k' -c 'write -c -P 2 1M 64k' l.qcow2 >/dev/null
	cp l.qcow2 a.qcow2
	poke a.qcow2 196608 '\x80\x00\x00\x00\x10\x00\x00\x00'	# L1[0] past EOF
	same_view a.qcow2	# an L2 table of zeroes, as qemu reads it
	cp l.qcow2 b.qcow2
	poke b.qcow2 196608 '\x80\x00\x00\x00\x00\x04\x02\x00'	# L1[0] unaligned
	run -1 --separate-stderr img cat b.qcow2
	[ "$stderr" = "img: b.qcow2: L2 table offset 0x40200 unaligned (L1 index: 0)" ]
	cp l.qcow2 c.qcow2
	poke c.qcow2 262144 '\x80\x00\x00\x00\x00\x05\x02\x00'	# L2[0] unaligned
	run -1 --separate-stderr img cat c.qcow2
	[ "$stderr" = "img: c.qcow2: Cluster allocation offset 0x50200 unaligned (L2 offset: 0x40000, L2 index: 0)" ]
	cp l.qcow2 d.qcow2
	poke d.qcow2 393216 '\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff'
	run -1 --separate-stderr img cat d.qcow2
	[ "$stderr" = "img: d.qcow2: compressed cluster at 0x60000 does not decompress" ]
	# a refcount block past EOF: reads and maps go on as qemu's, writes stop
	cp l.qcow2 e.qcow2
	poke e.qcow2 65536 '\x00\x00\x00\x00\x10\x00\x00\x00'
	same map --output=json e.qcow2
	same_content e.qcow2
	run -1 --separate-stderr img-write -f qcow2 --offset=2M e.qcow2 <<<hi
	[ "$stderr" = "img-write: e.qcow2: refcount block at 0x10000000 is past the end of the file" ]
	poke e.qcow2 65536 '\x00\x00\x00\x00\x00\x02\x00\x00'
	cmp e.qcow2 l.qcow2		# nothing else was written
}

@test "fmt-qcow2: info, map and content equal qemu's on every cluster kind" {
	mkchain
	same info top.qcow2
	same info --output=json --backing-chain top.qcow2
	same map --output=json top.qcow2
	same map top.qcow2
	same_content top.qcow2
	same_content base.qcow2
}

@test "fmt-qcow2: v2, zstd, refcount widths, small clusters, extended L2" {
	local o
	for o in compat=0.10 compression_type=zstd refcount_bits=1 refcount_bits=64 \
	    cluster_size=512 extended_l2=on lazy_refcounts=on cluster_size=2M; do
		rm -f v.qcow2
		qimg create -q -f qcow2 -o "$o" v.qcow2 16M
		qio -f qcow2 -c 'write -P 7 0 1M' -c 'write -P 8 3M 5000' \
		    -c 'write -c -P 9 4M 2M' -c 'write -z 8M 64k' v.qcow2 >/dev/null
		same info --output=json v.qcow2 || return 1
		same map --output=json v.qcow2 || return 1
		same_content v.qcow2 || return 1
	done
}

@test "fmt-qcow2: preallocated images and bitmaps show as qemu shows them" {
	local p
	for p in metadata falloc full; do
		rm -f p.qcow2
		qimg create -q -f qcow2 -o preallocation=$p p.qcow2 4M
		qio -f qcow2 -c 'write -P 1 1M 64k' p.qcow2 >/dev/null
		same map --output=json p.qcow2 || return 1
		same_content p.qcow2 || return 1
	done
	fresh bm.qcow2
	qimg bitmap --add bm.qcow2 b0
	qimg bitmap --add -g 128k --disable bm.qcow2 b1
	same info bm.qcow2
	same info --output=json bm.qcow2
}

@test "fmt-qcow2: created images equal qemu-img's byte for byte" {
	local o
	fresh base.qcow2
	mkdir q
	cp base.qcow2 q/
	for o in "" compat=0.10 cluster_size=512,refcount_bits=64 \
	    lazy_refcounts=on,refcount_bits=1 compression_type=zstd extended_l2=on \
	    preallocation=metadata cluster_size=4k,preallocation=metadata \
	    backing_file=base.qcow2,backing_fmt=qcow2; do
		rm -f n.qcow2 q/n.qcow2
		img create -q -f qcow2 ${o:+-o "$o"} n.qcow2 100M
		(cd q && command qemu-img create -q -f qcow2 ${o:+-o "$o"} n.qcow2 100M)
		cmp n.qcow2 q/n.qcow2 || { echo "differs: -o $o"; return 1; }
	done
	for o in preallocation=falloc preallocation=full; do
		rm -f n.qcow2
		img create -q -f qcow2 -o $o n.qcow2 10M
		clean n.qcow2
		same map --output=json n.qcow2
	done
}

@test "fmt-qcow2: create refuses bad options with qemu's words" {
	local o
	for o in cluster_size=3 cluster_size=4M cluster_size=abc refcount_bits=3 \
	    refcount_bits=128 compat=0.10,lazy_refcounts=on \
	    compat=0.10,refcount_bits=8 compat=foo preallocation=foo \
	    backing_fmt=raw compression_type=lz4 compat=0.10,compression_type=zstd \
	    extended_l2=on,cluster_size=4k compat=0.10,extended_l2=on \
	    data_file_raw=on; do
		same create -f qcow2 -o "$o" x.qcow2 64M || return 1
		[ ! -e x.qcow2 ] || { echo "left x.qcow2 for $o"; return 1; }
	done
}

# writes OPTS: write three streams into mkchain's top, check against raw
writes() {
	mkchain "$1"
	qimg convert -O raw top.qcow2 want.raw
	head -c 300000 /dev/urandom >d1
	head -c 5000 /dev/urandom >d2
	head -c 4194304 /dev/urandom >d3
	img-write -f qcow2 --offset=12345 top.qcow2 <d1
	img-write -f qcow2 --offset=$((20 * 1048576 + 100)) top.qcow2 <d2
	img-write -f qcow2 --offset=$((30 * 1048576)) top.qcow2 <d3
	dd if=d1 of=want.raw bs=1 seek=12345 conv=notrunc status=none
	dd if=d2 of=want.raw bs=1 seek=$((20 * 1048576 + 100)) conv=notrunc status=none
	dd if=d3 of=want.raw bs=1M seek=30 conv=notrunc status=none
	clean top.qcow2
	clean base.qcow2
	same_content top.qcow2
	img cat top.qcow2 | cmp - want.raw
}

@test "fmt-qcow2: writes over a backing chain: content as expected, check clean" {
	writes ""
}

@test "fmt-qcow2: writes with extended L2 entries and with compat=0.10" {
	writes extended_l2=on
	writes compat=0.10
}

@test "fmt-qcow2: writes into an image with an internal snapshot copy on write" {
	fresh s.qcow2
	qio -f qcow2 -c 'write -P 1 0 4M' -c 'write -c -P 2 8M 1M' s.qcow2 >/dev/null
	qimg snapshot -c s1 s.qcow2
	qimg convert -O raw s.qcow2 before.raw
	head -c 2000000 /dev/urandom >d
	img-write -f qcow2 --offset=1000 s.qcow2 <d
	img-write -f qcow2 --offset=$((8 * 1048576 + 7)) s.qcow2 <d
	clean s.qcow2
	qimg convert -l s1 -O raw s.qcow2 snap.raw
	cmp before.raw snap.raw
	dd if=d of=before.raw bs=1 seek=1000 conv=notrunc status=none
	dd if=d of=before.raw bs=1 seek=$((8 * 1048576 + 7)) conv=notrunc status=none
	same_content s.qcow2
	img cat s.qcow2 | cmp - before.raw
}

@test "fmt-qcow2: freed clusters are reused, their old bytes never shown" {
	rm -f ru.qcow2
	img create -q -f qcow2 ru.qcow2 64M
	head -c 65536 /dev/zero | tr '\0' A | img-write -f qcow2 ru.qcow2
	head -c 65536 /dev/zero | img-write -f qcow2 ru.qcow2	# frees it
	printf hi | img-write -f qcow2 --offset=1048676 ru.qcow2
	run -0 qimg map --output=json ru.qcow2
	[[ ${lines[2]} == *'"offset": 327680}'* ]]		# the same cluster
	{ head -c 1048676 /dev/zero; printf hi
	  head -c $((67108864 - 1048678)) /dev/zero; } >want.raw
	img cat ru.qcow2 | cmp - want.raw
	same_content ru.qcow2
	clean ru.qcow2
}

@test "fmt-qcow2: writes are recorded in enabled bitmaps, and leak nothing" {
	fresh bm.qcow2
	qimg bitmap --add bm.qcow2 b0
	qimg bitmap --add --disable bm.qcow2 b1
	img-write -f qcow2 --offset=1M bm.qcow2 <<<hello
	clean bm.qcow2
	run -0 qimg info --output=json bm.qcow2
	[[ $output != *in-use* ]]
	[[ $output == *'"flags": ['*']'*'"name": "b1"'* ]]
	same info --output=json bm.qcow2
	# qemu can use what we stored
	qimg bitmap --add --disable --merge b0 bm.qcow2 c
	# a second writer too
	img-write -f qcow2 --offset=2M bm.qcow2 <<<again
	clean bm.qcow2
}

@test "fmt-qcow2: small clusters with 64-bit refcounts grow the refcount table" {
	rm -f g.qcow2
	img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 g.qcow2 64M
	head -c 20000000 /dev/urandom >d
	img-write -f qcow2 g.qcow2 <d
	clean g.qcow2
	head -c 20000000 d | cmp - <(img cat --length=20000000 g.qcow2)
}

@test "fmt-qcow2: a sparse 1 TiB image maps fast" {
	rm -f big.qcow2
	qimg create -q -f qcow2 big.qcow2 1T
	qio -f qcow2 -c 'write -P 1 500G 1M' big.qcow2 >/dev/null
	run -0 timeout 2 img map --output=json big.qcow2
	[ "${#lines[@]}" -eq 3 ]
	same map --output=json big.qcow2
}

@test "fmt-qcow2: a sequential write is a pwritev per 4 MiB, not per cluster" {
	if ! command -v strace >/dev/null; then
		[ "${CI:-}" != true ] || { echo "strace missing under CI"; return 1; }
		skip "strace not installed"
	fi
	rm -f s.qcow2
	img create -q -f qcow2 s.qcow2 64M
	head -c 67108864 /dev/urandom >d
	# LeakSanitizer cannot run under ptrace
	ASAN_OPTIONS=detect_leaks=0 strace -f -c -o trace \
	    -e trace=pwrite64,pwritev img-write -f qcow2 s.qcow2 <d
	# 1024 clusters: the slow path writes each, the fast one 4 MiB at once
	n=$(awk '$NF == "pwritev" || $NF == "pwrite64" { s += $4 } END { print s }' trace)
	[ "$n" -lt 64 ] || { cat trace; return 1; }
	clean s.qcow2
	img cat s.qcow2 | cmp - d
	run -0 qimg map --output=json s.qcow2
	[ "${#lines[@]}" -eq 1 ]
}

# twin OPTS BACKING OP...: the same operations done by qemu-io on q.qcow2 and
# by img-write on o.qcow2 (w:PATTERN:OFF:LEN writes, z:OFF:LEN zeroes and
# unmaps; S snapshots, C:PATTERN:OFF:LEN writes compressed, on both with
# qemu's tools) give the same map, offsets included, and the same content;
# the disk is 1M or TWIN_SIZE
twin() {
	local opts=$1 bk=$2 op k x y z
	shift 2
	rm -f q.qcow2 o.qcow2 base.raw
	if [ "$bk" = 1 ]; then
		qimg create -q -f raw base.raw 1M
		qio -f raw -c 'write -P 0xee 0 1M' base.raw >/dev/null
		qimg create -q -f qcow2 -o "$opts" -b base.raw -F raw q.qcow2 \
		    "${TWIN_SIZE:-1M}"
	else
		qimg create -q -f qcow2 -o "$opts" q.qcow2 "${TWIN_SIZE:-1M}"
	fi
	cp q.qcow2 o.qcow2
	for op in "$@"; do
		IFS=: read -r k x y z <<<"$op"
		case $k in
		w)	qio -f qcow2 -c "write -P $x $y $z" q.qcow2 >/dev/null
			head -c $((z)) /dev/zero | tr '\0' "\\$(printf %o "$x")" >d
			img-write -f qcow2 -S 0 --offset=$((y)) o.qcow2 <d ;;
		z)	qio -f qcow2 -c "write -z -u $x $y" q.qcow2 >/dev/null
			printf '{"start": %d, "length": %d, "depth": 0, "present": true, "zero": true, "data": false}\n' \
			    $((x)) $((y)) >m.json
			img-write -f qcow2 --map=m.json o.qcow2 </dev/null ;;
		S)	qimg snapshot -c s1 q.qcow2
			qimg snapshot -c s1 o.qcow2 ;;
		C)	qio -f qcow2 -c "write -c -P $x $y $z" q.qcow2 >/dev/null
			qio -f qcow2 -c "write -c -P $x $y $z" o.qcow2 >/dev/null ;;
		esac
	done
	qimg map --output=json q.qcow2 >q.map
	qimg map --output=json o.qcow2 >o.map
	diff q.map o.map
	qimg compare -q q.qcow2 o.qcow2
	qimg check -q o.qcow2
}

@test "fmt-qcow2: extended L2: writes allocate and copy only the touched subclusters" {
	# a partial write into an unallocated cluster, with and without backing
	twin extended_l2=on 0 w:1:0x1400:0x800
	twin extended_l2=on 1 w:1:0x1400:0x800 w:2:0x10000:0x18000
	# 271: writes over clusters already ours, partly allocated or zero
	twin extended_l2=on 1 w:1:0x3000:0xa000 w:2:0x10000:0x800 \
	    w:3:0x20000:0x800 z:0x24000:0x800 w:4:0x3000:0x30000
	# a write across a snapshot's partly allocated cluster copies only
	# its allocated subclusters; compressed clusters are copied whole
	twin extended_l2=on 1 w:1:0x2000:0x1000 w:2:0x8000:0x1000 S w:3:0x4800:0x200
	twin extended_l2=on 0 C:5:0x20000:0x10000 w:6:0x21000:0x300
	twin extended_l2=on,cluster_size=16k 1 w:7:0x3e00:0x600 w:8:0x7c00:0x9000
}

@test "fmt-qcow2: extended L2: zeroes per subcluster, as qemu's block layer cuts them" {
	# partial subclusters over backing data are written as zero bytes,
	# whole ones get zero bits, whole clusters are unmapped
	twin extended_l2=on 1 z:0x1200:0x2e00
	twin extended_l2=on 0 w:1:0:0x20000 z:0x1000:0x1f000
	twin extended_l2=on 1 w:1:0:0x20000 z:0x800:0x1fa00 w:2:0x11000:0x200
	twin extended_l2=on 1 C:3:0x10000:0x10000 z:0x10800:0x10000
	twin extended_l2=on 0 z:0x1000:0x400 z:0xff000:0x1000
}

@test "fmt-qcow2: zeroes and frees as qemu: v2, small clusters, reuse of freed clusters" {
	twin compat=0.10 0 w:1:0:0x1000 z:0:0x200
	twin compat=0.10 1 w:1:0:0x30000 z:0x10000:0x10000 z:0x200:0x400
	twin cluster_size=4k 1 w:1:0x2000:0x6000 z:0x2200:0x1e00 w:2:0x80000:0x1000
	# clusters an unmap frees are reused by the next allocation
	twin cluster_size=64k 1 w:1:0:0x40000 z:0x10000:0x20000 w:2:0x80000:0x30000
	twin extended_l2=on 1 w:1:0:0x40000 z:0x10000:0x20100 w:2:0x90000:0x800
	# copy-on-write past the end of the disk is written, not zeroed
	TWIN_SIZE=1120256 twin compat=0.10 0 w:1:0x10a200:0x7600 S
	TWIN_SIZE=1120256 twin extended_l2=on 0 w:1:0x10a200:0x7600
}

# t.qcow2 whose second half MiB a snapshot shares; s.raw, 2 MiB to write
shared_target() {
	qemu-img create -q -f qcow2 t.qcow2 8M &&
	    qemu-io -c 'write -P 3 0 1M' t.qcow2 &&
	    qemu-img snapshot -c s1 t.qcow2 &&
	    qemu-io -c 'write -P 4 0 512k' t.qcow2 &&
	    head -c 2M /dev/urandom >s.raw
}

@test "qcow2: writes over a snapshot's clusters write no metadata early, as qemu's" {
	# dropping shared references frees nothing: no write-back before the
	# next allocation, so these rules fail nothing the write waits for
	faults_as_qemu shared_target l2_update:true refblock_update_part -- \
	    convert -n -f raw -O qcow2 s.raw @J
}
