#!/usr/bin/env bats
bats_require_minimum_version 1.5.0
# img-amend: qcow2 option changes against qemu-img amend, qemu-io and qemu-img check.

load helpers

# both SRC ARGS...: qemu-img amend and img-amend on copies of SRC
both() {
	on_copies amend "$@"
}

# Our result is clean, holds the same disk and says the same as qemu's.
same_result() {
	qimg check -q i.qcow2
	qimg compare -q q.qcow2 i.qcow2
	diff <(qimg info --output=json q.qcow2 | jq 'del(.filename, .["actual-size"])') \
	    <(qimg info --output=json i.qcow2 | jq 'del(.filename, .["actual-size"])')
}

# v3 and v2 images with data, zero and compressed clusters, by qemu.
images() {
	qimg create -q -f qcow2 v3.qcow2 64M
	qio -c 'write -P 1 0 1M' -c 'write -z 2M 64k' -c 'write -c -P 2 4M 64k' \
	    v3.qcow2 >/dev/null
	qimg create -q -f qcow2 -o compat=0.10 v2.qcow2 64M
	qio -c 'write -P 1 0 1M' -c 'write -c -P 2 4M 64k' v2.qcow2 >/dev/null
}

@test "img-amend: compat 1.1 -> 0.10 -> 1.1, zero clusters expanded" {
	images
	both v3.qcow2 -o compat=0.10
	same_result
	qio -c 'read -P 1 0 1M' -c 'read -P 0 2M 64k' -c 'read -P 2 4M 64k' i.qcow2 >/dev/null
	cp i.qcow2 a.qcow2
	both a.qcow2 -o compat=1.1
	same_result
	both v2.qcow2 -o compat=v3
	same_result
	both v2.qcow2 -o compat=1.1,lazy_refcounts=on
	same_result
}

@test "img-amend: downgrading a backed image writes its zero clusters" {
	qimg create -q -f qcow2 base.qcow2 8M
	qio -c 'write -P 9 0 8M' base.qcow2 >/dev/null
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
	qio -c 'write -z 0 1M' -c 'write -P 3 2M 64k' top.qcow2 >/dev/null
	both top.qcow2 -o compat=0.10
	same_result
	qio -c 'read -P 0 0 1M' -c 'read -P 9 1M 1M' -c 'read -P 3 2M 64k' i.qcow2 >/dev/null
	both top.qcow2 -o backing_file=base.qcow2,backing_fmt=qcow2
	both top.qcow2 -o backing_fmt=qcow2
	both top.qcow2 -o backing_file=other.qcow2
	cmp top.qcow2 i.qcow2
}

@test "img-amend: lazy_refcounts on and off" {
	images
	for v in on off yes; do
		both v3.qcow2 -o lazy_refcounts=$v
		same_result
	done
	both v3.qcow2 -o lazy_refcounts=on
	cp i.qcow2 l.qcow2
	both l.qcow2 -o lazy_refcounts=off
	same_result
	qio -c 'write -P 5 0 64k' i.qcow2 >/dev/null
	qimg check -q i.qcow2
}

@test "img-amend: every refcount width, the structures rewritten" {
	images
	qimg snapshot -c s1 v3.qcow2
	qio -c 'write -P 7 0 64k' v3.qcow2 >/dev/null
	qimg snapshot -c s2 v3.qcow2
	for b in 1 2 4 8 32 64 16; do
		both v3.qcow2 -o refcount_bits=$b
		same_result
	done
	both v3.qcow2 -o refcount_bits=8
	cp i.qcow2 r8.qcow2
	qimg snapshot -a s1 r8.qcow2
	qio -c 'read -P 1 0 1M' -c 'read -P 2 4M 64k' r8.qcow2 >/dev/null
	qimg check -q r8.qcow2
	run -0 img-snapshot -c s3 r8.qcow2
	run -0 img-amend -o refcount_bits=64 r8.qcow2
	qimg check -q r8.qcow2
	both v2.qcow2 -o compat=1.1,refcount_bits=64
	same_result
}

@test "img-amend: size grows and shrinks, snapshots and downgrades as qemu" {
	images
	for s in 128M 32M 1G; do
		both v3.qcow2 -o size=$s
		same_result
	done
	both v3.qcow2 -o size=1G,compat=0.10
	same_result
	qimg snapshot -c s v3.qcow2
	both v3.qcow2 -o compat=0.10
	same_result
	qimg resize -q v3.qcow2 128M
	both v3.qcow2 -o compat=0.10
	cmp v3.qcow2 i.qcow2
	qimg snapshot -c s v2.qcow2
	both v2.qcow2 -o size=32M
}

@test "img-amend: errors are qemu-img's; refused changes leave the image alone" {
	images
	qimg create -q -f qcow2 -o extended_l2=on e.qcow2 64M
	for o in refcount_bits=3 refcount_bits=128 refcount_bits=abc \
	    lazy_refcounts=foo size=abc size=1000 compat=0.9 foo=1 cluster_size=4k \
	    encryption=on size=1x,cluster_size=4k cluster_size=4k,foo=1 \
	    size=1M,cluster_size=4k encrypt.keyslot=1 data_file=x \
	    data_file_raw=on "compat=0.10,refcount_bits=8" "a," ""; do
		both v3.qcow2 -o "$o"
		[ "${o%%=*}" = size ] || [ "$o" = "compat=0.10,refcount_bits=8" ] ||
		    cmp v3.qcow2 i.qcow2
	done
	both v3.qcow2 -t foo -o lazy_refcounts=on
	cmp v3.qcow2 i.qcow2
	both v2.qcow2 -o lazy_refcounts=on
	both v2.qcow2 -o refcount_bits=8
	both e.qcow2 -o compat=0.10
	cmp e.qcow2 i.qcow2
	both v3.qcow2 -o refcount_bits=8
	cp i.qcow2 r8.qcow2
	both r8.qcow2 -o compat=0.10
	cmp r8.qcow2 i.qcow2
	qimg create -q -f qcow2 -o refcount_bits=16 s.qcow2 1M
	qio -c 'write -P 1 0 64k' s.qcow2 >/dev/null
	for i in 1 2 3 4; do qimg snapshot -c s$i s.qcow2; done
	both s.qcow2 -o refcount_bits=2
	cmp s.qcow2 i.qcow2
}

@test "img-amend: an external data file: renamed, dropped, its raw bit cleared, as qemu" {
	qimg create -q -f qcow2 -o data_file=d.raw t.qcow2 64M
	qio -c 'write -P 7 0 64k' t.qcow2 >/dev/null
	both t.qcow2 -o compat=0.10
	cmp t.qcow2 i.qcow2
	run -1 img-amend -o compat=0.10 i.qcow2
	[ "$output" = "img-amend: Cannot downgrade an image with a data file" ]
	both t.qcow2 -o data_file=foo
	cmp q.qcow2 i.qcow2
	run -0 img info i.qcow2
	[[ $output == *"data file: foo"* ]]
	# "": no name at all; the image then needs data-file.filename
	cp t.qcow2 q.qcow2
	cp t.qcow2 i.qcow2
	qimg amend -o data_file= --image-opts data-file.filename=d.raw,file.filename=q.qcow2
	run -0 img amend -o data_file= --image-opts data-file.filename=d.raw,file.filename=i.qcow2
	cmp q.qcow2 i.qcow2
	run -1 img map i.qcow2
	[ "$output" = "img: Could not open 'i.qcow2': 'data-file' is required for this image" ]
	same map --image-opts data-file.filename=d.raw,file.filename=i.qcow2
	run -0 img amend -o data_file=d.raw --image-opts data-file.filename=d.raw,file.filename=i.qcow2
	cmp t.qcow2 i.qcow2
	# data_file_raw: on where on, off, never on again
	qimg create -q -f qcow2 -o data_file=d.raw,data_file_raw=on r.qcow2 64M
	both r.qcow2 -o data_file_raw=on
	cmp r.qcow2 i.qcow2
	both r.qcow2 -o data_file_raw=off
	cmp q.qcow2 i.qcow2
	cp i.qcow2 off.qcow2
	both off.qcow2 -o data_file_raw=on
	cmp off.qcow2 i.qcow2
}

@test "img-amend: -o help, usage errors and formats without amend" {
	images
	same_as_qemu amend -o help v3.qcow2
	same_as_qemu amend -o '?' v3.qcow2
	same_as_qemu amend -f qcow2 -o help
	same_as_qemu amend -f qcow2 -o lazy_refcounts=on,help
	for args in "-f raw -o help" "-f foo -o help" "-o help" "v3.qcow2" \
	    "-o lazy_refcounts=on a b" "-o" "-x -o a=b v3.qcow2" \
	    "-o size=2M -f raw r.raw" "-o size=2M nonexistent"; do
		qimg create -q -f raw r.raw 1M
		want=$(qemu-img amend $args 2>&1) && ws=0 || ws=$?
		got=$(img-amend $args 2>&1) && gs=0 || gs=$?
		want=${want//qemu-img:/P:} got=${got//img-amend:/P:}
		want=${want//"'qemu-img --help'"/H} got=${got//"'img-amend --help'"/H}
		[ "$want" = "$got" ] && [ "$ws" = "$gs" ] ||
		    { echo "$args: $want ($ws) / $got ($gs)"; false; }
	done
	run -1 --separate-stderr img-amend v3.qcow2
	[ "$stderr" = "$(printf "img-amend: Must specify options (-o)\nTry 'img-amend --help' for more information")" ]
}

@test "img-amend: -p prints qemu-img's progress, -q none" {
	images
	cp v3.qcow2 q.qcow2
	cp v3.qcow2 i.qcow2
	[ "$(qimg amend -p -o lazy_refcounts=on q.qcow2 | od -c)" = \
	    "$(img-amend -p -o lazy_refcounts=on i.qcow2 | od -c)" ]
	# zero clusters expanded per L1 entry, in the snapshot too; refcount walks
	qimg create -q -f qcow2 p.qcow2 4G
	qio -c 'write -z 0 64k' -c 'write -z 3G 64k' p.qcow2 >/dev/null
	for o in compat=0.10 refcount_bits=8 snap compat=0.10; do
		[ $o = snap ] && { qimg snapshot -c s p.qcow2; continue; }
		cp p.qcow2 pq.qcow2
		cp p.qcow2 pi.qcow2
		[ "$(qimg amend -p -o $o pq.qcow2 | od -c)" = \
		    "$(img-amend -p -o $o pi.qcow2 | od -c)" ]
	done
	run -0 img-amend -q -p -o lazy_refcounts=off i.qcow2
	[ -z "$output" ]
	run -0 img-amend --force -t none -o lazy_refcounts=on --image-opts \
	    driver=qcow2,file.filename=i.qcow2
	qimg info i.qcow2 | grep -q 'lazy refcounts: true'
}

@test "img-amend: -p counts qemu's refcount walks, more than three when allocations chase" {
	local spec from cs size n to
	# 58 data clusters fill a 64-bit refblock but one entry: four walks (iotest 112)
	for spec in "1 512 64k 58 64" "1 512 1M 500 64" "64 512 4M 4000 8" \
	    "16 512 16M 3000 2" "2 1024 8M 509 32"; do
		read -r from cs size n to <<<"$spec"
		qimg create -q -f qcow2 -o refcount_bits=$from,cluster_size=$cs p.qcow2 $size
		qio -c "write 0 $((n * 512))" p.qcow2 >/dev/null
		cp p.qcow2 pq.qcow2
		cp p.qcow2 pi.qcow2
		[ "$(qimg amend -p -o refcount_bits=$to pq.qcow2 | od -c)" = \
		    "$(img-amend -p -o refcount_bits=$to pi.qcow2 | od -c)" ]
		qimg check -q pi.qcow2
	done
	run -0 img-amend -p -o refcount_bits=64 pi.qcow2
	qimg create -q -f qcow2 -o refcount_bits=1,cluster_size=512 p.qcow2 64k
	qio -c "write 0 $((58 * 512))" p.qcow2 >/dev/null
	run -0 img-amend -p -o refcount_bits=64 p.qcow2
	[[ $output == *"(66.67/100%)"$'\r'"    (50.00/100%)"* ]]
}

@test "img-amend: images made by img-create amend and read back in qemu" {
	img-create -q -f qcow2 a.qcow2 16M
	qio -c 'write -P 4 0 2M' -c 'write -z 4M 64k' a.qcow2 >/dev/null
	run -0 img-amend -o compat=0.10 a.qcow2
	qimg check -q a.qcow2
	run -0 img-amend -o compat=1.1,refcount_bits=1 a.qcow2
	qimg check -q a.qcow2
	qio -c 'read -P 4 0 2M' -c 'read -P 0 4M 64k' a.qcow2 >/dev/null
	[ "$(qimg info --output=json a.qcow2 | jq '.["format-specific"].data["refcount-bits"]')" = 1 ]
}

@test "img-amend: missing, garbage and truncated files: one line, status 1" {
	run -1 --separate-stderr img-amend -o lazy_refcounts=on nonexistent
	[ "$stderr" = "img-amend: Could not open 'nonexistent': Could not open 'nonexistent': No such file or directory" ]
	head -c 4096 /dev/urandom > g.bin
	cp g.bin g0.bin
	run -1 --separate-stderr img-amend -f qcow2 -o lazy_refcounts=on g.bin
	[ "$stderr" = "img-amend: Could not open 'g.bin': Image is not in qcow2 format" ]
	cmp g.bin g0.bin
	qimg create -q -f qcow2 t.qcow2 64M
	truncate -s 100k t.qcow2
	cp t.qcow2 t0.qcow2
	run -1 --separate-stderr img-amend -o compat=0.10 t.qcow2
	[ "${#stderr_lines[@]}" -eq 1 ] && [[ $stderr == "img-amend: "* ]]
	cmp t.qcow2 t0.qcow2
}

@test "img-amend: --help and the hidden option lists" {
	run -0 img-amend --help
	[[ $output == *"See img-amend(1)."* ]]
	run -0 img-amend --long-options
	[[ $output == *--force* ]]
	run -0 img-amend --short-options
	[[ $output == *-t* ]]
}

# t.qcow2 with data and a snapshot sharing it
snap1() {
	qemu-img create -q -f qcow2 t.qcow2 8M &&
	    qemu-io -c 'write -P 3 0 1M' t.qcow2 &&
	    qemu-img snapshot -c s1 t.qcow2
}

@test "img-amend: failing writes and flushes say and exit as qemu-img" {
	# "Failed to update the image header: ...", then the close's lines
	# (flush_to_os with once off: qemu's close says more, not ours)
	faults_as_qemu snap1 write_aio pwritev pwritev_done flush_to_os:true \
	    flush_to_disk l2_update refblock_update_part refblock_load -- \
	    amend -o lazy_refcounts=on @J
	faults_as_qemu snap1 write_aio pwritev flush_to_os:true flush_to_disk \
	    l2_update refblock_update_part refblock_load -- \
	    amend -o lazy_refcounts=off @J
	# a downgrade: "Failed to turn zero into data clusters: ..."
	faults_as_qemu snap1 pwritev flush_to_os:true flush_to_disk \
	    l2_update refblock_update_part l2_load:true cluster_free \
	    cluster_alloc -- amend -o compat=0.10 @J
}
