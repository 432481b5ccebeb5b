#!/usr/bin/env bats
# img-compare: qemu-img compare's verdicts, offsets, messages, exit codes and progress.
load helpers
bats_require_minimum_version 1.5.0

# as_qemu ARGS...: qemu-img ARGS, and ours installed under the name qemu-img,
# in this folder: the same stdout and stderr (byte for byte) and status.
# qemu-img's status is left in $qstatus.
as_qemu() {
	need_qemu || return 1
	mkdir -p "$BATS_TEST_TMPDIR/ours"
	ln -sf "$IMG_BIN/img" "$BATS_TEST_TMPDIR/ours/qemu-img"
	local is=0 f ok=0
	qstatus=0
	command qemu-img "$@" >q.out 2>q.err || qstatus=$?
	"$BATS_TEST_TMPDIR/ours/qemu-img" "$@" >i.out 2>i.err || is=$?
	for f in out err; do
		cmp -s q.$f i.$f || { echo "--- std$f differs: $*"; diff q.$f i.$f; ok=1; }
	done
	[ "$qstatus" = "$is" ] || { echo "--- exit $is, qemu-img $qstatus: $*"; ok=1; }
	return $ok
}

# as_qemu, and qemu-img's exit status was $1
as_qemu_exit() {
	local want=$1
	shift
	as_qemu "$@" || return 1
	[ "$qstatus" = "$want" ] || { echo "qemu-img exit $qstatus, not $want: $*"; return 1; }
}

# Two sparse 64 MiB raw images holding the same bytes in different extents.
raw_pair() {
	truncate -s 64M a.raw b.raw
	head -c 3M /dev/urandom >r.bin
	dd if=r.bin of=a.raw bs=1M seek=1 conv=notrunc status=none
	dd if=r.bin of=b.raw bs=1M seek=1 conv=notrunc status=none
	head -c 100k /dev/urandom | dd of=a.raw bs=1k seek=40000 conv=notrunc status=none
	dd if=a.raw of=b.raw bs=1k skip=40000 seek=40000 count=100 conv=notrunc status=none
	# zeroes written as data on one side, a hole on the other
	dd if=/dev/zero of=b.raw bs=1M seek=20 count=4 conv=notrunc status=none
}

@test "img-compare: identical sparse raw images" {
	raw_pair
	as_qemu_exit 0 compare a.raw b.raw
	grep -qx 'Images are identical.' i.out
	as_qemu compare -q a.raw b.raw
	[ ! -s i.out ]
	as_qemu compare -f raw -F raw b.raw a.raw
	as_qemu compare -U a.raw a.raw
}

@test "img-compare: the offset reported is the first differing sector's" {
	raw_pair
	poke a.raw 1050001 'X'		# data on both sides
	as_qemu_exit 1 compare a.raw b.raw
	grep -qx 'Content mismatch at offset 1049600!' i.out
	as_qemu compare b.raw a.raw
	as_qemu compare -q a.raw b.raw
	[ ! -s i.out ]
	raw_pair
	poke b.raw 9000 'Y'		# data on one side, a hole on the other
	as_qemu_exit 1 compare a.raw b.raw
	as_qemu compare b.raw a.raw
	raw_pair
	poke a.raw $((22 << 20 | 4097)) 'Z'	# data against written zeroes
	as_qemu_exit 1 compare a.raw b.raw
	raw_pair
	poke b.raw $(((64 << 20) - 1)) 'E'	# the very last byte
	as_qemu_exit 1 compare a.raw b.raw
}

@test "img-compare: a difference past the first 2 MiB read of a long extent" {
	head -c 24M /dev/urandom >a.raw
	cp a.raw b.raw
	poke b.raw $((17 << 20 | 12345)) 'Q'
	as_qemu_exit 1 compare a.raw b.raw
	as_qemu compare -p a.raw b.raw
	poke a.raw $((17 << 20 | 12345)) 'Q'
	as_qemu_exit 0 compare a.raw b.raw
}

@test "img-compare: images of different sizes" {
	raw_pair
	truncate -s 80M b.raw
	as_qemu_exit 0 compare a.raw b.raw
	grep -qx 'Warning: Image size mismatch!' i.out
	as_qemu compare b.raw a.raw
	as_qemu_exit 1 compare -s a.raw b.raw
	grep -qx 'Strict mode: Image size mismatch!' i.out
	dd if=/dev/zero of=b.raw bs=1M seek=70 count=2 conv=notrunc status=none
	as_qemu_exit 0 compare a.raw b.raw	# zeroes written past the end are fine
	poke b.raw $((75 << 20 | 700)) 'T'
	as_qemu_exit 1 compare a.raw b.raw
	as_qemu compare b.raw a.raw
	as_qemu compare -p b.raw a.raw
	truncate -s 0 e.raw
	as_qemu_exit 1 compare e.raw a.raw
}

@test "img-compare: -s compares block status, qemu's EOF bit included" {
	raw_pair
	as_qemu_exit 1 compare -s a.raw b.raw
	grep -q '^Strict mode: Offset [0-9]* block status mismatch!$' i.out
	as_qemu compare -s b.raw a.raw
	as_qemu_exit 0 compare -s a.raw a.raw
	cp --sparse=always a.raw c.raw
	as_qemu compare -s a.raw c.raw
	head -c 1M /dev/urandom >d.raw
	cp d.raw e.raw
	as_qemu_exit 0 compare -s d.raw e.raw
	truncate -s 2M e.raw
	as_qemu compare -s d.raw e.raw
}

@test "img-compare: -p prints qemu's progress lines" {
	raw_pair
	as_qemu compare -p a.raw b.raw
	grep -q $'^    (0.00/100%)\r' i.out
	as_qemu compare -p -s a.raw a.raw
	as_qemu compare -p -q a.raw b.raw
	[ ! -s i.out ]
	poke a.raw 3000000 'P'
	as_qemu compare -p a.raw b.raw
	as_qemu compare -p missing.raw a.raw
}

@test "img-compare: the iotest 048 sequence on raw" {
	truncate -s 128M t.raw
	local i
	for i in 0 1 2 3; do
		qio -f raw -c "write -P 45 $((524288 + i * 4096)) 4096" t.raw >/dev/null
	done
	cp t.raw t.raw.2
	as_qemu_exit 0 compare t.raw t.raw.2
	as_qemu compare -q t.raw t.raw.2
	truncate -s 160M t.raw
	qio -f raw -c 'write -z 128M 32M' t.raw >/dev/null
	as_qemu_exit 0 compare t.raw t.raw.2
	as_qemu_exit 1 compare -s t.raw t.raw.2
	qio -f raw -c 'write -P 67 1228800 4096' t.raw >/dev/null
	as_qemu compare t.raw t.raw.2
	grep -qx 'Content mismatch at offset 1228800!' i.out
	qio -f raw -c 'write -P 123 0 4096' t.raw >/dev/null
	as_qemu compare t.raw t.raw.2
	grep -qx 'Content mismatch at offset 0!' i.out
	truncate -s 0 u.raw
	truncate -s 128M u.raw
	qio -f raw -c 'write -P 100 0 512' u.raw >/dev/null
	cp u.raw u.raw.2
	qio -f raw -c 'write -P 101 512 512' u.raw >/dev/null
	as_qemu compare u.raw u.raw.2
	grep -qx 'Content mismatch at offset 512!' i.out
}

@test "img-compare: a raw file whose size is not a multiple of 512" {
	head -c 1000 /dev/urandom >a.raw
	cp a.raw b.raw
	truncate -s 1024 b.raw
	as_qemu_exit 0 compare a.raw b.raw
	as_qemu compare -s a.raw a.raw
}

@test "img-compare: a raw file's tail past EOF is an extent of its own, as in qemu" {
	# qemu's block status ends the data at EOF (1000) and calls the rest
	# of the last sector zero: chunks, offsets and -p follow from that
	head -c 1000 /dev/urandom >a.raw
	cp a.raw b.raw
	truncate -s 1024 b.raw
	as_qemu compare -p a.raw b.raw
	poke b.raw 1010 'y'
	as_qemu_exit 1 compare a.raw b.raw
	as_qemu compare -s a.raw b.raw
}

@test "img-compare: 1 TiB sparse raw images compare in well under a second" {
	truncate -s 1T a.raw b.raw
	local o
	for o in 0 5000000000 700000000000 1099511627000; do
		poke a.raw "$o" 'data'
		poke b.raw "$o" 'data'
	done
	run -0 timeout 2 img compare a.raw b.raw
	[ "$output" = "Images are identical." ]
	run -0 timeout 2 img compare -p -s a.raw b.raw
	poke b.raw 900000000001 'x'
	run -1 timeout 2 img compare a.raw b.raw
	[ "$output" = "Content mismatch at offset 900000000000!" ]
	as_qemu compare a.raw b.raw
	truncate -s 2T b.raw
	run -1 timeout 2 img compare b.raw a.raw
	poke a.raw 900000000001 'x'
	run -0 timeout 2 img compare b.raw a.raw
	as_qemu compare -p b.raw a.raw
}

@test "img-compare: long data extents on both sides, read on two cores" {
	head -c 48M /dev/urandom >a.raw
	cp a.raw b.raw
	truncate -s 64M b.raw
	as_qemu_exit 0 compare a.raw b.raw
	# one side data, the other a hole: only the data side is read
	truncate -s 48M z.raw
	dd if=/dev/zero of=c.raw bs=1M count=48 status=none
	as_qemu_exit 0 compare z.raw c.raw
	poke c.raw $((33 << 20 | 513)) '\001'
	as_qemu_exit 1 compare z.raw c.raw
	as_qemu compare c.raw z.raw
	local o
	for o in 0 4095 $((2 << 20)) $((8 << 20 | 1)) $(((48 << 20) - 1)); do
		cp a.raw d.raw
		poke d.raw "$o" '\377'
		cmp -s a.raw d.raw && continue	# the byte was 0xff already
		as_qemu_exit 1 compare a.raw d.raw || return 1
		as_qemu compare d.raw b.raw || return 1
	done
}

@test "img-compare: usage errors exit 1 with qemu-img's two lines" {
	touch a.raw
	as_qemu_exit 1 compare a.raw
	as_qemu_exit 1 compare a.raw a.raw a.raw
	as_qemu_exit 1 compare
	as_qemu_exit 1 compare -x a.raw a.raw
	as_qemu_exit 1 compare --bogus a.raw a.raw
	as_qemu_exit 1 compare a.raw a.raw -f
	run -1 --separate-stderr img-compare a.raw
	[ -z "$output" ]
	[ "$stderr" = "img-compare: Expecting two image file names
Try 'img-compare --help' for more information" ]
}

@test "img-compare: images that cannot be opened exit 2" {
	truncate -s 1M a.raw
	as_qemu_exit 2 compare missing.raw a.raw
	as_qemu_exit 2 compare a.raw missing.raw
	as_qemu_exit 2 compare -f bogus a.raw a.raw
	as_qemu_exit 2 compare -F bogus a.raw a.raw
	as_qemu_exit 2 compare -f qcow2 a.raw a.raw
	as_qemu_exit 2 compare -T bogus a.raw a.raw
	as_qemu compare -p missing.raw a.raw
	run -2 --separate-stderr img compare missing.raw a.raw
	[ -z "$output" ]
	[ "$stderr" = "img: Could not open 'missing.raw': Could not open 'missing.raw': No such file or directory" ]
}

@test "img-compare: -T cache modes" {
	raw_pair
	local m
	for m in none off directsync writeback writethrough unsafe; do
		as_qemu compare -T "$m" a.raw b.raw || return 1
	done
	poke b.raw 4096 'c'
	as_qemu compare -T none a.raw b.raw
}

@test "img-compare: --object definitions are checked as qemu-img checks them" {
	truncate -s 1M a.raw
	as_qemu_exit 0 compare --object secret,id=s0,data=x a.raw a.raw
	as_qemu compare --object qom-type=secret,id=s0,data=eA==,format=base64 a.raw a.raw
	as_qemu compare --object throttle-group,id=t0 a.raw a.raw
	as_qemu_exit 0 compare --object help a.raw a.raw
	as_qemu_exit 0 compare --object secret,help
	as_qemu_exit 2 compare --object bogus a.raw a.raw
	as_qemu_exit 2 compare --object '' a.raw a.raw
	as_qemu_exit 2 compare --object secret a.raw a.raw
	as_qemu_exit 2 compare --object secret,id=s0 a.raw a.raw
	as_qemu_exit 2 compare --object secret,id=0s,data=x a.raw a.raw
	as_qemu_exit 2 compare --object secret,id=s0,data=x,bogus=1 a.raw a.raw
	as_qemu_exit 2 compare --object secret,id=s0,data=x,format=hex a.raw a.raw
	as_qemu_exit 2 compare --object secret,id=s0,file=missing a.raw a.raw
	as_qemu_exit 2 compare --object secret,id=s0,data=x \
	    --object secret,id=s0,data=y a.raw a.raw
	as_qemu_exit 2 compare --object bogus a.raw
}

@test "img-compare: --image-opts names images by block options" {
	raw_pair
	as_qemu_exit 0 compare --image-opts driver=raw,file.filename=a.raw \
	    driver=file,filename=b.raw
	as_qemu compare --image-opts file.filename=a.raw \
	    driver=raw,file.driver=file,file.filename=b.raw,read-only=on,cache.direct=off
	as_qemu_exit 2 compare --image-opts -f raw driver=raw,file.filename=a.raw \
	    file.filename=b.raw
	as_qemu_exit 2 compare --image-opts driver=raw,file.filename=missing \
	    file.filename=b.raw
	as_qemu_exit 2 compare --image-opts driver=bogus,file.filename=a.raw \
	    file.filename=b.raw
	as_qemu_exit 2 compare --image-opts driver=raw,file.filename=a.raw,bogus=1 \
	    file.filename=b.raw
	as_qemu_exit 2 compare --image-opts driver=raw,file.filename=a.raw,file.bogus=1 \
	    file.filename=b.raw
	as_qemu_exit 2 compare --image-opts filename=a.raw file.filename=b.raw
	as_qemu_exit 2 compare --image-opts driver=raw,filename=a.raw file.filename=b.raw
	as_qemu_exit 2 compare --image-opts driver=raw,file=a.raw file.filename=b.raw
	as_qemu_exit 2 compare --image-opts a.raw b.raw
	as_qemu_exit 2 compare --image-opts driver=file,file.filename=a.raw b.raw
}

@test "img-compare: errors go to stderr unbuffered, as in iotest 074" {
	need_qemu
	truncate -s 1M a.raw
	truncate -s 2M b.raw
	poke b.raw 1500000 'x'
	mkdir -p ours
	ln -sf "$IMG_BIN/img" ours/qemu-img
	local want got
	want=$(command qemu-img compare a.raw b.raw 2>&1; echo "exit $?")
	got=$(ours/qemu-img compare a.raw b.raw 2>&1; echo "exit $?")
	[ "$want" = "$got" ]
	want=$(command qemu-img compare -p a.raw missing 2>&1; echo "exit $?")
	got=$(ours/qemu-img compare -p a.raw missing 2>&1; echo "exit $?")
	[ "$want" = "$got" ]
}

@test "img-compare: --help, and every option is in the man page" {
	run -0 img-compare --help
	[[ ${lines[0]} == "usage: img-compare "* ]]
	[[ $output == *"img-compare(1)"* ]]
	run -0 img compare -h
	[[ ${lines[0]} == "usage: img-compare "* ]]
	local page="$BATS_TEST_DIRNAME/../man/img-compare.1" o
	[ -f "$page" ]
	for o in $(img-compare --long-options); do
		grep -q -- "Fl Fl ${o#--}" "$page" || { echo "$o missing"; return 1; }
	done
	for o in $(img-compare --short-options); do
		grep -q -- "Fl ${o#-}" "$page" || { echo "$o missing"; return 1; }
	done
}

@test "img-compare: a full stdout is an error, not a verdict" {
	truncate -s 1M a.raw
	run -2 --separate-stderr sh -c 'img compare a.raw a.raw >/dev/full'
	[[ $stderr == *"No space left on device"* ]]
	run -0 sh -c 'img compare -q a.raw a.raw >/dev/full'
}

# qcow2: images written by the real qemu-img/qemu-io.

@test "img-compare: qcow2 against its raw conversion" {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -c 'write -P 1 0 1M' -c 'write -P 2 10M 64k' -c 'write -z 20M 1M' \
	    -c 'write -P 3 63M 1M' a.qcow2 >/dev/null
	qimg convert -O raw a.qcow2 a.raw
	as_qemu_exit 0 compare a.qcow2 a.raw
	as_qemu compare a.raw a.qcow2
	as_qemu compare -s a.qcow2 a.raw
	as_qemu compare -p a.qcow2 a.raw
	as_qemu compare -f qcow2 -F raw a.qcow2 a.raw
	poke a.raw $((10 << 20 | 999)) 'x'
	as_qemu_exit 1 compare a.qcow2 a.raw
	as_qemu compare -f raw -F raw a.qcow2 a.raw
}

@test "img-compare: qcow2 pairs, zero clusters against unallocated ones" {
	qimg create -q -f qcow2 a.qcow2 64M
	qimg create -q -f qcow2 -o cluster_size=4096 b.qcow2 64M
	qio -c 'write -P 9 1M 3M' a.qcow2 >/dev/null
	qio -c 'write -P 9 1M 3M' -c 'write -z 30M 2M' b.qcow2 >/dev/null
	as_qemu_exit 0 compare a.qcow2 b.qcow2
	as_qemu_exit 1 compare -s a.qcow2 b.qcow2
	qio -c 'write -P 8 2M 512' b.qcow2 >/dev/null
	as_qemu_exit 1 compare a.qcow2 b.qcow2
	qio -c 'write -P 5 40M 4k' a.qcow2 >/dev/null
	qio -c 'write -P 5 40M 4k' -c 'write -P 9 2M 512' b.qcow2 >/dev/null
	as_qemu_exit 0 compare a.qcow2 b.qcow2
	as_qemu compare -s a.qcow2 b.qcow2
}

@test "img-compare: -p steps through qcow2 one L2 table at a time, as qemu" {
	# with 4 KiB clusters an L2 table maps 2 MiB: qemu's block status
	# never crosses one, and -p shows every step
	qimg create -q -f qcow2 a.qcow2 64M
	qimg create -q -f qcow2 -o cluster_size=4096 b.qcow2 64M
	qio -c 'write -P 9 1M 3M' a.qcow2 >/dev/null
	qio -c 'write -P 9 1M 3M' -c 'write -z 30M 2M' b.qcow2 >/dev/null
	as_qemu compare -p a.qcow2 b.qcow2
	as_qemu compare -p b.qcow2 a.qcow2
}

@test "img-compare: compressed clusters" {
	qimg create -q -f qcow2 a.qcow2 16M
	qio -c 'write -c -P 7 0 64k' -c 'write -c -P 8 1M 128k' \
	    -c 'write -P 9 4M 64k' a.qcow2 >/dev/null
	qimg convert -O raw a.qcow2 a.raw
	qimg convert -c -O qcow2 a.qcow2 c.qcow2
	as_qemu_exit 0 compare a.qcow2 a.raw
	as_qemu_exit 0 compare c.qcow2 a.qcow2
	as_qemu compare -s c.qcow2 a.qcow2
	poke a.raw $((1 << 20 | 70000)) '\000'
	as_qemu_exit 1 compare a.qcow2 a.raw
	as_qemu compare a.raw c.qcow2
}

@test "img-compare: a backing chain compares as its content" {
	qimg create -q -f qcow2 base.qcow2 32M
	qio -c 'write -P 1 0 8M' -c 'write -P 2 16M 1M' base.qcow2 >/dev/null
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 32M
	qio -c 'write -P 3 1M 1M' -c 'write -z 16M 64k' mid.qcow2 >/dev/null
	qimg create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 32M
	qio -c 'write -P 4 5M 4k' top.qcow2 >/dev/null
	qimg convert -O raw top.qcow2 flat.raw
	qimg convert -O qcow2 top.qcow2 flat.qcow2
	as_qemu_exit 0 compare top.qcow2 flat.raw
	as_qemu compare flat.qcow2 top.qcow2
	as_qemu compare -s top.qcow2 flat.qcow2
	as_qemu compare -p top.qcow2 flat.raw
	as_qemu compare top.qcow2 mid.qcow2
	as_qemu compare mid.qcow2 base.qcow2
	as_qemu compare -s top.qcow2 mid.qcow2
}

@test "img-compare: a short backing file reads as zeroes, allocated for -s" {
	qimg create -q -f qcow2 base.qcow2 1M
	qio -c 'write -P 1 0 64k' base.qcow2 >/dev/null
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 2M
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top2.qcow2 2M
	qimg create -q -f qcow2 plain.qcow2 2M
	qio -c 'write -P 1 0 64k' plain.qcow2 >/dev/null
	as_qemu_exit 0 compare top.qcow2 plain.qcow2
	as_qemu_exit 1 compare -s top.qcow2 plain.qcow2
	grep -qx 'Strict mode: Offset 1048576 block status mismatch!' i.out
	as_qemu_exit 0 compare -s top.qcow2 top2.qcow2
	truncate -s 2M plain.raw
	as_qemu compare -s top.qcow2 plain.raw
}

@test "img-compare: the iotest 048 sequence on qcow2" {
	qimg create -q -f qcow2 t.qcow2 128M
	local i
	for i in 0 1 2 3; do
		qio -c "write -P 45 $((524288 + i * 4096)) 4096" t.qcow2 >/dev/null
	done
	cp t.qcow2 t.qcow2.2
	as_qemu_exit 0 compare t.qcow2 t.qcow2.2
	qimg resize -q -f qcow2 t.qcow2 +32M
	qio -c 'write -z 128M 32M' t.qcow2 >/dev/null
	as_qemu_exit 0 compare t.qcow2 t.qcow2.2
	as_qemu_exit 1 compare -s t.qcow2 t.qcow2.2
	qio -c 'write -P 67 1228800 4096' t.qcow2 >/dev/null
	as_qemu_exit 1 compare t.qcow2 t.qcow2.2
	qio -c 'write -P 123 0 4096' t.qcow2 >/dev/null
	as_qemu compare t.qcow2 t.qcow2.2
	qimg create -q -f qcow2 u.qcow2 128M
	qio -c 'write -P 100 0 512' u.qcow2 >/dev/null
	cp u.qcow2 u.qcow2.2
	qio -c 'write -P 101 512 512' u.qcow2 >/dev/null
	as_qemu compare u.qcow2 u.qcow2.2
	grep -qx 'Content mismatch at offset 512!' i.out
}

@test "img-compare: 1 TiB sparse qcow2 images compare in well under a second" {
	qimg create -q -f qcow2 a.qcow2 1T
	qimg create -q -f qcow2 b.qcow2 1T
	qio -c 'write -P 1 0 64k' -c 'write -P 2 500G 64k' -c 'write -P 3 1023G 1M' \
	    a.qcow2 >/dev/null
	qio -c 'write -P 1 0 64k' -c 'write -P 2 500G 64k' -c 'write -P 3 1023G 1M' \
	    b.qcow2 >/dev/null
	run -0 timeout 2 img compare a.qcow2 b.qcow2
	[ "$output" = "Images are identical." ]
	qio -c 'write -P 4 800G 512' b.qcow2 >/dev/null
	run -1 timeout 2 img compare a.qcow2 b.qcow2
	[ "$output" = "Content mismatch at offset 858993459200!" ]
	as_qemu compare -s a.qcow2 b.qcow2
}

@test "img-compare: a corrupt compressed cluster is a read error, exit 4" {
	qimg create -q -f qcow2 c.qcow2 1M
	qio -c 'write -c -P 7 0 64k' c.qcow2 >/dev/null
	qimg convert -O raw c.qcow2 c.raw
	# the compressed data is the last thing in the file: garble its start
	local end
	end=$(stat -c %s c.qcow2)
	poke c.qcow2 $((end - 79)) '\377\377\377\377\377\377\377\377'
	as_qemu_exit 4 compare c.qcow2 c.raw
	as_qemu compare c.raw c.qcow2
	as_qemu compare -p c.raw c.qcow2
	run -4 --separate-stderr img compare c.raw c.qcow2
	[ "$stderr" = "img: Error while reading offset 0 of c.qcow2: Input/output error" ]
}

@test "img-compare: a read error past the smaller image's end, as iotest 074" {
	qimg create -q -f qcow2 c.qcow2 2M
	qio -c 'write -c -P 7 1M 64k' c.qcow2 >/dev/null
	local end
	end=$(stat -c %s c.qcow2)
	poke c.qcow2 $((end - 79)) '\377\377\377\377\377\377\377\377'
	truncate -s 1M s.raw
	mkdir -p ours
	ln -sf "$IMG_BIN/img" ours/qemu-img
	local want got
	# stdout is a pipe, so fully buffered: the error line comes out first
	want=$(command qemu-img compare c.qcow2 s.raw 2>&1; echo "exit $?")
	got=$(ours/qemu-img compare c.qcow2 s.raw 2>&1; echo "exit $?")
	[ "$want" = "$got" ]
	[[ $got == "qemu-img: Error while reading offset 1048576 of c.qcow2: "* ]]
	as_qemu_exit 4 compare s.raw c.qcow2
}

@test "img-compare: a block status failure exits 3" {
	qimg create -q -f qcow2 l.qcow2 1M
	qio -c 'write -P 7 0 64k' l.qcow2 >/dev/null
	qimg convert -O raw l.qcow2 l.raw
	# L1[0] (at 0x30000): an L2 table offset that is not cluster aligned
	poke l.qcow2 $((0x30000)) '\200\000\000\000\000\004\002\000'
	same_as_qemu compare l.qcow2 l.raw
	same_as_qemu compare -p -s l.raw l.qcow2
	run -3 --separate-stderr img compare l.raw l.qcow2
	[ -z "$output" ]
	[[ $stderr == *"img: Sector allocation test failed for l.qcow2" ]]
}

@test "img-compare: the pipeline form, img-cat into cmp, agrees" {
	qimg create -q -f qcow2 a.qcow2 8M
	qio -c 'write -P 1 0 1M' -c 'write -c -P 2 4M 64k' a.qcow2 >/dev/null
	qimg convert -O raw a.qcow2 a.raw
	run -0 img compare a.qcow2 a.raw
	img-cat a.qcow2 >a.out
	img-cat a.raw >b.out
	[ "$(stat -c %s a.out)" = $((8 << 20)) ]
	cmp a.out b.out
	poke a.raw 3000000 'x'
	run -1 img compare a.qcow2 a.raw
	[ "$output" = "Content mismatch at offset 2999808!" ]
	img-cat a.raw >b.out
	run -1 cmp a.out b.out
	[[ $output == *"byte 3000001"* ]]
}

@test "img-compare: a backing file that cannot be opened: qemu's nested message" {
	qimg create -q -f qcow2 -u -b nope.qcow2 -F qcow2 m.qcow2 1M
	qimg create -q -f qcow2 -u -b m.qcow2 -F qcow2 t.qcow2 1M
	qimg create -q -f raw r.raw 1M
	qimg create -q -f qcow2 -u -b r.raw -F qcow2 g.qcow2 1M
	same compare t.qcow2 t.qcow2
	grep -qx "qemu-img: Could not open 't.qcow2': Could not open backing file: Could not open backing file: Could not open 'nope.qcow2': No such file or directory" i.err
	same compare g.qcow2 r.raw
	grep -qx "qemu-img: Could not open 'g.qcow2': Could not open backing file: Image is not in qcow2 format" i.err
	same info --backing-chain t.qcow2
}
