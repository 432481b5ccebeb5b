#!/usr/bin/env bats
bats_require_minimum_version 1.5.0
# img-snapshot: qcow2 internal snapshots against qemu-img and qemu-io, both ways.

load helpers

# both SRC ARGS...: qemu-img snapshot and img-snapshot on copies of SRC
both() {
	on_copies snapshot "$@"
}

# qemu-img info of both copies without the dates of snapshots taken apart.
same_info() {
	diff <(qimg info --output=json q.qcow2 | jq 'del(.filename, .["actual-size"], .snapshots[]?["date-sec", "date-nsec"])') \
	    <(qimg info --output=json i.qcow2 | jq 'del(.filename, .["actual-size"], .snapshots[]?["date-sec", "date-nsec"])')
	qimg check -q i.qcow2
	qimg compare -q q.qcow2 i.qcow2
}

# An image with data of every kind and two snapshots by qemu in between.
qemu_image() {
	qimg create -q -f qcow2 "$@" a.qcow2 64M
	qio -c 'write -P 1 0 1M' -c 'write -c -P 2 2M 64k' -c 'write -z 4M 64k' \
	    a.qcow2 >/dev/null
	qimg snapshot -c first a.qcow2
	qio -c 'write -P 3 0 512k' -c 'write -P 4 2M 64k' -c 'write -P 5 40M 1M' \
	    a.qcow2 >/dev/null
	qimg snapshot -c second-with-a-rather-long-name a.qcow2
	qio -c 'write -P 6 512k 64k' a.qcow2 >/dev/null
}

@test "img-snapshot: -l lists qemu's snapshots as qemu-img does" {
	qemu_image
	same_as_qemu snapshot -l a.qcow2
	same_as_qemu snapshot -U -l a.qcow2
	qimg snapshot -c '' a.qcow2
	qimg snapshot -c "$(printf 'x%.0s' {1..300})" a.qcow2
	same_as_qemu snapshot -l a.qcow2
	qimg create -q -f qcow2 e.qcow2 1M
	run -0 --separate-stderr img-snapshot -l e.qcow2
	[ -z "$output" ] && [ -z "$stderr" ]
	same_as_qemu info a.qcow2
	same_as_qemu info --output=json a.qcow2
}

@test "img-snapshot: qemu's snapshots applied by img read back right" {
	qemu_image
	both a.qcow2 -a first
	same_info
	qio -c 'read -P 1 0 1M' -c 'read -P 2 2M 64k' -c 'read -P 0 4M 64k' \
	    -c 'read -P 0 40M 1M' i.qcow2 >/dev/null
	both a.qcow2 -a 2
	same_info
	qio -c 'read -P 3 0 512k' -c 'read -P 1 512k 512k' -c 'read -P 4 2M 64k' \
	    -c 'read -P 5 40M 1M' i.qcow2 >/dev/null
}

@test "img-snapshot: qemu's snapshots deleted by img, refcounts right" {
	qemu_image
	for s in first second-with-a-rather-long-name; do
		both a.qcow2 -d "$s"
		same_info
		[ "$(stat -c %s i.qcow2)" -le "$(stat -c %s q.qcow2)" ] || true
		cp i.qcow2 a.qcow2
	done
	qio -c 'read -P 3 0 512k' -c 'read -P 6 512k 64k' -c 'read -P 4 2M 64k' \
	    a.qcow2 >/dev/null
	[ "$(qimg info --output=json a.qcow2 | jq '.snapshots | length')" = 0 ]
}

@test "img-snapshot: img's snapshots are listed, applied and deleted by qemu" {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -c 'write -P 1 0 1M' -c 'write -c -P 2 2M 64k' a.qcow2 >/dev/null
	both a.qcow2 -c one
	same_info
	cp i.qcow2 a.qcow2
	qio -c 'write -P 3 0 512k' -c 'write -P 4 2M 64k' a.qcow2 >/dev/null
	qimg check -q a.qcow2
	run -0 img-snapshot -c two a.qcow2
	[ -z "$output" ]
	[ "$(qimg snapshot -l a.qcow2 | awk 'NR > 2 { print $1, $2 }' | tr '\n' ' ')" = "1 one 2 two " ]
	qimg snapshot -a one a.qcow2
	qio -c 'read -P 1 0 1M' -c 'read -P 2 2M 64k' a.qcow2 >/dev/null
	qimg snapshot -a two a.qcow2
	qio -c 'read -P 3 0 512k' -c 'read -P 1 512k 512k' -c 'read -P 4 2M 64k' \
	    a.qcow2 >/dev/null
	qimg snapshot -d one a.qcow2
	qimg check -q a.qcow2
	qimg snapshot -d two a.qcow2
	qimg check -q a.qcow2
	qio -c 'read -P 3 0 512k' -c 'read -P 4 2M 64k' a.qcow2 >/dev/null
}

@test "img-snapshot: writes by img after a snapshot copy the shared clusters" {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -c 'write -P 1 0 4M' -c 'write -c -P 2 8M 128k' a.qcow2 >/dev/null
	run -0 img-snapshot -c s1 a.qcow2
	head -c 100000 /dev/zero | tr '\0' '\5' | img-write -f qcow2 --offset=1000 a.qcow2
	head -c 70000 /dev/zero | tr '\0' '\6' | img-write -f qcow2 --offset=8M a.qcow2
	qimg check -q a.qcow2
	qio -c 'read -P 1 0 1000' -c 'read -P 5 1000 100000' -c 'read -P 1 101000 1M' \
	    -c 'read -P 6 8M 70000' -c 'read -P 2 8458608 61072' a.qcow2 >/dev/null
	run -0 img-snapshot -a s1 a.qcow2
	qimg check -q a.qcow2
	qio -c 'read -P 1 0 4M' -c 'read -P 2 8M 128k' a.qcow2 >/dev/null
	run -0 img-snapshot -d s1 a.qcow2
	qimg check -q a.qcow2
	qio -c 'read -P 1 0 4M' -c 'read -P 2 8M 128k' a.qcow2 >/dev/null
}

@test "img-snapshot: applying a snapshot restores its disk size" {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -c 'write -P 1 60M 4M' a.qcow2 >/dev/null
	img-snapshot -c small a.qcow2
	img-resize -q a.qcow2 3G
	qio -c 'write -P 2 2G 1M' a.qcow2 >/dev/null
	img-snapshot -c big a.qcow2
	both a.qcow2 -a small
	same_info
	qio -c 'read -P 1 60M 4M' i.qcow2 >/dev/null
	cp i.qcow2 a.qcow2
	both a.qcow2 -a big
	same_info
	qio -c 'read -P 1 60M 4M' -c 'read -P 2 2G 1M' i.qcow2 >/dev/null
}

@test "img-snapshot: compat 0.10 and small clusters round-trip too" {
	qimg create -q -f qcow2 -o refcount_bits=1 a.qcow2 4M
	qio -c 'write -P 1 0 1M' a.qcow2 >/dev/null
	both a.qcow2 -c s		# every refcount would overflow: -EINVAL
	# the L1 copy leaks, in qemu's image as in ours
	diff <(qemu-img check q.qcow2 2>&1) <(qemu-img check i.qcow2 2>&1)
	qimg snapshot -l i.qcow2 | wc -l | grep -qx 0
	for o in compat=0.10 cluster_size=512 refcount_bits=2 refcount_bits=64; do
		qimg create -q -f qcow2 -o $o a.qcow2 4M
		qio -c 'write -P 1 0 1M' a.qcow2 >/dev/null
		both a.qcow2 -c s
		same_info
		qio -c 'write -P 2 0 64k' i.qcow2 >/dev/null
		qimg snapshot -a s i.qcow2
		qio -c 'read -P 1 0 1M' i.qcow2 >/dev/null
		qimg snapshot -c t i.qcow2
		cp i.qcow2 a.qcow2
		both a.qcow2 -d s
		same_info
	done
}

@test "img-snapshot: errors are qemu-img's and leave the image alone" {
	qemu_image
	cp a.qcow2 orig.qcow2
	for args in "-a nope" "-d nope" "-d 1" "-l -c x" "-c x -l" "-l -l" \
	    "-U -c x" "-U" "-x" "-f qcow2 -l" "-c"; do
		eval "both a.qcow2 $args"
		cmp a.qcow2 i.qcow2
	done
	qimg create -q -f raw r.raw 1M
	for args in "-l" "-c x" "-a x" "-d x"; do
		want=$(qemu-img snapshot $args r.raw 2>&1) && ws=0 || ws=$?
		got=$(img-snapshot $args r.raw 2>&1) && gs=0 || gs=$?
		[ "${want//qemu-img/P}" = "${got//img-snapshot/P}" ] && [ "$ws" = "$gs" ]
	done
	run -1 --separate-stderr img-snapshot -c x -- -f raw r.raw
	run -1 --separate-stderr img-snapshot -l
	[ "$stderr" = "$(printf "img-snapshot: Expecting one image file name\nTry 'img-snapshot --help' for more information")" ]
	run -1 --separate-stderr img-snapshot -l a b
	[ "${stderr_lines[0]}" = "img-snapshot: Expecting one image file name" ]
}

@test "img-snapshot: missing, garbage and truncated files as qemu-img sees them" {
	run -1 --separate-stderr img-snapshot -l nonexistent
	[ "$stderr" = "img-snapshot: Could not open 'nonexistent': Could not open 'nonexistent': No such file or directory" ]
	qemu_image
	# past the end of the file the snapshot table reads as zeroes, as in qemu
	cp a.qcow2 t.qcow2
	truncate -s 200k t.qcow2
	for a in -l "-a first" "-d first"; do
		both t.qcow2 $a
		cmp t.qcow2 i.qcow2
	done
	cp a.qcow2 n.qcow2
	poke n.qcow2 60 '\x00\x01\x00\x00'	# nb_snapshots 65536: the limit
	both n.qcow2 -c x
	cmp n.qcow2 i.qcow2
	both n.qcow2 -d nope
	cp a.qcow2 x.qcow2
	off=$(od -A n -t u8 --endian=big -j 64 -N 8 x.qcow2 | tr -d ' ')
	poke x.qcow2 $((off + 36)) '\x00\x01\x00\x00'	# extra data 64 KiB
	run -1 --separate-stderr img-snapshot -l x.qcow2
	[ "$stderr" = "img-snapshot: Could not open 'x.qcow2': Too much extra metadata in snapshot table entry 0
You can force-remove this extra metadata with qemu-img check -r all" ]
	same_as_qemu info x.qcow2
	for a in "-c y" "-a first" "-d first"; do
		both x.qcow2 $a
		cmp x.qcow2 i.qcow2
	done
	cp a.qcow2 l.qcow2
	poke l.qcow2 $((off + 4)) '\x00\x00\x02\x00'	# L1 table offset unaligned
	both l.qcow2 -a first
	both l.qcow2 -d first
}

@test "img-snapshot: --help and the hidden option lists" {
	run -0 img-snapshot --help
	[[ $output == *"See img-snapshot(1)."* ]]
	run -0 img-snapshot --long-options
	[[ $output == *--force-share* ]]
	run -0 img-snapshot --short-options
	[[ $output == *-l* ]]
}

# t.qcow2 with data, snapshot s1, then more data over half of it
snap2() {
	qemu-img create -q -f qcow2 t.qcow2 8M &&
	    qemu-io -c 'write -P 3 0 1M' t.qcow2 &&
	    qemu-img snapshot -c s1 t.qcow2 &&
	    qemu-io -c 'write -P 4 0 512k' t.qcow2
}

@test "img-snapshot: -c, -a, -d under failing writes and flushes say and exit as qemu-img" {
	# the error, then what closing the image says ("Failed to flush the
	# L2 table cache: ..."), and qemu's status (refblock_load with once
	# off: qemu's close says more, not here)
	faults_as_qemu snap2 write_aio pwritev pwritev_done flush_to_os \
	    flush_to_disk l2_update refblock_update_part cluster_free \
	    cluster_alloc refblock_alloc l2_load refblock_load:true -- \
	    snapshot -c s2 @J
	faults_as_qemu snap2 pwritev pwritev_done flush_to_os l2_update \
	    refblock_update_part refblock_alloc cluster_free l2_load \
	    refblock_load -- snapshot -a s1 @J
	faults_as_qemu snap2 pwritev pwritev_done flush_to_os flush_to_disk \
	    l2_update refblock_update_part cluster_free cluster_alloc \
	    l2_load refblock_load -- snapshot -d s1 @J
}
