#!/usr/bin/env bats
# img-convert: qemu-img convert as img-map, then img-cat | img-write.
load helpers
bats_require_minimum_version 1.5.0

# a raw disk with data, written zeroes and holes: 0-1M pattern, 4M-5M zeroes, 9M-12M pattern
mkraw() {
	qimg create -q -f raw "$1" 32M
	qio -f raw -c 'write -P 1 0 1M' -c 'write -z 4M 1M' -c 'write -P 0 6M 64k' \
	    -c 'write -P 7 9M 3M' -c 'write -P 9 31M 4k' "$1" >/dev/null
}

# a qcow2 backing chain: base has data, top overwrites part and zeroes part
mkchain() {
	qimg create -q -f qcow2 base.qcow2 32M
	qio -f qcow2 -c 'write -P 1 0 4M' -c 'write -P 2 8M 2M' base.qcow2 >/dev/null
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
	qio -f qcow2 -c 'write -P 3 1M 1M' -c 'write -z 8M 1M' -c 'write -P 4 20M 64k' \
	    top.qcow2 >/dev/null
}

# same content as SRC and same allocation as qemu-img's convert of it (FILE QFILE SRC)
same_result() {
	run qimg compare "$3" "$1"
	[ "$status" -eq 0 ] || { echo "compare $3 $1: $output"; return 1; }
	diff <(qimg map --output=json "$2") <(qimg map --output=json "$1")
}

# the same stderr as qemu-img's, but for the program name (ARGS...)
same_error() {
	local want got
	want=$(qemu-img convert "$@" 2>&1 >/dev/null | sed 's/^qemu-img: /img: /')
	got=$(img convert "$@" 2>&1 >/dev/null) || true
	[ "$want" = "$got" ] || { echo "want: $want"; echo "got:  $got"; return 1; }
}

# a folder holding a copy of img-convert beside our real stages, so a test can swap one
fake_dir() {
	mkdir -p fake
	cp "$IMG_BIN/img-convert" fake/
	for p in img-map img-cat img-write; do ln -sf "$IMG_BIN/$p" fake/$p; done
}

fake_stage() {
	rm -f "fake/$1"
	printf '#!/bin/sh\n%s\n' "$2" >"fake/$1"
	chmod +x "fake/$1"
}

@test "img-convert: raw to raw equals qemu-img's, allocation too" {
	mkraw a.raw
	qimg convert a.raw q.raw
	run --separate-stderr img-convert a.raw o.raw
	[ "$status" -eq 0 ] && [ -z "$output" ] && [ -z "$stderr" ]
	same_result o.raw q.raw a.raw
}

@test "img-convert: raw to qcow2 and back, with -o options" {
	mkraw a.raw
	qimg convert -O qcow2 -o cluster_size=4k,lazy_refcounts=yes -o nocow=on a.raw q.qcow2
	run img-convert -O qcow2 -o cluster_size=4k,lazy_refcounts=yes -o nocow=on a.raw o.qcow2
	[ "$status" -eq 0 ] && [ -z "$output" ]
	run qimg check o.qcow2
	[ "$status" -eq 0 ]
	same_result o.qcow2 q.qcow2 a.raw
	diff <(qimg info o.qcow2 | grep -e cluster_size -e 'lazy refcounts') \
	    <(qimg info q.qcow2 | grep -e cluster_size -e 'lazy refcounts')
	qimg convert -f qcow2 -O raw q.qcow2 q.raw
	run img-convert -f qcow2 -O raw o.qcow2 o.raw
	[ "$status" -eq 0 ]
	same_result o.raw q.raw a.raw
}

@test "img-convert: a backing chain is flattened, into raw and into qcow2" {
	mkchain
	for f in raw qcow2; do
		qimg convert -O $f top.qcow2 q.$f
		run img-convert -O $f top.qcow2 o.$f
		[ "$status" -eq 0 ]
		same_result o.$f q.$f top.qcow2
		run qimg info o.$f
		[[ $output != *backing* ]]
	done
	run qimg check o.qcow2
	[ "$status" -eq 0 ]
}

@test "img-convert: several sources are concatenated, as qemu-img does" {
	local f S
	mkraw a.raw
	mkchain
	qimg create -q -f raw odd.raw 3M
	qio -f raw -c 'write -P 5 1M 1M' odd.raw >/dev/null
	for S in "" "-S 0"; do
		for f in raw qcow2; do
			rm -f q.$f o.$f
			# shellcheck disable=SC2086
			qemu-img convert -p $S -O $f odd.raw top.qcow2 a.raw q.$f >want
			# shellcheck disable=SC2086
			run img-convert -p $S -O $f odd.raw top.qcow2 a.raw o.$f
			[ "$status" -eq 0 ]
			[ "$output" = "$(cat want)" ]
			run qimg compare q.$f o.$f
			[ "$status" -eq 0 ]
			diff <(qimg map --output=json q.$f) <(qimg map --output=json o.$f)
		done
	done
	qimg create -q -f raw n.raw 70M
	qimg convert -n odd.raw a.raw top.qcow2 q.raw
	run img-convert -n odd.raw a.raw top.qcow2 n.raw
	[ "$status" -eq 0 ]
	cmp <(head -c 67M q.raw) <(head -c 67M n.raw)
}

@test "img-convert: -B copies only the source's top over the new backing file, as qemu-img" {
	local args
	mkraw a.raw
	mkchain
	qimg create -q -f qcow2 small.qcow2 10M
	qio -f qcow2 -c 'write -P 7 0 1M' small.qcow2 >/dev/null
	while IFS= read -r args; do
		rm -f q.qcow2 o.qcow2
		# shellcheck disable=SC2086
		qemu-img convert -p $args q.qcow2 >want
		# shellcheck disable=SC2086
		run img-convert -p $args o.qcow2
		[ "$status" -eq 0 ] || { echo "args: $args: $output"; return 1; }
		[ "$output" = "$(cat want)" ]
		run qimg compare q.qcow2 o.qcow2
		[ "$status" -eq 0 ]
		diff <(qimg map --output=json q.qcow2) <(qimg map --output=json o.qcow2)
		diff <(qimg info q.qcow2 | grep backing) <(qimg info o.qcow2 | grep backing)
		run qimg check o.qcow2
		[ "$status" -eq 0 ]
	done <<-EOF
	-O qcow2 -B base.qcow2 -F qcow2 top.qcow2
	-O qcow2 -o backing_file=base.qcow2,backing_fmt=qcow2 top.qcow2
	-O qcow2 -B small.qcow2 -F qcow2 top.qcow2
	-O qcow2 -S 0 -B base.qcow2 -F qcow2 top.qcow2
	-O qcow2 -B base.qcow2 -F qcow2 a.raw
	EOF
}

@test "img-convert: -B refusals read as qemu-img's" {
	local args
	mkraw a.raw
	mkchain
	while IFS= read -r args; do
		# shellcheck disable=SC2086
		same_error $args || { echo "args: $args"; return 1; }
		rm -f x.raw x.qcow2
		# shellcheck disable=SC2086
		run -1 --separate-stderr img-convert $args
		[ ! -e x.raw ] && [ ! -e x.qcow2 ]
	done <<-EOF
	-O qcow2 -B base.qcow2 top.qcow2 x.qcow2
	-O raw -B base.qcow2 -F qcow2 top.qcow2 x.raw
	-O raw -F qcow2 top.qcow2 x.raw
	-O qcow2 -F qcow2 top.qcow2 x.qcow2
	-O qcow2 -B base.qcow2 -F qcow2 top.qcow2 a.raw x.qcow2
	-O raw -o backing_file=base.qcow2 top.qcow2 x.raw
	-O qcow2 -B nope.qcow2 -F qcow2 top.qcow2 x.qcow2
	-O qcow2 -o backing_fmt=qcow2,backing_file=top.qcow2,,help top.qcow2 x.qcow2
	EOF
	qimg create -q -f qcow2 n.qcow2 32M
	same_error -n --target-is-zero -B base.qcow2 top.qcow2 n.qcow2
}

@test "img-convert: -p prints qemu-img's progress lines, byte for byte" {
	mkraw a.raw
	for args in "a.raw" "-S 0 a.raw" "-O raw -S 64k a.raw" "-c -O qcow2 a.raw" \
	    "-c -O qcow2 -o cluster_size=4k a.raw a.raw"; do
		# shellcheck disable=SC2086
		qemu-img convert -p $args q.out >want
		# shellcheck disable=SC2086
		img-convert -p $args o.out >got
		cmp want got || { od -c want; od -c got; return 1; }
	done
	grep -q $'\r' got
}

@test "img-convert: an empty image converts, -p as qemu-img" {
	qimg create -q -f raw empty.raw 0
	qemu-img convert -p empty.raw q.raw >want
	run img-convert -p empty.raw o.raw
	[ "$status" -eq 0 ]
	[ "$output" = "$(cat want)" ]
	[ -f o.raw ] && [ ! -s o.raw ]
}

@test "img-convert: zeroes never travel as bytes: 1 TiB of holes converts at once" {
	truncate -s 1T big.raw
	qimg create -q -f qcow2 big.qcow2 1T
	qio -f qcow2 -c 'write -P 3 512G 64k' big.qcow2 >/dev/null
	run timeout 10 img-convert -O qcow2 big.raw o.qcow2
	[ "$status" -eq 0 ]
	run timeout 10 img-convert -p big.qcow2 o.raw
	[ "$status" -eq 0 ]
	[ "$(du -k o.raw | cut -f1)" -lt 1024 ]
	run qimg compare -f qcow2 -F raw big.qcow2 o.raw
	[ "$status" -eq 0 ]
}

@test "img-convert: -q silences -p; without -p stdout stays empty" {
	mkraw a.raw
	run img-convert -p -q a.raw o.raw
	[ "$status" -eq 0 ] && [ -z "$output" ]
}

@test "img-convert: -S 0 allocates everything, as qemu-img does" {
	mkraw a.raw
	qimg convert -S 0 a.raw q.raw
	run img-convert -S 0 a.raw o.raw
	[ "$status" -eq 0 ]
	same_result o.raw q.raw a.raw
}

@test "img-convert: -S 64k keeps short zero runs in the data, as qemu-img does" {
	mkraw a.raw
	qimg convert -S 64k a.raw q.raw
	run img-convert -S 64k a.raw o.raw
	[ "$status" -eq 0 ]
	same_result o.raw q.raw a.raw
}

@test "img-convert: zero chunks inside data clusters: qemu-img's allocation, every target" {
	# 64k data clusters holding zero 4k and 8k runs, at cluster heads and tails
	qimg create -q -f qcow2 a.qcow2 8M
	qio -c 'write -P 1 0 192k' -c 'write -z 0 12k' -c 'write -z 100k 8k' \
	    -c 'write -z 188k 4k' -c 'write -P 2 1M 4k' -c 'write -P 3 2M 60k' \
	    -c 'write -P 4 7M 1M' -c 'write -z 7M 64k' a.qcow2 >/dev/null
	for fmt in raw qcow2; do
		rm -f o q
		qimg convert -O $fmt a.qcow2 q
		img-convert -O $fmt a.qcow2 o
		same_result o q a.qcow2
		# the same with -S 8k and the hand-written refined pipeline
		rm -f o q
		qimg convert -S 8k -O $fmt a.qcow2 q
		img-convert -S 8k -O $fmt a.qcow2 o
		same_result o q a.qcow2
	done
	img-map --output=json a.qcow2 > m
	rm -f fifo && mkfifo fifo
	img-create -q -f qcow2 h.qcow2 8M
	img-cat --map m -S 4k --map-out fifo a.qcow2 |
	    img-write -f qcow2 --map fifo -S 0 --target-is-zero h.qcow2
	rm -f q && qimg convert -O qcow2 a.qcow2 q
	same_result h.qcow2 q a.qcow2
	qimg check h.qcow2
}

@test "img-convert: -n writes into an existing target of the same size or larger" {
	mkraw a.raw
	qimg create -q -f raw o.raw 40M
	qio -f raw -c 'write -P 5 0 40M' o.raw >/dev/null
	qimg create -q -f raw q.raw 40M
	qio -f raw -c 'write -P 5 0 40M' q.raw >/dev/null
	qimg convert -n a.raw q.raw
	run img-convert -n a.raw o.raw
	[ "$status" -eq 0 ]
	cmp o.raw q.raw
	qimg create -q -f raw z.raw 32M
	run img-convert -n --target-is-zero a.raw z.raw
	[ "$status" -eq 0 ]
	run qimg compare a.raw z.raw
	[ "$status" -eq 0 ]
}

@test "img-convert: -n refuses a smaller target, -o and a missing target, as qemu-img" {
	mkraw a.raw
	qimg create -q -f raw small.raw 1M
	same_error -n a.raw small.raw
	run -1 --separate-stderr img-convert -n a.raw small.raw
	[ "$stderr" = "img-convert: output file is smaller than input file" ]
	same_error -n -o size=1M a.raw small.raw
	same_error -n a.raw nothere.raw
	[ ! -e nothere.raw ]
	same_error --target-is-zero a.raw x.raw
	[ ! -e x.raw ]
}

@test "img-convert: errors read as qemu-img's and leave no target" {
	local args
	mkraw a.raw
	while IFS= read -r args; do
		# shellcheck disable=SC2086
		same_error $args || { echo "args: $args"; return 1; }
		rm -f x.raw	# qemu-img leaves some targets behind; we must not
		# shellcheck disable=SC2086
		run -1 --separate-stderr img-convert $args
		[ -z "$output" ] && [ ! -e x.raw ] || { echo "args: $args"; return 1; }
	done <<-EOF
	nothere.raw x.raw
	-O nosuch a.raw x.raw
	-O raw -o nosuch=1 a.raw x.raw
	-O raw -o extent_size_hint=abc a.raw x.raw
	-O raw -o nocow=maybe a.raw x.raw
	-o , a.raw x.raw
	-S 3 a.raw x.raw
	-S x a.raw x.raw
	-m 17 a.raw x.raw
	-t bogus a.raw x.raw
	-T bogus a.raw x.raw
	a.raw
	a.raw /nonexistent/x.raw
	EOF
}

@test "img-convert: a target that is a source (or its backing file) is refused, source intact" {
	local args
	mkraw a.raw
	cp a.raw keep.raw
	ln -s a.raw link.raw
	qimg create -q -f qcow2 -b a.raw -F raw ov.qcow2
	while IFS= read -r args; do
		# shellcheck disable=SC2086
		same_error $args || { echo "args: $args"; return 1; }
		cmp a.raw keep.raw
		# shellcheck disable=SC2086
		run -1 --separate-stderr img-convert $args
		[ "${#stderr_lines[@]}" -eq 2 ] && [[ $stderr == *"Failed to get \"write\" lock"* ]]
		cmp a.raw keep.raw
	done <<-EOF
	a.raw a.raw
	-O qcow2 link.raw a.raw
	-n a.raw a.raw
	ov.qcow2 a.raw
	keep.raw a.raw a.raw
	EOF
}

@test "img-convert: -c with a target backing file or -n writes what qemu-img writes" {
	local args t extra
	mkchain
	qio -f qcow2 -c 'write -P 0 12M 64k' -c 'write -P 5 100k 10k' -c 'write -z 13M 4k' \
	    top.qcow2 >/dev/null
	while IFS= read -r args; do
		rm -f q.qcow2 o.qcow2
		# shellcheck disable=SC2086
		qemu-img convert $args top.qcow2 q.qcow2
		# shellcheck disable=SC2086
		run img-convert $args top.qcow2 o.qcow2
		[ "$status" -eq 0 ] || { echo "$args: $output"; return 1; }
		same_result o.qcow2 q.qcow2 top.qcow2
		run qimg check o.qcow2
		[ "$status" -eq 0 ]
	done <<-EOF
	-c -O qcow2 -B base.qcow2 -F qcow2
	-c -O qcow2 -o compat=0.10 -B base.qcow2 -F qcow2
	-c -S 0 -O qcow2 -B base.qcow2 -F qcow2
	-c -O qcow2 -o cluster_size=4k,backing_file=base.qcow2,backing_fmt=qcow2
	EOF
	for t in "" "-o compat=0.10" "-b base.qcow2 -F qcow2"; do
		for extra in "" "-S 0" "--target-is-zero"; do
			[[ $t == -b* && $extra == --t* ]] && continue
			rm -f q.qcow2 o.qcow2
			# shellcheck disable=SC2086
			qimg create -q -f qcow2 $t q.qcow2 32M
			cp q.qcow2 o.qcow2
			# shellcheck disable=SC2086
			qemu-img convert -c -n $extra -O qcow2 top.qcow2 q.qcow2
			# shellcheck disable=SC2086
			run img-convert -c -n $extra -O qcow2 top.qcow2 o.qcow2
			[ "$status" -eq 0 ] || { echo "$t $extra: $output"; return 1; }
			same_result o.qcow2 q.qcow2 q.qcow2
		done
	done
}

@test "img-convert: -c -n over data fails where qemu-img's compressed write does" {
	mkchain
	qimg create -q -f qcow2 q.qcow2 32M
	qio -c 'write -P 9 3M 5M' q.qcow2 >/dev/null
	cp q.qcow2 o.qcow2
	run -1 --separate-stderr qemu-img convert -c -n -O qcow2 top.qcow2 q.qcow2
	local want=${stderr#qemu-img: }
	run -1 --separate-stderr img-convert -c -n -O qcow2 top.qcow2 o.qcow2
	[ "$stderr" = "img-convert: $want" ]
	same_result o.qcow2 q.qcow2 q.qcow2
}

@test "img-convert: -c across sources compresses the clusters they share" {
	local i
	for i in 1 2; do
		qimg create -q -f qcow2 -o cluster_size=1024 s$i.qcow2 1023k
	done
	qio -c 'write -P 0x11 16k 16k' -c 'write -P 0x22 130k 130k' \
	    -c 'write -P 0x33 1022k 1k' s1.qcow2 >/dev/null
	qio -c 'write -P 0x44 0 1k' s2.qcow2 >/dev/null
	qimg convert -c -O qcow2 s1.qcow2 s2.qcow2 q.qcow2
	run img-convert -c -O qcow2 s1.qcow2 s2.qcow2 o.qcow2
	[ "$status" -eq 0 ]
	run qimg compare q.qcow2 o.qcow2
	[ "$status" -eq 0 ]
	diff <(qimg map --output=json q.qcow2) <(qimg map --output=json o.qcow2)
}

# entry N of the first L2 table of a qcow2 image (FILE N), as an unsigned number
l2_entry() {
	local l1 l2
	l1=$(od -An -tu8 --endian=big -j40 -N8 "$1")
	l2=$(od -An -tu8 --endian=big -j"$l1" -N8 "$1")
	l2=$((l2 & 0x00fffffffffffe00))
	od -An -tu8 --endian=big -j$((l2 + 8 * $2)) -N8 "$1"
}

# c.qcow2: compressed text whose clusters 3 and 17 do not decompress (read errors)
mkbroken() {
	local i e
	for i in $(seq 1 70000); do echo "line $i of some text"; done | head -c 1408k >r.raw
	truncate -s 4M r.raw
	qimg convert -c -O qcow2 r.raw c.qcow2
	for i in 3 17; do
		e=$(l2_entry c.qcow2 $i)
		poke c.qcow2 $((e & ((1 << 54) - 1))) '\377\377\377\377\377\377\377\377'
	done
}

@test "img-convert: --salvage zeroes the sectors that fail to read, warning as qemu-img" {
	mkbroken
	qimg convert --salvage -O qcow2 c.qcow2 q.qcow2 2>/dev/null
	same convert --salvage -O qcow2 c.qcow2 o.qcow2
	[ "$(grep -c 'warning: error while reading offset' i.err)" -eq 256 ]
	same_result o.qcow2 q.qcow2 q.qcow2
	same convert -q --salvage -O raw c.qcow2 c.qcow2 o.raw
	[ ! -s i.err ]
	same convert --salvage -O raw c.qcow2 c.qcow2 o.raw
	run -1 img-convert -O raw c.qcow2 x.raw
	[ ! -e x.raw ]
	qimg convert --salvage -O raw c.qcow2 q.raw 2>/dev/null
	img-cat --salvage c.qcow2 2>/dev/null | cmp - q.raw
}

@test "img-convert: --salvage warns of block status twice, as qemu-img counts then copies" {
	qimg create -q -f qcow2 s.qcow2 4M
	qio -c 'write -P 7 0 4M' s.qcow2 >/dev/null
	local j
	j=$(blkdebug_json s.qcow2 block-status:2050 read:2050 read:6000 read:6001)
	# (qemu's parallel requests may put a block-status warning a few chunks
	# ahead of read warnings; ours come in offset order, as here)
	same convert --salvage -O qcow2 "$j" o.qcow2
	[ "$(wc -l <i.err)" -eq 5 ]
	qimg convert --salvage -O qcow2 "$j" q.qcow2 2>/dev/null
	same_result o.qcow2 q.qcow2 q.qcow2
	same convert -q --salvage "$j" o.raw
	[ ! -s i.err ]
}

@test "img-convert: --target-image-opts names an existing target, as qemu-img" {
	local t
	mkchain
	qimg create -q -f qcow2 q.qcow2 32M
	cp q.qcow2 o.qcow2
	qemu-img convert -n --target-image-opts top.qcow2 driver=qcow2,file.filename=q.qcow2
	run img-convert -n --target-image-opts top.qcow2 driver=qcow2,file.filename=o.qcow2
	[ "$status" -eq 0 ]
	same_result o.qcow2 q.qcow2 top.qcow2
	for t in driver=qcow2,file.filename=o.qcow2 driver=qcow2,file.filename=nope.qcow2 \
	    driver=qcow2,file.filename=o.qcow2,foo=bar o.qcow2; do
		same_error --target-image-opts top.qcow2 "$t"
		same_error -n --target-image-opts -O qcow2 top.qcow2 "$t"
		same_error -n --target-image-opts top.qcow2 "$t"
	done
	same_error --target-image-opts -o help top.qcow2 x
	same_error -C --salvage top.qcow2 x
	same_error --skip-broken-bitmaps top.qcow2 x
	same_error -c -C top.qcow2 x
}

# the persistent bitmaps of a qcow2 image: name, flags, granularity, md5 of the bits
bitmap_bits() {
	python3 - "$1" <<-'EOF'
	import hashlib, struct, sys
	f = open(sys.argv[1], 'rb'); h = f.read(4096)
	cs = 1 << struct.unpack('>I', h[20:24])[0]
	size = struct.unpack('>Q', h[24:32])[0]
	p = struct.unpack('>I', h[100:104])[0]
	while p + 8 <= len(h):
	    t, l = struct.unpack('>II', h[p:p + 8])
	    if t == 0:
	        break
	    if t == 0x23852875:
	        n, _, dsz, doff = struct.unpack('>IIQQ', h[p + 8:p + 32])
	        f.seek(doff); d = f.read(dsz); q = 0
	        for _ in range(n):
	            to, ts, fl, ty, gb, ns, ex = struct.unpack('>QIIBBHI', d[q:q + 24])
	            name = d[q + 24 + ex:q + 24 + ex + ns].decode()
	            q += (24 + ex + ns + 7) & ~7
	            f.seek(to); tab = struct.unpack('>%dQ' % ts, f.read(8 * ts))
	            bits = b''
	            for e in tab:
	                o = e & 0x00fffffffffffe00
	                if o:
	                    f.seek(o); bits += f.read(cs)
	                else:
	                    bits += (b'\xff' if e & 1 else b'\0') * cs
	            need = (-(-size // (1 << gb)) + 7) // 8
	            print(name, hex(fl), 1 << gb, hashlib.md5(bits[:need]).hexdigest())
	    p += 8 + ((l + 7) & ~7)
	EOF
}

# b.qcow2: bitmaps bm1 (enabled, 128k, bits set) and bm2 (disabled)
mkbitmaps() {
	qimg create -q -f qcow2 b.qcow2 4M
	qimg bitmap --add -g 128k b.qcow2 bm1
	qimg bitmap --add --disable b.qcow2 bm2
	qio -c 'write 0 1M' -c 'write 2M 64k' b.qcow2 >/dev/null
}

@test "img-convert: --bitmaps copies the persistent bitmaps as qemu-img, bit for bit" {
	local args
	mkbitmaps
	while IFS= read -r args; do
		rm -f q.qcow2 o.qcow2
		# shellcheck disable=SC2086
		qemu-img convert --bitmaps $args b.qcow2 q.qcow2
		# shellcheck disable=SC2086
		run img-convert --bitmaps $args b.qcow2 o.qcow2
		[ "$status" -eq 0 ] || { echo "$args: $output"; return 1; }
		same_result o.qcow2 q.qcow2 b.qcow2
		diff <(bitmap_bits q.qcow2) <(bitmap_bits o.qcow2)
		[ "$(bitmap_bits o.qcow2 | wc -l)" -eq 2 ]
		run qimg check o.qcow2
		[ "$status" -eq 0 ]
	done <<-EOF
	-O qcow2
	-O qcow2 -c -o cluster_size=4k
	EOF
}

@test "img-convert: --bitmaps refusals and failures are qemu-img's" {
	local sz pre
	mkbitmaps
	mkraw a.raw
	same_error --bitmaps -O raw b.qcow2 x.raw
	same_error --bitmaps a.raw x.qcow2
	same_error --bitmaps -O qcow2 b.qcow2 b.qcow2 x.qcow2
	same_error --bitmaps -O qcow2 -o compat=0.10 b.qcow2 x.qcow2
	qimg create -q -f raw small.raw 1M
	same_error --bitmaps -n b.qcow2 small.raw
	same_error -c -n b.qcow2 small.raw
	rm -f x.qcow2 x.raw
	run -1 img-convert --bitmaps -O qcow2 -o compat=0.10 b.qcow2 x.qcow2
	[ ! -e x.qcow2 ]
	# bm1 in use: refused, or skipped with a warning
	cp b.qcow2 bad.qcow2
	python3 - bad.qcow2 <<-'EOF'
	import struct, sys
	f = open(sys.argv[1], 'r+b'); h = f.read(4096)
	p = struct.unpack('>I', h[100:104])[0]
	while struct.unpack('>I', h[p:p + 4])[0] != 0x23852875:
	    p += 8 + ((struct.unpack('>I', h[p + 4:p + 8])[0] + 7) & ~7)
	doff = struct.unpack('>Q', h[p + 24:p + 32])[0]
	f.seek(doff + 15); f.write(b'\x03')
	EOF
	same convert --bitmaps -O qcow2 bad.qcow2 x.qcow2
	[ "$(wc -l <i.err)" -eq 2 ]
	[ ! -e x.qcow2 ]
	same convert --bitmaps --skip-broken-bitmaps -O qcow2 bad.qcow2 x.qcow2
	[ "$(bitmap_bits x.qcow2 | cut -d' ' -f1)" = bm2 ]
	# -n: qemu-img goes last first, stopping at a name taken or another size
	for sz in 4M 8M; do
		for pre in "" bm1 bm2; do
			rm -f q.qcow2 o.qcow2
			qimg create -q -f qcow2 q.qcow2 $sz
			[ -z "$pre" ] || qimg bitmap --add q.qcow2 $pre
			cp q.qcow2 o.qcow2
			qemu-img convert --bitmaps -n -O qcow2 b.qcow2 q.qcow2 2>q.err || true
			run img-convert --bitmaps -n -O qcow2 b.qcow2 o.qcow2
			[ "$output" = "$(sed 's/^qemu-img:/img-convert:/' q.err)" ]
			diff <(bitmap_bits q.qcow2) <(bitmap_bits o.qcow2)
		done
	done
}

@test "img-convert: -o help lists the target format's options, as qemu-img" {
	local args
	while IFS= read -r args; do
		# shellcheck disable=SC2086
		qemu-img convert $args >want 2>&1 || true
		# shellcheck disable=SC2086
		img-convert $args >got 2>&1 || true
		sed -i 's/^img-convert: /qemu-img: /' got
		diff want got || { echo "args: $args"; return 1; }
	done <<-EOF
	-O qcow2 -o help a.raw x.qcow2
	-O raw -o help
	-o ? a.raw x.raw
	-O qcow2 -o cluster_size=4k,help a.raw x.qcow2
	-O nosuch -o help a.raw x.raw
	EOF
	[ ! -e x.raw ] && [ ! -e x.qcow2 ]
}

@test "img-convert: --image-opts and --object reach the stages that open the sources" {
	local args
	mkraw a.raw
	mkchain
	while IFS= read -r args; do
		rm -f q.raw o.raw
		# shellcheck disable=SC2086
		qemu-img convert $args q.raw
		# shellcheck disable=SC2086
		run img-convert $args o.raw
		[ "$status" -eq 0 ] || { echo "args: $args: $output"; return 1; }
		cmp q.raw o.raw
	done <<-EOF
	--image-opts driver=qcow2,file.filename=top.qcow2
	--image-opts driver=raw,file.filename=a.raw file.filename=top.qcow2
	--object secret,id=s0,data=x a.raw
	EOF
	same_error --image-opts -f raw driver=raw,file.filename=a.raw x.raw
	same_error --image-opts driver=qcow2,file.filename=nothere x.raw
	cp a.raw keep.raw
	same_error --image-opts driver=raw,file.filename=a.raw a.raw
	cmp a.raw keep.raw
}

@test "img-convert: -C copies data extents whole, as qemu-img's copy offloading" {
	local f
	qimg create -q -f raw z.raw 4M
	qio -f raw -c 'write -P 1 0 64k' -c 'write -P 0 64k 64k' -c 'write -P 1 128k 64k' \
	    z.raw >/dev/null
	for f in raw qcow2; do
		qimg convert -C -O $f z.raw q.$f
		run img-convert -C -O $f z.raw o.$f
		[ "$status" -eq 0 ]
		same_result o.$f q.$f z.raw
	done
	same_error -C -S 4k z.raw x.raw
	# -n and a target backing file: zero extents are zeroed, data copied whole
	mkchain
	for t in "-f qcow2" "-f qcow2 -b base.qcow2 -F qcow2" "-f raw"; do
		for x in q o; do
			rm -f $x.img
			# shellcheck disable=SC2086
			qimg create -q $t $x.img 32M
			qio -f "${t:3:5}" -c 'write -P 9 0 32M' $x.img >/dev/null
		done
		qemu-img convert -C -n -O "${t:3:5}" z.raw q.img
		run -0 img-convert -C -n -O "${t:3:5}" z.raw o.img
		run qimg compare -f "${t:3:5}" -F "${t:3:5}" q.img o.img
		[ "$status" -eq 0 ]
		diff <(qimg map --output=json -f "${t:3:5}" q.img) \
		    <(qimg map --output=json -f "${t:3:5}" o.img)
	done
	rm -f q.qcow2 o.qcow2
	qemu-img convert -C -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 q.qcow2
	run -0 img-convert -C -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 o.qcow2
	same_result o.qcow2 q.qcow2 top.qcow2
}

@test "img-convert: performance-only options are accepted" {
	mkraw a.raw
	run img-convert -t none -T writeback -m 16 -W -r 1G -U a.raw o.raw
	[ "$status" -eq 0 ]
	run qimg compare a.raw o.raw
	[ "$status" -eq 0 ]
}

@test "img convert: the dispatcher's name is in the stages' messages" {
	run -1 --separate-stderr img convert nothere.raw x.raw
	[ "$stderr" = "img: Could not open 'nothere.raw': Could not open 'nothere.raw': No such file or directory" ]
}

@test "img-convert: the hand-written pipeline gives the same image" {
	mkraw a.raw
	mkchain
	img convert -O qcow2 a.raw o.qcow2
	img-map --output=json a.raw >map.json
	img-create -q -f qcow2 h.qcow2 32M
	img-cat --map map.json a.raw | img-write -f qcow2 --map map.json --target-is-zero h.qcow2
	run qimg compare -s o.qcow2 h.qcow2
	[ "$status" -eq 0 ]
	diff <(qimg map --output=json o.qcow2) <(qimg map --output=json h.qcow2)
	img convert top.qcow2 o.raw
	img-map --output=json top.qcow2 >map.json
	img-create -q -f raw h.raw 32M
	img-cat --map map.json top.qcow2 | img-write -f raw --map map.json --target-is-zero h.raw
	cmp o.raw h.raw
}

@test "img-convert: a failing img-cat is one error, exit 1, target removed" {
	mkraw a.raw
	fake_dir
	fake_stage img-cat 'echo "$IMG_PROG: a.raw: read at 0x100000: Input/output error" >&2; exit 1'
	run -1 --separate-stderr fake/img-convert a.raw x.raw
	[ -z "$output" ]
	[ "$stderr" = "img-convert: a.raw: read at 0x100000: Input/output error" ]
	[ ! -e x.raw ]
}

@test "img-convert: an img-cat that dies mid-stream or by a signal is one error" {
	mkraw a.raw
	fake_dir
	fake_stage img-cat 'head -c 100000 /dev/zero; kill -KILL $$'
	run -1 --separate-stderr fake/img-convert -p a.raw x.raw
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ $stderr == "img-convert: img-cat was killed by signal 9"* ]]
	[ ! -e x.raw ]
	fake_stage img-cat 'head -c 100000 /dev/zero; exit 3'
	run -1 --separate-stderr fake/img-convert a.raw x.raw
	[ "$stderr" = "img-convert: img-cat exited with status 3" ]
	[ ! -e x.raw ]
}

@test "img-convert: a failing img-write is one error (img-cat's broken pipe is not)" {
	mkraw a.raw
	fake_dir
	fake_stage img-write 'head -c 1 >/dev/null; echo "$IMG_PROG: x.raw: write at 0: No space left on device" >&2; exit 1'
	for p in "" -p; do
		run -1 --separate-stderr fake/img-convert $p a.raw x.raw
		[ "$stderr" = "img-convert: x.raw: write at 0: No space left on device" ]
		[ ! -e x.raw ]
	done
}

@test "img-convert: SIGTERM stops the stages and removes the new target" {
	mkraw a.raw
	fake_dir
	fake_stage img-cat 'echo $$ >cat.pid; exec sleep 30'
	fake/img-convert a.raw x.raw &
	local pid=$! i
	for i in $(seq 50); do [ -s cat.pid ] && break; sleep 0.1; done
	[ -e x.raw ] && [ -s cat.pid ]
	kill -TERM $pid
	local st=0
	wait $pid || st=$?
	[ "$st" -eq 143 ]	# died of the signal, as it would have without us
	[ ! -e x.raw ]
	# the stage is gone too (or a zombie waiting for its new parent),
	# soon: a loaded machine may take a moment
	for i in $(seq 50); do
		run ps -o stat= -p "$(cat cat.pid)"
		{ [ "$status" -ne 0 ] || [[ $output == Z* ]]; } && break
		sleep 0.1
	done
	[ "$status" -ne 0 ] || [[ $output == Z* ]]
}

@test "img-convert: a corrupted map is one error, exit 1" {
	mkraw a.raw
	fake_dir
	fake_stage img-map 'echo "[{ \"start\": 0, \"length\": }]"'
	run -1 --separate-stderr fake/img-convert a.raw x.raw
	[ "${#stderr_lines[@]}" -eq 1 ] && [[ $stderr == "img-convert: map: line 1: "* ]]
	[ ! -e x.raw ]
	# a map claiming more data than the image has: the stages disagree with the stream
	fake_stage img-map "printf '[{ \"start\": 0, \"length\": 33554432, \"depth\": 0, \"present\": true, \"zero\": false, \"data\": true}]\n'"
	fake_stage img-cat 'head -c 1048576 /dev/zero'
	run -1 --separate-stderr fake/img-convert a.raw x.raw
	[ "${#stderr_lines[@]}" -eq 1 ] && [[ $stderr == "img-convert: "* ]]
	[ ! -e x.raw ]
}

@test "img-convert: a truncated qcow2 source is one error, exit 1, no target" {
	mkraw a.raw
	qimg convert -O qcow2 a.raw t.qcow2
	truncate -s 50 t.qcow2
	same_error t.qcow2 x.raw
	run -1 --separate-stderr img-convert t.qcow2 x.raw
	[ -z "$output" ] && [ "${#stderr_lines[@]}" -eq 1 ]
	[ ! -e x.raw ]
}

@test "img-convert: a missing stage is named" {
	mkraw a.raw
	mkdir -p lone
	cp "$IMG_BIN/img-convert" lone/
	ln -s "$IMG_BIN/img-map" lone/img-map
	PATH=/usr/bin:/bin run -1 --separate-stderr lone/img-convert a.raw x.raw
	[ "$stderr" = "img-convert: img-cat: not installed next to img-convert or on PATH" ]
	[ ! -e x.raw ]
	ln -s "$IMG_BIN/img-cat" lone/img-cat	# img-cat starts, img-write cannot
	PATH=/usr/bin:/bin run -1 --separate-stderr timeout 20 lone/img-convert -p a.raw x.raw
	[ "$stderr" = "img-convert: img-write: not installed next to img-convert or on PATH" ]
	[ ! -e x.raw ]
}

@test "img-convert: --help, bad options, missing arguments" {
	run --separate-stderr img-convert --help
	[ "$status" -eq 0 ] && [ -z "$stderr" ]
	[[ $output == "usage: img-convert "* ]] && [[ $output == *"See img-convert(1)."* ]]
	run -1 --separate-stderr img-convert --bogus a b
	[ "$stderr" = $'img-convert: unrecognized option \'--bogus\'\nTry \'img-convert --help\' for more information' ]
	run -1 --separate-stderr img-convert a b -O
	[ "$stderr" = $'img-convert: missing argument for option \'-O\'\nTry \'img-convert --help\' for more information' ]
	same_error
}

@test "img-convert: -c compresses as qemu-img does: same content and allocation" {
	mkraw a.raw
	mkchain
	for src in a.raw top.qcow2; do
		for o in "" "-o cluster_size=4k" "-o compression_type=zstd"; do
			rm -f q.qcow2 i.qcow2
			# shellcheck disable=SC2086
			qimg convert -c -O qcow2 $o $src q.qcow2
			# shellcheck disable=SC2086
			run -0 img convert -c -O qcow2 $o $src i.qcow2
			run -0 qimg check i.qcow2
			run -0 qimg compare $src i.qcow2
			diff <(qimg map --output=json q.qcow2 | sed 's/, "offset": [0-9]*//') \
			    <(qimg map --output=json i.qcow2 | sed 's/, "offset": [0-9]*//')
		done
	done
}

@test "img-convert: -c to a format without compression is qemu-img's error, nothing left" {
	mkraw a.raw
	same_error -c -O raw a.raw x.raw
	[ ! -e x.raw ]
	same_error -c -C -O qcow2 a.raw x.qcow2
}

@test "img-convert: -c as a pipeline of the primitives" {
	mkraw a.raw
	img create -q -f qcow2 p.qcow2 32M
	img-map --output=json a.raw > m
	img-cat --map m a.raw | img-write -c -n --map m p.qcow2
	run -0 qimg compare a.raw p.qcow2
	run -0 qimg check p.qcow2
}

@test "img-convert: -l converts an internal snapshot, as qemu-img" {
	qimg create -q -f qcow2 s.qcow2 16M
	qio -c 'write -P 1 0 1M' s.qcow2 >/dev/null
	qimg snapshot -c snap1 s.qcow2
	qio -c 'write -P 2 0 2M' s.qcow2 >/dev/null
	for l in snap1 1 snapshot.id=1 snapshot.name=snap1; do
		rm -f q.raw i.raw
		qimg convert -l $l -O raw s.qcow2 q.raw
		run -0 img convert -l $l -O raw s.qcow2 i.raw
		cmp q.raw i.raw
	done
	for args in "-l nope -O raw s.qcow2 x.raw" "-l snap1 -O raw s.qcow2 s.qcow2 x.raw" \
	    "-l snapshot.name=snap1,snapshot.id=2 -O raw s.qcow2 x.raw"; do
		# shellcheck disable=SC2086
		same_error $args
		[ ! -e x.raw ]
	done
	# the snapshot's own map and bytes, by the primitives
	img-map --output=json --snapshot=snap1 s.qcow2 > m
	img-cat --snapshot=snap1 s.qcow2 | cmp - q.raw
}

@test "img-convert: a failed convert removes only a target it made, never an old file" {
	qimg create -q -f qcow2 cz.qcow2 1M
	qio -c 'write -c -P 7 0 64k' cz.qcow2 >/dev/null
	# garbage over the compressed cluster: img-cat fails after the target exists
	printf '\xff%.0s' $(seq 16) | dd of=cz.qcow2 bs=1 seek=$((0x50000)) conv=notrunc status=none
	echo keep > old.raw
	run -1 img convert -O raw cz.qcow2 old.raw
	[ -e old.raw ]
	run -1 img convert -O raw cz.qcow2 new.raw
	[ ! -e new.raw ]
}

@test "img-convert: '-' as the source reads a raw stream of any length from stdin" {
	mkraw a.raw
	cat a.raw | img-convert -O qcow2 - o.qcow2
	qimg compare a.raw o.qcow2
	qimg check o.qcow2
	# the holes and zeroes of the stream stay unallocated, as a convert of the file
	qimg convert -O qcow2 a.raw q.qcow2
	[ "$(qimg info --output=json o.qcow2 | jq '."virtual-size"')" -eq $((32 << 20)) ]
	[ "$(qimg map --output=json o.qcow2 | jq '[.[] | select(.data) | .length] | add')" -eq \
	    "$(qimg map --output=json q.qcow2 | jq '[.[] | select(.data) | .length] | add')" ]
	# a length that is no multiple of 512: rounded up, as qemu sizes raw files
	head -c 1000 /dev/urandom > odd
	img-convert - o.raw < odd
	[ "$(stat -c %s o.raw)" -eq 1024 ]
	cmp <(head -c 1000 o.raw) odd
	# compressed, and into an existing target with -n
	cat a.raw | img-convert -c -O qcow2 - c.qcow2
	qimg compare a.raw c.qcow2
	qimg create -q -f qcow2 n.qcow2 64M
	cat a.raw | img-convert -n -O qcow2 - n.qcow2
	qimg create -q -f raw n.raw 64M
	dd if=a.raw of=n.raw conv=notrunc status=none
	qimg compare n.raw n.qcow2
}

@test "img-convert: '-' as the target writes the raw disk to stdout" {
	mkchain
	img-convert -O raw top.qcow2 - > o.raw
	qimg convert -O raw top.qcow2 q.raw
	cmp o.raw q.raw
	# sparse when stdout is a file; a pipe gets every byte
	[ "$(du -k o.raw | cut -f1)" -lt 16384 ]
	img-convert top.qcow2 - | cmp - q.raw
	# several sources, one after the other
	qimg convert -O raw base.qcow2 b.raw
	img-convert top.qcow2 base.qcow2 - | cmp - <(cat q.raw b.raw)
}

@test "img-convert: '-' refusals are one line, nothing created" {
	mkraw a.raw
	run -1 --separate-stderr img-convert -O qcow2 a.raw -
	[ "$stderr" = "img-convert: convert: '-' as the target takes raw output only (-O raw)" ]
	run -1 --separate-stderr img-convert -c -O raw a.raw -
	[ "$stderr" = "img-convert: convert: '-' as the target takes none of -n, -B, -c, -C, -o" ]
	run -1 --separate-stderr img-convert -f qcow2 -O qcow2 - o.qcow2 < a.raw
	[ "$stderr" = "img-convert: convert: '-' as the source is a raw stream (-f raw)" ]
	run -1 --separate-stderr img-convert - a.raw o.raw < a.raw
	[ "$stderr" = "img-convert: convert: '-' as a source cannot be concatenated" ]
	run -1 --separate-stderr img-convert - - < a.raw
	[ "$stderr" = "img-convert: convert: '-' cannot be the source and the target" ]
	[ ! -e o.qcow2 ] && [ ! -e o.raw ]
	# a format that cannot grow: the error, and the new target goes
	run -1 --separate-stderr img-convert -O vmdk - o.vmdk < a.raw
	[ -n "$stderr" ]
	[ ! -e o.vmdk ]
}

# the same stderr and exit status as qemu-img's, target left aside (ARGS...; TARGET last)
same_failure() {
	local want got ws=0 gs=0
	qemu-img convert "$@" 2>q.err >/dev/null || ws=$?
	want=$(sed 's/^qemu-img: /img: /' q.err)
	got=$(img convert "${@:1:$#-1}" "o.${*: -1}" 2>&1 >/dev/null) || gs=$?
	[ "$want" = "$got" ] && [ "$gs" = 1 ] && [ "$ws" = 1 ] ||
	    { echo "want $ws: $want"; echo "got $gs:  $got"; return 1; }
}

# the same stderr and exit status as qemu-img's on a target named by a json: name (ARGS...)
same_failure_or_not() {
	local want got ws=0 gs=0 last=${*: -1}
	qemu-img convert "$@" 2>q.err >/dev/null || ws=$?
	want=$(sed 's/^qemu-img: /img: /' q.err)
	got=$(img convert "${@:1:$#-1}" "${last/t.qcow2/o.t.qcow2}" 2>&1 >/dev/null) || gs=$?
	[ "$want" = "$got" ] && [ "$gs" = "$ws" ] ||
	    { echo "want $ws: $want"; echo "got $gs:  $got"; return 1; }
}

@test "img-convert: a read error is named by qemu-img's piece, a block status error by its query" {
	qimg create -q -f qcow2 s.qcow2 64M
	qio -c 'write -P 7 0 20M' -c 'write -P 8 30M 5M' -c 'write -z 33M 1M' s.qcow2 >/dev/null
	local r
	for r in read:40 read:8000 read:66000 read:70000 block-status:8000; do
		same_failure -O qcow2 "$(blkdebug_json s.qcow2 "$r")" t.qcow2
		same_failure -O raw -S 0 "$(blkdebug_json s.qcow2 "$r")" t.raw
		[ ! -e o.t.qcow2 ] && [ ! -e o.t.raw ]
	done
	# a second source: bytes counted from the start of the first
	same_failure -O raw s.qcow2 "$(blkdebug_json s.qcow2 read:70000)" t.raw
	same_failure -p -O qcow2 "$(blkdebug_json s.qcow2 read:8000)" t.qcow2
	# compressed clusters are pieces of their own; -c reads a cluster at a time
	mkbroken
	same_failure -O raw c.qcow2 t.raw
	same_failure -c -O qcow2 c.qcow2 t.qcow2
	same_failure -O qcow2 r.raw c.qcow2 t.qcow2
	# 1100 one-cluster extents, guest-contiguous: a run img-cat streams in parts
	qimg create -q -f qcow2 -o cluster_size=4k fr.qcow2 8M
	local i cmds=()
	for ((i = 1099; i >= 0; i--)); do
		cmds+=(-c "write -P $((i % 250 + 1)) $((i * 4))k 4k")
	done
	qio "${cmds[@]}" fr.qcow2 >/dev/null
	same_failure -O qcow2 "$(blkdebug_json fr.qcow2 read:8401)" t.qcow2
	img convert -O qcow2 fr.qcow2 o.qcow2
	qimg convert -O qcow2 fr.qcow2 q.qcow2
	same_result o.qcow2 q.qcow2 fr.qcow2
}

@test "img-convert: a write error is named by qemu-img's piece" {
	qimg create -q -f qcow2 s.qcow2 64M
	qio -c 'write -P 7 0 20M' -c 'write -P 8 30M 5M' s.qcow2 >/dev/null
	local sec t
	for sec in 640 9000 20000; do
		qimg create -q -f qcow2 t.qcow2 64M
		cp t.qcow2 o.t.qcow2
		t="json:{'driver':'qcow2','file':{'driver':'blkdebug','inject-error':"
		t+="[{'event':'none','iotype':'write','errno':28,'sector':$sec}],"
		t+="'image':{'driver':'file','filename':'t.qcow2'}}}"
		run -1 --separate-stderr qemu-img convert -n -O qcow2 s.qcow2 "$t"
		local want=${stderr#qemu-img: }
		run -1 --separate-stderr img-convert -n -O qcow2 s.qcow2 "${t/t.qcow2/o.t.qcow2}"
		[ "$stderr" = "img-convert: $want" ]
		[[ $want == "error while writing at byte "*": No space left on device" ]]
	done
}

@test "img-convert: a failed write, then what closing the target says, as qemu-img" {
	qimg create -q -f qcow2 s.qcow2 8M
	qio -c 'write -P 7 0 3M' s.qcow2 >/dev/null
	local ev t
	for ev in write_aio pwritev flush_to_os; do
		qimg create -q -f qcow2 t.qcow2 8M
		cp t.qcow2 o.t.qcow2
		t="json:{'driver':'qcow2','file':{'driver':'blkdebug','inject-error':"
		t+="[{'event':'$ev','errno':28}],'image':{'driver':'file','filename':'t.qcow2'}}}"
		same_failure_or_not -n -O qcow2 s.qcow2 "$t"
	done
}
