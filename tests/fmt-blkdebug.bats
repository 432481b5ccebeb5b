#!/usr/bin/env bats
# blkdebug, qemu's error injection: rules from config files, json: and
# --image-opts fail requests after events, below a format or above it; the
# errors reach the programs with qemu-img's messages and exit statuses.
load helpers
bats_require_minimum_version 1.5.0

# conf FILE LINES...: a blkdebug config file, one line per argument
conf() {
	local f=$1
	shift
	printf '%s\n' "$@" >"$f"
}

# in_both SETUP ARGS...: SETUP (a function) builds the same files in q/ and
# i/; then qemu-img ARGS in q/ and ours (as qemu-img) in i/ give the same
# stdout, stderr and status
in_both() {
	need_qemu || return 1
	local setup=$1 d f ok=0
	shift
	mkdir -p q i ours
	ln -sf "$IMG_BIN/img" "$PWD/ours/qemu-img"
	for d in q i; do
		(cd "$d" && "$setup") || { echo "$setup failed in $d"; return 1; }
	done
	(cd q && { command qemu-img "$@" >../q.out 2>../q.err && echo 0 ||
	    echo $?; } >../q.rc)
	(cd i && { ../ours/qemu-img "$@" >../i.out 2>../i.err && echo 0 ||
	    echo $?; } >../i.rc)
	for f in out err rc; do
		cmp -s q.$f i.$f || { echo "--- $f differs: $*"; diff q.$f i.$f; ok=1; }
	done
	return $ok
}

# after_both ARGS...: qemu-img ARGS on what q/ and i/ hold now, same output
after_both() {
	(cd q && { command qemu-img "$@" && echo 0 || echo $?; } >../q.out 2>&1)
	(cd i && { command qemu-img "$@" && echo 0 || echo $?; } >../i.out 2>&1)
	diff q.out i.out
}

small() {
	qemu-img create -q -f qcow2 -o cluster_size=4k t.qcow2 1M
	qemu-io -c 'write -P 7 0 64k' t.qcow2 >/dev/null
}

@test "blkdebug: config file mistakes read as qemu's" {
	small
	local c
	for c in 'event = "bogus"' 'errno = "5"' 'event = "read_aio"|errno = "x"' \
	    'event = "read_aio"|once = "maybe"' 'event = "read_aio"|foo = "1"' \
	    'event = "read_aio"|iotype = "bad"' 'event = "read_aio"|sector = "-5"'; do
		IFS='|' read -ra lines <<<"$c"
		conf e.conf '# a comment' '' '[inject-error]' "${lines[@]}"
		same info blkdebug:e.conf:t.qcow2
	done
	conf e.conf '[bogus]' 'event = "read_aio"'
	same info blkdebug:e.conf:t.qcow2
	conf e.conf 'garbage'
	same info blkdebug:e.conf:t.qcow2
	conf e.conf '[set-state]' 'event = "read_aio"' 'new_state = "2"' 'state = "x"'
	same info blkdebug:e.conf:t.qcow2
	same info blkdebug:missing.conf:t.qcow2
	same info blkdebug:t.qcow2
	same info blkdebug::missing.qcow2
}

@test "blkdebug: option mistakes read as qemu's" {
	small
	local o
	for o in file.bogus=1 file.inject-error.0.foo=1 \
	    file.inject-error.1.event=read_aio file.align=3 file.align=x \
	    file.align=4k,file.max-transfer=6k file.opt-discard=3 \
	    file.inject-error.0.event=bogus; do
		same info --image-opts \
		    "driver=qcow2,file.driver=blkdebug,file.image.filename=t.qcow2,$o"
	done
	same info --image-opts driver=qcow2,file.driver=blkdebug
}

@test "blkdebug: names in info, human and json, below and above a format" {
	small
	qemu-img create -q -f qcow2 -b t.qcow2 -F qcow2 top.qcow2
	conf c.conf '[inject-error]' 'event = "l2_update"'
	local n
	for n in blkdebug:c.conf:t.qcow2 blkdebug::top.qcow2 \
	    "blkdebug:c.conf:$PWD/top.qcow2" \
	    "json:{'driver':'qcow2','file':{'driver':'blkdebug','image':{'driver':'file','filename':'top.qcow2'}}}" \
	    "json:{'driver':'qcow2','file':{'driver':'blkdebug','config':'c.conf','image':{'driver':'file','filename':'$PWD/top.qcow2'},'set-state':[{'event':'read_aio','new_state':'42'}]}}" \
	    "json:{'driver':'blkdebug','image':{'driver':'qcow2','file':{'driver':'file','filename':'t.qcow2'}}}"; do
		same info "$n"
		same info --output=json "$n"
	done
	same info --image-opts \
	    driver=blkdebug,image.driver=qcow2,image.file.driver=file,image.file.filename=t.qcow2,align=4k
	same info --image-opts \
	    driver=qcow2,file.driver=blkdebug,file.x-image=top.qcow2
}

@test "blkdebug: compare meets read_aio errors: qemu's message, exit 4" {
	qimg create -q -f qcow2 -o cluster_size=4k a.qcow2 1G
	cp a.qcow2 b.qcow2
	qio -c 'write -P 102 512 512' a.qcow2 >/dev/null
	conf c.conf '[inject-error]' 'event = "read_aio"' 'errno = "5"' 'once ="off"'
	same compare blkdebug:c.conf:a.qcow2 b.qcow2
	grep -qx 'qemu-img: Error while reading offset 0 of blkdebug:c.conf:a.qcow2: Input/output error' i.err
	[ "$(cat i.rc)" = 4 ]
	qimg create -q -f qcow2 b.qcow2 0
	same compare blkdebug:c.conf:a.qcow2 b.qcow2
}

@test "blkdebug: reads that fail reach dd, bench and open (probing)" {
	small
	conf r.conf '[inject-error]' 'event = "read_aio"'
	conf n.conf '[inject-error]' 'event = "none"'
	same dd if=blkdebug:r.conf:t.qcow2 of=o.raw bs=4k count=2
	same bench -c 1 blkdebug:r.conf:t.qcow2
	same check blkdebug:n.conf:t.qcow2
	same map blkdebug:n.conf:t.qcow2
	[ "$(cat i.rc)" = 1 ]
}

commit_setup() {
	qemu-img create -q -f qcow2 t.qcow2.base 1M
	qemu-img create -q -f qcow2 -F qcow2 -b "json:{'driver': 'qcow2', 'file': {'driver': 'blkdebug', 'inject-error': [{'event': 'write_aio', 'errno': 28, 'once': true}], 'image': {'driver': 'file', 'filename': 't.qcow2.base'}}}" t.qcow2
	qemu-io -c 'write 0 64k' t.qcow2 >/dev/null
}

@test "blkdebug: commit into a failing backing file: Block job failed" {
	in_both commit_setup commit t.qcow2
	grep -qx 'qemu-img: Block job failed: No space left on device' i.err
	after_both check t.qcow2.base
}

empty_setup() {
	qemu-img create -q -f qcow2 t.qcow2.base 64M
	qemu-img create -q -f qcow2 -b t.qcow2.base -F qcow2 t.qcow2
	qemu-io -c 'write 0 64k' t.qcow2 >/dev/null
	printf '[inject-error]\nevent = "%s"\n' "$EVENT" >c.conf
}

@test "blkdebug: commit's emptying meets qcow2's events as qemu's does" {
	local e
	for e in l1_update empty_image_prepare reftable_update refblock_alloc; do
		rm -rf q i
		EVENT=$e in_both empty_setup commit blkdebug:c.conf:t.qcow2
		grep -qx 'qemu-img: Failed to empty blkdebug:c.conf:t.qcow2: Input/output error' i.err
		cmp q/t.qcow2 i/t.qcow2
		after_both check t.qcow2
	done
}

snap_setup() {
	qemu-img create -q -f qcow2 t.qcow2 64M
	qemu-io -c 'write 0 64k' t.qcow2 >/dev/null
	qemu-img snapshot -c foo t.qcow2
	printf '[inject-error]\nevent = "cluster_free"\nerrno = "5"\n' >c.conf
}

@test "blkdebug: snapshot -d whose cluster freeing fails leaks as qemu's" {
	in_both snap_setup snapshot -d foo blkdebug:c.conf:t.qcow2
	grep -qx 'qcow2_free_clusters failed: Input/output error' i.err
	after_both check t.qcow2
	after_both snapshot -l t.qcow2
}

@test "blkdebug: rules that never fire leave a normal run" {
	small
	conf far.conf '[inject-error]' 'event = "read_aio"' 'sector = "100000"'
	conf st.conf '[set-state]' 'event = "read_aio"' 'new_state = "2"' \
	    '[inject-error]' 'event = "read_aio"' 'state = "3"'
	local n
	for n in blkdebug:far.conf:t.qcow2 blkdebug:st.conf:t.qcow2; do
		same map "$n"
		same map --output=json "$n"
		same check "$n"
		same compare "$n" t.qcow2
		img convert -O qcow2 "$n" ours.qcow2
		img convert -O qcow2 t.qcow2 plain.qcow2
		cmp ours.qcow2 plain.qcow2
		qimg convert -O raw t.qcow2 plain.raw
		cmp <(img cat "$n") plain.raw
	done
}

@test "blkdebug: above the format, rules meet the virtual disk's requests" {
	small
	qemu-img create -q -f qcow2 -b t.qcow2 -F qcow2 top.qcow2
	qemu-io -c 'write -P 9 1M 4k' top.qcow2 >/dev/null 2>&1 || true
	local o=driver=blkdebug,image.driver=qcow2,image.file.driver=file
	same map --image-opts "$o,image.file.filename=top.qcow2,align=4k"
	same map --output=json --image-opts "$o,image.file.filename=top.qcow2"
	local j="json:{'driver':'blkdebug','image':{'driver':'qcow2','file':{'driver':'file','filename':'t.qcow2'}},'inject-error':[{'event':'none','iotype':'read','sector':8}]}"
	same compare "$j" t.qcow2
	[ "$(cat i.rc)" = 4 ]
	j="json:{'driver':'blkdebug','image':{'driver':'qcow2','file':{'driver':'file','filename':'t.qcow2'}},'inject-error':[{'event':'none','iotype':'block-status','sector':8}]}"
	same compare "$j" t.qcow2
	[ "$(cat i.rc)" = 3 ]
	same info "$j"
}

@test "quorum below a format: info names it, relative names have no folder" {
	qimg create -q -f qcow2 b.qcow2 64M
	qimg create -q -f qcow2 -b b.qcow2 -F qcow2 t.qcow2
	cp t.qcow2 t2.qcow2
	local c="'children':[{'driver':'file','filename':'t.qcow2'},{'driver':'file','filename':'t2.qcow2'}]"
	same info "json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':1,$c}}"
	same info --output=json "json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':1,$c}}" ||
	    grep -v actual-size q.out | diff - <(grep -v actual-size i.out)
	same map "json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':1,$c}}"
	same info "json:{'driver':'qcow2','file':{'driver':'quorum',$c}}"
	same info "json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':3,$c}}"
	same info "json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':1,'children':[{'driver':'file','filename':'nonexistent'}]}}"
	qimg create -q -f vmdk -o subformat=monolithicFlat f.vmdk 1M
	same info "json:{'driver':'vmdk','file':{'driver':'quorum','vote-threshold':1,'children':[{'driver':'file','filename':'f.vmdk'}]}}"
}

@test "blkdebug: check and open meet failing metadata reads as qemu's" {
	qimg create -q -f qcow2 t.qcow2 1M
	qio -c 'write -P 7 0 64k' t.qcow2 >/dev/null
	local sector
	# the L2 table, a refcount block, the refcount table, the L1 table, data
	for sector in 512 256 128 384 640; do
		conf s.conf '[inject-error]' 'event = "none"' 'iotype = "read"' \
		    "sector = \"$sector\""
		same check blkdebug:s.conf:t.qcow2
		same check --output=json blkdebug:s.conf:t.qcow2
	done
	conf s.conf '[inject-error]' 'event = "none"' 'iotype = "read"' 'sector = "512"'
	same check blkdebug:s.conf:t.qcow2
	grep -qx 'qemu-img: Check failed: Input/output error' i.err
}

@test "blkdebug: read_aio in each format that has it (vdi and vpc have none)" {
	conf r.conf '[inject-error]' 'event = "read_aio"'
	local f
	for f in raw qcow qed vmdk vdi vpc; do
		qimg create -q -f $f a.$f 1M
		qio -f $f -c 'write -P 5 0 64k' a.$f >/dev/null
		qimg create -q -f $f b.$f 1M
		same compare -f $f -F $f blkdebug:r.conf:a.$f b.$f
	done
}

@test "blkdebug: set-state moves the state, rules wait for theirs" {
	qimg create -q -f qcow2 a.qcow2 8M
	qio -c 'write -P 0 0 64k' -c 'write -P 0 4M 64k' a.qcow2 >/dev/null
	qimg create -q -f qcow2 b.qcow2 8M
	conf st.conf '[set-state]' 'event = "read_aio"' 'new_state = "2"' \
	    '[inject-error]' 'event = "read_aio"' 'state = "2"'
	conf st2.conf '[set-state]' 'event = "read_aio"' 'state = "1"' \
	    'new_state = "2"' '[set-state]' 'event = "read_aio"' 'state = "2"' \
	    'new_state = "3"' '[inject-error]' 'event = "read_aio"' \
	    'state = "3"' 'once = "on"'
	same compare blkdebug:st.conf:a.qcow2 b.qcow2
	grep -q 'offset 4194304 of' i.err
	same compare blkdebug:st2.conf:a.qcow2 b.qcow2
	[ "$(cat i.rc)" = 0 ]
	qio -c 'write -P 0 6M 64k' a.qcow2 >/dev/null
	same compare blkdebug:st2.conf:a.qcow2 b.qcow2
	[ "$(cat i.rc)" = 4 ]
}

@test "blkdebug: a blkdebug: backing name stands as it is" {
	qimg create -q -f qcow2 b.qcow2 8M
	qio -c 'write -P 3 0 64k' b.qcow2 >/dev/null
	conf c.conf '[inject-error]' 'event = "l2_update"'
	mkdir sub
	same create -f qcow2 -b blkdebug:c.conf:b.qcow2 -F qcow2 sub/top.qcow2
	rm -f sub/top.qcow2
	qimg create -q -f qcow2 -b blkdebug:c.conf:b.qcow2 -F qcow2 sub/top.qcow2
	same info sub/top.qcow2
	same info --backing-chain sub/top.qcow2
	same map --output=json sub/top.qcow2
}

@test "blkdebug: l2_load fails block status: compare's allocation test" {
	qimg create -q -f qcow2 t.qcow2 8M
	qio -c 'write -P 7 0 64k' t.qcow2 >/dev/null
	qimg create -q -f qcow2 e.qcow2 8M
	conf l2.conf '[inject-error]' 'event = "l2_load"'
	same compare blkdebug:l2.conf:t.qcow2 e.qcow2
	[ "$(cat i.rc)" = 3 ]
	same check blkdebug:l2.conf:t.qcow2
}

# src8m: s.qcow2 (data, a partial cluster, zeroes) and s.raw of it
src8m() {
	qimg create -q -f qcow2 s.qcow2 8M
	qio -c 'write -P 7 0 1M' -c 'write -P 8 3M 100k' -c 'write -z 5M 1M' \
	    s.qcow2 >/dev/null
}

# qcow2_bd EVENT ONCE [EXTRA]: t.qcow2 below blkdebug with one errno-28 rule
qcow2_bd() {
	echo "json:{'driver':'qcow2','file':{'driver':'blkdebug'$3,'inject-error':[{'event':'$1','errno':28,'once':'$2'}],'image':{'driver':'file','filename':'t.qcow2'}}}"
}

# statuses_as_qemu EVENTS -- ARGS...: for each event, once off and on,
# qemu-img ARGS and ours (@J: the target's name, on a fresh t.qcow2 that
# SETUP, if set, fills) exit alike, and ours leaves no corruption (check
# 0, or 3 for leaks: our metadata goes out later than qemu's; or what
# qemu's leaves)
statuses_as_qemu() {
	local ev o events=() a b c qc bad=0
	while [ "$1" != -- ]; do events+=("$1"); shift; done
	shift
	for ev in "${events[@]}"; do
		for o in off on; do
			J=$(qcow2_bd "$ev" "$o")
			rm -f t.qcow2 && qimg create -q -f qcow2 t.qcow2 8M
			${SETUP:-true}
			a=0 && command qemu-img "${@//@J/$J}" >/dev/null 2>&1 || a=$?
			qc=0 && qimg check t.qcow2 >/dev/null 2>&1 || qc=$?
			rm -f t.qcow2 && qimg create -q -f qcow2 t.qcow2 8M
			${SETUP:-true}
			b=0 && img "${@//@J/$J}" >/dev/null 2>&1 || b=$?
			c=0 && qimg check t.qcow2 >i.ck 2>&1 || c=$?
			if [ "$a" != "$b" ] || { [ "$c" != 0 ] && [ "$c" != 3 ] &&
			    [ "$c" != "$qc" ]; }; then
				echo "$ev once=$o: qemu-img $a, img $b, check $c"
				cat i.ck
				bad=1
			fi
		done
	done
	return $bad
}

@test "blkdebug: block-layer and qcow2 write events fail convert -n as qemu-img's" {
	src8m
	statuses_as_qemu pwritev pwritev_zero pwritev_done cluster_alloc_space \
	    cluster_alloc cluster_alloc_bytes l2_alloc_write l1_update \
	    l2_update refblock_alloc refblock_load refblock_update_part \
	    reftable_load write_aio flush_to_os flush_to_disk cluster_free \
	    none -- convert -n -O qcow2 s.qcow2 @J
	statuses_as_qemu write_compressed l2_update_compressed \
	    cluster_alloc_bytes l2_update pwritev -- \
	    convert -c -n -O qcow2 s.qcow2 @J
	# 512-byte clusters: new refcount blocks as the data comes
	cs512() {
		rm -f t.qcow2
		qemu-img create -q -f qcow2 -o cluster_size=512 t.qcow2 8M
	}
	SETUP=cs512 statuses_as_qemu refblock_alloc_hookup refblock_alloc_write \
	    refblock_alloc l2_alloc_write l1_update -- \
	    convert -n -O qcow2 s.qcow2 @J
	# and a write that fails is a failure, status 1
	J=$(qcow2_bd pwritev off)
	rm -f t.qcow2 && qimg create -q -f qcow2 t.qcow2 8M
	run -1 img convert -n -O qcow2 s.qcow2 "$J"
}

@test "blkdebug: qemu-img's flushes of the qcow2 node fire flush_to_os" {
	snap2() {
		qemu-io -c 'write -P 3 0 1M' t.qcow2 >/dev/null
		qemu-img snapshot -c s1 t.qcow2
		qemu-io -c 'write -P 4 0 512k' t.qcow2 >/dev/null
	}
	SETUP=snap2 statuses_as_qemu flush_to_os flush_to_disk cluster_alloc \
	    pwritev pwritev_done l2_update refblock_update_part -- \
	    snapshot -c s2 @J
	SETUP=snap2 statuses_as_qemu flush_to_os cluster_alloc pwritev_done \
	    l2_update -- snapshot -d s1 @J
	SETUP=snap2 statuses_as_qemu flush_to_os pwritev l2_update -- \
	    snapshot -a s1 @J
	statuses_as_qemu flush_to_os pwritev_done -- resize @J 16M
	statuses_as_qemu flush_to_os pwritev -- amend -o lazy_refcounts=on @J
}

@test "blkdebug: read-only work never loads a refcount block (no allocated size)" {
	src8m
	qimg create -q -f qcow2 t.qcow2 8M
	qio -c 'write -P 3 0 1M' t.qcow2 >/dev/null
	local j
	j=$(qcow2_bd refblock_load off)
	same compare s.qcow2 "$j"
	[ "$(cat i.rc)" = 1 ]
	same map "$j"
	same convert -O raw "$j" o.raw
}

@test "blkdebug: unaligned writes under align fire the read-modify-write events" {
	need_qemu
	local ev o w a b
	for ev in pwritev_rmw_head pwritev_rmw_after_head pwritev_rmw_tail \
	    pwritev_rmw_after_tail pwritev pwritev_done; do
		for o in off on; do
			for w in 1000:512 4096:512 3000:2000 1000:8192; do
				local I="driver=raw,file.driver=blkdebug,file.align=4096,file.image.filename=r.raw,file.inject-error.0.event=$ev,file.inject-error.0.errno=28,file.inject-error.0.once=$o"
				rm -f r.raw && qimg create -q -f raw r.raw 1M
				a=0 && qio --image-opts -c "write -P 7 ${w%:*} ${w#*:}" \
				    "$I" >/dev/null 2>&1 || a=$?
				mv r.raw q.raw && qimg create -q -f raw r.raw 1M
				b=0 && head -c "${w#*:}" /dev/zero | tr '\0' '\7' |
				    img-write --image-opts --offset "${w%:*}" "$I" \
				    2>/dev/null || b=$?
				[ "$a" = "$b" ] || { echo "$ev $o $w: $a $b"; return 1; }
				cmp q.raw r.raw
			done
		done
	done
	# head: a failing read-modify-write read fails the write, once only
	I="driver=raw,file.driver=blkdebug,file.align=4096,file.image.filename=r.raw,file.inject-error.0.event=pwritev_rmw_head,file.inject-error.0.errno=28"
	run -1 --separate-stderr img-write --image-opts --offset 1000 "$I" <<<x
}

# close_as_qemu EVENT ONCE: test-close (img_close_report) against
# qemu-img convert -n: status, the close's lines, the target's check
close_as_qemu() {
	local j a b
	j=$(qcow2_bd "$1" "$2")
	rm -f t.qcow2 && qimg create -q -f qcow2 t.qcow2 8M
	a=0 && command qemu-img convert -n -O qcow2 s.qcow2 "$j" 2>q.err || a=$?
	qimg check t.qcow2 >q.ck 2>&1 || true
	rm -f t.qcow2 && qimg create -q -f qcow2 t.qcow2 8M
	b=0 && "$IMG_BIN/test-close" "$j" s.qcow2 2>i.err || b=$?
	qimg check t.qcow2 >i.ck 2>&1 || true
	grep -v '^qemu-img: error while writing' q.err | sed 's/^qemu-img: //' >q.said
	grep -v '^test-close: json:' i.err | sed 's/^test-close: //' >i.said
	[ "$a" = "$b" ] || { echo "$1 once=$2: qemu-img $a, test-close $b"; return 1; }
	diff q.said i.said
	diff q.ck i.ck
}

@test "blkdebug: img_close_report says what qcow2_inactivate says" {
	src8m
	local ev
	for ev in flush_to_os pwritev pwritev_zero pwritev_done l2_update \
	    l2_alloc_write l1_update refblock_update_part cluster_alloc \
	    cluster_alloc_space write_aio cluster_free flush_to_disk none; do
		close_as_qemu "$ev" off
		close_as_qemu "$ev" on
	done
	close_as_qemu flush_to_os off
	[ "$(cat i.said)" = "Failed to flush the L2 table cache: No space left on device
Failed to flush the refcount block cache: No space left on device" ]
	# no rule, no word
	close_as_qemu read_aio off
	[ ! -s i.err ]
	qimg compare s.qcow2 t.qcow2
}

@test "blkdebug: copy-on-write and backing reads fire qemu's qcow2 events" {
	need_qemu
	local ev o w a b j
	qimg create -q -f qcow2 b.qcow2 8M
	qio -c 'write -P 5 0 1M' b.qcow2 >/dev/null
	for ev in cow_read cow_write write_aio read_backing_aio; do
		for o in off on; do
			j=$(qcow2_bd "$ev" "$o")
			for w in 1000:512 0:65536 70000:1000; do
				rm -f t.qcow2
				qimg create -q -f qcow2 -b b.qcow2 -F qcow2 t.qcow2 8M
				a=0 && qio -c "write -P 7 ${w%:*} ${w#*:}" "$j" \
				    >/dev/null 2>&1 || a=$?
				qimg convert -O raw t.qcow2 q.raw
				rm -f t.qcow2
				qimg create -q -f qcow2 -b b.qcow2 -F qcow2 t.qcow2 8M
				b=0 && head -c "${w#*:}" /dev/zero | tr '\0' '\7' |
				    img-write --offset "${w%:*}" "$j" 2>/dev/null || b=$?
				qimg convert -O raw t.qcow2 i.raw
				[ "$a" = "$b" ] || { echo "$ev $o $w: $a $b"; return 1; }
				cmp q.raw i.raw
			done
		done
	done
	# reads: through the backing file, and of compressed clusters
	qio -c 'write -P 6 2M 64k' t.qcow2 >/dev/null
	src8m
	qimg convert -c -O qcow2 s.qcow2 c.qcow2
	for ev in read_backing_aio read_compressed; do
		for f in t.qcow2 c.qcow2; do
			j="json:{'driver':'qcow2','file':{'driver':'blkdebug','inject-error':[{'event':'$ev'}],'image':{'driver':'file','filename':'$f'}}}"
			a=0 && command qemu-img convert -O raw "$j" q.raw 2>/dev/null || a=$?
			b=0 && img convert -O raw "$j" i.raw 2>/dev/null || b=$?
			[ "$a" = "$b" ] || { echo "$ev $f: $a $b"; return 1; }
		done
	done
	[ "$b" = 1 ]	# read_compressed, c.qcow2
}
