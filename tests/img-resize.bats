#!/usr/bin/env bats
bats_require_minimum_version 1.5.0
# img-resize: qemu-img resize's sizes, messages and results, raw and qcow2.

load helpers

# both SRC ARGS... SIZE: qemu-img resize and img-resize on copies q.X and i.X
# of SRC; same stdout+stderr (program name aside) and status.
both() {
	need_qemu || return 1
	local src=$1 ext=${1##*.} want got wstat=0 gstat=0
	shift
	local n=$# size=${!#}
	cp "$src" "q.$ext" && cp "$src" "i.$ext"
	want=$(command qemu-img resize "${@:1:n-1}" "q.$ext" "$size" 2>&1) || wstat=$?
	got=$(img-resize "${@:1:n-1}" "i.$ext" "$size" 2>&1) || gstat=$?
	want=${want//q.$ext/X} got=${got//i.$ext/X}
	want=${want//qemu-img:/PROG:} got=${got//img-resize:/PROG:}
	want=${want//"'qemu-img --help'"/HELP} got=${got//"'img-resize --help'"/HELP}
	if [ "$want" != "$got" ] || [ "$wstat" != "$gstat" ]; then
		echo "qemu-img resize $* (exit $wstat):"; echo "$want"
		echo "img-resize $* (exit $gstat):"; echo "$got"
		return 1
	fi
}

# The two results hold the same disk, qemu-img check finds nothing in ours.
same_result() {
	local fmt=${1:-qcow2} ext=${2:-qcow2}
	qimg compare -q -f "$fmt" -F "$fmt" "q.$ext" "i.$ext"
	[ "$fmt" != qcow2 ] || qimg check -q "i.$ext"
	diff <(qimg info -f "$fmt" "q.$ext" | grep -v -e '^image:' -e '^disk size:') \
	    <(qimg info -f "$fmt" "i.$ext" | grep -v -e '^image:' -e '^disk size:')
}

@test "img-resize: qcow2 grows as qemu-img grows it, the L1 table moving" {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -c 'write -P 7 0 1M' -c 'write -P 8 63M 1M' a.qcow2 >/dev/null
	for size in 64M 65M +1G 10G 3T; do
		both a.qcow2 "$size"
		same_result
		qio -c 'read -P 7 0 1M' -c 'read -P 8 63M 1M' i.qcow2 >/dev/null
		[ "$size" = 64M ] || qio -c 'read -P 0 64M 1M' i.qcow2 >/dev/null
	done
	[ "$(qimg info --output=json i.qcow2 | jq '.["virtual-size"]')" = $((3 << 40)) ]
}

@test "img-resize: the grown image takes writes from qemu-io and from img" {
	qimg create -q -f qcow2 a.qcow2 1M
	qio -c 'write -P 5 0 64k' a.qcow2 >/dev/null
	run -0 img-resize a.qcow2 2G
	[ "$output" = "Image resized." ]
	qio -c 'write -P 6 1G 1M' a.qcow2 >/dev/null
	head -c 65536 /dev/zero | tr '\0' '\11' | img-write -f qcow2 --offset 1536M a.qcow2 2>/dev/null ||
	    qio -c 'write -P 9 1536M 64k' a.qcow2 >/dev/null
	qio -c 'read -P 5 0 64k' -c 'read -P 6 1G 1M' -c 'read -P 9 1536M 64k' a.qcow2 >/dev/null
	qimg check -q a.qcow2
}

@test "img-resize: --shrink drops the clusters past the end, as qemu-img" {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -c 'write -P 7 0 1M' -c 'write -P 8 60M 4M' -c 'write -c -P 9 32M 64k' \
	    -c 'write -z 40M 64k' a.qcow2 >/dev/null
	for size in 61M 60M 33M 1M -- -32M; do
		[ "$size" = -- ] && continue
		both a.qcow2 --shrink "$size"
		same_result
		[ "$(stat -c %s i.qcow2)" -le "$(stat -c %s q.qcow2)" ]
	done
	both a.qcow2 --shrink 61M
	run -0 img-resize i.qcow2 64M
	qio -c 'read -P 8 60M 1M' -c 'read -P 0 61M 3M' i.qcow2 >/dev/null
	qimg check -q i.qcow2
}

@test "img-resize: qcow2 preallocation of the grown area, each mode" {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -c 'write -P 7 0 1M' a.qcow2 >/dev/null
	for p in off metadata falloc full; do
		both a.qcow2 --preallocation=$p 200M
		same_result
		[ "$(qimg map --output=json i.qcow2 | jq -c '[.[] | select(.start >= 67108864) | .data] | unique')" = \
		    "$(qimg map --output=json q.qcow2 | jq -c '[.[] | select(.start >= 67108864) | .data] | unique')" ]
	done
}

@test "img-resize: growing over a longer backing file reads zeroes, as qemu" {
	qimg create -q -f raw base.raw 1M
	qio -f raw -c 'write -P 7 0 1M' base.raw >/dev/null
	for o in extended_l2=off extended_l2=on compat=0.10; do
		for size in 40k 41k 64k 1000k; do
			qimg create -q -f qcow2 -o $o -b base.raw -F raw t.qcow2 $size
			both t.qcow2 1M
			cmp q.qcow2 i.qcow2 || [ "$size" = 41k ]
			[ "$o" = compat=0.10 ] && continue
			qimg compare -q q.qcow2 i.qcow2
			qimg check -q i.qcow2
			qio -c "read -P 7 0 $size" i.qcow2 >/dev/null
		done
	done
}

@test "img-resize: preallocating keeps what the old last cluster held" {
	qimg create -q -f raw base.raw 1M
	qio -f raw -c 'write -P 7 0 1M' base.raw >/dev/null
	for p in metadata falloc full; do
		qimg create -q -f qcow2 -b base.raw -F raw -o cluster_size=64k t.qcow2 31k
		run -0 img-resize --preallocation=$p t.qcow2 128k
		qio -c 'read -P 7 0 31k' -c 'read -P 0 31k 97k' t.qcow2 >/dev/null
		qimg check -q t.qcow2
		qimg create -q -f qcow2 -o preallocation=metadata m.qcow2 2048000
		qio -c 'write -P 5 0 2048000' m.qcow2 >/dev/null
		run -0 img-resize --preallocation=$p m.qcow2 +16k
		qio -c 'read -P 5 0 2048000' -c 'read -P 0 2048000 16k' m.qcow2 >/dev/null
		qimg check -q m.qcow2
	done
}

@test "img-resize: extended L2 images preallocate too" {
	qimg create -q -f raw base.raw 1M
	qio -f raw -c 'write -P 255 0 1M' base.raw >/dev/null
	for p in metadata falloc full; do
		qimg create -q -f qcow2 -o extended_l2=on -F raw -b base.raw t.qcow2 503k
		both t.qcow2 --preallocation=$p 1013k
		qio -c 'read -P 255 0 503k' -c 'read -P 0 503k 510k' i.qcow2 >/dev/null
		qimg compare -q q.qcow2 i.qcow2
		qimg check -q i.qcow2
		qimg create -q -f qcow2 -o extended_l2=on n.qcow2 503k
		qio -c 'write -P 255 0 503k' n.qcow2 >/dev/null
		both n.qcow2 --preallocation=$p 1013k
		qio -c 'read -P 255 0 503k' -c 'read -P 0 503k 510k' i.qcow2 >/dev/null
		qimg check -q i.qcow2
	done
}

@test "img-resize: raw files grow, shrink and preallocate as qemu-img's" {
	qimg create -q -f raw a.raw 1M
	qio -f raw -c 'write -P 7 0 1M' a.raw >/dev/null
	for args in "2M" "+1k" "--shrink 1000" "--shrink 1.5k" "0x200000" \
	    "--preallocation=falloc 3M" "--preallocation=full 3M" "-q 2M"; do
		both a.raw -f raw $args
		cmp q.raw i.raw
		[ "$(stat -c %b i.raw)" = "$(stat -c %b q.raw)" ]
	done
	both a.raw 2M		# probed: qemu's warning, then the resize
}

@test "img-resize: images made by img-create resize and read back in qemu" {
	img-create -q -f qcow2 a.qcow2 10M
	qio -c 'write -P 3 9M 1M' a.qcow2 >/dev/null
	run -0 img-resize -q a.qcow2 +5G
	[ -z "$output" ]
	qio -c 'read -P 3 9M 1M' -c 'read -P 0 10M 1M' a.qcow2 >/dev/null
	run -0 img-resize --shrink a.qcow2 9M
	qio -c 'read -P 3 9M 1k' a.qcow2 >/dev/null && false
	qimg check -q a.qcow2
	[ "$(qimg info --output=json a.qcow2 | jq '.["virtual-size"]')" = 9437184 ]
}

@test "img-resize: internal snapshots keep their size" {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -c 'write -P 1 0 64M' a.qcow2 >/dev/null
	qimg snapshot -c s1 a.qcow2
	both a.qcow2 --shrink 1M
	same_result
	qimg snapshot -a s1 i.qcow2
	qio -c 'read -P 1 0 64M' i.qcow2 >/dev/null
	qimg check -q i.qcow2
	qimg create -q -f qcow2 -o compat=0.10 v2.qcow2 64M
	qimg snapshot -c s1 v2.qcow2
	both v2.qcow2 128M
	cmp v2.qcow2 i.qcow2
}

@test "img-resize: size and option errors are qemu-img's, the image untouched" {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -c 'write -P 7 0 1M' a.qcow2 >/dev/null
	for args in "1000" "32M" "-- -1G" "-1G" "0" "8E" "15E" "16E" \
	    "18446744073709551616" "9223372036854775807" "3P" "1e3" "''" "x" \
	    "-- --1M" "+" "--preallocation=foo 1G" "--preallocation=full 64M" \
	    "--preallocation=full --shrink 32M" "-f raw --image-opts 1G" \
	    "-x 1G" "1G -x" "--preallocation" "-f foo 1G"; do
		eval "both a.qcow2 $args"
		cmp a.qcow2 i.qcow2
	done
	qimg create -q -f raw r.raw 1M
	both r.raw -f raw --preallocation=metadata 2M
	both r.raw -f raw 9223372035781033984
	cmp r.raw i.raw
}

@test "img-resize: too few arguments, --help and the hidden option lists" {
	run -1 --separate-stderr img-resize
	[ "$stderr" = "$(printf "img-resize: Not enough arguments\nTry 'img-resize --help' for more information")" ]
	run -1 --separate-stderr img-resize x.qcow2
	[ "${stderr_lines[0]}" = "img-resize: Not enough arguments" ]
	run -0 img-resize --help 1G
	[[ $output == *"See img-resize(1)."* ]]
	run -0 img-resize --help
	[[ $output == *"See img-resize(1)."* ]]
	run -0 img-resize --long-options
	[[ $output == *--preallocation* ]]
	run -0 img-resize --long-options 1G
	[[ $output == *--shrink* ]]
	run -0 img-resize --short-options 1G
	[[ $output == *-q* ]]
}

@test "img-resize: missing, garbage and truncated files: one line, status 1" {
	run -1 --separate-stderr img-resize nonexistent 1G
	[ "$stderr" = "img-resize: Could not open 'nonexistent': Could not open 'nonexistent': No such file or directory" ]
	head -c 4096 /dev/urandom > g.bin
	cp g.bin g0.bin
	run -1 --separate-stderr img-resize -f qcow2 g.bin 1G
	[ "$stderr" = "img-resize: Could not open 'g.bin': Image is not in qcow2 format" ]
	cmp g.bin g0.bin
	qimg create -q -f qcow2 t.qcow2 64M
	truncate -s 100k t.qcow2
	cp t.qcow2 t0.qcow2
	run -1 --separate-stderr img-resize t.qcow2 128M
	[ "${#stderr_lines[@]}" -eq 1 ] && [[ $stderr == "img-resize: "* ]]
	cmp t.qcow2 t0.qcow2
	qimg create -q -f qcow2 l.qcow2 64M
	poke l.qcow2 36 '\x00\x00\x00\x00'	# l1_size 0: "L1 table is too small"
	run -1 --separate-stderr img-resize l.qcow2 128M
	[ "$stderr" = "img-resize: Could not open 'l.qcow2': L1 table is too small" ]
}

# bmtwins OPTS SIZE: q.qcow2 and o.qcow2, alike, with three bitmaps (one
# disabled) holding qemu-written bits
bmtwins() {
	qimg create -q -f qcow2 -o "$1" q.qcow2 "$2"
	qimg bitmap --add -g 512 q.qcow2 b1
	qimg bitmap --add -g 64k q.qcow2 b2
	qimg bitmap --add q.qcow2 b3
	qio -c 'write 1M 64k' -c 'write 9M 1M' -c 'write 40M 3M' q.qcow2 >/dev/null
	qimg bitmap --disable q.qcow2 b3
	cp q.qcow2 o.qcow2
}

# bmsame: the twins' bitmaps, info, check and map agree
bmsame() {
	diff <(bits q.qcow2) <(bits o.qcow2)
	diff <(qimg info --output=json q.qcow2 | grep -v '"filename"\|actual-size') \
	    <(qimg info --output=json o.qcow2 | grep -v '"filename"\|actual-size')
	diff <(qimg check --output=json q.qcow2 | grep -v filename) \
	    <(qimg check --output=json o.qcow2 | grep -v filename)
	diff <(qimg map --output=json q.qcow2) <(qimg map --output=json o.qcow2)
}

@test "img-resize: persistent bitmaps follow a grow and a shrink as qemu's" {
	bmtwins cluster_size=4k 64M
	qimg resize -q --shrink q.qcow2 20M
	img resize -q --shrink o.qcow2 20M
	bmsame
	[[ $(bits o.qcow2) != *40M* ]]
	qimg resize -q q.qcow2 70M
	img resize -q o.qcow2 70M
	bmsame
	qio -c 'write 68M 1M' q.qcow2 >/dev/null
	qio -c 'write 68M 1M' o.qcow2 >/dev/null
	bmsame
	bmtwins cluster_size=64k 1G
	qimg resize -q q.qcow2 3G
	img resize -q o.qcow2 3G
	bmsame
	qimg resize -q --shrink q.qcow2 5M
	img resize -q --shrink o.qcow2 5M
	bmsame
}

@test "img-resize: an inconsistent bitmap refuses the resize as qemu's, nothing written" {
	qimg create -q -f qcow2 t.qcow2 10M
	qimg bitmap --add t.qcow2 b1
	qimg bitmap --add t.qcow2 b2
	# qemu-io killed while it holds the image: the bitmaps stay in use
	run -137 qio -c 'sigraise 9' t.qcow2
	cp t.qcow2 t0.qcow2
	run -1 --separate-stderr img-resize t.qcow2 20M
	[ "$stderr" = "img-resize: Bitmap 'b1' is inconsistent and cannot be used
Try block-dirty-bitmap-remove to delete this bitmap from disk" ]
	[ -z "$output" ]
	cmp t.qcow2 t0.qcow2
	same resize t.qcow2 20M
}

@test "img-resize: metadata preallocation past an extended L2 partial cluster as qemu's" {
	for t in q o; do
		qimg create -q -f qcow2 -o extended_l2=on $t.qcow2 1000k
		qio -c 'write -P 1 0 100k' $t.qcow2 >/dev/null
	done
	qimg resize -q --preallocation=metadata q.qcow2 3M
	img resize -q --preallocation=metadata o.qcow2 3M
	diff <(qimg map --output=json q.qcow2) <(qimg map --output=json o.qcow2)
	diff <(qimg check q.qcow2) <(qimg check o.qcow2)
	qimg compare q.qcow2 o.qcow2
}

@test "img-resize: falloc and full preallocation lay clusters out as qemu's" {
	qimg create -q -f raw b.raw 4M
	for o in cluster_size=512 cluster_size=64k extended_l2=on compat=0.10 \
	    extended_l2=on,backing_file=b.raw,backing_fmt=raw; do
		for pm in falloc full; do
			for t in q o; do
				qimg create -q -f qcow2 -o "$o" $t.qcow2 1000k
				qio -c 'write -P 1 0 100k' $t.qcow2 >/dev/null
			done
			qimg resize -q --preallocation=$pm q.qcow2 3M
			img resize -q --preallocation=$pm o.qcow2 3M
			diff <(qimg map --output=json q.qcow2) \
			    <(qimg map --output=json o.qcow2)
			diff <(qimg check q.qcow2) <(qimg check o.qcow2)
			qimg compare q.qcow2 o.qcow2 >/dev/null
		done
	done
}

# t.qcow2 with 1 MiB of data
data1m() {
	qemu-img create -q -f qcow2 t.qcow2 8M &&
	    qemu-io -c 'write -P 3 0 1M' t.qcow2
}

@test "img-resize: failing writes and flushes say and exit as qemu-img" {
	# "Failed to update the image size: ...", then the close's lines
	faults_as_qemu data1m write_aio pwritev pwritev_done flush_to_os \
	    flush_to_disk l2_update refblock_update_part l1_update \
	    cluster_alloc refblock_load -- resize @J 16M
	# preallocated: "Failed to resize refcount structures: ...", "Failed
	# to update L2 tables: ...", "Failed to flush the preallocated area
	# to disk: ..." (refblock_alloc, refblock_load and cluster_free with
	# once off differ: our refcount steps are not qemu's)
	faults_as_qemu data1m write_aio pwritev pwritev_done flush_to_os \
	    flush_to_disk l2_update refblock_update_part l2_load cluster_alloc \
	    cluster_free:true -- resize --preallocation=full @J 16M
}
