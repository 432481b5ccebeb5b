#!/usr/bin/env bats
# img-bitmap: every action against qemu-img bitmap on a twin image; the
# bitmaps' bits compared by reading them as qcow2.txt lays them out (bits).
load helpers
bats_require_minimum_version 1.5.0

# twins: o.qcow2 (ours) and q.qcow2 (qemu's), 4 MiB with two bitmaps
# holding qemu-written bits, b1 disabled
twins() {
	qimg create -q -f qcow2 o.qcow2 4M
	qimg bitmap --add o.qcow2 b1
	qimg bitmap --add -g 128k o.qcow2 b2
	qio -c 'write 0 64k' -c 'write 1M 200k' -c 'write 3M 4k' o.qcow2 >/dev/null
	qimg bitmap --disable o.qcow2 b1
	qio -c 'write 2M 64k' o.qcow2 >/dev/null
	cp o.qcow2 q.qcow2
}

# both ARGS... (the image named IMG): same status, stderr, bits and info
both() {
	local ost qst
	ost=0 qst=0
	img bitmap "${@//IMG/o.qcow2}" 2>o.err || ost=$?
	command qemu-img bitmap "${@//IMG/q.qcow2}" 2>q.err || qst=$?
	[ "$ost" = "$qst" ] || { echo "status $ost, qemu $qst: $*"; return 1; }
	# qemu names its node where we name the file
	diff <(sed 's/^img: //' o.err) \
	    <(sed 's/^qemu-img: //; s/q\.qcow2/o.qcow2/g; s/#block[0-9]*/o.qcow2/' q.err)
	diff <(bits o.qcow2) <(bits q.qcow2)
	diff <(qimg info --output=json o.qcow2 | grep -v '"filename"\|actual-size') \
	    <(qimg info --output=json q.qcow2 | grep -v '"filename"\|actual-size')
	qimg check o.qcow2 >/dev/null
}

@test "img-bitmap: --help, option lists, usage errors as qemu-img's" {
	run -0 img-bitmap --help
	[[ ${lines[0]} == "usage: img-bitmap (--merge SOURCE | --add | --remove | --clear |" ]]
	[[ $output == *"See img-bitmap(1)." ]]
	run -0 img-bitmap --long-options
	[[ $output == *--merge* ]]
	run -0 img-bitmap --short-options
	[ "$output" = "$(printf -- '-b\n-f\n-F\n-g\n-h')" ]
	qimg create -q -f qcow2 o.qcow2 1M
	sum o.qcow2 >before
	local a
	for a in "o.qcow2 b" "--add o.qcow2" "--add o.qcow2 b c" "-g 64k --remove o.qcow2 b" \
	    "-F qcow2 --add o.qcow2 b" "-b x.qcow2 --add o.qcow2 b" "--add -g xyz o.qcow2 b" \
	    "--add -g -1 o.qcow2 b" "--add -g 9E o.qcow2 b" "--bogus o.qcow2 b" "--add o.qcow2 b -g"; do
		run -1 --separate-stderr img bitmap $a
		ours=${stderr//img/QI}
		run -1 --separate-stderr qimg bitmap $a
		[ "$ours" = "${stderr//qemu-img/QI}" ] || { echo "$a: $ours"; false; }
		[ "$(sum o.qcow2)" = "$(cat before)" ]
	done
}

@test "img-bitmap: add, disable, enable, clear, remove as qemu-img" {
	twins
	both --add IMG b3
	both --add -g 32k --disable IMG b4
	both --add -g 1M IMG b5
	both --enable IMG b1
	both --disable IMG b2
	both --clear IMG b2
	both --remove IMG b5
	both --remove IMG b1
	both --remove IMG b2
	both --remove IMG b3
	both --remove IMG b4
	[ "$(bits o.qcow2)" = none ]
	[ "$(od -An -tx1 -j95 -N1 o.qcow2)" = " 00" ]	# autoclear bit gone
}

@test "img-bitmap: merges, whatever the granularities, and several actions in one call" {
	twins
	both --add -g 32k IMG b3
	both --merge b1 --merge b2 IMG b3
	both --add --merge b3 --disable IMG b4
	both --add -g 512 --merge b2 IMG tiny
	both --clear --merge b1 IMG b2
}

@test "img-bitmap: merge from another image with -b and -F" {
	twins
	qimg create -q -f qcow2 s.qcow2 4M
	qimg bitmap --add -g 16k s.qcow2 src
	qio -c 'write 512k 100k' s.qcow2 >/dev/null
	both --merge src -b s.qcow2 IMG b1
	both --add --merge src -b s.qcow2 -F qcow2 IMG b9
	both --merge src -b s.qcow2 -F raw IMG b1
	both --merge nope -b s.qcow2 IMG b1
}

@test "img-bitmap: failed actions: qemu's messages, exit 1, earlier actions kept" {
	twins
	both --add IMG b1
	both --remove IMG nope
	both --clear IMG nope
	both --merge nope IMG b1
	both --add --add IMG b7
	both --add -g 1000 IMG b8
	both --add IMG ''
	both --disable --add IMG b9
	[[ $(bits o.qcow2) == *b7* ]]
}

@test "img-bitmap: qemu uses our bitmaps; our writes set their bits as qemu's do" {
	qimg create -q -f qcow2 o.qcow2 4M
	img bitmap --add -g 64k o.qcow2 mine
	qio -c 'write 1M 64k' o.qcow2 >/dev/null
	[ "$(bits o.qcow2)" = "mine 2 65536 [16]" ]
	qimg convert --bitmaps -O qcow2 o.qcow2 c.qcow2
	[ "$(bits c.qcow2)" = "mine 2 65536 [16]" ]
	img bitmap --add -g 32k --disable o.qcow2 off
	cp o.qcow2 q.qcow2
	printf 'x%.0s' {1..70000} >x.bin
	img-write -f qcow2 --offset=3000000 o.qcow2 <x.bin
	qio -c 'write -s x.bin 3000000 70000' q.qcow2 >/dev/null
	diff <(bits o.qcow2) <(bits q.qcow2)
	[ "$(bits o.qcow2 | head -1)" = "mine 2 65536 [16, 45, 46]" ]
	img-write -f qcow2 --offset=0 o.qcow2 < <(head -c 4096 /dev/zero)
	qio -c 'write -z 0 4k' q.qcow2 >/dev/null
	diff <(bits o.qcow2) <(bits q.qcow2)
	both --clear IMG mine
	both --remove IMG mine
	qimg check o.qcow2
}

@test "img-bitmap: images without bitmaps support: raw, qcow2 v2" {
	qimg create -q -f raw r.raw 1M
	run -1 --separate-stderr img bitmap --add -f raw r.raw b
	[ "$stderr" = "img: Operation add on bitmap b failed: Can't store persistent bitmaps to r.raw: Operation not supported" ]
	run -1 --separate-stderr img bitmap --remove -f raw r.raw b
	[ "$stderr" = "img: Operation remove on bitmap b failed: Dirty bitmap 'b' not found" ]
	qimg create -q -f qcow2 -o compat=0.10 o.qcow2 1M
	cp o.qcow2 q.qcow2
	both --add IMG b
}

@test "img-bitmap: missing, garbage and truncated images: one line, exit 1, nothing written" {
	run -1 --separate-stderr img bitmap --add nothere.qcow2 b
	[ "$stderr" = "img: Could not open 'nothere.qcow2': Could not open 'nothere.qcow2': No such file or directory" ]
	head -c 1000 /dev/urandom >g.qcow2
	sum g.qcow2 >before
	run -1 --separate-stderr img bitmap -f qcow2 --add g.qcow2 b
	[ "${#stderr_lines[@]}" -eq 1 ]
	[ "$(sum g.qcow2)" = "$(cat before)" ]
	qimg create -q -f qcow2 t.qcow2 1M
	qimg bitmap --add t.qcow2 b
	truncate -s 300k t.qcow2
	sum t.qcow2 >before
	run -1 --separate-stderr img bitmap --clear t.qcow2 b
	[ "${#stderr_lines[@]}" -eq 1 ]
	[ "$(sum t.qcow2)" = "$(cat before)" ]
	# a directory entry with a hostile table size
	qimg create -q -f qcow2 h.qcow2 1M
	qimg bitmap --add h.qcow2 b
	off=$(python3 -c "import struct;d=open('h.qcow2','rb').read();import sys
p=112
while True:
  m,l=struct.unpack('>II',d[p:p+8])
  if m==0x23852875: print(struct.unpack('>Q',d[p+8+16:p+8+24])[0]); break
  p+=8+(l+7)//8*8")
	poke h.qcow2 $((off + 8)) '\xff\xff\xff\xff'
	run -1 --separate-stderr img bitmap --clear h.qcow2 b
	[ "${#stderr_lines[@]}" -eq 1 ]
}

@test "img-bitmap: --merge from an image of another size is qemu-img's refusal" {
	qimg create -q -f qcow2 s.qcow2 1M
	qimg bitmap --add s.qcow2 bm
	qio -c 'write 0 1M' s.qcow2 >/dev/null
	qimg create -q -f qcow2 big.qcow2 64M
	qimg bitmap --add big.qcow2 bm
	same bitmap --merge bm -b s.qcow2 -F qcow2 big.qcow2 bm
	[ "$(cat i.rc)" -eq 1 ]
}

# t.qcow2 with data and two bitmaps
bitmaps2() {
	qemu-img create -q -f qcow2 t.qcow2 8M &&
	    qemu-io -c 'write -P 3 0 1M' t.qcow2 &&
	    qemu-img bitmap --add t.qcow2 b0 && qemu-img bitmap --add t.qcow2 b1
}

@test "img-bitmap: failing writes and flushes say and exit as qemu-img" {
	# (the writes' own events differ: qemu marks the bitmaps in use when
	# it opens the image and fails the open, ours at the first write)
	faults_as_qemu bitmaps2 write_aio flush_to_disk l2_update l2_load \
	    cluster_free:true cluster_alloc_space l1_update -- \
	    bitmap --add @J b2
	faults_as_qemu bitmaps2 write_aio flush_to_disk l2_update l2_load \
	    cluster_free:true -- bitmap --remove @J b0
}
