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
