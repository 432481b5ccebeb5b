#!/usr/bin/env bats
# img-rebase: safe and unsafe rebases against qemu-img rebase as the oracle.
bats_require_minimum_version 1.5.0
load helpers

# base1, base2 and top.qcow2 on base1, with data in all three
chain() {
	qimg create -q -f qcow2 b1.qcow2 16M
	qio -f qcow2 -c 'write -P 1 0 3M' -c 'write -P 5 8M 100k' -c 'write -z 12M 1M' b1.qcow2 >/dev/null
	qimg create -q -f qcow2 b2.qcow2 16M
	qio -f qcow2 -c 'write -P 2 1M 1M' -c 'write -P 5 8M 100k' b2.qcow2 >/dev/null
	qimg create -q -f qcow2 -b b1.qcow2 -F qcow2 top.qcow2
	qio -f qcow2 -c 'write -P 9 512k 64k' -c 'write -P 7 2M 4k' top.qcow2 >/dev/null
}

# run the same rebase with qemu-img and img on copies; same content, map, output
both() {
	chain
	qimg convert -O raw top.qcow2 before.raw
	mkdir q i
	cp b1.qcow2 b2.qcow2 top.qcow2 q/
	cp b1.qcow2 b2.qcow2 top.qcow2 i/
	# (a failing command is an outcome to compare, not the test's end)
	(cd q && { r=0; command qemu-img rebase "$@" top.qcow2 >out 2>&1 || r=$?; echo $r >rc; })
	(cd i && { r=0; img rebase "$@" top.qcow2 >out 2>&1 || r=$?; echo $r >rc; })
	sed -i 's/^qemu-img:/img:/' q/out
	diff q/out i/out
	diff q/rc i/rc
	diff <(qimg map --output=json q/top.qcow2) <(qimg map --output=json i/top.qcow2)
	diff <(qimg info q/top.qcow2 | grep -v 'disk size') <(qimg info i/top.qcow2 | grep -v 'disk size' | sed 's,i/,q/,g')
	qimg check -q i/top.qcow2
}

@test "img-rebase: safe rebase onto another base keeps the content" {
	both -b b2.qcow2 -F qcow2
	run -0 qimg compare before.raw i/top.qcow2
}

@test "img-rebase: -b '' makes the image standalone" {
	both -b ''
	run -0 qimg compare before.raw i/top.qcow2
	run -0 img info i/top.qcow2
	[[ $output != *"backing file"* ]]
}

@test "img-rebase: progress output equals qemu-img's" {
	both -p -b b2.qcow2 -F qcow2
}

@test "img-rebase: unsafe mode only rewrites the header" {
	both -u -b b2.qcow2 -F qcow2
	run -0 img info i/top.qcow2
	[[ $output == *"backing file: b2.qcow2"* ]]
}

@test "img-rebase: -u -F takes any of qemu's driver names, as qemu records them" {
	for f in host_device nbd file quorum; do
		qimg create -q -f qcow2 q.qcow2 1M
		cp q.qcow2 i.qcow2
		qimg rebase -u -b /some/backing/file/path -F $f q.qcow2
		run -0 img rebase -u -b /some/backing/file/path -F $f i.qcow2
		cmp q.qcow2 i.qcow2
		grep -q "$f" i.qcow2
	done
	run -1 img rebase -u -b /some/backing/file/path -F host_dev i.qcow2
	[ "$output" = "img: Invalid format name: 'host_dev'" ]
	cmp q.qcow2 i.qcow2
}

@test "img-rebase: onto a base already in the chain" {
	chain
	qimg create -q -f qcow2 -b top.qcow2 -F qcow2 up.qcow2
	qio -f qcow2 -c 'write -P 3 4M 64k' up.qcow2 >/dev/null
	qimg convert -O raw up.qcow2 before.raw
	run -0 img rebase -b b1.qcow2 -F qcow2 up.qcow2
	run -0 qimg compare before.raw up.qcow2
	qimg check -q up.qcow2
}

@test "img-rebase: a missing -F, a missing backing file, bad format: qemu-img's errors" {
	chain
	for args in "-b b2.qcow2" "-b nope.qcow2 -F qcow2" "-b b2.qcow2 -F foo" "" "-u" "-b b2.qcow2 -F qcow2 a b"; do
		cp top.qcow2 q.qcow2; cp top.qcow2 i.qcow2
		wstat=0 gstat=0
		want=$(command qemu-img rebase $args q.qcow2 2>&1) || wstat=$?
		got=$(img rebase $args i.qcow2 2>&1) || gstat=$?
		want=${want//qemu-img/img}; want=${want//q.qcow2/i.qcow2}
		[ "$want" = "$got" ] || { echo "args: $args"; diff <(echo "$want") <(echo "$got"); false; }
		[ "$wstat" = "$gstat" ]
	done
}

@test "img-rebase: raw images cannot record a backing file" {
	truncate -s 1M r.raw
	run -1 --separate-stderr img rebase -f raw -u -b b1.qcow2 -F qcow2 r.raw
	[ "$stderr" = "img: Could not change the backing file to 'b1.qcow2': Operation not supported" ]
}

@test "img-rebase: missing and garbage images: one error line" {
	run -1 --separate-stderr img-rebase -u -b x -F qcow2 nope.qcow2
	[ "$stderr" = "img-rebase: Could not open 'nope.qcow2': Could not open 'nope.qcow2': No such file or directory" ]
	head -c 4096 /dev/urandom > g.bin
	run -1 --separate-stderr img-rebase -f qcow2 -u -b x -F qcow2 g.bin
	[ "${#stderr_lines[@]}" -eq 1 ]
}

@test "img-rebase: --help and bad options" {
	run -0 img-rebase --help
	[[ $output == *"See img-rebase(1)."* ]]
	run -1 --separate-stderr img-rebase --bogus x
	[ "${stderr_lines[1]}" = "Try 'img-rebase --help' for more information" ]
}

@test "img-rebase: onto a longer image in the chain, the short layer's zero tail stays" {
	qimg create -q -f qcow2 new.qcow2 320k
	qimg create -q -f qcow2 -b new.qcow2 -F qcow2 old.qcow2 256k
	qimg create -q -f qcow2 -b old.qcow2 -F qcow2 top.qcow2 320k
	qio -f qcow2 -c 'write -P 1 0 320k' new.qcow2 >/dev/null
	qio -f qcow2 -c 'write -P 2 0 256k' old.qcow2 >/dev/null
	qimg convert -O raw top.qcow2 before.raw
	run -0 img rebase -b new.qcow2 -F qcow2 top.qcow2
	run -0 qimg compare before.raw top.qcow2
}

@test "img-rebase: -t and -T as qemu-img takes them" {
	local o n=0
	# shellcheck disable=SC2086
	for o in "-t none" "-T none" "-t unsafe -T writethrough" "-t bogus" "-T bogus" \
	    "-t bogus -u"; do
		n=$((n + 1))
		mkdir d$n
		(cd d$n && both $o -b b2.qcow2 -F qcow2)
	done
	[ "$(cat d6/i/out)" = "img: Invalid cache option: bogus" ]
}

# b.qcow2 under t.qcow2; n.qcow2, the new backing file, in nb/
chain3() {
	qemu-img create -q -f qcow2 b.qcow2 8M &&
	    qemu-io -c 'write -P 1 0 2M' b.qcow2 &&
	    mkdir -p nb && qemu-img create -q -f qcow2 nb/n.qcow2 8M &&
	    qemu-io -c 'write -P 2 1M 2M' nb/n.qcow2 &&
	    qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 t.qcow2 8M &&
	    qemu-io -c 'write -P 5 512k 64k' t.qcow2
}

@test "img-rebase: failing writes and flushes say and exit as qemu-img" {
	local nb=$BATS_TEST_TMPDIR/nb.qcow2
	chain3 >/dev/null && mv nb/n.qcow2 "$nb"
	# safe: "Error while writing to COW image: strerror", the close's
	# lines (l2_update and refblock_update_part: ours writes the tables
	# before the header names the new backing file, qemu's does not)
	faults_as_qemu chain3 write_aio pwritev pwritev_done flush_to_os \
	    cluster_alloc refblock_alloc l2_load refblock_load:true \
	    -- rebase -b "$nb" -F qcow2 @J
	# a relative name against a json: overlay
	faults_as_qemu chain3 none -- rebase -b nb/n.qcow2 -F qcow2 @J
	# unsafe: the header alone
	faults_as_qemu chain3 write_aio pwritev pwritev_done flush_to_os \
	    flush_to_disk l2_update refblock_update_part -- \
	    rebase -u -b nb/n.qcow2 -F qcow2 @J
}
