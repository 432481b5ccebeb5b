#!/usr/bin/env bats
# qemu's quorum node below a format: writes reach every child, reads vote.
load helpers
bats_require_minimum_version 1.5.0

# kids PREFIX N: the children list of files PREFIX0 .. PREFIX(N-1)
kids() {
	local i s="'children':["
	for ((i = 0; i < $2; i++)); do
		s+="{'driver':'file','filename':'$1$i'}"
		[ $i -lt $(($2 - 1)) ] && s+=","
	done
	echo "$s]"
}

# qjson FMT PREFIX N THRESHOLD [EXTRA]: a json: name of FMT on a quorum
qjson() {
	echo "json:{'driver':'$1','file':{'driver':'quorum','vote-threshold':$4,${5:+$5,}$(kids "$2" "$3")}}"
}

# children_as PREFIX-A PREFIX-B N: child i of A reads as child i of B, and
# each child checks clean
children_as() {
	local i
	for ((i = 0; i < $3; i++)); do
		qimg compare -f qcow2 -F qcow2 "$1$i" "$2$i" >/dev/null ||
		    { echo "child $i differs"; return 1; }
		qimg check -f qcow2 "$1$i" >/dev/null ||
		    { echo "child $1$i: check fails"; return 1; }
	done
}

teardown() {
	if [ -n "${SMALL:-}" ]; then umount "$SMALL" 2>/dev/null || true; fi
}

@test "quorum: img-write through 2 and 3 children writes each as qemu-io does" {
	local n
	for n in 2 3; do
		qimg create -q -f qcow2 q0 4M
		for f in q1 q2 i0 i1 i2; do cp q0 $f; done
		qio -c 'write -P 0 0 64k' -c 'write -P 7 64k 1M' -c 'write -z 2M 512k' \
		    "$(qjson qcow2 q $n 1)" >/dev/null
		printf '{"start": 0, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true},\n' >m
		printf '{"start": 65536, "length": 1048576, "depth": 0, "present": true, "zero": false, "data": true},\n' >>m
		printf '{"start": 2097152, "length": 524288, "depth": 0, "present": true, "zero": true, "data": false}\n' >>m
		img-write --map=m "$(qjson qcow2 i $n 1)" \
		    < <(head -c 64k /dev/zero; tr '\0' '\7' </dev/zero | head -c 1M)
		children_as q i $n
		qimg compare -f qcow2 -F qcow2 i0 "i$((n - 1))"
	done
}

@test "quorum: img convert -n into 2 and 3 children matches qemu-img's" {
	local n fmt
	qimg create -q -f qcow2 src.qcow2 8M
	qio -c 'write -P 3 0 1M' -c 'write -z 1M 1M' -c 'write -P 4 5M 64k' src.qcow2 >/dev/null
	for n in 2 3; do
		qimg create -q -f qcow2 q0 8M
		qio -c 'write -P 9 0 8M' q0 >/dev/null
		for f in q1 q2 i0 i1 i2; do cp q0 $f; done
		qimg convert -n -O qcow2 src.qcow2 "$(qjson qcow2 q $n $n)"
		img convert -n -O qcow2 src.qcow2 "$(qjson qcow2 i $n $n)"
		children_as q i $n
		qimg compare src.qcow2 "i$((n - 1))"
	done
	# raw on a quorum: every child is the raw disk
	for fmt in q i; do truncate -s 8M ${fmt}r0 ${fmt}r1; done
	qimg convert -n -O raw src.qcow2 "$(qjson raw qr 2 2)"
	img convert -n -O raw src.qcow2 "$(qjson raw ir 2 2)"
	cmp qr0 ir0
	cmp qr1 ir1
	cmp ir0 ir1
}

@test "quorum: one corrupted child of three reads as the majority, as qemu-io" {
	qimg create -q -f qcow2 c0 4M
	qio -c 'write -P 5 0 1M' c0 >/dev/null
	cp c0 c1
	cp c0 c2
	qio -c 'write -P 9 64k 64k' c0 >/dev/null	# c0's data, not its metadata
	local q
	q=$(qjson qcow2 c 3 2)
	qio -c 'read -P 5 0 1M' "$q" >/dev/null
	img cat "$q" >out.raw
	qimg convert -O raw c1 want.raw
	cmp out.raw want.raw
	same compare "$q" c1
	[ "$(cat i.rc)" = 0 ]
	same convert -O raw "$q" conv.raw
	cmp conv.raw want.raw
	# the corrupted child alone differs, and stays so without rewrite-corrupted
	run -1 qimg compare c1 c0
}

@test "quorum: 2 of 2 differing children fail to read as qemu-img's" {
	qimg create -q -f qcow2 c0 4M
	qio -c 'write -P 5 0 1M' c0 >/dev/null
	cp c0 c1
	qio -c 'write -P 9 64k 64k' c1 >/dev/null
	local q
	q=$(qjson qcow2 c 2 2)
	run -1 qio -c 'read -P 5 0 1M' "$q"
	same convert -O raw "$q" out.raw
	[ "$(cat i.rc)" = 1 ]
	grep -q 'error while reading at byte 0: Input/output error' i.err
	same compare "$q" c0
	[ "$(cat i.rc)" = 4 ]
	same compare c0 "$q"
	run -1 --separate-stderr img-cat "$q"
	[[ $stderr == *"Input/output error" ]]
	# where they agree, they read
	img-cat --length=64k --image-opts "driver=qcow2,file.driver=quorum,file.vote-threshold=2,file.children.0.driver=file,file.children.0.filename=c0,file.children.1.driver=file,file.children.1.filename=c1" >a.raw
	cmp a.raw <(head -c 64k /dev/zero | tr '\0' '\5')
}

@test "quorum: a tie reads the last child's version, fifo the first child" {
	qimg create -q -f raw r0 64k
	cp r0 r1
	cp r0 r2
	qio -f raw -c 'write -P 1 0 4k' r0 >/dev/null
	qio -f raw -c 'write -P 2 0 4k' r1 >/dev/null
	qio -f raw -c 'write -P 3 0 4k' r2 >/dev/null
	local q
	for q in "$(qjson raw r 2 1)" "$(qjson raw r 3 1)" \
	    "$(qjson raw r 3 1 "'read-pattern':'fifo'")"; do
		qimg convert -O raw "$q" want.raw
		img convert -O raw "$q" got.raw
		cmp want.raw got.raw
	done
	cmp <(head -c 4k got.raw) <(head -c 4k /dev/zero | tr '\0' '\1')
	run -1 qimg compare -f raw r0 r1
	# fifo reads r0 alone: no vote, no failure even at threshold 3
	q=$(qjson raw r 3 3 "'read-pattern':'fifo'")
	same compare "$q" r0
	[ "$(cat i.rc)" = 0 ]
	same compare "$(qjson raw r 3 3)" r0
	[ "$(cat i.rc)" = 4 ]
}

@test "quorum: rewrite-corrupted=on repairs the losers on a read-write open, as qemu" {
	local w
	for w in q i; do
		qimg create -q -f qcow2 ${w}0 4M
		qio -c 'write -P 5 0 1M' ${w}0 >/dev/null
		cp ${w}0 ${w}1
		cp ${w}0 ${w}2
		# L1[0] of the third child points nowhere: its metadata is corrupt
		poke ${w}2 196608 '\x80\x00\x00\x00\x00\x70\x00\x00'
		run -2 qimg check ${w}2
	done
	# a read-write open reads L1 through the vote, then writes the winner back
	qio -c 'read -P 5 0 64k' "$(qjson qcow2 q 3 2 "'rewrite-corrupted':true")" >/dev/null
	img-write "$(qjson qcow2 i 3 2 "'rewrite-corrupted':true")" </dev/null
	cmp q0 q2
	cmp i0 i2
	qimg check i2
	# read-only: qemu's quorum cannot rewrite there and says so
	same info "$(qjson qcow2 i 3 2 "'rewrite-corrupted':true")"
	[ "$(cat i.rc)" = 1 ]
	grep -q "': Block node is read-only" i.err
	# without it the loser stays as it was
	poke i2 196608 '\x80\x00\x00\x00\x00\x70\x00\x00'
	img-write "$(qjson qcow2 i 3 2)" </dev/null
	run -1 cmp i0 i2
}

@test "quorum: options are checked as qemu's quorum_open checks them" {
	truncate -s 1M r0 r1
	local k x
	k=$(kids r 2)
	for x in "'vote-threshold':2,'read-pattern':'foo'" \
	    "'vote-threshold':2,'read-pattern':'fifo'" \
	    "'vote-threshold':2,'read-pattern':'quorum'" \
	    "'vote-threshold':2,'blkverify':true" "'vote-threshold':2,'blkverify':false" \
	    "'vote-threshold':1,'blkverify':'on'" \
	    "'vote-threshold':2,'blkverify':true,'rewrite-corrupted':true" \
	    "'vote-threshold':2,'rewrite-corrupted':true,'read-pattern':'fifo'" \
	    "'vote-threshold':2,'foo':1" "'vote-threshold':'x'" "'vote-threshold':-1" \
	    "'vote-threshold':'0x2'" "'vote-threshold':3" "'vote-threshold':2,'blkverify':'x'" \
	    "'vote-threshold':2,'read-pattern':'fifo','blkverify':'x'" \
	    "'vote-threshold':2,'node-name':'n1'"; do
		same info "json:{'driver':'raw','file':{'driver':'quorum',$x,$k}}" ||
		    { echo "for $x"; return 1; }
	done
	same info --image-opts "driver=raw,file.driver=quorum,file.vote-threshold=2,file.children.0.driver=file,file.children.0.filename=r0,file.children.1.driver=file,file.children.1.filename=r1,file.read-pattern=fifo,file.rewrite-corrupted=on"
	same info --output=json --image-opts "driver=raw,file.driver=quorum,file.vote-threshold=2,file.children.0.driver=file,file.children.0.filename=r0,file.children.1.driver=file,file.children.1.filename=r1,file.blkverify=on"
	same info "json:{'driver':'raw','file':{'driver':'quorum','vote-threshold':1,'children':[]}}"
}

@test "quorum: children of other lengths, or one file twice for writing, fail to open as qemu's" {
	truncate -s 1M r0
	truncate -s 2M r1
	same info "$(qjson raw r 2 1)"
	[ "$(cat i.rc)" = 1 ]
	grep -q "Could not refresh total sector count: Input/output error" i.err
	qimg create -q -f qcow2 s.qcow2 1M
	qimg create -q -f qcow2 c0 1M
	cp c0 c1
	local q="json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':1,'children':[{'driver':'file','filename':'c0'},{'driver':'file','filename':'c1'},{'driver':'file','filename':'c1'}]}}"
	same convert -n -O qcow2 s.qcow2 "$q"
	[ "$(cat i.rc)" = 1 ]
	grep -qF "Failed to get \"write\" lock" i.err
	grep -qF "Is another process using the image [c1]?" i.err
	same info "$q"	# reading it twice is fine
	[ "$(cat i.rc)" = 0 ]
}

@test "quorum: resize as qemu-img's: the node cannot truncate" {
	local fmt a
	for fmt in raw qcow2; do
		for a in "1G" "--shrink 1M" "--preallocation=full 3M" \
		    "--preallocation=falloc 3M" "--preallocation=metadata 3M"; do
			qimg create -q -f $fmt c0 2M
			cp c0 c1
			same resize "$(qjson $fmt c 2 1)" $a || { echo "$fmt $a"; return 1; }
			cmp c0 c1
		done
	done
	qimg create -q -f qcow2 c0 2M
	cp c0 c1
	img resize "$(qjson qcow2 c 2 2)" 1G
	qimg compare c0 c1
	qimg check c1
	[ "$(qimg info --output=json c1 | jq '."virtual-size"')" = 1073741824 ]
}

@test "quorum: a child that cannot take a write counts against the threshold" {
	[ "$(id -u)" = 0 ] || skip "needs root for a small tmpfs"
	mkdir small
	mount -t tmpfs -o size=256k tmpfs small 2>/dev/null || skip "cannot mount tmpfs"
	SMALL=$PWD/small
	truncate -s 1M r0 r1 small/r2
	ln -s small/r2 r2
	head -c 512k /dev/zero | tr '\0' '\5' >p.raw
	# two of three take it: enough for threshold 2
	same convert -n -O raw p.raw "$(qjson raw r 3 2)"
	[ "$(cat i.rc)" = 0 ]
	cmp <(head -c 512k r0) p.raw
	cmp r0 r1
	# not for threshold 3: the error is the full child's
	same convert -n -O raw p.raw "$(qjson raw r 3 3)"
	[ "$(cat i.rc)" = 1 ]
	grep -q "error while writing at byte 0: No space left on device" i.err
	run -1 --separate-stderr img-write -f raw "$(qjson raw r 3 3)" <p.raw
	[[ $stderr == *"No space left on device" ]]
	umount small
	SMALL=
}

@test "quorum: raw children, map and info as qemu-img's" {
	qimg create -q -f qcow2 c0 4M
	qio -c 'write -P 1 1M 64k' -c 'write -z 2M 64k' c0 >/dev/null
	cp c0 c1
	local q c x
	q=$(qjson qcow2 c 2 2)
	same map "$q"
	same map --output=json "$q"
	same_view "$q"
	qimg create -q -f raw r0 4M
	qio -f raw -c 'write -P 1 1M 64k' r0 >/dev/null
	cp r0 r1
	q=$(qjson raw r 2 2)
	same map "$q"
	[ "$(cat i.rc)" = 1 ]
	same map --output=json "$q"
	same info --output=json "$q"
	same_content "$q"
	# a child may be a raw node over its file, as in qemu-iotests 081
	for c in "{'driver':'raw','file':{'driver':'file','filename':'r0'}},{'driver':'raw','file':{'filename':'r1'}}" \
	    "{'filename':'r0'},{'driver':'file','filename':'r1'}" \
	    "{'driver':'raw','file':{'filename':'r0'}},{'driver':'raw','file':'r1'}" \
	    "{'driver':'raw'},{'driver':'file','filename':'r1'}" \
	    "{'driver':'raw','file':{'driver':'file'}},{'driver':'file','filename':'r1'}" \
	    "{'driver':'file'},{'driver':'file','filename':'r1'}" \
	    "{'driver':'raw','file':{'driver':'file','filename':'nonexistent'}},{'driver':'file','filename':'r1'}"; do
		x="json:{'driver':'raw','file':{'driver':'quorum','vote-threshold':2,'children':[$c]}}"
		same info "$x" || { echo "for $c"; return 1; }
		same info --output=json "$x" || { echo "for $c"; return 1; }
	done
	x="driver=raw,file.driver=quorum,file.vote-threshold=2,file.children.0.driver=raw,file.children.0.file.filename=r0,file.children.1.driver=raw,file.children.1.file.filename=r1"
	same info --image-opts "$x"
	qimg create -q -f raw d.raw 4M
	qio -f raw -c 'write -P 6 0 2M' d.raw >/dev/null
	img convert -n -f raw --target-image-opts d.raw "$x"
	cmp r0 d.raw
	cmp r1 d.raw
}

@test "quorum: formats write through it as qemu's do, qcow and vhdx fail to grow their file" {
	local fmt
	qimg create -q -f qcow2 src.qcow2 4M
	qio -c 'write -P 3 0 1M' -c 'write -P 4 3M 64k' src.qcow2 >/dev/null
	for fmt in qcow2 qcow qed vdi vpc vhdx parallels vmdk raw; do
		qimg create -q -f $fmt c0 4M
		cp c0 c1
		same convert -n -O $fmt src.qcow2 "$(qjson $fmt c 2 2)" ||
		    { echo "for $fmt"; return 1; }
		cmp c0 c1
		case $fmt in
		qcow|vhdx)
			[ "$(cat i.rc)" = 1 ]
			grep -q "error while writing at byte 0: Operation not supported" i.err ;;
		*)
			[ "$(cat i.rc)" = 0 ]
			qimg compare -F $fmt src.qcow2 c1 ;;
		esac
	done
}

@test "quorum: a hole in one child is zero only where every child's is, as qemu's status" {
	qimg create -q -f raw r1 4M
	qio -f raw -c 'write -P 7 1M 64k' r1 >/dev/null
	cp r1 r2
	qimg create -q -f raw r0 4M
	local q
	q=$(qjson raw r 3 2)
	same map --output=json "$q"
	same_content "$q"
	cmp ours.raw r1
	same compare "$q" r1
	[ "$(cat i.rc)" = 0 ]
	qimg create -q -f qcow2 -o preallocation=metadata c0 4M
	cp c0 c1
	qio -c 'write -P 7 1M 64k' c1 >/dev/null
	cp c1 c2
	q=$(qjson qcow2 c 3 2)
	same map "$q"
	same map --output=json "$q"
	same_content "$q"
	same compare "$q" c1
	[ "$(cat i.rc)" = 0 ]
}

@test "quorum: check -r, snapshot and amend change every child as qemu-img's" {
	local w f
	for w in q i; do
		qimg create -q -f qcow2 ${w}0 4M
		qio -c 'write -P 1 0 128k' ${w}0 >/dev/null
		poke ${w}0 $((0x20000 + 2 * 5)) '\x00\x02'	# a leaked reference
		cp ${w}0 ${w}1
	done
	run -2 qimg check "$(qjson qcow2 q 2 2)"
	run -2 img check "$(qjson qcow2 i 2 2)"
	qimg check -r all "$(qjson qcow2 q 2 2)" >q.out
	img check -r all "$(qjson qcow2 i 2 2)" >i.out
	diff <(sed 's/q\([01]\)/X\1/g' q.out) <(sed 's/i\([01]\)/X\1/g' i.out)
	qimg snapshot -c s1 "$(qjson qcow2 q 2 2)"
	img snapshot -c s1 "$(qjson qcow2 i 2 2)"
	qimg amend -o lazy_refcounts=on "$(qjson qcow2 q 2 2)"
	img amend -o lazy_refcounts=on "$(qjson qcow2 i 2 2)"
	cmp i0 i1
	for f in 0 1; do
		qimg check i$f
		qimg compare q$f i$f
		[ "$(qimg snapshot -l i$f | sed -n 3p | awk '{print $2}')" = s1 ]
		qimg info i$f | grep -q 'lazy refcounts: true'
	done
}

# qtop THRESHOLD CHILD... [-- EXTRA]: a json: name of a quorum on top
# whose children are FMT:FILE (FMT "file": the file itself)
qtop() {
	local t=$1 c s="" x=""
	shift
	for c in "$@"; do
		if [ "$c" = -- ]; then
			x=1
			continue
		fi
		if [ -n "$x" ]; then
			x=",$c"
			continue
		fi
		[ -n "$s" ] && s+=","
		if [ "${c%%:*}" = file ]; then
			s+="{'driver':'file','filename':'${c#*:}'}"
		else
			s+="{'driver':'${c%%:*}','file':{'driver':'file','filename':'${c#*:}'}}"
		fi
	done
	[ "$x" = 1 ] && x=
	echo "json:{'driver':'quorum','vote-threshold':$t$x,'children':[$s]}"
}

# three children holding the same disk: two qcow2 (one with a zeroed
# cluster) and a raw file
three() {
	local f
	for f in a b; do
		qimg create -q -f qcow2 $f.qcow2 4M
		qio -c 'write -P 1 0 64k' -c 'write -P 2 1M 128k' -c 'write -z 2M 64k' \
		    $f.qcow2 >/dev/null
	done
	qimg create -q -f raw c.raw 4M
	qio -f raw -c 'write -P 1 0 64k' -c 'write -P 2 1M 128k' c.raw >/dev/null
}

@test "quorum on top: info, map, measure and convert of qcow2 and raw children as qemu-img's" {
	three
	local q o
	q=$(qtop 2 qcow2:a.qcow2 qcow2:b.qcow2 raw:c.raw)
	same_view "$q"
	same map "$q"
	[ "$(cat i.rc)" = 1 ]	# data without an offset, as qemu-img's
	grep -q 'File contains external, encrypted or compressed clusters' i.err
	same info --output=json "$q"
	grep -q '"format": "quorum"' i.out
	same measure -O qcow2 "$q"
	same compare "$q" a.qcow2
	[ "$(cat i.rc)" = 0 ]
	same convert -O qcow2 "$q" out.qcow2
	qimg compare out.qcow2 a.qcow2
	same dd if="$q" of=dd.raw bs=64k count=20
	same bench -c 16 "$q" >/dev/null || ! grep -v seconds q.out i.out
	# --image-opts, a probed child and a plain file child
	o="driver=quorum,vote-threshold=3,read-pattern=quorum"
	o+=",children.0.driver=qcow2,children.0.file.filename=a.qcow2"
	o+=",children.1.file.filename=b.qcow2,children.2.driver=file,children.2.filename=c.raw"
	same info --image-opts "$o"
	same map --output=json --image-opts "$o"
	img convert -O raw --image-opts "$o" o1.raw
	qimg convert -O raw --image-opts "$o" o2.raw
	cmp o1.raw o2.raw
	# fifo reads the first child alone
	same info "$(qtop 1 qcow2:a.qcow2 file:c.raw -- "'read-pattern':'fifo'")"
	# a quorum child of a quorum, and a quorum as a backing file
	q="{'driver':'quorum','vote-threshold':1,'children':[{'driver':'qcow2','file':{'driver':'file','filename':'a.qcow2'}},{'driver':'file','filename':'c.raw'}]}"
	same_view "json:{'driver':'quorum','vote-threshold':2,'children':[$q,{'driver':'qcow2','file':{'driver':'file','filename':'b.qcow2'}}]}"
	qimg create -q -f qcow2 -b "$(qtop 2 qcow2:a.qcow2 qcow2:b.qcow2)" -F quorum top.qcow2
	qio -c 'write -P 5 64k 64k' top.qcow2 >/dev/null
	same_view top.qcow2
	same info --backing-chain top.qcow2
}

@test "quorum on top: a corrupted child is outvoted, 2 of 2 disagreeing fail as qemu-img" {
	three
	cp a.qcow2 e.qcow2
	qio -c 'write -P 9 1M 4k' e.qcow2 >/dev/null
	local q
	q=$(qtop 2 qcow2:a.qcow2 qcow2:e.qcow2 raw:c.raw)
	img cat "$q" >got.raw
	qimg convert -O raw a.qcow2 want.raw
	cmp got.raw want.raw
	same convert -O raw "$q" conv.raw
	cmp conv.raw want.raw
	same compare "$q" b.qcow2
	[ "$(cat i.rc)" = 0 ]
	# two of two
	q=$(qtop 2 qcow2:a.qcow2 qcow2:e.qcow2)
	same convert -O raw "$q" bad.raw
	[ "$(cat i.rc)" = 1 ]
	grep -q 'Input/output error' i.err
	same compare "$q" a.qcow2
	[ "$(cat i.rc)" = 4 ]
	same dd if="$q" of=dd.raw bs=1M skip=1 count=2
	[ "$(cat i.rc)" = 1 ]
	run -1 --separate-stderr img-cat "$q"
	[[ $stderr == *"Input/output error" ]]
	# where they agree they read; a tie at threshold 1 reads the last child
	img-cat --length=64k "$q" | cmp - <(head -c 64k /dev/zero | tr '\0' '\1')
	same compare "$(qtop 1 qcow2:a.qcow2 qcow2:e.qcow2)" e.qcow2
	[ "$(cat i.rc)" = 0 ]
	# blkverify ends the program where the two differ, as qemu's
	q=$(qtop 2 qcow2:a.qcow2 qcow2:e.qcow2 -- "'blkverify':true")
	same dd if="$q" of=dd.raw bs=4k count=257 skip=256
	[ "$(cat i.rc)" = 1 ]
	grep -qx 'quorum: offset=1048576 bytes=4096 contents mismatch at offset 1048576' i.err
	same compare "$(qtop 2 qcow2:a.qcow2 qcow2:b.qcow2 -- "'blkverify':true")" c.raw
	[ "$(cat i.rc)" = 0 ]
}

@test "quorum on top: writes land in every child as qemu-io's do" {
	local w o f
	for w in Q I; do
		qimg create -q -f qcow2 ${w}0.qcow2 4M
		qimg create -q -f raw ${w}1.raw 4M
		qimg create -q -f vmdk ${w}2.vmdk 4M
	done
	o="driver=quorum,vote-threshold=3,children.0.driver=qcow2,children.0.file.filename=Q0.qcow2"
	o+=",children.1.driver=raw,children.1.file.filename=Q1.raw"
	o+=",children.2.driver=vmdk,children.2.file.filename=Q2.vmdk"
	qio --image-opts "$o" -c 'write -P 7 0 64k' -c 'write -z 1M 512k' \
	    -c 'write -P 8 2M 4k' >/dev/null
	printf '{"start": 0, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true},\n' >m
	printf '{"start": 1048576, "length": 524288, "depth": 0, "present": true, "zero": true, "data": false},\n' >>m
	printf '{"start": 2097152, "length": 4096, "depth": 0, "present": true, "zero": false, "data": true}\n' >>m
	(head -c 64k /dev/zero | tr '\0' '\7'; head -c 4k /dev/zero | tr '\0' '\10') |
	    img-write --map=m --image-opts "${o//Q/I}"
	qimg compare -f qcow2 -F qcow2 Q0.qcow2 I0.qcow2
	cmp Q1.raw I1.raw
	qimg compare -f vmdk -F vmdk Q2.vmdk I2.vmdk
	for f in 0.qcow2 2.vmdk; do
		qimg check I$f
		diff <(qimg map --output=json Q$f) <(qimg map --output=json I$f)
	done
	# convert -n, with -O quorum and with --target-image-opts
	qimg create -q -f qcow2 src.qcow2 4M
	qio -c 'write -P 3 0 1M' -c 'write -P 4 3M 64k' src.qcow2 >/dev/null
	qimg convert -n -O quorum src.qcow2 "$(qtop 3 qcow2:Q0.qcow2 raw:Q1.raw vmdk:Q2.vmdk)"
	same convert -n -O quorum src.qcow2 "$(qtop 3 qcow2:I0.qcow2 raw:I1.raw vmdk:I2.vmdk)"
	[ "$(cat i.rc)" = 0 ]
	qimg compare Q0.qcow2 I0.qcow2
	cmp Q1.raw I1.raw
	qimg compare -f vmdk -F vmdk Q2.vmdk I2.vmdk
	qimg compare src.qcow2 I0.qcow2
	qimg create -q -f qcow2 src2.qcow2 4M
	qio -c 'write -P 5 512k 1M' src2.qcow2 >/dev/null
	qimg convert -n --target-image-opts src2.qcow2 "$o"
	img convert -n --target-image-opts src2.qcow2 "${o//Q/I}"
	qimg compare Q0.qcow2 I0.qcow2
	cmp Q1.raw I1.raw
	qimg compare -f vmdk -F vmdk Q2.vmdk I2.vmdk
	# without -O, convert -n opens the target as raw, as qemu-img does
	same convert -n src.qcow2 "$(qtop 3 qcow2:I0.qcow2 raw:I1.raw vmdk:I2.vmdk)"
	[ "$(cat i.rc)" = 1 ]
	grep -qF 'A block device must be specified for "file"' i.err
	# a child whose format is probed as raw warns, once, as qemu-img
	truncate -s 4M P.raw
	same convert -n -O quorum src.qcow2 "json:{'driver':'quorum','vote-threshold':1,'children':[{'file':{'driver':'file','filename':'P.raw'}}]}"
	[ "$(cat i.rc)" = 0 ]
	[ "$(grep -c "Image format was not specified for 'P.raw' and probing guessed raw" i.err)" = 1 ]
	qimg compare -f raw P.raw src.qcow2
}

@test "quorum on top: bad options in qemu's words, nothing written" {
	three
	qimg create -q -f qcow2 d.qcow2 8M
	qimg create -q -f raw src.raw 4M
	local A B x q s
	A="{'driver':'qcow2','file':{'driver':'file','filename':'a.qcow2'}}"
	B="{'driver':'qcow2','file':{'driver':'file','filename':'b.qcow2'}}"
	for x in "'children':[]" "'children':[$A]" "'vote-threshold':0,'children':[$A]" \
	    "'vote-threshold':-1,'children':[$A]" "'vote-threshold':'x','children':[$A]" \
	    "'vote-threshold':3,'children':[$A,$B]" \
	    "'vote-threshold':1,'read-pattern':'x','children':[$A,$B]" \
	    "'vote-threshold':1,'blkverify':true,'children':[$A,$B]" \
	    "'vote-threshold':2,'blkverify':true,'rewrite-corrupted':true,'children':[$A,$B]" \
	    "'vote-threshold':1,'foo':1,'children':[$A,$B]" \
	    "'vote-threshold':1,'children':[$A,{'driver':'qcow2','file':{'driver':'file','filename':'nope'}}]" \
	    "'vote-threshold':1,'children':[$A,{'driver':'bogus','file':{'driver':'file','filename':'c.raw'}}]" \
	    "'vote-threshold':1,'children':[$A,{'driver':'qcow2','file':{'driver':'file','filename':'c.raw'}}]" \
	    "'vote-threshold':1,'children':[$A,'node0']" \
	    "'vote-threshold':1,'children':[$A,{'driver':'qcow2','file':{'driver':'file','filename':'d.qcow2'}}]" \
	    "'vote-threshold':1,'children':[$A,$A]"; do
		q="json:{'driver':'quorum',$x}"
		same info "$q" || { echo "for $x"; return 1; }
		s=$(cat a.qcow2 b.qcow2 c.raw | md5sum)
		same convert -n -O quorum src.raw "$q" || { echo "for $x"; return 1; }
		[ "$(cat a.qcow2 b.qcow2 c.raw | md5sum)" = "$s" ]
	done
	# one file twice reads, but cannot be written twice
	same convert -n -O quorum src.raw "json:{'driver':'quorum','vote-threshold':1,'children':[$A,$A]}"
	[ "$(cat i.rc)" = 1 ]
	grep -qF 'Failed to get "write" lock' i.err
	[ "$(cat a.qcow2 b.qcow2 c.raw | md5sum)" = "$s" ]
	# rewrite-corrupted needs write: fine for convert -n, not for info
	same info "json:{'driver':'quorum','vote-threshold':1,'rewrite-corrupted':true,'children':[$A,$B]}"
	[ "$(cat i.rc)" = 1 ]
	grep -q "Block node is read-only" i.err
	same info -f quorum a.qcow2
	same info -f qcow2 "$(qtop 1 file:c.raw)"
	same info "json:{'driver':'quorum','vote-threshold':1,'children':[$A,{'file':{'driver':'file','filename':'c.raw'}}]}"
	[ "$(cat i.rc)" = 0 ]
}

@test "quorum on top: what qemu-img refuses to do with it" {
	three
	local q a
	q=$(qtop 2 qcow2:a.qcow2 qcow2:b.qcow2 raw:c.raw)
	local s
	s=$(cat a.qcow2 b.qcow2 c.raw | md5sum)
	for a in "create -f quorum x.img 1M" "create -f quorum -o help" \
	    "convert -O quorum a.qcow2 x.img" "measure -O quorum --size 1M" \
	    "dd -O quorum if=a.qcow2 of=x.img" "amend -f quorum -o help x.img"; do
		same $a || { echo "for $a"; return 1; }
		[ "$(cat i.rc)" = 1 ]
	done
	[ ! -e x.img ]
	for a in resize:2M "snapshot -c":s1 "snapshot -l": "snapshot -d":s1 \
	    "amend -o compat=0.10": check: commit: "rebase -u -b a.qcow2":; do
		same ${a%%:*} "$q" ${a#*:} || { echo "for $a"; return 1; }
	done
	[ "$(cat a.qcow2 b.qcow2 c.raw | md5sum)" = "$s" ]
	same check "$q"
	[ "$(cat i.rc)" = 63 ]
}

@test "quorum on top: a child over blkdebug whose reads fail counts against the threshold" {
	three
	local bd q t
	bd="{'driver':'qcow2','file':{'driver':'blkdebug','inject-error':[{'event':'read_aio','errno':28}],'image':{'driver':'file','filename':'a.qcow2'}}}"
	for t in 1 2; do
		q="json:{'driver':'quorum','vote-threshold':$t,'children':[$bd,{'driver':'qcow2','file':{'driver':'file','filename':'b.qcow2'}}]}"
		same info "$q"
		same info --output=json "$q"
		same map --output=json "$q"
	done
	same convert -O raw "$q" out.raw || :	# compared line by line below
	# threshold 2: the failing child's errno, in one of the lines qemu-img
	# says (its coroutines fail more requests, in any order)
	[ "$(cat i.rc)" = 1 ] && [ "$(cat q.rc)" = 1 ]
	[ "$(wc -l <i.err)" = 1 ]
	grep -qxF "$(cat i.err)" q.err
	grep -q 'error while reading at byte 0: No space left on device' i.err
	q="json:{'driver':'quorum','vote-threshold':1,'children':[$bd,{'driver':'qcow2','file':{'driver':'file','filename':'b.qcow2'}}]}"
	same convert -O raw "$q" out.raw
	[ "$(cat i.rc)" = 0 ]
	qimg convert -O raw b.qcow2 b.raw
	cmp out.raw b.raw
}
