#!/usr/bin/env bats
# Image locking: qemu's OFD locks on bytes 100+n / 200+n, honoured and taken.
load helpers
bats_require_minimum_version 1.5.0

holder=

teardown() {
	[ -z "$holder" ] || { kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null; }
	[ ! -e stop ] || rm -f stop
	touch go		# release a slow reader, if any
	wait
	true
}

# hold ARGS...: a background qemu-io holding an image, until teardown
hold() {
	need_qemu || return 1
	command qemu-io -c 'sleep 30000' "$@" >/dev/null 2>&1 3>&- &
	holder=$!
	wait_locked "${@: -1}"
}

# wait_locked FILE: until some process holds a lock on FILE (5 s at most)
wait_locked() {
	local i ino
	ino=$(stat -c %i "$1")
	for i in $(seq 50); do
		grep -q "OFDLCK.*:$ino " /proc/locks && return 0
		sleep 0.1
	done
	echo "no lock appeared on $1"
	return 1
}

# lock_bytes FILE: the bytes locked on FILE, sorted, one line
lock_bytes() {
	local ino
	ino=$(stat -c %i "$1")
	grep "OFDLCK.*:$ino " /proc/locks | awk '{ for (b = $7; b <= $8; b++) print b }' |
	    sort -n | tr '\n' ' '
}

@test "lock: img info of an image qemu-io holds fails with qemu-img's two lines" {
	qimg create -q -f qcow2 a.qcow2 1M
	hold a.qcow2
	run -1 img info a.qcow2
	[ "$output" = "img: Could not open 'a.qcow2': Failed to get shared \"write\" lock
Is another process using the image [a.qcow2]?" ]
	same info a.qcow2
	grep -q 'Failed to get shared "write" lock' q.err
	same info --output=json a.qcow2
}

@test "lock: -U shares: info, map and check work while qemu-io holds the image" {
	qimg create -q -f qcow2 a.qcow2 1M
	qio -c 'write -P 7 0 64k' a.qcow2 >/dev/null
	hold a.qcow2
	run -0 img info -U a.qcow2
	same info -U a.qcow2
	same info -U --output=json a.qcow2
	run -0 img map -U a.qcow2
	same map -U a.qcow2
	same map -U --output=json a.qcow2
	run -0 img-cat -U a.qcow2
	same check -U a.qcow2
}

@test "lock: map, check, cat and compare of a held image fail as qemu-img" {
	qimg create -q -f qcow2 a.qcow2 1M
	qimg create -q -f qcow2 b.qcow2 1M
	hold a.qcow2
	run -1 img map a.qcow2
	same map a.qcow2
	same check a.qcow2
	[ "$(cat q.rc)" = 1 ]
	same compare a.qcow2 b.qcow2
	run -1 img-cat a.qcow2
	[ "${lines[0]}" = "img-cat: Could not open 'a.qcow2': Failed to get shared \"write\" lock" ]
	[ "${lines[1]}" = "Is another process using the image [a.qcow2]?" ]
}

@test "lock: writing into a held image fails and writes nothing" {
	qimg create -q -f qcow2 a.qcow2 1M
	qimg create -q -f raw r.raw 1M
	printf 'x%.0s' $(seq 512) > r.raw
	hold a.qcow2
	before=$(sum a.qcow2)
	run -1 img-write a.qcow2 < r.raw
	[ "$output" = "img-write: Could not open 'a.qcow2': Failed to get \"write\" lock
Is another process using the image [a.qcow2]?" ]
	run -1 img convert -n -O qcow2 r.raw a.qcow2
	[ "${lines[1]}" = "Is another process using the image [a.qcow2]?" ]
	same convert -n -O qcow2 r.raw a.qcow2
	same resize a.qcow2 2M
	same snapshot -c s1 a.qcow2
	# qemu-img check -r opens read-write at once; img-check opens
	# read-only first, so the reason differs: still refused
	run -1 img check -r all a.qcow2
	[ "${lines[1]}" = "Is another process using the image [a.qcow2]?" ]
	[ "$(sum a.qcow2)" = "$before" ]
}

@test "lock: a read-only holder (qemu-io -r) lets readers in, keeps writers out" {
	qimg create -q -f qcow2 a.qcow2 1M
	hold -r a.qcow2
	run -0 img info a.qcow2
	same info a.qcow2
	same map a.qcow2
	run -1 img-write a.qcow2 < /dev/null
	[ "${lines[0]}" = "img-write: Could not open 'a.qcow2': Failed to get \"write\" lock" ]
	same resize a.qcow2 2M
}

@test "lock: a held backing file: qemu-img's 'Could not open backing file'" {
	qimg create -q -f qcow2 base.qcow2 1M
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
	hold base.qcow2
	same map top.qcow2
	grep -q 'Could not open backing file: Failed to get shared "write" lock' i.err
	grep -q 'image \[base.qcow2\]' i.err
	same info top.qcow2
	same info --backing-chain top.qcow2
	same commit top.qcow2
	same map -U top.qcow2
}

@test "lock: commit by hand: img-cat of the top while img-write writes its base" {
	need_qemu
	qimg create -q -f qcow2 base.qcow2 1M
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
	qio -c 'write -P 9 0 64k' top.qcow2 >/dev/null
	img-map --output=json top.qcow2 | jq -c '.[] | select(.depth == 0 and .present)' > m
	# -U: the reader opens base as the backing file the writer changes
	img-cat -U --map m top.qcow2 | img-write -f qcow2 --map m base.qcow2
	run -0 qio -r -c 'read -P 9 0 64k' base.qcow2
	[ -z "$(lock_bytes base.qcow2)" ]
	[ -z "$(lock_bytes top.qcow2)" ]
}

@test "lock: raw held read-write by qemu-io shares everything, as qemu's raw" {
	qimg create -q -f raw r.raw 1M
	hold -f raw r.raw
	same info r.raw
	same map -f raw r.raw
	same check -f raw r.raw
	[ "$(cat q.rc)" = 63 ]
}

@test "lock: img takes qemu's lock bytes, read-only and read-write" {
	need_qemu
	qimg create -q -f qcow2 a.qcow2 16M
	qimg create -q -f raw r.raw 1M
	hold -r a.qcow2
	want=$(lock_bytes a.qcow2)
	kill "$holder"; wait "$holder" || true; holder=
	[ -z "$(lock_bytes a.qcow2)" ]
	img-cat a.qcow2 3>&- | { while [ ! -e go ]; do sleep 0.05; done; cat >/dev/null; } 3>&- &
	wait_locked a.qcow2
	[ "$(lock_bytes a.qcow2)" = "$want" ]
	[ "$want" = "100 201 203 " ]
	touch go; wait
	rm go
	hold a.qcow2
	want=$(lock_bytes a.qcow2)
	kill "$holder"; wait "$holder" || true; holder=
	mkfifo in
	img-write a.qcow2 < in 3>&- &
	exec 4>in
	wait_locked a.qcow2
	[ "$(lock_bytes a.qcow2)" = "$want" ]
	[ "$want" = "100 101 103 201 203 " ]
	exec 4>&-
	wait
	[ -z "$(lock_bytes a.qcow2)" ]
}

@test "lock: qemu-io cannot write an image img-cat is streaming; can once img exits" {
	need_qemu
	qimg create -q -f qcow2 big.qcow2 64M
	qio -c 'write -P 1 0 8M' big.qcow2 >/dev/null
	img-cat big.qcow2 3>&- | { while [ ! -e go ]; do sleep 0.05; done; cat >/dev/null; } 3>&- &
	wait_locked big.qcow2
	run -1 qio -c 'write 0 512' big.qcow2
	[ "$output" = "qemu-io: can't open device big.qcow2: Failed to get \"write\" lock
Is another process using the image [big.qcow2]?" ]
	run -0 qio -r -c 'read 0 512' big.qcow2
	touch go
	wait
	run -0 qio -c 'write 0 512' big.qcow2
	[ "${lines[0]}" = "wrote 512/512 bytes at offset 0" ]
}

@test "lock: qemu-io sees img-write's locks while it runs" {
	need_qemu
	qimg create -q -f qcow2 a.qcow2 1M
	mkfifo in
	img-write a.qcow2 < in 3>&- &
	exec 4>in
	wait_locked a.qcow2
	run -1 qio -c 'write 0 512' a.qcow2
	[ "$output" = "qemu-io: can't open device a.qcow2: Failed to get \"write\" lock
Is another process using the image [a.qcow2]?" ]
	run -1 qio -r -c 'read 0 512' a.qcow2
	[ "${lines[0]}" = "qemu-io: can't open device a.qcow2: Failed to get shared \"write\" lock" ]
	run -1 qimg info a.qcow2
	run -0 qimg info -U a.qcow2
	run -0 img info -U a.qcow2
	printf 'abc' >&4
	exec 4>&-
	wait
	run -0 qio -c 'write 0 512' a.qcow2
	run -0 img info a.qcow2
}

@test "lock: one process opening an image twice does not conflict with itself" {
	need_qemu
	qimg create -q -f qcow2 base.qcow2 1M
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
	qio -c 'write -P 9 0 64k' top.qcow2 >/dev/null
	run -0 img commit top.qcow2
	[ "$output" = "Image committed." ]
	run -0 qio -r -c 'read -P 9 0 64k' base.qcow2
	[ -z "$(lock_bytes base.qcow2)" ]
	hold -r base.qcow2
	before=$(sum base.qcow2)
	run -1 img commit top.qcow2
	# qemu-img reopens the base (no "Could not open"); img-commit opens it
	[[ "${lines[0]}" == *'Failed to get "write" lock' ]]
	[ "${lines[1]}" = "Is another process using the image [base.qcow2]?" ]
	[ "$(sum base.qcow2)" = "$before" ]
	run -1 qimg commit top.qcow2
}

@test "lock: file.locking=off opens without locks, as file-posix" {
	qimg create -q -f qcow2 a.qcow2 1M
	hold a.qcow2
	same info --image-opts driver=qcow2,file.filename=a.qcow2,file.locking=off
	[ "$(cat i.rc)" = 0 ]
	same info 'json:{"file.locking":"off","file.filename":"a.qcow2"}'
	same info --image-opts driver=qcow2,file.filename=a.qcow2
	[ "$(cat i.rc)" = 1 ]
}
