#!/usr/bin/env bats
# img-dd: qemu-img dd's operands, size arithmetic, messages, and output bytes and allocation.
load helpers
bats_require_minimum_version 1.5.0

# both ARGS...: qemu-img ARGS in q/, ours as qemu-img in i/, each on its own copy of
# src/; same stdout, stderr (byte for byte), status, and the same files, byte for byte
# (with NOFILES=1, the same file names only: qcow2 files are compared by content)
both() {
	need_qemu || return 1
	ours_as_qemu
	rm -rf q i
	mkdir -p src q i
	cp -a src/. q/ && cp -a src/. i/
	(cd q && command qemu-img "$@" >../q.out 2>../q.err) && echo 0 >q.rc ||
	    echo $? >q.rc
	(cd i && ../ours/qemu-img "$@" >../i.out 2>../i.err) && echo 0 >i.rc ||
	    echo $? >i.rc
	local ok=0
	outputs_match "$@" || ok=1
	if [ -n "${NOFILES:-}" ]; then
		diff <(ls -A q) <(ls -A i) || { echo "--- files differ for: $*"; ok=1; }
	else
		diff -r q i || { echo "--- files differ for: $*"; ok=1; }
	fi
	return $ok
}

# both, failing with exit 1 and one line of stderr, and no file left behind
both_fail() {
	both "$@" || return 1
	[ "$(cat i.rc)" = 1 ] || { echo "exit $(cat i.rc), want 1"; return 1; }
	[ "$(wc -l <i.err)" = "${LINES:-1}" ] || { echo "stderr:"; cat i.err; return 1; }
	diff <(ls -A src) <(ls -A i) || { echo "left behind in i/"; return 1; }
}

# the allocation qemu-img map sees, without host offsets, adjacent extents merged
alloc() {
	command qemu-img map --output=json "$@" | jq -c 'map(del(.offset)) |
	    reduce .[] as $e ([]; if length > 0 and (.[-1] | del(.start, .length)) ==
	    ($e | del(.start, .length)) then .[-1].length += $e.length else . + [$e] end)'
}

# a 1000000-byte raw file of random bytes and a 10 MiB sparse one with a little data
mkinputs() {
	mkdir -p src
	head -c 1000000 /dev/urandom >src/in.raw
	truncate -s 10M src/sp.raw
	printf hello | dd of=src/sp.raw bs=1 seek=3145728 conv=notrunc status=none
}

@test "img-dd: a whole raw image, byte for byte and allocated as qemu-img's" {
	mkinputs
	both dd if=in.raw of=out.raw
	[ "$(stat -c %s i/out.raw)" = 1000448 ]		# the input's size in sectors
	both dd if=sp.raw of=out.raw bs=64k
	[ "$(alloc q/out.raw)" = "$(alloc i/out.raw)" ]
	[ "$(alloc i/out.raw)" = '[{"start":0,"length":10485760,"depth":0,"present":true,"zero":false,"data":true}]' ]
}

@test "img-dd: bs, count and skip give qemu-img's ranges" {
	mkinputs
	local a
	for a in "bs=4k count=10 skip=3" "bs=4k skip=3" "bs=5 count=3" \
	    "bs=1000 skip=1" "bs=1000 skip=1000" "bs=1k count=1k" "bs=64K count=1" \
	    "bs=1.5k count=7 skip=2" "bs=1M" "bs=3 skip=7 count=3000" "count=0" "skip=0" \
	    "bs=1000 count=9223372036854775807" "bs=2147483647"; do
		# shellcheck disable=SC2086
		both dd if=in.raw of=o $a || return 1
	done
	[ "$(stat -c %s i/o)" = 1000448 ]
}

@test "img-dd: skip=3 count=10 copies blocks 3 to 9, as qemu-img" {
	mkinputs
	both dd if=in.raw of=o bs=4k count=10 skip=3
	[ "$(stat -c %s i/o)" = $((7 * 4096)) ]
	cmp i/o <(tail -c +$((3 * 4096 + 1)) src/in.raw | head -c $((7 * 4096)))
}

@test "img-dd: a skip past the end warns, exits 0 and leaves an empty output" {
	mkinputs
	both dd if=in.raw of=o bs=1000 skip=1001
	[ "$(cat i.err)" = "qemu-img: in.raw: cannot skip to specified offset" ]
	[ "$(cat i.rc)" = 0 ] && [ ! -s i/o ]
	both dd if=in.raw of=o bs=1000 skip=9223372036854775807
	[ ! -s i/o ]
}

@test "img-dd: operand errors read as qemu-img's" {
	mkinputs
	both_fail dd
	[ "$(cat i.err)" = "qemu-img: Must specify both input and output files" ]
	both_fail dd if=in.raw
	both_fail dd of=o
	both_fail dd foo
	[ "$(cat i.err)" = "qemu-img: unrecognized operand foo" ]
	both_fail dd foo=bar if=in.raw of=o
	[ "$(cat i.err)" = "qemu-img: unrecognized operand foo" ]
	both_fail dd =x if=in.raw of=o
	both_fail dd bs=0 if=in.raw of=o
	[ "$(cat i.err)" = "qemu-img: Invalid bs specified. Must be between 1 and 2147483647." ]
	both_fail dd bs=2G if=in.raw of=o
	both_fail dd count=9223372036854775808 if=in.raw of=o
	LINES=2 both_fail dd bs=abc if=in.raw of=o
	LINES=2 both_fail dd bs= if=in.raw of=o
	LINES=2 both_fail dd bs=-1 if=in.raw of=o
	LINES=2 both_fail dd "bs=1k " if=in.raw of=o
	LINES=2 both_fail dd count=x if=in.raw of=o
	LINES=2 both_fail dd count=-1 if=in.raw of=o
	LINES=2 both_fail dd skip=1.5 if=in.raw of=o
	[ "$(tail -1 i.err)" = "qemu-img: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes." ]
}

@test "img-dd: the last operand of a name wins; leading blanks in numbers are fine" {
	mkinputs
	both dd if=nonexistent if=in.raw of=x of=o bs=1 bs=4k count=2
	[ "$(stat -c %s i/o)" = 8192 ] && [ ! -e i/x ]
	both dd if=in.raw of=o "bs= 1k" "count= 16"
	[ "$(stat -c %s i/o)" = 16384 ]
}

@test "img-dd: bad options, formats and files fail as qemu-img, creating nothing" {
	mkinputs
	LINES=2 both_fail dd -x
	[ "$(cat i.err)" = "qemu-img: unrecognized option '-x'
Try 'qemu-img --help' for more information" ]
	LINES=2 both_fail dd if=in.raw of=o -f
	LINES=2 both_fail dd --bogus if=in.raw of=o
	both_fail dd if=nonexistent of=o
	[ "$(cat i.err)" = "qemu-img: Could not open 'nonexistent': Could not open 'nonexistent': No such file or directory" ]
	both_fail dd -f bogus if=in.raw of=o
	both_fail dd -O bogus if=in.raw of=o
	[ "$(cat i.err)" = "qemu-img: Unknown file format" ]
	both_fail dd if=in.raw of=nodir/o
	[ "$(cat i.err)" = "qemu-img: nodir/o: error while creating output image: Could not create 'nodir/o': No such file or directory" ]
	both_fail dd if=in.raw of=
}

@test "img-dd: --image-opts, -U and their errors" {
	mkinputs
	both dd --image-opts if=driver=raw,file.filename=in.raw of=o
	cmp i/o <(cat src/in.raw; head -c 448 /dev/zero)
	both dd --image-opts if=file.filename=in.raw,file.driver=file of=o bs=4k count=3
	both dd --image-opts if=driver=file,filename=in.raw of=o
	both dd --image-opts if=driver=raw,file.filename=in.raw,cache.direct=on of=o
	both dd -U -f raw if=in.raw of=o count=5
	both dd --force-share --image-opts if=driver=raw,file.filename=in.raw,force-share=on of=o
	both_fail dd --image-opts -f raw if=in.raw of=o
	[ "$(cat i.err)" = "qemu-img: --image-opts and --format are mutually exclusive" ]
	both_fail dd --image-opts if=driver=raw,filename=in.raw of=o
	both_fail dd --image-opts if=driver=raw of=o
	both_fail dd --image-opts if=driver=raw,file.filename=nonexistent of=o
	[ "$(cat i.err)" = "qemu-img: Could not open 'driver=raw,file.filename=nonexistent': Could not open 'nonexistent': No such file or directory" ]
	both_fail dd --image-opts if=driver=bogus,file.filename=in.raw of=o
	both_fail dd --image-opts if=driver=raw,file.filename=in.raw,file.foo=bar of=o
	both_fail dd -U --image-opts if=driver=raw,file.filename=in.raw,force-share=off of=o
}

@test "img-dd: img dd and img-dd are the same program" {
	mkinputs
	cd src
	img dd if=in.raw of=a bs=4k count=3
	img-dd if=in.raw of=b bs=4k count=3
	cmp a b
	run -1 --separate-stderr img dd if=in.raw
	[ "$stderr" = "img: Must specify both input and output files" ]
	run -1 --separate-stderr img-dd -x
	[ "$stderr" = "img-dd: unrecognized option '-x'
Try 'img-dd --help' for more information" ]
}

@test "img-dd: --help and the hidden option lists" {
	run --separate-stderr img-dd --help
	[ "$status" -eq 0 ] && [ -z "$stderr" ]
	[[ $output == "usage: img-dd [--image-opts] [-U] [-f fmt] [-O output_fmt]"* ]]
	[[ $output == *"See img-dd(1)."* ]]
	run img-dd --long-options
	[ "$status" -eq 0 ] && [[ $output == *--image-opts* ]] && [[ $output == *--force-share* ]]
	run img-dd --short-options
	[ "$status" -eq 0 ] && [ "${lines[*]}" = "-h -f -O -U" ]
}

@test "img-dd: copying never goes block by block (bs=1 on 16 MiB in seconds)" {
	head -c 16M /dev/urandom >in.raw
	run -0 timeout 20 img-dd -f raw if=in.raw of=o bs=1
	cmp in.raw o
}

# --- qcow2: these need the qcow2 driver (formats/qcow2/) ---

# a qcow2 image with data, a zero cluster and unallocated space, on a backing file
mkqcow2() {
	mkdir -p src
	qimg create -q -f qcow2 src/base.qcow2 4M
	qio -f qcow2 -c 'write -P 0x22 0 1M' src/base.qcow2 >/dev/null
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 src/q.qcow2 4M
	qio -f qcow2 -c 'write -P 0x11 64k 100k' -c 'write -z 512k 64k' \
	    -c 'write -P 0x33 3M 4k' src/q.qcow2 >/dev/null
}

@test "img-dd: qcow2 input (backing file, zero cluster) to raw, as qemu-img" {
	mkqcow2
	both dd if=q.qcow2 of=o
	both dd -f qcow2 if=q.qcow2 of=o bs=4k skip=10 count=200
	both dd if=q.qcow2 of=o bs=64k skip=8
	both dd --image-opts if=driver=qcow2,file.filename=q.qcow2 of=o bs=1M count=2
}

@test "img-dd: raw to qcow2: the same content and allocation as qemu-img's" {
	mkinputs
	local a
	for a in "bs=64k" "bs=5 count=3" "bs=512 count=3 skip=1" "bs=4k skip=100"; do
		# shellcheck disable=SC2086
		NOFILES=1 both dd -O qcow2 if=sp.raw of=o.qcow2 $a || return 1
		command qemu-img check -q i/o.qcow2 || return 1
		command qemu-img compare -q q/o.qcow2 i/o.qcow2 || return 1
		[ "$(qimg info --output=json i/o.qcow2 | jq '."virtual-size"')" = \
		    "$(qimg info --output=json q/o.qcow2 | jq '."virtual-size"')" ] || return 1
		[ "$(alloc i/o.qcow2)" = "$(alloc q/o.qcow2)" ] || return 1
	done
	NOFILES=1 both dd -O qcow2 if=in.raw of=o.qcow2 bs=64k
	command qemu-img compare -q -f raw -F qcow2 src/in.raw i/o.qcow2
	[ "$(alloc i/o.qcow2)" = "$(alloc q/o.qcow2)" ]
}

@test "img-dd: qcow2 to qcow2 with skip and count" {
	mkqcow2
	NOFILES=1 both dd -f qcow2 -O qcow2 if=q.qcow2 of=o.qcow2 bs=64k skip=1 count=40
	command qemu-img check -q i/o.qcow2
	command qemu-img compare -q q/o.qcow2 i/o.qcow2
	[ "$(alloc i/o.qcow2)" = "$(alloc q/o.qcow2)" ]
}

@test "img-dd: a raw file named as qcow2, or a broken qcow2, fails with nothing created" {
	mkinputs
	mkqcow2
	both_fail dd -f qcow2 if=in.raw of=o
	[ "$(cat i.err)" = "qemu-img: Could not open 'in.raw': Image is not in qcow2 format" ]
	head -c 50 src/q.qcow2 >src/short.qcow2
	cd src
	run -1 --separate-stderr img-dd -f qcow2 if=short.qcow2 of=o
	[ "${#stderr_lines[@]}" -eq 1 ] && [ ! -e o ]
	[[ $stderr == "img-dd: Could not open 'short.qcow2': "* ]]
}

# t.qcow2 with 1 MiB of data
data1m() {
	qemu-img create -q -f qcow2 t.qcow2 8M &&
	    qemu-io -c 'write -P 3 0 1M' t.qcow2
}

@test "img-dd: failing reads of the input say and exit as qemu-img" {
	# the output is new: no blkdebug below it (qemu-img dd cannot
	# create a json: name: "Unknown protocol 'json'", ours neither)
	faults_as_qemu data1m none read_aio l2_load refblock_load -- \
	    dd -O raw if=@J of=o.raw bs=64k
	faults_as_qemu data1m none pwritev -- dd -O qcow2 if=t.qcow2 of=@J
}
