#!/usr/bin/env bats
# img-map: qemu-img map's human and JSON output, ranges, chains, errors, speed.
load helpers
bats_require_minimum_version 1.5.0

# same map ARGS in both output forms
same_both() {
	same map "$@" && same map --output=json "$@"
}

# a raw image with data, holes and an unaligned tail
mkraw() {
	truncate -s 64M r.raw
	printf 'abc' | dd of=r.raw bs=1 seek=5000000 conv=notrunc status=none
	head -c 1M /dev/urandom | dd of=r.raw bs=1M seek=10 conv=notrunc status=none
}

@test "img-map: sparse raw images as qemu-img, human and JSON" {
	mkraw
	same_both -f raw r.raw
	same_both r.raw
	same_both -U -f raw r.raw
	truncate -s 0 e.raw
	same_both -f raw e.raw
	truncate -s 1M h.raw
	same_both -f raw h.raw
	head -c 1M /dev/urandom > d.raw
	same_both -f raw d.raw
}

@test "img-map: a raw file whose size is not a multiple of 512" {
	head -c 1000 /dev/urandom > odd.raw
	same_both -f raw odd.raw
	truncate -s 1M odd2.raw
	printf x >> odd2.raw
	same_both -f raw odd2.raw
}

@test "img-map: --start-offset and --max-length as qemu-img, edges included" {
	mkraw
	local a
	for a in "--start-offset=0" "--start-offset=512" "--start-offset=0.5k" \
	    "--start-offset=4999999" "--start-offset=5000001 --max-length=1" \
	    "--start-offset=4999999 --max-length=3" "--start-offset=5000003" \
	    "--max-length=0" "--max-length=1" "--max-length=5000000" \
	    "--start-offset=64M" "--start-offset=1T" "--start-offset=67108863" \
	    "--max-length=1T" "-s 1M -l 1M" \
	    "--start-offset=9223372036854775807 --max-length=9223372036854775807" \
	    "--max-length=9223372036854775807 --start-offset=5" \
	    "--start-offset=-1" "--start-offset=1x" "--max-length=8E" \
	    "--max-length=" "--start-offset=1.5"; do
		# shellcheck disable=SC2086
		same_both -f raw $a r.raw
	done
}

@test "img-map: qcow2 data, zero and compressed clusters as qemu-img" {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -c 'write -P 1 0 1M' -c 'write -z 4M 1M' -c 'write -P 2 6M 64k' \
	    -c 'write -z 6M 32k' a.qcow2 >/dev/null
	same_both a.qcow2
	same_both -f qcow2 a.qcow2
	same_both --start-offset=100k --max-length=5M a.qcow2
	same_both --start-offset=6200000 a.qcow2
	qio -c 'write -c -P 3 8M 128k' a.qcow2 >/dev/null
	same map --output=json a.qcow2
	# the human form cannot show compressed clusters: partial output, exit 1
	same map a.qcow2
	run -1 --separate-stderr img-map a.qcow2
	[ "${lines[1]}" = "0               0x100000        0x50000         a.qcow2" ]
	[ "$stderr" = "img-map: File contains external, encrypted or compressed clusters." ]
}

@test "img-map: a backing chain as qemu-img (depths, file names, short backing)" {
	qimg create -q -f qcow2 base.qcow2 32M
	qio -c 'write -P 1 0 1M' -c 'write -P 2 8M 1M' -c 'write -z 16M 1M' \
	    base.qcow2 >/dev/null
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 64M
	qio -c 'write -P 3 512k 1M' -c 'write -z 8M 64k' -c 'write -P 4 40M 64k' \
	    mid.qcow2 >/dev/null
	qimg create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 64M
	qio -c 'write -P 5 1M 4k' top.qcow2 >/dev/null
	same_both top.qcow2
	same_both mid.qcow2
	same_both --start-offset=30M top.qcow2
	mkdir sub
	qimg create -q -f qcow2 -b ../base.qcow2 -F qcow2 sub/t.qcow2 64M
	same_both sub/t.qcow2
	qimg create -q -f raw rb.raw 16M
	qio -f raw -c 'write -P 9 1M 1M' rb.raw >/dev/null
	qimg create -q -f qcow2 -b rb.raw -F raw onraw.qcow2 32M
	same_both onraw.qcow2
}

@test "img-map: random ranges of a chain with compressed clusters as qemu-img" {
	qimg create -q -f qcow2 base.qcow2 32M
	qio -c 'write -P 1 0 1M' -c 'write -P 2 8M 1M' -c 'write -z 16M 1M' \
	    -c 'write -c -P 4 20M 64k' base.qcow2 >/dev/null
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 64M
	qio -c 'write -P 3 512k 1M' -c 'write -z 8M 64k' -c 'write -P 4 40M 64k' \
	    -c 'discard 0 64k' top.qcow2 >/dev/null
	local i s l
	RANDOM=7
	for i in $(seq 1 25); do
		s=$((RANDOM * RANDOM % 70000000))
		l=$((RANDOM * RANDOM % 40000000))
		same_both --start-offset=$s --max-length=$l top.qcow2
	done
}

@test "img-map: --image-opts as qemu-img" {
	mkraw
	same_both --image-opts driver=raw,file.filename=r.raw
	qimg create -q -f qcow2 a.qcow2 1M
	same_both --image-opts driver=qcow2,file.filename=a.qcow2
	same_both --image-opts driver=qcow2,file.filename=nope
	same_both --image-opts file.filename=a.qcow2
	same_both --image-opts driver=qcow2,file.driver=file,file.filename=a.qcow2
	same map --image-opts driver=qcow2
	same map --image-opts driver=bogus,file.filename=a.qcow2
	same map --image-opts -f raw driver=raw,file.filename=r.raw
}

@test "img-map: json: file names as qemu-img" {
	qimg create -q -f qcow2 a.qcow2 1M
	qio -c 'write 0 64k' a.qcow2 >/dev/null
	same_both 'json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}'
}

@test "img-map: --image-opts refusals in qemu-img's words" {
	qimg create -q -f qcow2 a.qcow2 1M
	same map --image-opts a.qcow2
	same map --image-opts driver=qcow2,file.filename=a.qcow2,foo=bar
	same map --image-opts driver=raw,file.filename=a.qcow2,file.foo=1
	same map --image-opts driver=qcow2,file.driver=foo,file.filename=a.qcow2
	# img has no nbd driver yet: an honest "Unknown driver", not qemu's text
	run -1 --separate-stderr img-map --image-opts driver=qcow2,file.driver=nbd,file.filename=a.qcow2
	[[ $stderr == *"Unknown driver 'nbd'" ]]
}

@test "img-map: usage errors and missing files as qemu-img" {
	mkraw
	same map
	same map r.raw r.raw
	same map --output=xml r.raw
	same map --output
	same map -x r.raw
	same map nope.qcow2
	same map -f nosuch r.raw
	same map --object secret,id=s0,data=x -f raw r.raw
	same map --object foo r.raw
}

@test "img-map: img map is img-map" {
	mkraw
	run -0 img map --output=json -f raw r.raw
	want=$output
	run -0 img-map --output=json -f raw r.raw
	[ "$output" = "$want" ]
	[[ $output == '[{ "start": 0, '* ]]
}

@test "img-map: --help, and what completion and the page need" {
	run -0 --separate-stderr img-map --help
	[[ $output == "usage: img-map "* ]]
	[[ $output == *"See img-map(1)."* ]]
	[ -z "$stderr" ]
	run -0 img-map --long-options
	[[ $output == *--start-offset* ]]
	run -0 img-map --short-options
	[[ $output == *-U* ]]
}

@test "img-map: a truncated qcow2 header is one error line" {
	qimg create -q -f qcow2 a.qcow2 1M
	head -c 50 a.qcow2 > t.qcow2
	run -1 --separate-stderr img-map -f qcow2 t.qcow2
	[ -z "$output" ]
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ $stderr == "img-map: Could not open 't.qcow2': "* ]]
}

@test "img-map: the output is readable back as a map (JSON and human)" {
	mkraw
	img-map --output=json -f raw r.raw > j
	img-map -f raw r.raw > h
	# img-cat takes both forms and streams the same bytes
	run -0 img-cat -f raw --map j r.raw
	a=$(img-cat -f raw --map j r.raw | md5sum)
	b=$(img-cat -f raw --map h r.raw | md5sum)
	[ "$a" = "$b" ]
}

@test "img-map: stdout full is an error" {
	mkraw
	run -1 --separate-stderr bash -c 'img-map -f raw r.raw >/dev/full'
	[[ $stderr == "img-map: stdout: No space left on device" ]]
}

@test "img-map: a 1 TiB sparse raw image maps in well under a second" {
	truncate -s 1T big.raw
	printf x | dd of=big.raw bs=1 seek=$((1 << 39)) conv=notrunc status=none
	run -0 timeout 2 img-map --output=json -f raw big.raw
	[ "${#lines[@]}" -eq 3 ]
	same map --output=json -f raw big.raw
}

@test "img-map: a 1 TiB sparse qcow2 image maps in well under a second" {
	qimg create -q -f qcow2 big.qcow2 1T
	qio -c 'write -P 1 512G 64k' -c 'write -z 700G 1G' big.qcow2 >/dev/null
	run -0 timeout 2 img-map --output=json big.qcow2
	[ "${#lines[@]}" -eq 5 ]
	same map --output=json big.qcow2
	run -0 timeout 2 img-map big.qcow2
}

@test "img-map: --salvage maps a sector whose block status fails as data, warning" {
	qimg create -q -f qcow2 s.qcow2 4M
	qio -c 'write -P 7 0 4M' s.qcow2 >/dev/null
	local j
	j=$(blkdebug_json s.qcow2 block-status:2050)
	run -0 --separate-stderr img-map --salvage --output=json "$j"
	[ "$stderr" = "img-map: warning: error while reading block status at offset 1049600: Input/output error" ]
	[ "${lines[1]}" = '{ "start": 1049600, "length": 512, "depth": 0, "present": true, "zero": false, "data": true},' ]
	[ "${#lines[@]}" -eq 3 ]
	# without --salvage the filter is skipped, as qemu-img map skips it
	same_as_qemu map --output=json "$j"
	same_as_qemu map "$j"
}

@test "img-map: a block-status rule in a blkdebug filter leaves the map alone" {
	qimg create -q -f qcow2 s.qcow2 64M
	qio -c 'write -P 7 0 20M' s.qcow2 >/dev/null
	local j
	j=$(blkdebug_json s.qcow2 block-status:8000 block-status:0)
	run -0 --separate-stderr img map "$j"
	[ -z "$stderr" ]
	same_as_qemu map "$j"
	same_as_qemu map --output=json "$j"
	same_as_qemu map --image-opts "driver=blkdebug,image.driver=qcow2,image.file.filename=s.qcow2,inject-error.0.event=none,inject-error.0.iotype=block-status"
	# in a backing chain too, adding no depth
	qimg create -q -f qcow2 -b "$j" -F blkdebug top.qcow2 64M
	qio -c 'write -P 1 30M 1M' top.qcow2 >/dev/null
	same_as_qemu map top.qcow2
	same_as_qemu map --output=json top.qcow2
	# other programs still meet the filter's errors
	run -1 --separate-stderr img convert -O raw "$j" out.raw
}

@test "img-map: data under blkdebug below the format is the blkdebug node's" {
	qimg create -q -f qcow2 s.qcow2 64M
	qio -c 'write -P 7 0 20M' s.qcow2 >/dev/null
	local j="json:{'driver':'qcow2','file':{'driver':'blkdebug','inject-error':[{'event':'none','iotype':'block-status','errno':5,'sector':8000}],'image':{'driver':'file','filename':'s.qcow2'}}}"
	run -0 img map "$j"
	[[ ${lines[1]} == *' json:{"image": {"driver": "file", "filename": "s.qcow2"}, "driver": "blkdebug", '* ]]
	same_as_qemu map "$j"
	same_as_qemu map --output=json "$j"
	same_as_qemu map --image-opts "driver=qcow2,file.driver=blkdebug,file.image.filename=s.qcow2,file.inject-error.0.event=l2_load"
	printf '[inject-error]\nevent = "l2_load"\n' >b.conf
	same_as_qemu map blkdebug:b.conf:s.qcow2
	same_as_qemu map -f qcow2 blkdebug:b.conf:s.qcow2
	same_as_qemu map --image-opts "driver=qcow2,file.driver=blkdebug,file.config=b.conf,file.image.filename=s.qcow2"
	same_as_qemu map --image-opts "driver=raw,file.driver=blkdebug,file.config=b.conf,file.image.filename=s.qcow2"
	same_as_qemu map --image-opts "driver=raw,file.driver=blkdebug,file.image.filename=s.qcow2,file.align=4096"
	# raw's status is the file's, asked through blkdebug (BDRV_BLOCK_RAW)
	local r="driver=raw,file.driver=blkdebug,file.image.filename=s.qcow2,file.inject-error.0.event=none,file.inject-error.0.iotype=block-status"
	run -1 --separate-stderr img map --image-opts "$r"
	[ "$stderr" = "img: Could not read file metadata: Input/output error" ]
	same_as_qemu map --image-opts "$r"
	same_as_qemu map --image-opts "${r/raw/qcow2}"
	# and data in a backing file under blkdebug
	qimg create -q -f qcow2 -b "$j" -F qcow2 top.qcow2 64M
	qio -c 'write -P 1 30M 1M' top.qcow2 >/dev/null
	same_as_qemu map top.qcow2
	same_as_qemu map --output=json top.qcow2
}

@test "img-map: --as-convert prints convert's steps, unmerged, and its block status error" {
	# 512-byte clusters: an L2 table maps 32 KiB, one answer never crosses it
	qimg create -q -f qcow2 -o cluster_size=512 s.qcow2 1M
	qio -c 'write -P 7 0 100k' s.qcow2 >/dev/null
	run -0 img-map --output=json s.qcow2
	[ "${#lines[@]}" -eq 5 ]
	run -0 img-map --as-convert s.qcow2
	[ "${#lines[@]}" -eq 33 ]
	[ "${lines[5]}" = '{ "start": 131072, "length": 32768, "depth": 0, "present": false, "zero": true, "data": false},' ]
	img-map --as-convert s.qcow2 | jq -e '(map(.length) | add) == 1048576' >/dev/null
	# qemu asks at most 2 GiB - 512 at once
	truncate -s 5G big.raw
	qio -f raw -c 'write -P 1 1M 1M' big.raw >/dev/null
	run -0 img-map -f raw --as-convert big.raw
	[ "${#lines[@]}" -eq 5 ]
	[ "${lines[2]}" = '{ "start": 2097152, "length": 2147483136, "depth": 0, "present": true, "zero": true, "data": false, "offset": 2097152},' ]
	# an answer that crosses a cluster boundary ends at the last one
	qimg create -q -f qcow2 -o extended_l2=on x.qcow2 1M
	qio -c 'write -P 1 60k 8k' x.qcow2 >/dev/null
	run -0 img-map --as-convert x.qcow2
	[ "${lines[1]}" = '{ "start": 61440, "length": 4096, "depth": 0, "present": true, "zero": false, "data": true, "offset": 389120},' ]
	[ "${lines[2]}" = '{ "start": 65536, "length": 4096, "depth": 0, "present": true, "zero": false, "data": true, "offset": 393216},' ]
	local j
	j=$(blkdebug_json s.qcow2 block-status:300)
	run -1 --separate-stderr img-map --as-convert "$j"
	[ "$stderr" = "img-map: error while reading block status at offset 0: Input/output error" ]
}

@test "img-map: a failing block status is said as qemu-img says it" {
	qimg create -q -f qcow2 s.qcow2 4M
	qio -c 'write -P 7 0 1M' s.qcow2 >/dev/null
	local j="json:{'driver':'qcow2','file':{'driver':'blkdebug','inject-error':[{'event':'l2_load','errno':5}],'image':{'driver':'file','filename':'s.qcow2'}}}"
	run -1 --separate-stderr qemu-img map "$j"
	local want=${stderr#qemu-img: }
	run -1 --separate-stderr img map "$j"
	[ "$stderr" = "img: $want" ]
	[ "$want" = "Could not read file metadata: Input/output error" ]
	run -1 --separate-stderr img map --output=json "$j"
	[ "$stderr" = "img: $want" ]
}
