#!/usr/bin/env bats
bats_require_minimum_version 1.5.0
# img-check: qemu-img check's findings, repairs, output and exit statuses,
# on clean images and on images damaged with dd.

load helpers

# A big-endian value at a decimal offset: poke_be FILE OFFSET BYTES VALUE
poke_be() {
	local hex
	hex=$(printf "%0$(($3 * 2))x" "$4")
	printf "$(sed 's/../\\x&/g' <<<"$hex")" |
	    dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# The big-endian 64-bit value at a decimal offset.
be64_at() {
	echo $((16#$(od -An -tx1 -j "$2" -N8 "$1" | tr -d ' \n')))
}

# qemu-img's stderr as img writes it (its prefix names the program).
as_img() {
	sed 's/^qemu-img: /img: /' "$1"
}

# Both programs check a copy of FILE with ARGS; stdout, stderr and status agree.
check_same() {
	local file=$1 qs=0 is=0
	shift
	need_qemu || return 1
	rm -rf q i && mkdir q i && cp "$file" q/x.qcow2 && cp "$file" i/x.qcow2
	(cd q && command qemu-img check "$@" x.qcow2 >../q.out 2>../q.err) || qs=$?
	(cd i && img check "$@" x.qcow2 >../i.out 2>../i.err) || is=$?
	as_img q.err >q.err.img
	if ! cmp -s q.out i.out || ! cmp -s q.err.img i.err || [ "$qs" != "$is" ]; then
		echo "check $* $file: qemu-img exit $qs, img exit $is"
		diff q.out i.out
		diff q.err.img i.err
		return 1
	fi
	STATUS=$qs
}

# check_same for the human and JSON forms, read-only; the status must be want.
check_ro() {
	local want=$1 file=$2 before
	before=$(sum "$file")
	check_same "$file" --output=json || return 1
	check_same "$file" || return 1
	[ "$STATUS" = "$want" ] || { echo "status $STATUS, want $want"; return 1; }
	[ "$(sum "$file")" = "$before" ]
	[ "$(sum i/x.qcow2)" = "$before" ]	# a check without -r writes nothing
}

# Repair copies with -r MODE: same report; then qemu-img says the same of
# both results (clean or not, as want) and that their data is identical.
check_fix() {
	local mode=$1 want=$2 file=$3 qs=0 is=0
	check_same "$file" -r "$mode" || return 1
	qimg check q/x.qcow2 >/dev/null 2>&1 || qs=$?
	qimg check i/x.qcow2 >/dev/null 2>&1 || is=$?
	[ "$qs" = "$want" ] && [ "$is" = "$want" ] ||
	    { echo "after -r $mode: qemu's copy $qs, ours $is, want $want"; return 1; }
	if [ "$want" = 0 ]; then
		run -0 img check i/x.qcow2
		qimg compare q/x.qcow2 i/x.qcow2
	fi
}

# The layout qemu-img gives a fresh 64M image with 64k clusters.
RT=65536 RB=131072 L1=196608 L2=262144

mkbase() {
	qimg create -q -f qcow2 base.qcow2 64M
	qio -c 'write -P 1 0 256k' -c 'write -P 2 1M 128k' -c 'write -P 3 32M 64k' \
	    base.qcow2 >/dev/null
	# the offsets the damage below relies on
	[ "$(be64_at base.qcow2 48)" = $RT ] && [ "$(be64_at base.qcow2 $RT)" = $RB ]
	[ "$(be64_at base.qcow2 40)" = $L1 ]
	[ "$(be64_at base.qcow2 $L1)" = $(((1 << 63) | L2)) ]
	[ "$(be64_at base.qcow2 $L2)" = $(((1 << 63) | 0x50000)) ]
}

@test "img-check: clean images qemu makes: same report, exit 0" {
	mkbase
	check_ro 0 base.qcow2
	qimg create -q -f qcow2 empty.qcow2 1G
	check_ro 0 empty.qcow2
	for o in compat=0.10 refcount_bits=1 refcount_bits=64 cluster_size=512 \
	    extended_l2=on,cluster_size=128k lazy_refcounts=on preallocation=metadata; do
		rm -f c.qcow2
		qimg create -q -f qcow2 -o $o c.qcow2 16M
		qio -c 'write -P 1 0 300k' -c 'write -P 2 8M 4k' c.qcow2 >/dev/null
		check_ro 0 c.qcow2
	done
}

@test "img-check: compressed clusters, snapshots and bitmaps are counted" {
	qimg create -q -f qcow2 c.qcow2 64M
	qio -c 'write -c -P 7 0 64k' -c 'write -c -P 8 64k 64k' -c 'write -P 9 1M 64k' \
	    c.qcow2 >/dev/null
	check_ro 0 c.qcow2
	mkbase
	qimg snapshot -c s1 base.qcow2
	qio -c 'write -P 5 0 64k' base.qcow2 >/dev/null
	qimg snapshot -c s2 base.qcow2
	check_ro 0 base.qcow2
	qimg create -q -f qcow2 b.qcow2 64M
	qimg bitmap --add b.qcow2 b0
	qio -c 'write -P 1 0 256k' b.qcow2 >/dev/null
	check_ro 0 b.qcow2
}

@test "img-check: clean images img makes pass both checks" {
	need_qemu
	img create -q -f qcow2 a.qcow2 64M
	run -0 img check a.qcow2
	check_ro 0 a.qcow2
	head -c 3M /dev/urandom > r.raw
	img convert -f raw -O qcow2 r.raw b.qcow2
	check_ro 0 b.qcow2
	img convert -f raw -O qcow2 -o cluster_size=4k,refcount_bits=8 r.raw z.qcow2
	check_ro 0 z.qcow2
}

@test "img-check: a leaked cluster (refcount set on an unused cluster)" {
	mkbase
	cp base.qcow2 d.qcow2
	truncate -s $((13 * 65536)) d.qcow2
	poke_be d.qcow2 $((RB + 2 * 12)) 2 1
	check_ro 3 d.qcow2
	grep -qx 'Leaked cluster 12 refcount=1 reference=0' i.err
	grep -q '^1 leaked clusters were found on the image.$' i.out
	check_fix leaks 0 d.qcow2
	check_fix all 0 d.qcow2
}

@test "img-check: a refcount bumped on a data cluster leaks and breaks OFLAG_COPIED" {
	mkbase
	cp base.qcow2 d.qcow2
	poke_be d.qcow2 $((RB + 2 * 5)) 2 2
	check_ro 2 d.qcow2
	grep -qx 'Leaked cluster 5 refcount=2 reference=1' i.err
	grep -q '^ERROR OFLAG_COPIED data cluster: l2_entry=8000000000050000 refcount=2$' i.err
	check_fix leaks 0 d.qcow2
	check_fix all 0 d.qcow2
}

@test "img-check: a refcount too low needs a rebuild (-r all), refused by -r leaks" {
	mkbase
	cp base.qcow2 d.qcow2
	poke_be d.qcow2 $((RB + 2 * 6)) 2 0
	check_ro 2 d.qcow2
	grep -qx 'ERROR cluster 6 refcount=0 reference=1' i.err
	check_fix leaks 2 d.qcow2
	[ "$STATUS" = 1 ]
	grep -qx 'ERROR need to rebuild refcount structures' i.err
	check_fix all 0 d.qcow2
	grep -qx 'Rebuilding refcount structure' i.err
	# the rebuilt image reads the same as before the damage
	qimg compare base.qcow2 i/x.qcow2
}

@test "img-check: an L2 entry pointing past the end of the file" {
	mkbase
	cp base.qcow2 d.qcow2
	poke_be d.qcow2 $((L2 + 8)) 8 $(((1 << 63) | 0x10000000))
	check_ro 2 d.qcow2
	grep -q '^ERROR: counting reference for region exceeding the end of the file' i.err
	check_fix leaks 2 d.qcow2
	check_fix all 2 d.qcow2
}

@test "img-check: an unaligned L2 table offset in the L1 table" {
	mkbase
	cp base.qcow2 d.qcow2
	poke_be d.qcow2 $L1 8 $(((1 << 63) | L2 + 512))
	check_ro 2 d.qcow2
	grep -qx 'ERROR l2_offset=40200: Table is not cluster aligned; L1 entry corrupted' i.err
	check_same d.qcow2 -r leaks
	check_same d.qcow2 -r all
}

@test "img-check: an L2 table overlapping the refcount block" {
	mkbase
	cp base.qcow2 d.qcow2
	poke_be d.qcow2 $L1 8 $(((1 << 63) | RB))	# L1 names the refblock as L2
	check_ro 2 d.qcow2
	check_fix leaks 2 d.qcow2
	check_fix all 2 d.qcow2
	cp base.qcow2 e.qcow2
	poke_be e.qcow2 $RT 8 $L2			# the reftable names the L2 table
	check_ro 2 e.qcow2
	grep -qx 'ERROR refcount block 0 refcount=2' i.err
	check_fix leaks 2 e.qcow2
	check_fix all 0 e.qcow2
	qimg compare base.qcow2 i/x.qcow2
}

@test "img-check: OFLAG_COPIED cleared on an L2 entry and an L1 entry" {
	mkbase
	cp base.qcow2 d.qcow2
	poke_be d.qcow2 $L2 8 $((0x50000))
	poke_be d.qcow2 $L1 8 $L2
	check_ro 2 d.qcow2
	grep -qx 'ERROR OFLAG_COPIED L2 cluster: l1_index=0 l1_entry=40000 refcount=1' i.err
	grep -qx 'ERROR OFLAG_COPIED data cluster: l2_entry=50000 refcount=1' i.err
	check_fix leaks 0 d.qcow2
	check_fix all 0 d.qcow2
}

@test "img-check: a compressed cluster descriptor past the end of the file" {
	local e
	qimg create -q -f qcow2 c.qcow2 64M
	qio -c 'write -c -P 7 0 64k' -c 'write -c -P 8 64k 64k' c.qcow2 >/dev/null
	e=$(be64_at c.qcow2 $((L2 + 8)))
	poke_be c.qcow2 $((L2 + 8)) 8 $((e | 0x1000000))
	check_ro 2 c.qcow2
	grep -q '^ERROR: counting reference for region exceeding the end of the file' i.err
	check_same c.qcow2 -r leaks
	check_same c.qcow2 -r all
}

@test "img-check: a truncated file" {
	mkbase
	cp base.qcow2 d.qcow2
	truncate -s 600000 d.qcow2
	check_ro 2 d.qcow2
	check_fix leaks 2 d.qcow2
	check_fix all 2 d.qcow2
}

@test "img-check: damaged snapshot table entries" {
	local sn
	mkbase
	qimg snapshot -c s1 base.qcow2
	qio -c 'write -P 5 0 64k' base.qcow2 >/dev/null
	sn=$(be64_at base.qcow2 64)
	cp base.qcow2 a.qcow2		# snapshot L1 table unaligned
	poke_be a.qcow2 "$sn" 8 $(($(be64_at base.qcow2 "$sn") + 512))
	check_ro 2 a.qcow2
	grep -q '^ERROR snapshot 1 (s1) l1_offset=0x[0-9a-f]*: L1 table is not cluster aligned' i.err
	check_fix leaks 2 a.qcow2
	check_fix all 2 a.qcow2
	cp base.qcow2 b.qcow2		# snapshot L1 table too large
	poke_be b.qcow2 $((sn + 8)) 4 $((0x7fffffff))
	check_ro 2 b.qcow2
	check_fix leaks 2 b.qcow2
	check_same b.qcow2 -r all
	[ "$STATUS" = 1 ]
	cp base.qcow2 c.qcow2		# no extra data: incomplete in a v3 image
	poke_be c.qcow2 $((sn + 36)) 4 0
	check_ro 2 c.qcow2
	grep -qx 'ERROR snapshot table entry 0 is incomplete' i.err
	check_fix all 0 c.qcow2
	[ "$(qimg snapshot -l q/x.qcow2)" = "$(qimg snapshot -l i/x.qcow2)" ]
}

@test "img-check: a snapshot table too big to read: qemu's lines, File too large" {
	local sn
	mkbase
	qimg snapshot -c s1 base.qcow2
	sn=$(be64_at base.qcow2 64)
	cp base.qcow2 d.qcow2		# too much extra data
	poke_be d.qcow2 $((sn + 36)) 4 65536
	check_ro 1 d.qcow2
	grep -qx 'You can force-remove this extra metadata with qemu-img check -r all' i.err
	grep -qx 'img: Check failed: File too large' i.err
	check_fix all 0 d.qcow2
	cp base.qcow2 e.qcow2		# more than 65536 snapshots: open refuses, check reads
	poke_be e.qcow2 60 4 65537
	run -1 img info e.qcow2
	[ "$output" = "img: Could not open 'e.qcow2': Snapshot table too large" ]
	check_ro 1 e.qcow2
	grep -qx 'img: ERROR snapshot table too large' i.err
	grep -qx 'You can force-remove all 1 overhanging snapshots with qemu-img check -r all' i.err
	check_same e.qcow2 -r all
	grep -qx 'Discarding 1 overhanging snapshots' i.err
}

@test "img-check: -r with unknown autoclear bits drops the snapshot table, as qemu" {
	mkbase
	qimg snapshot -c s1 base.qcow2
	poke_be base.qcow2 88 8 $((1 << 40))
	check_ro 0 base.qcow2
	check_fix leaks 0 base.qcow2
	grep -qx 'Repairing cluster 12 refcount=1 reference=0' i.err
	[ "$(be64_at i/x.qcow2 88)" = 0 ] && [ "$(be64_at i/x.qcow2 64)" = 0 ]
}

@test "img-check: refcount table damage: reserved bits, unaligned, past the end" {
	mkbase
	cp base.qcow2 a.qcow2
	poke_be a.qcow2 $RT 8 $((RB + 1))
	check_ro 2 a.qcow2
	grep -qx 'ERROR refcount table entry 0 has reserved bits set' i.err
	check_fix all 2 a.qcow2
	cp base.qcow2 b.qcow2
	poke_be b.qcow2 $RT 8 $((RB + 512))
	check_ro 1 b.qcow2
	check_same b.qcow2 -r all
	cp base.qcow2 c.qcow2
	poke_be c.qcow2 $((RT + 8)) 8 $((1 << 44))
	check_ro 2 c.qcow2
	check_fix all 0 c.qcow2
}

@test "img-check: reserved bits in L1 and L2 entries" {
	mkbase
	cp base.qcow2 a.qcow2
	poke_be a.qcow2 $L1 8 $(((1 << 63) | (1 << 56) | L2))
	check_ro 2 a.qcow2
	cp base.qcow2 b.qcow2
	poke_be b.qcow2 $L2 8 $(((1 << 63) | 0x50002))
	check_ro 2 b.qcow2
	dd if=/dev/urandom of=b.qcow2 bs=64k seek=4 count=1 conv=notrunc status=none
	check_same b.qcow2
	check_same b.qcow2 -r all
}

@test "img-check: an unaligned preallocated zero cluster is zeroed by -r all" {
	local l2
	qimg create -q -f qcow2 z.qcow2 64M
	qio -c 'write -P 1 0 256k' z.qcow2 >/dev/null
	poke_be z.qcow2 $((L2 + 8 * 16)) 8 $(((1 << 63) | 0x90201))
	check_ro 2 z.qcow2
	grep -qx 'ERROR offset=90200: Preallocated cluster is not properly aligned; L2 entry corrupted.' i.err
	check_same z.qcow2 -r leaks
	check_fix all 0 z.qcow2
	grep -qx 'Repairing offset=90200: Preallocated cluster is not properly aligned; L2 entry corrupted.' i.err
	# the same with extended L2 entries (a 16-byte entry, all subclusters zero)
	qimg create -q -f qcow2 -o extended_l2=on,cluster_size=128k x.qcow2 64M
	qio -c 'write -P 1 0 4k' x.qcow2 >/dev/null
	l2=$(($(be64_at x.qcow2 "$(be64_at x.qcow2 40)") & 0xfffffffffe00))
	poke_be x.qcow2 $((l2 + 16)) 8 $(((1 << 63) | 0xc0200))
	poke_be x.qcow2 $((l2 + 24)) 8 $((0xffffffff << 32))
	check_ro 2 x.qcow2
	check_fix all 0 x.qcow2
}

@test "img-check: a reference past the refcount width overflows (refcount_bits=1)" {
	qimg create -q -f qcow2 -o refcount_bits=1 r.qcow2 64M
	qio -c 'write -P 1 0 256k' r.qcow2 >/dev/null
	poke_be r.qcow2 $((L2 + 64)) 8 "$(be64_at r.qcow2 $L2)"
	check_ro 2 r.qcow2
	grep -qx 'ERROR: overflow cluster offset=0x50000' i.err
	check_fix leaks 2 r.qcow2
	check_fix all 2 r.qcow2
}

@test "img-check: a dirty lazy-refcounts image is repaired and marked clean" {
	qimg create -q -f qcow2 -o lazy_refcounts=on d.qcow2 64M
	qio -c 'write -P 1 0 256k' -c abort d.qcow2 >/dev/null 2>&1 || true
	qimg info d.qcow2 | grep -q 'corrupt: false'
	check_ro 2 d.qcow2
	check_same d.qcow2 -r leaks
	[ "$STATUS" = 1 ]
	check_fix all 0 d.qcow2
	qio -c 'read -P 1 0 256k' i/x.qcow2 >/dev/null
}

@test "img-check: raw images do not support checks (63)" {
	truncate -s 1M r.raw
	for args in "-f raw" "" "-r all -f raw" "--output=json -f raw"; do
		check_same r.raw $args
		[ "$STATUS" = 63 ]
	done
}

@test "img-check: -q prints no summary, keeps the status" {
	mkbase
	cp base.qcow2 d.qcow2
	poke_be d.qcow2 $((RB + 2 * 5)) 2 2
	check_same d.qcow2 -q
	[ "$STATUS" = 2 ] && [ ! -s i.out ]
	check_same d.qcow2 -q -r all
	[ "$STATUS" = 0 ] && [ ! -s i.out ]
}

@test "img-check: option errors and unopenable files are qemu-img's" {
	need_qemu
	mkbase
	head -c 100000 /dev/urandom > g.bin
	cp base.qcow2 t.qcow2
	truncate -s 100 t.qcow2
	for args in "" "-r foo base.qcow2" "-x base.qcow2" "-f" "--output=xml base.qcow2" \
	    "-T bogus base.qcow2" "nonexistent.qcow2" "a b" "-f qcow2 g.bin" \
	    "-f qcow2 t.qcow2" "--image-opts -f qcow2 base.qcow2" \
	    "--image-opts driver=qcow2,file.filename=base.qcow2" "-U -T none base.qcow2"; do
		wstat=0 gstat=0
		want=$(command qemu-img check $args 2>&1) || wstat=$?
		got=$(img check $args 2>&1) || gstat=$?
		want=${want//qemu-img:/img:}
		want=${want//"qemu-img --help"/"img --help"}
		[ "$want" = "$got" ] || { echo "args: $args"; diff <(echo "$want") <(echo "$got"); false; }
		[ "$wstat" = "$gstat" ]
	done
	run -1 --separate-stderr img-check -f qcow2 g.bin
	[ -z "$output" ] && [ "${#stderr_lines[@]}" -eq 1 ]
	[[ $stderr == "img-check: Could not open 'g.bin': "* ]]
}

@test "img-check: --help, --long-options, --short-options" {
	run -0 --separate-stderr img-check --help
	[[ ${lines[0]} == "usage: img-check "* ]] && [[ $output == *"See img-check(1)."* ]]
	[ -z "$stderr" ]
	run -0 img-check --long-options
	[[ $output == *--repair* ]] && [[ $output == *--output* ]]
	run -0 img-check --short-options
	[[ $output == *-r* ]]
	run -0 img help check
	[[ $output == *"See img-check(1)."* ]]
}

@test "img-check: hostile sizes in bounded time and memory" {
	mkbase
	cp base.qcow2 h.qcow2
	truncate -s 1T h.qcow2				# sparse: skipped a block at a time
	run -0 timeout 20 img check h.qcow2
	check_same h.qcow2
	qimg create -q -f qcow2 -o cluster_size=512 s.qcow2 1M
	truncate -s 2T s.qcow2				# more clusters than qemu allows
	check_same s.qcow2
	[ "$STATUS" = 1 ]
	qimg create -q -f qcow2 -o cluster_size=512,refcount_bits=64 w.qcow2 1M
	truncate -s 500G w.qcow2			# 8 GiB of refcounts: refused
	run -1 --separate-stderr timeout 20 img check w.qcow2
	[ -z "$output" ]
	[[ ${stderr_lines[0]} == "ERROR refcounts of 1048576000 clusters exceed the 1024 MiB"* ]]
	[ "${stderr_lines[1]}" = "img: Check failed: File too large" ]
}

@test "img-check: one L2 table named by every L1 entry stays fast" {
	local i all= esc
	qimg create -q -f qcow2 -o cluster_size=4k m.qcow2 1G
	qio -c 'write -P 1 0 4k' m.qcow2 >/dev/null
	l1=$(be64_at m.qcow2 40)
	e=$(be64_at m.qcow2 "$l1")
	esc=$(printf '%016x' "$e" | sed 's/../\\x&/g')
	for i in $(seq 1 511); do
		all+=$esc
	done
	printf "$all" | dd of=m.qcow2 bs=1 seek=$((l1 + 8)) conv=notrunc status=none
	[ "$(be64_at m.qcow2 $((l1 + 8 * 511)))" = "$e" ]
	run -2 timeout 20 img check m.qcow2
	check_same m.qcow2
}

# t.qcow2 that leaks clusters: a snapshot's deletion could not free them
leaky() {
	qemu-img create -q -f qcow2 t.qcow2 8M &&
	    qemu-io -c 'write -P 3 0 1M' t.qcow2 &&
	    qemu-img snapshot -c s1 t.qcow2 &&
	    qemu-io -c 'write -P 4 0 512k' t.qcow2 &&
	    { qemu-img snapshot -d s1 "json:{'driver':'qcow2','file':{'driver':'blkdebug','inject-error':[{'event':'cluster_free','errno':28}],'image':{'driver':'file','filename':'t.qcow2'}}}" || true; }
}

@test "img-check: -r all under failing writes and flushes says and exits as qemu-img" {
	# the report, then what closing the repaired image says (pwritev_done,
	# and refblock_alloc, refblock_load, refblock_update_part with once
	# off differ: our repair's writes are not qemu's)
	faults_as_qemu leaky write_aio pwritev flush_to_os flush_to_disk \
	    l2_update refblock_update_part:true refblock_alloc:true \
	    cluster_free l2_load -- check -r all @J
}
