#!/usr/bin/env bats
# img-bench: qemu-img bench's report, options, messages, written bytes and flush points.
load helpers
bats_require_minimum_version 1.5.0

# both ARGS...: qemu-img ARGS in q/, ours as qemu-img in i/, each on its own copy of
# src/; the same stdout but for the time, the same stderr and status, and the same
# files byte for byte (with NOFILES=1 only the same names: a request failing part
# way leaves the ones in flight done or not, in qemu-img too)
both() {
	need_qemu || return 1
	ours_as_qemu
	rm -rf q i
	mkdir -p src q i
	cp -a src/. q/ && cp -a src/. i/
	(cd q && timeout 60 qemu-img "$@" >../q.out 2>../q.err) && echo 0 >q.rc ||
	    echo $? >q.rc
	(cd i && timeout 60 ../ours/qemu-img "$@" >../i.out 2>../i.err) && echo 0 >i.rc ||
	    echo $? >i.rc
	sed -i 's/^Run completed in [0-9]*\.[0-9][0-9][0-9] seconds\.$/Run completed in T seconds./' \
	    q.out i.out
	local ok=0
	outputs_match "$@" || ok=1
	if [ -n "${NOFILES:-}" ]; then
		diff <(ls -A q) <(ls -A i) || { echo "--- files differ for: $*"; ok=1; }
	else
		diff -r q i || { echo "--- files differ for: $*"; ok=1; }
	fi
	return $ok
}

# both, failing with exit 1 and LINES (1) lines of stderr, printing nothing
both_fail() {
	both "$@" || return 1
	[ "$(cat i.rc)" = 1 ] || { echo "exit $(cat i.rc), want 1"; return 1; }
	[ "$(wc -l <i.err)" = "${LINES:-1}" ] || { echo "stderr:"; cat i.err; return 1; }
	[ ! -s i.out ] || { echo "stdout:"; cat i.out; return 1; }
}

# a 64 MiB empty raw image and a 1000000-byte one of random bytes
mkraw() {
	mkdir -p src
	truncate -s 64M src/b.raw
	head -c 1000000 /dev/urandom >src/r.raw
}

# syscalls SYSCALL CMD...: the lines strace sees for SYSCALL in CMD
syscalls() {
	command -v strace >/dev/null || skip "strace not installed"
	local sc=$1
	shift
	# LeakSanitizer cannot run under ptrace
	ASAN_OPTIONS=detect_leaks=0 strace -f -qq -e trace="execve,$sc" -o trace.out "$@" \
	    >/dev/null 2>&1 || true
	grep -E "(^|[[:space:]])$sc\(" trace.out
}

@test "img-bench: the report as qemu-img's, reads and writes" {
	mkraw
	local a
	for a in "" "-c 100" "-c 0" "-q -c 100" "-c 1000 -d 1" "-c 16 -d 010 -s 0x800" \
	    "-c 100 -s 1000" "-c 100 -s 0" "-c 2000 -S 1M" "-c 100 -S 0" "-c 100 -o 1M" \
	    "-c 1 -o 64M -s 0" "-c 2 -o 67108863 -s 1" "-c 100 -d 100000" \
	    "-c 100 -w" "-c 100 -w -f raw" "-c 100 -w -f raw --flush-interval=64" \
	    "-c 100 -w -f raw --flush-interval=100 --no-drain -d 4" \
	    "-c 100 -w -f raw --flush-interval=0"; do
		# shellcheck disable=SC2086
		both bench $a b.raw || return 1
	done
	[ "$(head -1 i.out)" = "Sending 100 write requests, 4096 bytes each, 64 in parallel (starting at offset 0, step size 4096)" ]
	[ "$(sed -n 2p i.out)" = "Run completed in T seconds." ]
	run -0 --separate-stderr img-bench -c 10 src/b.raw
	[[ ${lines[1]} =~ ^Run\ completed\ in\ [0-9]+\.[0-9]{3}\ seconds\.$ ]]
}

@test "img-bench: writes leave the bytes qemu-img's leave, aligned or not, cached or not" {
	mkraw
	local a
	for a in "--pattern=0xab -s 1000 -S 3000" "--pattern=0xab -s 1000 -S 3000 -t none" \
	    "--pattern=7 -s 700 -S 500 -t none -d 8 -c 500" "--pattern=255 -t directsync -d 4" \
	    "--pattern=1 -s 1000 -S 3000 -t writethrough" "--pattern=3 -s 4096 -o 4096 -t none" \
	    "--pattern=9 -s 512 -S 999 -c 900 --flush-interval=64" "--pattern=9 -s 64k -S 64k -c 15 -t unsafe" \
	    "--pattern=9 -s 333 -S 999 -c 1000 -d 16 --flush-interval=16 --no-drain" "-s 1000 -S 3000 -o 77"; do
		# shellcheck disable=SC2086
		both bench -c 100 -w -f raw $a r.raw || return 1
	done
	! cmp -s src/r.raw i/r.raw
}

@test "img-bench: a request past the end fails as in qemu-img" {
	mkraw
	NOFILES=1 both bench -c 10 -o 64M b.raw
	[ "$(cat i.rc)" = 1 ] && [ "$(cat i.err)" = "qemu-img: Failed request: Input/output error" ]
	[ "$(cat i.out)" = "Sending 10 read requests, 4096 bytes each, 64 in parallel (starting at offset 67108864, step size 4096)" ]
	NOFILES=1 both bench -c 10 -o 63M -s 2M b.raw
	NOFILES=1 both bench -c 500 -w -f raw --pattern=7 -s 4096 -o 100000 -t directsync -d 8 r.raw
	[ "$(cat i.rc)" = 1 ]
}

@test "img-bench: option errors read as qemu-img's" {
	mkraw
	local a
	for a in "-c -1" "-c x" "-c 2147483648" "-c ''" "-d x" "-d 2147483648" "--pattern=256" \
	    "--pattern=x" "--pattern=-1" "--flush-interval=x" "-t bogus" "-i bogus" \
	    "-c 100 --flush-interval=100" "-w --flush-interval=10" "-w -U" "-n" "-i native" \
	    "-n -i threads" "-f bogus" "--image-opts -f raw"; do
		eval "both_fail bench $a b.raw" || return 1
	done
	[ "$(cat i.err)" = "qemu-img: --image-opts and --format are mutually exclusive" ]
	for a in "-s x" "-S x" "-o x" "-o -1"; do
		# shellcheck disable=SC2086
		LINES=2 both_fail bench $a b.raw || return 1
	done
	LINES=1 both_fail bench -s 3G b.raw
	[ "$(cat i.err)" = "qemu-img: Invalid buffer size specified. Must be between 0 and 2147483647." ]
	LINES=2 both_fail bench -S x b.raw
	[ "$(head -1 i.err)" = "qemu-img: Invalid step_size specified. You may use k, M, G, T, P or E suffixes for" ]
	both_fail bench -c 1 -n b.raw
	[ "$(cat i.err)" = "qemu-img: Could not open 'b.raw': aio=native was specified, but it requires cache.direct=on, which was not specified." ]
	both_fail bench -w -c 1 -U b.raw
	[ "$(cat i.err)" = "qemu-img: Could not open 'b.raw': force-share=on can only be used with read-only images" ]
}

@test "img-bench: usage errors and missing files as qemu-img" {
	mkraw
	LINES=2 both_fail bench
	[ "$(cat i.err)" = "qemu-img: Expecting one image file name
Try 'qemu-img --help' for more information" ]
	LINES=2 both_fail bench a b
	LINES=2 both_fail bench -q
	LINES=2 both_fail bench -x b.raw
	LINES=2 both_fail bench -c
	LINES=2 both_fail bench --bogus b.raw
	both_fail bench -c 10 nonexistent
	[ "$(cat i.err)" = "qemu-img: Could not open 'nonexistent': Could not open 'nonexistent': No such file or directory" ]
	both_fail bench -n nonexistent
	both_fail bench -w -U nonexistent
	both_fail bench -f qcow2 -n b.raw
}

@test "img-bench: cache modes and AIO backends" {
	mkraw
	local t
	for t in "-t none" "-t off" "-t directsync" "-t writeback" "-t unsafe" "-t writethrough" \
	    "-n -t none" "-i native -t none" "-i threads" "-i io_uring" "-t none -s 1000" \
	    "-t none -o 100" "-t none -t writeback" "-U"; do
		# shellcheck disable=SC2086
		both bench -c 100 $t b.raw || return 1
	done
}

@test "img-bench: --image-opts" {
	mkraw
	both bench --image-opts -c 10 driver=raw,file.filename=b.raw
	both bench --image-opts -c 10 driver=file,filename=b.raw
	both bench --image-opts -c 10 -n driver=raw,file.filename=b.raw,cache.direct=on
	both bench --image-opts -w -c 10 --pattern=5 driver=raw,file.filename=r.raw
	both_fail bench --image-opts -c 10 -n driver=raw,file.filename=b.raw
	both_fail bench --image-opts -w -c 10 driver=raw,file.filename=b.raw,force-share=on
	both_fail bench --image-opts -c 10 driver=raw,file.filename=nonexistent
	both_fail bench --image-opts -c 10 driver=raw,file.filename=b.raw,foo=bar
	both_fail bench --image-opts -c 10 -U driver=raw,file.filename=b.raw,force-share=off
}

@test "img-bench: flushes come where qemu-img's do (draining)" {
	mkraw
	local a q i
	for a in "-c 100 --flush-interval=64" "-c 1000 --flush-interval=64" \
	    "-c 1000 --flush-interval=100 -d 4" "-c 1000 --flush-interval=4 -d 4" \
	    "-c 1000 --flush-interval=7 -d 3 -S 0" "-c 100" "-c 100 --flush-interval=64 -t unsafe"; do
		# shellcheck disable=SC2086
		q=$(cd src && syscalls fdatasync qemu-img bench -w -f raw $a b.raw | wc -l)
		# shellcheck disable=SC2086
		i=$(cd src && syscalls fdatasync img-bench -w -f raw $a b.raw | wc -l)
		[ "$q" = "$i" ] || { echo "$a: qemu-img $q flushes, img-bench $i"; return 1; }
	done
	[ "$i" = 0 ]
	# writethrough flushes every write; reads never flush
	i=$(cd src && syscalls fdatasync img-bench -w -f raw -c 50 -d 1 -t writethrough b.raw | wc -l)
	[ "$i" -ge 50 ]
	[ "$(cd src && syscalls fdatasync img-bench -f raw -c 50 b.raw | wc -l)" = 0 ]
}

@test "img-bench: -d requests really are in flight at once on raw" {
	mkraw
	cd src
	syscalls pread64 img-bench -f raw -c 2000 -d 4 b.raw >/dev/null
	[ "$(grep -c 'pread64(' trace.out)" -ge 2000 ]
	# four threads besides the main one (the one that called execve) took requests
	threads() {
		local main
		main=$(head -1 trace.out | awk '{print $1}')
		grep "$1(" trace.out | awk -v m="$main" '$1 != m {print $1}' | sort -u | wc -l
	}
	[ "$(threads pread64)" = 4 ]
	# (raw writes go out through lib/io's io_pwritev)
	syscalls pwritev img-bench -w -f raw -c 2000 -d 4 b.raw >/dev/null
	[ "$(threads pwritev)" = 4 ]
}

@test "img-bench: telling a raw image's layout costs nothing on a 1 TiB sparse file" {
	truncate -s 1T huge.raw
	printf x | dd of=huge.raw bs=1 seek=5000 conv=notrunc status=none
	run -0 timeout 5 img-bench -c 100 -d 4 -f raw huge.raw
	run -0 timeout 5 img-bench -c 100 -d 4 -t none -f raw huge.raw
	run -0 timeout 5 img-bench -c 100 -d 4 -w -f raw -o 1023G huge.raw
}

@test "img-bench: what qemu-img does wrong, img-bench does not" {
	mkraw
	: >src/empty.raw
	run -1 --separate-stderr img-bench -c 10 -d 0 src/b.raw
	[ "$stderr" = "img-bench: Invalid queue depth specified" ] && [ -z "$output" ]
	run -0 img-bench -c 0 -d 0 src/b.raw
	run -1 --separate-stderr timeout 10 img-bench -c 10 src/empty.raw
	[ "$stderr" = "img-bench: Failed request: Input/output error" ]
	run -0 timeout 10 img-bench -c 10 -s 0 src/empty.raw
}

@test "img-bench: img bench is img-bench; --help and the hidden option lists" {
	mkraw
	run -0 --separate-stderr img bench -c 10 src/b.raw
	[[ $output == "Sending 10 read requests, "* ]]
	run -1 --separate-stderr img bench
	[ "$stderr" = "img: Expecting one image file name
Try 'img --help' for more information" ]
	run -0 --separate-stderr img-bench --help
	[ -z "$stderr" ] && [[ $output == "usage: img-bench [-c count] [-d depth]"* ]]
	[[ $output == *"See img-bench(1)."* ]]
	run -0 img-bench --long-options
	[[ $output == *--flush-interval* ]] && [[ $output == *--no-drain* ]] && [[ $output == *--pattern* ]]
	run -0 img-bench --short-options
	[ "${lines[*]}" = "-h -c -d -f -n -i -o -q -s -S -t -w -U" ]
}

# --- qcow2: these need the qcow2 driver (formats/qcow2/) ---

mkqcow2() {
	mkdir -p src
	qimg create -q -f qcow2 src/q.qcow2 4M
	qio -f qcow2 -c 'write -P 0x11 64k 100k' src/q.qcow2 >/dev/null
	qimg create -q -f qcow2 -b q.qcow2 -F qcow2 src/top.qcow2
}

@test "img-bench: qcow2 reads and writes: qemu-img's report and content" {
	mkqcow2
	local a
	for a in "-c 100" "-c 100 -f qcow2" "-c 1000 -s 512 -S 4k" "-c 100 -o 4M -s 0" \
	    "-c 10 -d 1"; do
		# shellcheck disable=SC2086
		both bench $a q.qcow2 || return 1
	done
	both bench -c 100 top.qcow2
	for a in "-c 100 --pattern=3 -s 1000 -S 10000" "-c 300 --pattern=0x5a -s 64k -d 8 --flush-interval=8" \
	    "-c 100 --pattern=2 --flush-interval=64 --no-drain" "-c 100 -t writethrough --pattern=6"; do
		# shellcheck disable=SC2086
		NOFILES=1 both bench -w -f qcow2 $a q.qcow2 || return 1
		command qemu-img check -q i/q.qcow2 || return 1
		command qemu-img compare -q q/q.qcow2 i/q.qcow2 || return 1
	done
	NOFILES=1 both bench -w -c 100 --pattern=4 -f qcow2 top.qcow2
	command qemu-img compare -q q/top.qcow2 i/top.qcow2
	command qemu-img compare -q q/q.qcow2 i/q.qcow2
}

@test "img-bench: qcow2 without the page cache (-t none)" {
	mkqcow2
	both bench -c 100 -t none -f qcow2 q.qcow2
	both bench -c 100 -t none -s 1000 q.qcow2
	NOFILES=1 both bench -w -f qcow2 -c 100 -s 4k -S 12k -t none --pattern=1 q.qcow2
	command qemu-img check -q i/q.qcow2
	command qemu-img compare -q q/q.qcow2 i/q.qcow2
}

@test "img-bench: qcow2 errors as qemu-img's" {
	mkraw
	mkqcow2
	NOFILES=1 both bench -c 10 -o 4M q.qcow2
	[ "$(cat i.err)" = "qemu-img: Failed request: Input/output error" ]
	both_fail bench -c 10 -f qcow2 b.raw
	[ "$(cat i.err)" = "qemu-img: Could not open 'b.raw': Image is not in qcow2 format" ]
	both bench --image-opts -c 10 driver=qcow2,file.filename=q.qcow2
	both_fail bench -c 10 -n q.qcow2
}
