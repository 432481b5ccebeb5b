#!/usr/bin/env bats
# img-create: qemu-img create's command line, "Formatting" line, -o lists, sizes, backing files.
load helpers
bats_require_minimum_version 1.5.0

# in_both CMD...: run CMD in the folders q/ (for qemu-img) and i/ (for ours)
in_both() {
	mkdir -p q i
	(cd q && "$@") && (cd i && "$@")
}

# both ARGS...: qemu-img ARGS in q/, ours as qemu-img in i/; same stdout, stderr
# (byte for byte), status, and the same files left behind
both() {
	need_qemu || return 1
	ours_as_qemu
	mkdir -p q i
	(cd q && command qemu-img "$@" >../q.out 2>../q.err) && echo 0 >q.rc ||
	    echo $? >q.rc
	(cd i && ../ours/qemu-img "$@" >../i.out 2>../i.err) && echo 0 >i.rc ||
	    echo $? >i.rc
	local ok=0
	outputs_match "$@" || ok=1
	[ "$(cd q && ls -A)" = "$(cd i && ls -A)" ] ||
	    { echo "--- files differ"; ls -A q i; ok=1; }
	return $ok
}

# both, and the command failed with exit 1 and left nothing new
both_fail() {
	local before
	before=$(ls -A i 2>/dev/null || true)
	both "$@" || return 1
	[ "$(cat i.rc)" = 1 ] || { echo "exit $(cat i.rc), want 1"; return 1; }
	[ "$(ls -A i)" = "$before" ] || { echo "left behind: $(ls -A i)"; return 1; }
}

@test "img-create: raw image, Formatting line and size as qemu-img" {
	both create -f raw x.raw 1M
	[ "$(stat -c %s i/x.raw)" = 1048576 ]
	both create y.raw 1.5M
	both create -q z.raw 0
	[ ! -s i.out ]
}

@test "img-create: size suffixes and fractions" {
	local s
	for s in 1k 1K 2M 1G 1T 3b 1.5k 0.5G 1024 1. 1.k 1.0 0x10 0X1F 1.0005k \
	    1.1111111111G ' 5k'; do
		both create -f raw "s$s" "$s" || return 1
	done
}

@test "img-create: bad sizes give qemu-img's two lines, exit 1, no file" {
	local s
	both_fail create x 1Q
	[ "$(cat i.err)" = "qemu-img: Invalid image size specified. You may use k, M, G, T, P or E suffixes for
qemu-img: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes." ]
	both_fail create x 1.5
	both_fail create x 1e3
	for s in 0x 0x1.5 .5k 1.5e3k 00x10 0x-1 12abc 5k5; do
		both_fail create x "$s" || return 1
	done
	both_fail create x ''
	both_fail create x 8E
	grep -qx "qemu-img: Invalid image size specified. Must be between 0 and 9223372036854775807." i.err
	both_fail create x 18446744073709551616
	both_fail create x -- -1
}

@test "img-create: a size the file system refuses is qemu's message and nothing is left" {
	ours_as_qemu
	run -1 --separate-stderr ours/qemu-img create -f raw x 7E
	[ "$output" = "Formatting 'x', fmt=raw size=8070450532247928832" ]
	[ "$stderr" = "qemu-img: x: The image size is too large for file format 'raw'" ]
	[ ! -e x ]
}

@test "img-create: usage errors as qemu-img" {
	both_fail create
	both_fail create -f raw
	both_fail create x 1M 2M
	both_fail create -Z x 1M
	both_fail create --bogus x 1M
	both_fail create x 1M -f
	grep -qx "qemu-img: missing argument for option '-f'" i.err
	both_fail create x
	both_fail create -f foo x 1M
	[ "$(cat i.err)" = "qemu-img: x: Unknown file format 'foo'" ]
}

@test "img-create: file: names the file; other protocols are unknown" {
	in_both qemu-img create -q -f qcow2 base.qcow2 1M
	mkdir -p q/d i/d
	both create -f qcow2 file:x.qcow2 1M
	[ -f i/x.qcow2 ]
	both create -f qcow2 file:d/a:b.qcow2 1M
	both create -f qcow2 -b base.qcow2 -F qcow2 file:image:top.qcow2
	both create -f qcow2 -b ../base.qcow2 -F qcow2 file:d/t.qcow2
	cmp q/d/t.qcow2 i/d/t.qcow2
	both_fail create -f qcow2 c:d 1M
	[ "$(cat i.err)" = "qemu-img: c:d: Unknown protocol 'c'" ]
	both_fail create -f qcow2 -o help c:d
	both_fail create -f qcow2 'json:{"a":1}' 1M
}

@test "img-create: qemu's protocols img lacks: the format is checked first" {
	# bdrv_img_create: format, then protocol by prefix; no network used
	both_fail create -f bochs nbd://example.com 64M
	[ "$(cat i.err)" = "qemu-img: nbd://example.com: Format driver 'bochs' does not support image creation" ]
	both_fail create -f bochs nbd+unix:///x?socket=/nonexistent 1M
	both_fail create -f qcow2 fat:x 1M
	[ "$(cat i.err)" = "qemu-img: fat:x: Protocol driver 'vvfat' does not support image creation" ]
	both_fail create -f raw http://127.0.0.1:1/x 1M
	both_fail create -f qcow2 -o help ftp://127.0.0.1:1/x
	both_fail create -f bochs -o help fat:x
	both_fail create -f bochs vvfat:x 1M
	[ "$(cat i.err)" = "qemu-img: vvfat:x: Unknown protocol 'vvfat'" ]
	# qemu tries to connect here; img cannot, and says why before writing
	run -1 img create -f qcow2 nbd://127.0.0.1:1 1M
	[ "$output" = "img: nbd://127.0.0.1:1: Protocol driver 'nbd' does not support image creation" ]
}

@test "img-create: --help, --long-options, --short-options" {
	run --separate-stderr img-create --help
	[ "$status" -eq 0 ] && [ -z "$stderr" ]
	[[ ${lines[0]} == "usage: img-create "* ]]
	[[ $output == *"See img-create(1)."* ]]
	run -0 img-create --long-options
	[[ $output == *"--object"* ]]
	run -0 img-create --short-options
	[[ $output == *"-F"* && $output == *"-u"* ]]
	run -0 img help create
	[[ $output == *"See img-create(1)."* ]]
}

@test "img-create: -o lists: merged, later keys win, qemu's list errors" {
	both create -f raw -o preallocation=falloc,nocow=on,extent_size_hint=1M,size=1M x
	both create -f raw -o size=1M -o size=2M y
	[ "$(stat -c %s i/y)" = 2097152 ]
	both create -f raw -o extent_size_hint=0 z 1M
	both_fail create -o ,size=1M a
	both_fail create -o size=1M, a
	both_fail create -o size=1M,, a
	both_fail create -o '' a 1M
	both_fail create -o size=1M a 1M
	[ "$(cat i.err)" = "qemu-img: a: The image size must be specified only once" ]
	both_fail create -o foo=bar a 1M
	[ "$(cat i.err)" = "qemu-img: a: Invalid parameter 'foo'" ]
}

@test "img-create: -o values are checked by type with qemu's words" {
	both_fail create -o nocow=maybe a 1M
	[ "$(cat i.err)" = "qemu-img: a: Parameter 'nocow' expects 'on' or 'off'" ]
	both_fail create -o extent_size_hint=abc a 1M
	[ "$(sed -n 3p i.err)" = "and exabytes, respectively." ]
	both_fail create -o size=abc a
}

@test "img-create: a bad raw preallocation mode is refused in qemu's words" {
	both_fail create -f raw -o preallocation=bogus a 1M
	[ "$(cat i.err)" = "qemu-img: a: invalid parameter value: bogus" ]
	run -1 --separate-stderr img create -f raw -o preallocation=metadata a 1M
	[ "$stderr" = "img: a: Unsupported preallocation mode: metadata" ]
	[ ! -e a ]
	both create -f raw -o preallocation=falloc b 1M
	both create -f raw -o preallocation=full c 1M
	cmp q/c i/c
}

@test "img-create: -o help lists the raw options, with and without a file name" {
	both create -o help
	both create -f raw -o help
	both create -f raw -o '?' x
	both create -f raw -o size=1M,help x 1M
	both create -q -f raw -o help
	grep -qx "Supported raw options:" i.out
	both_fail create -f foo -o help
	both create -f raw -o size=help x
}

@test "img-create: -o help lists the qcow2 options as qemu-img" {
	both create -f qcow2 -o help
	both create -f qcow2 -o help x
	both create -f qcow2 -o '?' -o cluster_size=4k x.qcow2
}

@test "img-create: raw refuses backing files in qemu's words" {
	in_both qemu-img create -q -f raw base.raw 1M
	both_fail create -f raw -b base.raw -F raw x 1M
	[ "$(cat i.err)" = "qemu-img: x: Backing file not supported for file format 'raw'" ]
	both_fail create -f raw -F raw x 1M
}

@test "img-create: qcow2 images as qemu-img makes them, and qemu-img check passes" {
	local o
	for o in "" compat=0.10 compat=1.1,lazy_refcounts=on cluster_size=4k \
	    cluster_size=2M,refcount_bits=64 cluster_size=512 extended_l2=on \
	    preallocation=metadata compression_type=zstd; do
		rm -rf q i
		both create -f qcow2 ${o:+-o "$o"} a.qcow2 64M || return 1
		qimg check -q i/a.qcow2 || { echo "check fails for -o $o"; return 1; }
		[ "$(cd q && qimg info --output=json a.qcow2)" = \
		  "$(cd i && qimg info --output=json a.qcow2)" ] ||
		    { echo "info differs for -o $o"; return 1; }
		cmp q/a.qcow2 i/a.qcow2 || { echo "bytes differ for -o $o"; return 1; }
	done
}

@test "img-create: qcow2 option errors as qemu-img" {
	both_fail create -f qcow2 -o cluster_size=1000 a 1M
	both_fail create -f qcow2 -o cluster_size=abc a 1M
	both_fail create -f qcow2 -o refcount_bits=abc a 1M
	both_fail create -f qcow2 -o lazy_refcounts=maybe a 1M
	both_fail create -f qcow2 -o compat=0.10,extended_l2=on a 1M
	both_fail create -f qcow2 -o preallocation=bogus a 1M
	both_fail create -f qcow2 -F qcow2 a 1M
}

@test "img-create: values reach the driver parsed: yes/no, hex and octal numbers" {
	both create -f qcow2 -o lazy_refcounts=yes a.qcow2 1M
	both create -f qcow2 -o lazy_refcounts=n,refcount_bits=0x10 b.qcow2 1M
	both create -f qcow2 -o refcount_bits=010,cluster_size=1.5k c.qcow2 1M
	both create -f qcow2 -o nolazy_refcounts,extended_l2 d.qcow2 1M
	both_fail create -f qcow2 -o refcount_bits=-1 e.qcow2 1M
	cmp q/a.qcow2 i/a.qcow2 && cmp q/b.qcow2 i/b.qcow2
}

@test "img-create: -b without -F names the detected format (no final newline)" {
	in_both qemu-img create -q -f qcow2 base.qcow2 64M
	both_fail create -f qcow2 -b base.qcow2 x
	printf 'qemu-img: x: Backing file specified without backing format\nDetected format of qcow2.' >want
	cmp want i.err
	both_fail create -f qcow2 -b base.qcow2 -u x 1M
	[ "$(cat i.err)" = "qemu-img: x: Backing file specified without backing format" ]
}

@test "img-create: a missing or unreadable backing file is qemu's two lines" {
	both_fail create -f qcow2 -b nothere -F qcow2 x 1M
	[ "$(cat i.err)" = "qemu-img: x: Could not open 'nothere': No such file or directory
Could not open backing image." ]
	in_both qemu-img create -q -f raw r.raw 1M
	both_fail create -f qcow2 -b r.raw -F qcow2 x
	both_fail create -f qcow2 -b r.raw -F foo x
	mkdir -p q/d i/d
	in_both qemu-img create -q -f qcow2 a.qcow2 1M
	both_fail create -f qcow2 -b a.qcow2 -F qcow2 d/x
	both_fail create -f qcow2 -b x -F qcow2 x
	both_fail create -f qcow2 -b '' -F qcow2 x 1M
}

@test "img-create: the size comes from the backing file; names resolve beside the image" {
	in_both qemu-img create -q -f qcow2 a.qcow2 64M
	mkdir -p q/d i/d
	both create -f qcow2 -b a.qcow2 -F qcow2 b.qcow2
	both create -f qcow2 -b ../a.qcow2 -F qcow2 d/c.qcow2
	both create -f qcow2 -b a.qcow2 -F raw r.qcow2
	both create -f qcow2 -b ../a.qcow2 -F qcow2 -o backing_file=a.qcow2 d/y
	both create -f qcow2 -o backing_file=../a.qcow2,backing_fmt=qcow2 d/z
	[ "$(qimg info --output=json i/d/c.qcow2 | jq '."virtual-size"')" = 67108864 ]
	qimg check -q i/d/c.qcow2
}

@test "img-create: -u skips the backing file; commas in names are shown doubled" {
	both create -f qcow2 -b 'a,b' -F qcow2 -u x 1M
	grep -q "backing_file=a,,b " i.out
	both create -f qcow2 -o compat=0.10 -b 'sp ace' -F raw -u y 1M
	both_fail create -f qcow2 -b nothere -F qcow2 -u z
}

@test "img-create: encryption is refused by name, nothing left" {
	run -1 --separate-stderr img create -f qcow2 -o encryption=on e 1M
	[ "${#stderr_lines[@]}" -eq 1 ] && [[ $stderr == "img: e: "*encrypt* ]]
	[ ! -e e ]
}

@test "img-create: stdout errors are reported" {
	run -1 --separate-stderr bash -c 'img-create -f raw x 1M >/dev/full'
	[ "$stderr" = "img-create: stdout: No space left on device" ]
}

@test "img-create: qcow2 preallocation lays the file out byte for byte as qemu's" {
	for o in cluster_size=512 cluster_size=4k cluster_size=64k extended_l2=on \
	    compat=0.10 refcount_bits=1; do
		for pm in metadata falloc full; do
			qimg create -q -f qcow2 -o "$o,preallocation=$pm" q.qcow2 3M
			img create -q -f qcow2 -o "$o,preallocation=$pm" o.qcow2 3M
			cmp q.qcow2 o.qcow2
		done
	done
}

# nothing: the image is to be made
none_yet() { :; }

@test "img-create: a blkdebug json: name to create reads as qemu-img's" {
	# qemu-img create cannot make an image below blkdebug ("Unknown
	# protocol 'json'"): nothing is written, nothing closes
	faults_as_qemu none_yet none pwritev flush_to_os -- \
	    create -f qcow2 -o preallocation=metadata @J 1M
	qimg create -q -f qcow2 b.qcow2 1M
	faults_as_qemu none_yet pwritev:true -- \
	    create -f qcow2 -b b.qcow2 -F qcow2 @J
}
