#!/usr/bin/env bats
# img-commit: commits into backing files against qemu-img commit as the oracle.
bats_require_minimum_version 1.5.0
load helpers

chain() {
	qimg create -q -f qcow2 b1.qcow2 16M
	qio -f qcow2 -c 'write -P 1 0 3M' b1.qcow2 >/dev/null
	qimg create -q -f qcow2 -b b1.qcow2 -F qcow2 m.qcow2
	qio -f qcow2 -c 'write -P 2 1M 1M' -c 'write -z 5M 128k' m.qcow2 >/dev/null
	qimg create -q -f qcow2 -b m.qcow2 -F qcow2 t.qcow2
	qio -f qcow2 -c 'write -P 9 512k 64k' -c 'write -z 0 4k' -c 'write -c -P 4 9M 64k' t.qcow2 >/dev/null
}

both() {
	chain
	qimg convert -O raw t.qcow2 before.raw
	mkdir q i
	cp b1.qcow2 m.qcow2 t.qcow2 q/
	cp b1.qcow2 m.qcow2 t.qcow2 i/
	# (a failing command is an outcome to compare, not the test's end)
	(cd q && { r=0; command qemu-img commit "$@" t.qcow2 >out 2>&1 || r=$?; echo $r >rc; })
	(cd i && { r=0; img commit "$@" t.qcow2 >out 2>&1 || r=$?; echo $r >rc; })
	sed -i 's/^qemu-img:/img:/' q/out
	diff q/out i/out
	diff q/rc i/rc
	# the emptied top holds nothing of its own in both
	diff <(qimg map --output=json q/t.qcow2 | grep '"depth": 0') \
	    <(qimg map --output=json i/t.qcow2 | grep '"depth": 0')
	for f in b1 m t; do
		qimg check -q i/$f.qcow2
		qimg compare q/$f.qcow2 i/$f.qcow2 >/dev/null
	done
}

@test "img-commit: into the direct backing file, top emptied" {
	both
	run -0 qimg compare before.raw i/t.qcow2
	run -0 qimg compare before.raw i/m.qcow2
}

@test "img-commit: -d keeps the top" {
	both -d
	run -0 qimg compare before.raw i/t.qcow2
}

@test "img-commit: -b commits through the chain into a deeper base" {
	chain
	qimg convert -O raw t.qcow2 before.raw
	run -0 img commit -b b1.qcow2 t.qcow2
	[ "$output" = "Image committed." ]
	run -0 qimg compare before.raw t.qcow2
	run -0 qimg compare before.raw b1.qcow2
	qimg check -q b1.qcow2
}

@test "img-commit: -q output as qemu-img's; -p shows progress from 0 to 100" {
	both -q
	chain
	run -0 img commit -p t.qcow2
	[[ $output == "    (0.00/100%)"*"    (100.00/100%)"*"Image committed." ]]
}

@test "img-commit: no backing file, base not in the chain: qemu-img's errors" {
	chain
	for args in "b1.qcow2" "-b nope t.qcow2" "" "a b"; do
		wstat=0 gstat=0
		want=$(command qemu-img commit $args 2>&1) || wstat=$?
		got=$(img commit $args 2>&1) || gstat=$?
		want=${want//qemu-img/img}
		[ "$want" = "$got" ] || { echo "args: $args"; diff <(echo "$want") <(echo "$got"); false; }
		[ "$wstat" = "$gstat" ]
	done
}

@test "img-commit: missing and garbage images: one error line, nothing written" {
	run -1 --separate-stderr img-commit nope.qcow2
	[ "$stderr" = "img-commit: Could not open 'nope.qcow2': Could not open 'nope.qcow2': No such file or directory" ]
	head -c 4096 /dev/urandom > g.bin
	cp g.bin g0.bin
	run -1 --separate-stderr img-commit -f qcow2 g.bin
	[ "${#stderr_lines[@]}" -eq 1 ]
	cmp g.bin g0.bin
}

@test "img-commit: the pipeline of primitives gives the same base" {
	chain
	qimg convert -O raw t.qcow2 before.raw
	img-map --output=json t.qcow2 | jq -c '.[] | select(.depth == 0 and .present)' > mine
	img-cat -U --map mine t.qcow2 | img-write --map mine m.qcow2
	run -0 qimg compare before.raw m.qcow2
}

@test "img-commit: --help and bad options" {
	run -0 img-commit --help
	[[ $output == *"See img-commit(1)."* ]]
	run -1 --separate-stderr img-commit --bogus x
	[ "${stderr_lines[1]}" = "Try 'img-commit --help' for more information" ]
}

@test "img-commit: -b implies -d, as in qemu-img: the top keeps its data" {
	chain
	run -0 img commit -b b1.qcow2 t.qcow2
	run -0 qimg map --output=json t.qcow2
	[[ $output == *'"depth": 0, "present": true'* ]]
}

@test "img-commit: zeroes from above free the base's clusters, as qemu's commit job unmaps" {
	for w in q i; do
		qimg create -q -f qcow2 $w-b.qcow2 1M
		qio -c 'write -P 1 0 1M' $w-b.qcow2 >/dev/null
		qimg create -q -f qcow2 -b $w-b.qcow2 -F qcow2 $w-t.qcow2
		qio -c 'write -z 0 512k' -c 'write -z -u 512k 256k' $w-t.qcow2 >/dev/null
	done
	qimg commit -q q-t.qcow2
	run -0 img commit -q i-t.qcow2
	diff <(qimg map --output=json q-b.qcow2) <(qimg map --output=json i-b.qcow2)
	diff <(qimg check q-b.qcow2) <(qimg check i-b.qcow2)
	run -0 qimg check i-b.qcow2
	[[ $output == *"4/16 = 25.00% allocated"* ]]
}

@test "img-commit: a probed raw base keeps block 0 from becoming another format, as qemu" {
	qimg create -q -f raw b.raw 1M
	qimg create -q -f qcow -b b.raw -F raw t.qcow 1M
	qimg create -q -f qcow2 h.qcow2 1M
	truncate --size=1M h.qcow2
	qimg convert -n -f raw -O qcow h.qcow2 t.qcow
	cp b.raw q.raw
	qimg create -q -f qcow -b q.raw -F raw q.qcow 1M
	qimg convert -n -f raw -O qcow h.qcow2 q.qcow
	run -1 qimg commit -f qcow q.qcow
	[ "$output" = "qemu-img: Block job failed: Operation not permitted" ]
	run -1 --separate-stderr img commit -f qcow t.qcow
	[ "$stderr" = "img: Block job failed: Operation not permitted" ]
	run -0 qimg info b.raw
	[[ $output == *"file format: raw"* ]]
	cmp b.raw <(head -c 1M /dev/zero)
	# data that still probes as raw goes through
	qimg create -q -f qcow -b b.raw -F raw u.qcow 1M
	qio -f qcow -c 'write -P 7 0 64k' u.qcow >/dev/null
	run -0 img commit -f qcow u.qcow
	[ "$(head -c 65536 b.raw | tr -d '\007' | wc -c)" = 0 ]
}

@test "img-commit: -t and -r as qemu-img takes them" {
	local o n=0
	# shellcheck disable=SC2086
	for o in "-t none" "-t unsafe" "-t directsync" "-r 1M" "-t bogus" "-r abc" "-r -1"; do
		n=$((n + 1))
		mkdir d$n
		(cd d$n && both $o)
	done
	for n in 5 6 7; do
		[ "$(cat d$n/i/rc)" = 1 ] && [ -s d$n/i/out ]
		cmp d$n/b1.qcow2 d$n/i/b1.qcow2
	done
}

@test "img-commit: a smaller backing file grows to the image's size, as qemu's" {
	local d f
	for d in q i; do
		mkdir $d
		qimg create -q -f qcow2 $d/b.qcow2 1M
		qio -c 'write -P 1 0 1M' $d/b.qcow2 >/dev/null
		qimg create -q -f qcow2 -b b.qcow2 -F qcow2 $d/t.qcow2 4M
		qio -c 'write -P 2 2M 1M' $d/t.qcow2 >/dev/null
		qimg create -q -f raw $d/r.raw 1M
		qimg create -q -f qcow2 -b r.raw -F raw $d/u.qcow2 4M
		qio -c 'write -P 3 3M 64k' $d/u.qcow2 >/dev/null
	done
	(cd q && command qemu-img commit -q t.qcow2 && command qemu-img commit -q u.qcow2)
	(cd i && img commit -q t.qcow2 && img commit -q u.qcow2)
	for f in b.qcow2 t.qcow2 u.qcow2; do
		qimg compare q/$f i/$f
		diff <(qimg map --output=json q/$f) <(qimg map --output=json i/$f)
	done
	cmp q/r.raw i/r.raw
	qimg check -q i/b.qcow2
	[ "$(qimg info --output=json i/b.qcow2 | jq '."virtual-size"')" = 4194304 ]
}

# b.qcow2 with data under t.qcow2, which has its own
chain2() {
	qemu-img create -q -f qcow2 b.qcow2 8M &&
	    qemu-io -c 'write -P 1 0 2M' b.qcow2 &&
	    qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 t.qcow2 8M &&
	    qemu-io -c 'write -P 5 512k 64k' t.qcow2
}

@test "img-commit: failing writes and flushes of the top say and exit as qemu-img" {
	# emptying the top meets them: what closing it says, then "Failed
	# to empty NODE: ..." (flush_to_os and refblock_load
	# with once off and refblock_update_part with once off differ: our
	# emptying's steps are not qemu's)
	faults_as_qemu chain2 write_aio pwritev pwritev_done flush_to_os:true \
	    flush_to_disk l2_update refblock_update_part:true l1_update \
	    l2_load refblock_load:true cluster_free cluster_alloc -- commit @J
}
