#!/usr/bin/env bats
# img-info: qemu-img info's human and JSON output, backing chains, errors.
load helpers
bats_require_minimum_version 1.5.0

# same, in both output forms
same_both() {
	same info "$@" && same info --output=json "$@"
}

@test "img-info: raw images as qemu-img, human and JSON" {
	qimg create -q -f raw r.raw 1M
	same_both r.raw
	same_both -f raw r.raw
	same_both --output=human r.raw
	same_both -U r.raw
	same info --backing-chain --output=json r.raw
	same info --backing-chain r.raw
	same info --object secret,id=s0,data=x r.raw
}

@test "img-info: sizes are printed as qemu's size_to_str" {
	local s
	for s in 0 512 1000 1536 1023 1048064 1024000 1047552 1073741824 \
	    1288490189 1099511627776 8796093022208 999; do
		truncate -s "$s" "f$s"
		same_both "f$s" || return 1
	done
	run -0 img info f1024000
	[ "${lines[2]}" = "virtual size: 0.977 MiB (1024000 bytes)" ]
	[ "${lines[3]}" = "disk size: 0 B" ]
}

@test "img-info: a written raw image's disk size" {
	head -c 1300000 /dev/urandom >w.raw
	same_both w.raw
}

@test "img-info: a garbage file probes as raw" {
	head -c 1000 /dev/urandom >g
	same_both g
	run -0 img info g
	[ "${lines[2]}" = "virtual size: 1 KiB (1024 bytes)" ]
}

@test "img-info: a missing file is qemu-img's doubled message, exit 1" {
	same info nothere
	[ "$(cat i.err)" = "qemu-img: Could not open 'nothere': Could not open 'nothere': No such file or directory" ]
	[ "$(cat i.rc)" = 1 ] && [ ! -s i.out ]
	same info -f qcow2 nothere
	same info --backing-chain nothere
	run -1 --separate-stderr img info nothere
	[ "$stderr" = "img: Could not open 'nothere': Could not open 'nothere': No such file or directory" ]
	[ -z "$output" ]
	run -1 --separate-stderr img-info nothere
	[ "$stderr" = "img-info: Could not open 'nothere': Could not open 'nothere': No such file or directory" ]
}

@test "img-info: usage errors as qemu-img" {
	truncate -s 1M r.raw
	same info
	[ "$(cat i.rc)" = 1 ]
	same info r.raw r.raw
	same info -f
	same info --bogus r.raw
	same info -Z r.raw
	same info --output=xml r.raw
	[ "$(cat i.err)" = "qemu-img: --output must be used with human or json as argument." ]
	same info -f foo r.raw
	same info --image-opts -f raw driver=raw,file.filename=r.raw
	[ "$(cat i.err)" = "qemu-img: --image-opts and --format are mutually exclusive" ]
}

@test "img-info: --help, --long-options, --short-options" {
	run --separate-stderr img-info --help
	[ "$status" -eq 0 ] && [ -z "$stderr" ]
	[[ ${lines[0]} == "usage: img-info "* ]]
	[[ $output == *"See img-info(1)."* ]]
	run -0 img-info --long-options
	[[ $output == *"--backing-chain"* && $output == *"--image-opts"* ]]
	run -0 img-info --short-options
	[[ $output == *"-U"* ]]
}

@test "img-info: --image-opts names the file and driver" {
	truncate -s 1M r.raw
	same_both --image-opts driver=raw,file.filename=r.raw
	same_both --image-opts file.filename=r.raw
	same_both --image-opts driver=raw,file.driver=file,file.filename=r.raw
	same info --image-opts driver=raw,file.filename=nothere
	same info --image-opts driver=raw
	same info --image-opts driver=foo,file.filename=r.raw
}

@test "img-info: --image-opts refuses what qemu-img refuses" {
	truncate -s 1M r.raw
	same info --image-opts r.raw
	same info --image-opts driver=raw,file.filename=r.raw,bogus=1
}

@test "img-info: json: file names, alone and in a chain" {
	qimg create -q -f qcow2 a.qcow2 1M
	qimg create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2
	same_both 'json:{"driver":"qcow2","file":{"driver":"file","filename":"b.qcow2"}}'
	same_both --backing-chain 'json:{"file.filename":"b.qcow2"}'
	same_both --image-opts --backing-chain driver=qcow2,file.filename=b.qcow2
}

@test "img-info: stdout errors are reported" {
	truncate -s 1M r.raw
	run -1 --separate-stderr bash -c 'img-info r.raw >/dev/full'
	[ "$stderr" = "img-info: stdout: No space left on device" ]
}

@test "img-info: qcow2 images made by qemu-img, every option" {
	local o
	for o in "" compat=0.10 lazy_refcounts=on cluster_size=512 cluster_size=4k \
	    cluster_size=2M refcount_bits=1 refcount_bits=64 extended_l2=on \
	    compression_type=zstd preallocation=metadata; do
		rm -f a.qcow2
		qimg create -q -f qcow2 ${o:+-o "$o"} a.qcow2 100M
		same_both a.qcow2 || { echo "with -o $o"; return 1; }
		same_both -f qcow2 a.qcow2 || return 1
	done
}

@test "img-info: internal snapshots are listed as qemu-img lists them" {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -c 'write -P 1 0 64k' a.qcow2 >/dev/null
	qimg snapshot -c first a.qcow2
	qimg snapshot -c second-with-a-long-name a.qcow2
	same_both a.qcow2
	grep -q '"snapshots": \[' i.out
}

@test "img-info: huge qcow2 virtual sizes read in PiB" {
	qimg create -q -f qcow2 -o cluster_size=2M p.qcow2 1.26P
	same_both p.qcow2
	qimg create -q -f qcow2 -o cluster_size=2M t.qcow2 64T
	same_both t.qcow2
}

@test "img-info: a qcow2 image with data, of odd size" {
	qimg create -q -f qcow2 a.qcow2 1000000
	qio -c 'write -P 7 0 300k' -c 'write -z 512k 64k' a.qcow2 >/dev/null
	same_both a.qcow2
}

@test "img-info: backing chains, relative names and actual paths" {
	mkdir -p d
	qimg create -q -f qcow2 base.qcow2 64M
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
	qimg create -q -f qcow2 -b ../mid.qcow2 -F qcow2 d/top.qcow2
	qimg create -q -f qcow2 -b "$PWD/base.qcow2" -F qcow2 abs.qcow2
	same_both mid.qcow2
	same_both d/top.qcow2
	same info d/top.qcow2
	grep -qx "backing file: ../mid.qcow2 (actual path: d/../mid.qcow2)" i.out
	same_both --backing-chain d/top.qcow2
	same_both --backing-chain abs.qcow2
	same_both --backing-chain "$PWD/d/top.qcow2"
}

@test "img-info: raw backing files, recorded or probed" {
	qimg create -q -f raw base.raw 1M
	qimg create -q -f qcow2 -b base.raw -F raw top.qcow2
	same_both --backing-chain top.qcow2
	poke top.qcow2 112 '\0\0\0\0'	# drop the backing format extension
	same_both top.qcow2
	same info --backing-chain top.qcow2
	run -1 grep -q "backing file format" i.out
}

@test "img-info: a missing backing file matters only with --backing-chain" {
	qimg create -q -f qcow2 -u -b gone.qcow2 -F qcow2 top.qcow2 1M
	same_both top.qcow2
	same info --backing-chain top.qcow2
	[ "$(cat i.rc)" = 1 ]
	[ "$(cat i.err)" = "qemu-img: Could not open 'gone.qcow2': Could not open 'gone.qcow2': No such file or directory" ]
}

@test "img-info: a backing loop is qemu's infinite-loop error" {
	qimg create -q -f qcow2 -u -b loop2.qcow2 -F qcow2 loop1.qcow2 1M
	qimg create -q -f qcow2 -u -b loop1.qcow2 -F qcow2 loop2.qcow2 1M
	same_both loop1.qcow2
	same info --backing-chain loop1.qcow2
	[ "$(cat i.err)" = "qemu-img: Backing file 'loop1.qcow2' creates an infinite loop." ]
	[ "$(cat i.rc)" = 1 ] && [ ! -s i.out ]
	same info --backing-chain --output=json loop2.qcow2
}

@test "img-info: an image not cleanly closed shows the dirty flag" {
	qimg create -q -f qcow2 -o lazy_refcounts=on d.qcow2 1M
	qio -c 'write 0 64k' -c 'sigraise 9' d.qcow2 >/dev/null 2>&1 || true
	same_both d.qcow2
	same info d.qcow2
	grep -qx "cleanly shut down: no" i.out
}

@test "img-info: garbage and truncated qcow2 files are one error line" {
	head -c 1000 /dev/urandom >g
	same info -f qcow2 g
	[ "$(cat i.err)" = "qemu-img: Could not open 'g': Image is not in qcow2 format" ]
	qimg create -q -f qcow2 a.qcow2 1M
	head -c 100 a.qcow2 >t.qcow2
	same info t.qcow2
	[ "$(cat i.rc)" = 1 ]
	# cut inside its tables: they read as zeroes, as in qemu-img
	head -c 70000 a.qcow2 >t2.qcow2
	same info t2.qcow2
	same info --output=json t2.qcow2
}

@test "img-info: images img-create made read the same in qemu-img" {
	img create -q -f qcow2 -o cluster_size=4k a.qcow2 64M
	img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2
	same_both --backing-chain b.qcow2
	[ "$(qimg info --output=json b.qcow2 | jq -r '."backing-filename"')" = a.qcow2 ]
}
