#!/usr/bin/env bats
# img-cat: the virtual disk as a raw stream, whole, a range, or a map's data extents.
load helpers
bats_require_minimum_version 1.5.0

# a raw image with data, holes and a partial last sector
mkraw() {
	truncate -s 64M r.raw
	printf 'abc' | dd of=r.raw bs=1 seek=5000000 conv=notrunc status=none
	head -c 1M /dev/urandom | dd of=r.raw bs=1M seek=10 conv=notrunc status=none
}

# a qcow2 image with data, zero, compressed clusters
mkqcow2() {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -c 'write -P 1 0 1M' -c 'write -z 4M 1M' -c 'write -P 2 6M 64k' \
	    -c 'write -z 6M 32k' -c 'write -c -P 3 8M 128k' \
	    -c 'write -P 4 63M 1M' a.qcow2 >/dev/null
}

# the raw bytes qemu-img convert makes of an image
oracle() {
	qimg convert -O raw "$@" oracle.raw
}

@test "img-cat: a sparse raw image is its own bytes" {
	mkraw
	img-cat -f raw r.raw > out
	cmp out r.raw
	img-cat -f raw r.raw | cmp - r.raw
}

@test "img-cat: a raw file of odd size reads as qemu-img convert makes it" {
	head -c 1000 /dev/urandom > odd.raw
	oracle -f raw odd.raw
	img-cat -f raw odd.raw | cmp - oracle.raw
	[ "$(img-cat -f raw odd.raw | wc -c)" -eq 1024 ]
}

@test "img-cat: a qcow2 image reads as qemu-img convert -O raw makes it" {
	mkqcow2
	oracle a.qcow2
	img-cat a.qcow2 | cmp - oracle.raw
	img-cat -f qcow2 a.qcow2 > out
	cmp out oracle.raw
}

@test "img-cat: a backing chain reads through, short backing file included" {
	qimg create -q -f qcow2 base.qcow2 16M
	qio -c 'write -P 1 0 1M' -c 'write -P 2 8M 1M' -c 'write -P 7 15M 1M' \
	    base.qcow2 >/dev/null
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 32M
	qio -c 'write -P 3 512k 1M' -c 'write -z 8M 64k' -c 'write -P 4 20M 64k' \
	    top.qcow2 >/dev/null
	oracle top.qcow2
	img-cat top.qcow2 | cmp - oracle.raw
}

@test "img-cat: into a file, zeroes become holes and the length is right" {
	qimg create -q -f qcow2 a.qcow2 1G
	qio -c 'write -P 1 0 64k' -c 'write -P 2 512M 64k' a.qcow2 >/dev/null
	img-cat a.qcow2 > out
	[ "$(stat -c %s out)" -eq $((1 << 30)) ]
	[ "$(stat -c %b out)" -lt 4096 ]
	oracle a.qcow2
	cmp out oracle.raw
	# a trailing hole still sets the length
	qimg create -q -f qcow2 z.qcow2 1M
	img-cat z.qcow2 > zout
	[ "$(stat -c %s zout)" -eq 1048576 ]
	# appending and writing into an existing file do not make holes
	printf 'x' > app
	img-cat z.qcow2 >> app
	[ "$(stat -c %s app)" -eq 1048577 ]
	cmp <(tail -c +2 app) zout
}

@test "img-cat: --offset and --length" {
	mkqcow2
	oracle a.qcow2
	img-cat --offset=1M --length=5M a.qcow2 > out
	cmp out <(dd if=oracle.raw bs=1M skip=1 count=5 status=none)
	img-cat --offset=1000 --length=3 a.qcow2 > out
	cmp out <(tail -c +1001 oracle.raw | head -c 3)
	img-cat --offset=63M a.qcow2 > out
	cmp out <(tail -c 1M oracle.raw)
	run -0 img-cat --offset=64M a.qcow2
	[ -z "$output" ]
	run -0 img-cat --length=0 a.qcow2
	[ -z "$output" ]
}

@test "img-cat: compressed clusters between plain ones, whole and cut, read as qemu reads them" {
	local o l
	head -c 8M /dev/urandom | tr '\000-\377' 'a-za-za-za-za-za-za-za-za-za-za-z' >t.raw
	head -c 192k /dev/urandom | dd of=t.raw bs=64k seek=5 conv=notrunc status=none
	qimg convert -c -O qcow2 t.raw z.qcow2
	# a fourth of the clusters plain, the rest compressed
	qio -c 'write -P 7 1M 64k' -c 'write -P 8 3M 128k' -c 'write -z 5M 64k' \
	    -c 'write -P 9 6M 4k' z.qcow2 >/dev/null
	oracle z.qcow2
	img-cat z.qcow2 | cmp - oracle.raw
	for o in 0 1000 65536 70000 1048575 3100000; do
		for l in 1 65536 200000 1048577 4194305; do
			img-cat --offset=$o --length=$l z.qcow2 |
			    cmp - <(tail -c +$((o + 1)) oracle.raw | head -c $l) ||
			    { echo "offset $o length $l"; return 1; }
		done
	done
	img-map --output=json z.qcow2 >m
	img-cat --map=m -S 4k --map-out=mo z.qcow2 >s
	truncate -s 8M out.raw
	img-write -f raw --map=mo out.raw <s
	cmp out.raw oracle.raw
}

@test "img-cat: a range past the end is one error line, nothing written" {
	mkqcow2
	run -1 --separate-stderr img-cat --offset=64M --length=1 a.qcow2
	[ -z "$output" ]
	[ "$stderr" = "img-cat: a.qcow2: range 67108864+1 is past the end of the image (67108864 bytes)" ]
	run -1 --separate-stderr img-cat --offset=65M a.qcow2
	[ "${#stderr_lines[@]}" -eq 1 ]
	run -1 --separate-stderr img-cat --length=1x a.qcow2
	[ -z "$output" ]
	[[ $stderr == "img-cat: invalid length '1x'"* ]]
}

@test "img-cat: --map streams exactly the data extents, in map order" {
	mkqcow2
	oracle a.qcow2
	img-map --output=json a.qcow2 > m
	img-cat --map m a.qcow2 > s
	# the expected stream: each data && !zero extent's bytes, cut from the oracle
	: > want
	jq -r '.[] | select(.data and (.zero | not)) | "\(.start) \(.length)"' m |
	while read -r start len; do
		tail -c +$((start + 1)) oracle.raw | head -c "$len" >> want
	done
	cmp s want
	[ "$(stat -c %s s)" -eq "$(jq '[.[] | select(.data and (.zero | not)) | .length] | add' m)" ]
}

@test "img-cat: --map takes JSON Lines, the human form, and - for stdin" {
	mkraw
	img-map --output=json -f raw r.raw > m
	img-cat -f raw --map m r.raw > want
	jq -c '.[]' m > ml
	img-cat -f raw --map ml r.raw | cmp - want
	img-map -f raw r.raw > mh
	img-cat -f raw --map mh r.raw | cmp - want
	img-map --output=json -f raw r.raw | img-cat -f raw --map - r.raw | cmp - want
	# a filtered map: only the second data extent
	jq -c '[.[] | select(.data)][1]' m > one
	img-cat -f raw --map one r.raw | cmp - <(dd if=r.raw bs=1M skip=10 count=1 status=none)
	# zero and unallocated extents carry nothing
	jq -c '.[] | select(.data | not)' m > zeros
	run -0 img-cat -f raw --map zeros r.raw
	[ -z "$output" ]
}

@test "img-cat: a malformed map line is one error naming the line" {
	mkraw
	printf '{ "start": 0, "length": 512, "data": true}\n{ "start": 512 "length": 1}\n' > bad
	run -1 --separate-stderr img-cat -f raw --map bad r.raw
	[ "$stderr" = "img-cat: bad: line 2: expected ',' or '}'" ]
	printf 'Offset          Length          Mapped to       File\n0 0x200 0 r.raw\nzz\n' > badh
	run -1 --separate-stderr img-cat -f raw --map badh r.raw
	[ "$stderr" = "img-cat: badh: line 3: malformed map line" ]
	printf '{ "start": 512, "length": 512, "data": true}\n{ "start": 0, "length": 512, "data": true}\n' > order
	run -1 --separate-stderr img-cat -f raw --map order r.raw
	[ "$stderr" = "img-cat: order: line 2: extents overlap or are out of order" ]
	run -1 --separate-stderr img-cat -f raw --map nope r.raw
	[ "$stderr" = "img-cat: nope: No such file or directory" ]
}

@test "img-cat: a map extent past the end of the image is an error" {
	mkraw
	printf '{ "start": 0, "length": 512, "data": true}\n{ "start": 67108352, "length": 1024, "data": true}\n' > m
	run -1 --separate-stderr img-cat -f raw --map m r.raw
	[ "$stderr" = "img-cat: m: line 2: extent 67108352+1024 is past the end of 'r.raw' (67108864 bytes)" ]
}

@test "img-cat: --map is not combined with a range" {
	mkraw
	img-map --output=json -f raw r.raw > m
	run -1 --separate-stderr img-cat -f raw --map m --offset=1 r.raw
	[[ $stderr == *"--map cannot be combined with --offset or --length"* ]]
}

@test "img-cat: a closed pipe ends it quietly (SIGPIPE)" {
	qimg create -q -f qcow2 a.qcow2 1G
	run -0 bash -c 'img-cat a.qcow2 | head -c 10 | wc -c; echo "${PIPESTATUS[0]}"'
	[ "${lines[0]}" -eq 10 ]
	[ "${lines[1]}" -eq 141 ]
	# even when the parent ignores SIGPIPE: no "Broken pipe" message
	run -0 --separate-stderr bash -c 'trap "" PIPE; img-cat a.qcow2 | head -c 10 >/dev/null; echo "${PIPESTATUS[0]}"'
	[ "$output" -eq 141 ]
	[ -z "$stderr" ]
}

@test "img-cat: usage errors and missing files" {
	run -1 --separate-stderr img-cat
	[ "${stderr_lines[0]}" = "img-cat: Expecting one image file name" ]
	[ "${stderr_lines[1]}" = "Try 'img-cat --help' for more information" ]
	run -1 --separate-stderr img-cat -x a
	[ "${stderr_lines[0]}" = "img-cat: unrecognized option '-x'" ]
	run -1 --separate-stderr img-cat nope
	[ "$stderr" = "img-cat: Could not open 'nope': Could not open 'nope': No such file or directory" ]
	run -0 --separate-stderr img-cat --help
	[[ $output == *"See img-cat(1)."* ]]
}

@test "img-cat: --image-opts and -U" {
	mkraw
	img-cat --image-opts driver=raw,file.filename=r.raw | cmp - r.raw
	img-cat -U -f raw r.raw | cmp - r.raw
}

@test "img-cat: stdout full is an error" {
	mkraw
	run -1 --separate-stderr bash -c 'img-cat -f raw r.raw >/dev/full'
	[ "$stderr" = "img-cat: stdout: No space left on device" ]
}

@test "img-cat: a 1 TiB sparse image into a file in well under a second" {
	qimg create -q -f qcow2 big.qcow2 1T
	qio -c 'write -P 1 512G 64k' big.qcow2 >/dev/null
	timeout 2 img-cat big.qcow2 > out
	[ "$(stat -c %s out)" -eq $((1 << 40)) ]
	cmp <(img-cat --offset=512G --length=64k big.qcow2) <(dd if=out bs=64k skip=$((8 << 20)) count=1 status=none)
	truncate -s 1T big.raw
	timeout 2 img-cat -f raw big.raw > out2
	[ "$(stat -c %s out2)" -eq $((1 << 40)) ]
}

@test "img-cat: -S with --map-out leaves zero chunks out of stream and map alike" {
	qimg create -q -f qcow2 a.qcow2 8M
	# data clusters holding zero 4k chunks, a zero cluster, a compressed one
	qio -c 'write -P 1 0 64k' -c 'write -z 8k 8k' -c 'write -P 2 1M 4k' \
	    -c 'write -z 2M 64k' -c 'write -c -P 3 3M 64k' -c 'write -z 3M 4k' \
	    a.qcow2 >/dev/null
	oracle a.qcow2
	img-map --output=json a.qcow2 > m
	img-cat --map m -S 4k --map-out r a.qcow2 > s
	# every line a JSON object; the data lines name exactly the streamed bytes
	jq -e 'type == "object"' r >/dev/null
	[ "$(jq -s '[.[] | select(.data and (.zero | not)) | .length] | add' r)" -eq \
	    "$(stat -c %s s)" ]
	# the zero chunks are gone: 64k + 4k + 64k of data, less 8k and 4k of zeroes
	[ "$(stat -c %s s)" -eq $((64 * 1024 - 8192 + 4096 + 64 * 1024 - 4096)) ]
	# the same map and stream lay out the same disk
	img-create -q -f raw y.raw 8M
	img-write -f raw --map r -S 0 --target-is-zero y.raw < s
	cmp y.raw oracle.raw
	# two pipes at once, as img-convert runs them
	mkfifo fifo
	img-create -q -f raw z.raw 8M
	img-cat --map m -S 4k --map-out fifo a.qcow2 |
	    img-write -f raw --map fifo -S 0 --target-is-zero z.raw
	cmp z.raw oracle.raw
	[ "$(qimg map --output=json z.raw)" = "$(qimg map --output=json y.raw)" ]
}

@test "img-cat: -S and --map-out only together, with --map" {
	qimg create -q -f qcow2 a.qcow2 1M
	run -1 --separate-stderr img-cat -S 4k a.qcow2
	[[ $stderr == "img-cat: -S and --map-out go together, with --map"* ]]
	run -1 --separate-stderr img-cat --map-out x a.qcow2
	[[ $stderr == "img-cat: -S and --map-out go together, with --map"* ]]
	img-map --output=json a.qcow2 > m
	run -1 --separate-stderr img-cat --map m -S 1000 --map-out x a.qcow2
	[[ $stderr == "img-cat: -S: sizes are multiples of 512 up to 16 MiB"* ]]
	[ ! -e x ]
}

@test "img-cat: --salvage streams zeroes for sectors that fail to read, as qemu-img convert" {
	qimg create -q -f qcow2 s.qcow2 4M
	qio -c 'write -P 7 0 4M' s.qcow2 >/dev/null
	local j
	j=$(blkdebug_json s.qcow2 block-status:2050 read:4000 read:4001)
	qimg convert --salvage -O raw "$j" q.raw 2>/dev/null
	img-cat --salvage "$j" >o.raw 2>err
	cmp o.raw q.raw
	[ "$(cat err)" = "img-cat: warning: error while reading block status at offset 1049600: Input/output error
img-cat: warning: error while reading offset 2048000: Input/output error
img-cat: warning: error while reading offset 2048512: Input/output error" ]
	img-map --output=json s.qcow2 >m
	img-cat --salvage --map=m "$j" 2>err | cmp - q.raw
	[ "$(wc -l <err)" -eq 2 ]
	run -1 img-cat "$j"
}

@test "img-cat: --as-convert names a failed read by the piece of its extent that fails" {
	qimg create -q -f qcow2 s.qcow2 8M
	qio -c 'write -P 7 1M 6M' s.qcow2 >/dev/null
	img-map --output=json s.qcow2 >m
	local j
	j=$(blkdebug_json s.qcow2 read:9000)
	# byte 4608000: the second 2 MiB piece from the extent's start at 1 MiB
	run -1 --separate-stderr img-cat --map=m --as-convert=2M "$j"
	[ "$stderr" = "img-cat: error while reading at byte 3145728: Input/output error" ]
	run -1 --separate-stderr img-cat --map=m --as-convert=64k "$j"
	[ "$stderr" = "img-cat: error while reading at byte 4587520: Input/output error" ]
	# the same through -S and --map-out
	run -1 --separate-stderr img-cat --map=m -S 4k --map-out=/dev/null --as-convert=2M "$j"
	[ "$stderr" = "img-cat: error while reading at byte 3145728: Input/output error" ]
	run -1 --separate-stderr img-cat --map=m "$j"
	[[ $stderr == "img-cat: json:"*": Input/output error" ]]
	run -1 --separate-stderr img-cat --as-convert=2M s.qcow2
	[[ $stderr == "img-cat: --as-convert goes with --map"* ]]
	run -1 --separate-stderr img-cat --map=m --as-convert=1000 s.qcow2
	[[ $stderr == "img-cat: --as-convert: sizes are multiples of 512 up to 64 MiB"* ]]
}
