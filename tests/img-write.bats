#!/usr/bin/env bats
# img-write: a raw stream into an existing image, at an offset or by a map; sparse; errors.
load helpers
bats_require_minimum_version 1.5.0

# a qcow2 source with data, zero and compressed clusters, and an all-zero data cluster
mksrc() {
	qimg create -q -f qcow2 src.qcow2 64M
	qio -c 'write -P 1 0 1M' -c 'write -z 4M 1M' -c 'write -P 2 6M 64k' \
	    -c 'write -z 6M 32k' -c 'write -c -P 3 8M 128k' \
	    -c 'write -P 0 10M 1M' -c 'write -P 4 63M 1M' src.qcow2 >/dev/null
}

# allocated bytes of an image in its map (data extents)
data_bytes() {
	img-map --output=json "$@" | jq '[.[] | select(.data) | .length] | add // 0'
}

@test "img-write: a stream into raw and qcow2 at offset 0, read back by qemu-io" {
	head -c 3M /dev/urandom > in
	qimg create -q -f raw y.raw 4M
	img-write -f raw y.raw < in
	cmp <(head -c 3M y.raw) in
	qimg create -q -f qcow2 y.qcow2 4M
	img-write -f qcow2 y.qcow2 < in
	qimg convert -O raw y.qcow2 y.out
	cmp <(head -c 3M y.out) in
	qimg check y.qcow2
}

@test "img-write: --offset writes there and leaves the rest alone" {
	qimg create -q -f qcow2 y.qcow2 4M
	qio -c 'write -P 7 0 4M' y.qcow2 >/dev/null
	printf 'hello' | img-write -f qcow2 --offset=1M y.qcow2
	run -0 qio -c 'read -P 7 0 1M' -c 'read -v 1M 5' -c 'read -P 7 1048581 3145723' y.qcow2
	[[ $output == *"hello"* ]]
	[[ $output != *"Pattern verification failed"* ]]
	printf 'x' | img-write -f qcow2 --offset=4194303 y.qcow2
	run -0 qio -c 'read -v 4194303 1' y.qcow2
	[[ $output == *"78  x"* ]]
	qimg check y.qcow2
}

@test "img-write: a stream past the end writes up to the end and says so" {
	qimg create -q -f raw y.raw 1M
	run -1 --separate-stderr bash -c 'head -c 2M /dev/zero | tr "\0" "a" | img-write -f raw --offset=512k y.raw'
	[ "$stderr" = "img-write: stdin: stream runs past the end of 'y.raw' (1048576 bytes); nothing past byte 524288 of the stream was written" ]
	[ "$(stat -c %s y.raw)" -eq 1048576 ]
	[ "$(tail -c 512k y.raw | tr -d a | wc -c)" -eq 0 ]
	[ "$(head -c 512k y.raw | tr -d '\0' | wc -c)" -eq 0 ]
	# exactly as long as the room left is fine
	head -c 512k /dev/zero | img-write -f raw --offset=512k y.raw
	run -1 --separate-stderr img-write -f raw --offset=2M y.raw < /dev/null
	[ "$stderr" = "img-write: --offset 2097152 is past the end of 'y.raw' (1048576 bytes)" ]
}

@test "img-write: zero chunks stay sparse (default 4k), -S 0 allocates everything" {
	{ head -c 64k /dev/urandom; head -c 1M /dev/zero; head -c 4k /dev/urandom; } > in
	qimg create -q -f qcow2 y.qcow2 2M
	img-write -f qcow2 --target-is-zero y.qcow2 < in
	[ "$(data_bytes y.qcow2)" -eq $((128 << 10)) ]
	qimg create -q -f qcow2 z.qcow2 2M
	img-write -f qcow2 -S 0 z.qcow2 < in
	[ "$(data_bytes z.qcow2)" -ge $((1092 << 10)) ]
	for f in y.qcow2 z.qcow2; do
		qimg convert -O raw $f $f.raw
		cmp <(head -c $((1092 << 10)) $f.raw) in
		qimg check $f
	done
	# raw: the zero run is a hole
	truncate -s 2M y.raw
	img-write -f raw -S 64k y.raw < in
	cmp <(head -c $((1092 << 10)) y.raw) in
	[ "$(stat -c %b y.raw)" -lt 1024 ]
}

@test "img-write: without --target-is-zero zero chunks overwrite old data" {
	qimg create -q -f qcow2 y.qcow2 1M
	qio -c 'write -P 9 0 1M' y.qcow2 >/dev/null
	head -c 1M /dev/zero | img-write -f qcow2 y.qcow2
	run -0 qio -c 'read -P 0 0 1M' y.qcow2
	[[ $output != *"Pattern verification failed"* ]]
	[ "$(img-map --output=json y.qcow2 | jq '[.[] | select(.data)] | length')" -eq 0 ]
	qimg check y.qcow2
}

@test "img-write: a sparse file on stdin: its holes are not read (1 TiB)" {
	truncate -s 1T big.raw
	printf 'hello' | dd of=big.raw bs=1 seek=$((1 << 39)) conv=notrunc status=none
	qimg create -q -f qcow2 y.qcow2 1T
	timeout 2 img-write -f qcow2 -n y.qcow2 < big.raw
	run -0 qio -c 'read -v 512G 5' y.qcow2
	[[ $output == *"hello"* ]]
	[ "$(data_bytes y.qcow2)" -le 65536 ]
	qimg check y.qcow2
	# holes over old data are zeroed
	truncate -s 8M s.raw
	printf 'abc' | dd of=s.raw bs=1 seek=$((3 << 20)) conv=notrunc status=none
	qimg create -q -f raw d.raw 16M
	qio -f raw -c 'write -P 9 0 16M' d.raw >/dev/null
	img-write -f raw --offset=4M d.raw < s.raw
	cmp s.raw <(dd if=d.raw bs=1M skip=4 count=8 status=none)
	run -0 qio -f raw -c 'read -P 9 0 4M' -c 'read -P 9 12M 4M' d.raw
	[[ $output != *"Pattern verification failed"* ]]
}

@test "img-write: -S takes qemu-img convert's values" {
	qimg create -q -f raw y.raw 1M
	for s in 0 512 4k 1536 16M; do
		img-write -f raw -S "$s" y.raw < /dev/null
	done
	for s in 100 1x 17M -1; do
		run -1 --separate-stderr img-write -f raw -S "$s" y.raw
		[ "$stderr" = "img-write: Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 16777216. Select 0 to disable sparse detection (fully allocates output)." ]
	done
}

@test "img-write: --map lays a map's stream into a new qcow2 (convert by hand)" {
	mksrc
	img-map --output=json src.qcow2 > m
	qimg create -q -f qcow2 dst.qcow2 64M
	img-cat --map m src.qcow2 | img-write --map m --target-is-zero dst.qcow2
	qimg compare src.qcow2 dst.qcow2
	qimg check dst.qcow2
	# the all-zero data cluster at 10M stayed unallocated
	run -0 img-map --output=json --start-offset=10M --max-length=1M dst.qcow2
	[[ $output == *'"data": false'* ]]
	[[ $output != *'"data": true'* ]]
}

@test "img-write: --map without --target-is-zero zeroes what the map says is zero" {
	mksrc
	img-map --output=json src.qcow2 > m
	qimg create -q -f qcow2 dst.qcow2 64M
	qio -c 'write -P 8 0 64M' dst.qcow2 >/dev/null
	img-cat --map m src.qcow2 | img-write -f qcow2 --map m dst.qcow2
	qimg compare src.qcow2 dst.qcow2
	qimg check dst.qcow2
	# and raw
	qimg create -q -f raw dst.raw 64M
	qio -f raw -c 'write -P 8 0 64M' dst.raw >/dev/null
	img-cat --map m src.qcow2 | img-write -f raw --map m dst.raw
	qimg compare -f qcow2 -F raw src.qcow2 dst.raw
}

@test "img-write: --map with -S 0 allocates everything, as qemu-img convert -S 0" {
	mksrc
	img-map --output=json src.qcow2 > m
	qimg create -q -f qcow2 dst.qcow2 64M
	img-cat --map m src.qcow2 | img-write -f qcow2 -S 0 --map m dst.qcow2
	qimg convert -S 0 -O qcow2 src.qcow2 want.qcow2
	qimg compare src.qcow2 dst.qcow2
	diff <(qimg map --output=json want.qcow2 | jq -c '.[] | {start, length, data, zero}') \
	    <(qimg map --output=json dst.qcow2 | jq -c '.[] | {start, length, data, zero}')
	qimg check dst.qcow2
	# --target-is-zero still skips the zero extents
	qimg create -q -f qcow2 d2.qcow2 64M
	img-cat --map m src.qcow2 | img-write -f qcow2 -S 0 -n --map m d2.qcow2
	qimg compare src.qcow2 d2.qcow2
	[ "$(data_bytes d2.qcow2)" -lt $((8 << 20)) ]
}

@test "img-write: --map takes JSON Lines and the human form" {
	qimg create -q -f raw src.raw 8M
	qio -f raw -c 'write -P 1 1M 1M' -c 'write -P 2 5M 4k' src.raw >/dev/null
	img-map -f raw --output=json src.raw | jq -c '.[]' > ml
	img-map -f raw src.raw > mh
	for m in ml mh; do
		qimg create -q -f qcow2 d$m.qcow2 8M
		img-cat -f raw --map $m src.raw | img-write -f qcow2 --map $m -n d$m.qcow2
		qimg compare -F qcow2 -f raw src.raw d$m.qcow2
	done
}

@test "img-write: ranges a partial map does not name are left alone" {
	qimg create -q -f qcow2 dst.qcow2 4M
	qio -c 'write -P 8 0 4M' dst.qcow2 >/dev/null
	long=$(printf 'f%.0s' $(seq 1 1000))
	printf '{ "start": 1048576, "length": 4096, "data": true, "filename": "%s"}\n' "$long" > m
	printf '{ "start": 2097152, "length": 4096, "zero": true}\n' >> m
	head -c 4096 /dev/zero | tr '\0' 'z' | img-write -f qcow2 --map m dst.qcow2
	run -0 qio -c 'read -P 8 0 1M' -c 'read -P 122 1M 4k' \
	    -c 'read -P 8 1052672 1044480' -c 'read -P 0 2M 4k' -c 'read -P 8 2101248 2093056' dst.qcow2
	[[ $output != *"Pattern verification failed"* ]]
	qimg check dst.qcow2
}

@test "img-write: a human map zeroes the gaps between its lines only" {
	truncate -s 4M src.raw
	qio -f raw -c 'write -P 1 1M 64k' -c 'write -P 2 3M 64k' src.raw >/dev/null
	img-map -f raw src.raw > mh
	[ "$(sed -n 2p mh | cut -c1-8)" = 0x100000 ]
	qimg create -q -f qcow2 dst.qcow2 4M
	qio -c 'write -P 8 0 4M' dst.qcow2 >/dev/null
	img-cat -f raw --map mh src.raw | img-write -f qcow2 --map mh dst.qcow2
	run -0 qio -c 'read -P 8 0 1M' -c 'read -P 1 1M 64k' -c 'read -P 0 1114112 2031616' \
	    -c 'read -P 2 3M 64k' -c 'read -P 8 3211264 983040' dst.qcow2
	[[ $output != *"Pattern verification failed"* ]]
}

@test "img-write: a short stream is one error line; what came is written" {
	mksrc
	img-map --output=json src.qcow2 > m
	qimg create -q -f qcow2 dst.qcow2 64M
	run -1 --separate-stderr bash -c 'img-cat --map m src.qcow2 | head -c 1000000 | img-write -f qcow2 --map m -n dst.qcow2'
	[ -z "$output" ]
	want=$(jq '[.[] | select(.data and (.zero | not)) | .length] | add' m)
	[ "$stderr" = "img-write: stdin: stream ended at byte 1000000, map expects $want" ]
	qimg check dst.qcow2
	run -0 qio -c 'read -P 1 0 999424' dst.qcow2
	[[ $output != *"Pattern verification failed"* ]]
}

@test "img-write: data left over after the map is an error" {
	qimg create -q -f raw src.raw 1M
	qio -f raw -c 'write -P 1 0 4k' src.raw >/dev/null
	img-map -f raw --output=json src.raw > m
	qimg create -q -f raw dst.raw 1M
	run -1 --separate-stderr bash -c '{ img-cat -f raw --map m src.raw; printf x; } | img-write -f raw --map m dst.raw'
	[ "$stderr" = "img-write: stdin: data left over after the 4096 bytes the map expects" ]
}

@test "img-write: a malformed map or one past the end writes nothing" {
	qimg create -q -f qcow2 dst.qcow2 1M
	before=$(sum dst.qcow2)
	printf '{ "start": 0, "length": 512, "data": true}\n{ "start": 512, "length": 512, "data": tru}\n' > bad
	run -1 --separate-stderr bash -c 'head -c 1024 /dev/urandom | img-write -f qcow2 --map bad dst.qcow2'
	[ "$stderr" = "img-write: bad: line 2: expected true or false" ]
	[ "$(sum dst.qcow2)" = "$before" ]
	printf '{ "start": 0, "length": 512, "data": true}\n{ "start": 1048064, "length": 1024, "data": true}\n' > past
	run -1 --separate-stderr bash -c 'head -c 1536 /dev/urandom | img-write -f qcow2 --map past dst.qcow2'
	[ "$stderr" = "img-write: past: line 2: extent 1048064+1024 is past the end of 'dst.qcow2' (1048576 bytes)" ]
	[ "$(sum dst.qcow2)" = "$before" ]
	run -1 --separate-stderr img-write -f qcow2 --map nope dst.qcow2
	[ "$stderr" = "img-write: nope: No such file or directory" ]
}

@test "img-write: usage errors" {
	qimg create -q -f raw y.raw 1M
	run -1 --separate-stderr img-write
	[ "${stderr_lines[0]}" = "img-write: Expecting one image file name" ]
	[ "${stderr_lines[1]}" = "Try 'img-write --help' for more information" ]
	run -1 --separate-stderr img-write --map - y.raw
	[ "${stderr_lines[0]}" = "img-write: --map -: stdin is the stream; give the map as a file" ]
	run -1 --separate-stderr img-write --map m --offset 1 y.raw
	[ "${stderr_lines[0]}" = "img-write: --map cannot be combined with --offset" ]
	run -1 --separate-stderr img-write -f raw nope.raw < /dev/null
	[ "$stderr" = "img-write: Could not open 'nope.raw': Could not open 'nope.raw': No such file or directory" ]
	run -0 --separate-stderr img-write --help
	[[ $output == *"See img-write(1)."* ]]
}

@test "img-write: a probed raw image gets qemu's warning" {
	qimg create -q -f raw y.raw 1M
	run -0 --separate-stderr bash -c 'printf x | img-write y.raw'
	[[ ${stderr_lines[0]} == "WARNING: Image format was not specified for 'y.raw' and probing guessed raw." ]]
}

@test "img-write: a write error is reported, not success" {
	# a raw image on a full file system: the write fails
	[ -w /dev/full ] || skip "no /dev/full"
	run -1 --separate-stderr bash -c 'head -c 4096 /dev/urandom | img-write -f raw /dev/full'
	[[ $stderr == "img-write: "* ]]
	[ "${#stderr_lines[@]}" -eq 1 ]
}

@test "img-write: into a qcow2 with a backing file, reads come out right" {
	qimg create -q -f qcow2 base.qcow2 4M
	qio -c 'write -P 1 0 4M' base.qcow2 >/dev/null
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
	printf 'abcd' | img-write -f qcow2 --offset=100000 top.qcow2
	run -0 qio -c 'read -P 1 0 100000' -c 'read -v 100000 4' -c 'read -P 1 100004 4093' top.qcow2
	[[ $output == *"abcd"* ]]
	[[ $output != *"Pattern verification failed"* ]]
	# zeroes over a backing file read as zeroes, not as the backing file
	head -c 1M /dev/zero | img-write -f qcow2 --offset=1M top.qcow2
	run -0 qio -c 'read -P 0 1M 1M' -c 'read -P 1 2M 2M' top.qcow2
	[[ $output != *"Pattern verification failed"* ]]
	qimg check top.qcow2
}

@test "img-write: a map through a pipe is taken as the stream comes; short streams fail" {
	truncate -s 4M src.raw
	head -c 64k /dev/urandom | dd of=src.raw bs=64k seek=3 conv=notrunc status=none
	img-map --output=json -f raw src.raw > m
	img-create -q -f raw a.raw 4M
	img-cat -f raw --map m src.raw | img-write -f raw --map <(cat m) a.raw
	cmp a.raw src.raw
	# a stream short of what the map wants
	img-create -q -f raw b.raw 4M
	run -1 --separate-stderr img-write -f raw --map <(cat m) -S 0 b.raw \
	    < <(img-cat -f raw --map m src.raw | head -c 1000)
	[ "$stderr" = "img-write: stdin: stream ended at byte 1000, map expects 65536" ]
	# and one longer
	run -1 --separate-stderr img-write -f raw --map <(cat m) -S 0 b.raw \
	    < <(img-cat -f raw --map m src.raw; echo extra)
	[ "$stderr" = "img-write: stdin: data left over after the 65536 bytes the map expects" ]
}

@test "img-write: a piped stream lands in qcow2 clusters in place, new, shared or partial" {
	head -c 3M /dev/urandom > d.raw
	# a preallocated target (clusters in place), one with a snapshot (shared
	# clusters: new ones), and offsets that cut clusters
	for pre in metadata off; do
		rm -f t.qcow2
		qimg create -q -f qcow2 -o preallocation=$pre t.qcow2 8M
		qio -c 'write -P 5 0 8M' t.qcow2 >/dev/null
		# in place
		img-write -f qcow2 -S 0 --offset=1M t.qcow2 < <(head -c 64k /dev/zero | tr '\0' '\5')
		qimg check t.qcow2
		qimg snapshot -c s1 t.qcow2
		cat d.raw | img-write -f qcow2 -S 0 --offset=100k t.qcow2
		qimg check t.qcow2
		qimg convert -O raw t.qcow2 got.raw
		cmp <(tail -c +$((100 * 1024 + 1)) got.raw | head -c 3M) d.raw
		cmp <(head -c $((100 * 1024)) got.raw) <(head -c $((100 * 1024)) /dev/zero | tr '\0' '\5')
		# the snapshot still reads its old bytes
		qimg convert -l s1 -O raw t.qcow2 old.raw
		cmp old.raw <(head -c 8M /dev/zero | tr '\0' '\5')
	done
}

@test "img-write: --grow makes the disk as long as the stream, holes kept" {
	{ head -c 100k /dev/urandom; head -c 1M /dev/zero; printf 'end'; } > s
	for fmt in raw qcow2; do
		rm -f g
		img-create -q -f $fmt g 0
		img-write -f $fmt --grow g < <(cat s)
		[ "$(qimg info --output=json -f $fmt g | jq '."virtual-size"')" -eq \
		    $(( (100 * 1024 + (1 << 20) + 3 + 511) / 512 * 512 )) ]
		cmp <(img-cat -f $fmt g | head -c "$(stat -c %s s)") s
		[ "$(data_bytes -f $fmt g)" -lt $((1 << 20)) ]
	done
	qimg check g
	run -1 --separate-stderr img-write -f raw --grow --map m g
	[ "${stderr%%$'\n'*}" = "img-write: --map cannot be combined with --grow" ]
}

@test "img-write: --as-convert names a failed write by where it began" {
	qimg create -q -f qcow2 t.qcow2 8M
	local t
	t="json:{'driver':'qcow2','file':{'driver':'blkdebug','inject-error':"
	t+="[{'event':'none','iotype':'write','errno':28,'sector':640}],"
	t+="'image':{'driver':'file','filename':'t.qcow2'}}}"
	printf '{"start": 0, "length": 1048576, "depth": 0, "present": true, "zero": true, "data": false},\n{"start": 1048576, "length": 7340032, "depth": 0, "present": true, "zero": false, "data": true}\n' >m
	run -1 --separate-stderr img-write --as-convert --map=m "$t" < <(head -c 7M /dev/urandom)
	[ "$stderr" = "img-write: error while writing at byte 1048576: No space left on device" ]
	qimg create -q -f qcow2 t.qcow2 8M
	run -1 --separate-stderr img-write --map=m "$t" < <(head -c 7M /dev/urandom)
	[[ $stderr == "img-write: json:"*": No space left on device" ]]
}

@test "img-write: a quorum of several children writes every child" {
	qimg create -q -f qcow2 c0.qcow2 4M
	cp c0.qcow2 c1.qcow2
	local q c="'vote-threshold':1,'children':[{'driver':'file','filename':'c0.qcow2'}"
	q="json:{'driver':'qcow2','file':{'driver':'quorum',$c,{'driver':'file','filename':'c1.qcow2'}]}}"
	head -c 1M /dev/urandom >d.raw
	img-write "$q" <d.raw
	qimg compare c0.qcow2 c1.qcow2
	qimg check c1.qcow2
	qimg convert -O raw c1.qcow2 r.raw
	cmp <(head -c 1M r.raw) d.raw
	head -c 1M /dev/urandom >e.raw
	img-convert -n -O qcow2 e.raw "$q"
	qimg compare c0.qcow2 c1.qcow2
	qimg compare e.raw c1.qcow2
}
