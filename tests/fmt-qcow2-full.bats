#!/usr/bin/env bats
# qcow2 beyond the basics: lazy refcounts (the dirty bit and its repair),
# the corrupt bit, external data files; every case against qemu-io/qemu-img.
load helpers
bats_require_minimum_version 1.5.0

# incompat IMG: the header's incompatible feature bits, in hex
incompat() {
	od -An -tx1 -j79 -N1 "$1" | tr -d ' '
}

# dirty IMG: a lazy-refcounts image qemu left dirty (abort after writes)
dirty() {
	qimg create -q -f qcow2 -o lazy_refcounts=on "$1" 1M
	qio -c 'write -P 0x11 0 64k' -c 'write -P 0x22 128k 64k' -c abort \
	    "$1" >/dev/null 2>&1 || true
	[ "$(incompat "$1")" = 01 ]
}

# pat N BYTE: N bytes of BYTE (two hex digits) on stdout
pat() {
	head -c "$1" /dev/zero | tr '\0' "\\$(printf '%03o' $((0x$2)))"
}

@test "fmt-qcow2-full: a dirty image is repaired on a read-write open, as qemu" {
	dirty a.qcow2
	cp a.qcow2 b.qcow2
	qio -c 'write -P 0x33 256k 64k' a.qcow2 >/dev/null 2>q.err
	pat 65536 33 >p.bin
	run -0 --separate-stderr img-write -f qcow2 --offset=256k b.qcow2 <p.bin
	diff q.err <(printf '%s\n' "${stderr_lines[@]}")
	grep -q '^Rebuilding refcount structure$' q.err
	[ "$(incompat b.qcow2)" = 00 ]
	qimg check b.qcow2
	run -0 qimg compare a.qcow2 b.qcow2
	run -0 qio -r -c 'read -P 0x11 0 64k' -c 'read -P 0x22 128k 64k' \
	    -c 'read -P 0x33 256k 64k' b.qcow2
}

@test "fmt-qcow2-full: a dirty image read-only is not repaired; check reports and repairs it" {
	dirty a.qcow2
	cp a.qcow2 b.qcow2
	sum a.qcow2 >before
	run -0 img cat a.qcow2
	[ "$(sum a.qcow2)" = "$(cat before)" ]
	same_as_qemu check a.qcow2
	run -2 img check a.qcow2
	run -0 --separate-stderr img check -r all a.qcow2
	qimg check -r all b.qcow2 >/dev/null 2>&1
	[ "$(incompat a.qcow2)" = 00 ]
	qimg check a.qcow2
	run -0 qimg compare a.qcow2 b.qcow2
}

@test "fmt-qcow2-full: lazy refcounts: dirty while writing, clean after a clean close" {
	img create -q -f qcow2 -o lazy_refcounts=on l.qcow2 8M
	head -c 4M /dev/urandom >big.bin
	{ cat big.bin; sleep 2; } | img-write -f qcow2 l.qcow2 &
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		[ "$(incompat l.qcow2)" = 01 ] && break
		sleep 0.1
	done
	[ "$(incompat l.qcow2)" = 01 ]
	cp l.qcow2 crash.qcow2
	wait
	[ "$(incompat l.qcow2)" = 00 ]
	qimg check l.qcow2
	[ "$(qimg info --output=json l.qcow2 | jq '."dirty-flag"')" = false ]
	# the copy taken mid-write is dirty: qemu repairs it and reads our data
	[ "$(qimg info --output=json crash.qcow2 | jq '."dirty-flag"')" = true ]
	qio -c 'write 7M 512' crash.qcow2 >/dev/null 2>&1
	qimg check crash.qcow2
	# without lazy refcounts the bit is never set
	img create -q -f qcow2 n.qcow2 1M
	echo hi | img-write -f qcow2 n.qcow2
	[ "$(incompat n.qcow2)" = 00 ]
}

@test "fmt-qcow2-full: a write over metadata marks the image corrupt, as qemu" {
	qimg create -q -f qcow2 c.qcow2 1M
	qio -c 'write 0 64k' c.qcow2 >/dev/null
	poke c.qcow2 262144 '\x80\x00\x00\x00\x00\x01\x00\x00' # L2[0]: the refcount table
	cp c.qcow2 q.qcow2
	run -1 qio -c 'write 0 512' q.qcow2
	echo hi >hi.txt
	run -1 --separate-stderr img-write -f qcow2 c.qcow2 <hi.txt
	[ "${stderr_lines[0]}" = "qcow2: Marking image as corrupt: Preventing invalid write on metadata (overlaps with refcount table); further corruption events will be suppressed" ]
	[ "${#stderr_lines[@]}" -eq 2 ]
	[ "$(incompat c.qcow2)" = 02 ]
	cmp c.qcow2 q.qcow2
	[ "$(qimg info --output=json c.qcow2 | jq '."format-specific".data.corrupt')" = true ]
	# opening it for writing is refused, as qemu refuses it
	run -1 --separate-stderr img-write -f qcow2 c.qcow2 <hi.txt
	[ "$stderr" = "img-write: Could not open 'c.qcow2': qcow2: Image is corrupt; cannot be opened read/write" ]
	run -1 --separate-stderr qio -c 'write 0 512' c.qcow2
	[ "$stderr" = "qemu-io: can't open device c.qcow2: qcow2: Image is corrupt; cannot be opened read/write" ]
	# read-only it still reads; check -r all clears the bit as qemu's does
	run -0 img cat c.qcow2
	run -0 img check -r all c.qcow2
	qimg check -r all q.qcow2 >/dev/null 2>&1 || true
	[ "$(incompat c.qcow2)" = 00 ]
	[ "$(incompat q.qcow2)" = 00 ]
}

@test "fmt-qcow2-full: an unaligned L2 offset met while writing marks the image corrupt" {
	qimg create -q -f qcow2 c.qcow2 1M
	qio -c 'write 0 64k' c.qcow2 >/dev/null
	poke c.qcow2 196608 '\x80\x00\x00\x00\x00\x04\x02\x00'
	cp c.qcow2 q.qcow2
	qio -c 'write 0 512' q.qcow2 >/dev/null 2>q.err || true
	echo hi >hi.txt
	run -1 --separate-stderr img-write -f qcow2 c.qcow2 <hi.txt
	[ "${stderr_lines[0]}" = "$(head -1 q.err)" ]
	[ "${stderr_lines[1]}" = "img-write: c.qcow2: L2 table offset 0x40200 unaligned (L1 index: 0)" ]
	[ "$(incompat c.qcow2)" = 02 ] && [ "$(incompat q.qcow2)" = 02 ]
	# read-only: one line, nothing marked
	cp q.qcow2 r.qcow2
	poke r.qcow2 79 '\x00'
	run -1 --separate-stderr img cat r.qcow2
	[ "${#stderr_lines[@]}" -eq 1 ]
	[ "$(incompat r.qcow2)" = 00 ]
}

# qdata NAME OPTS: qemu's image NAME.qcow2 with data file NAME.raw and writes
qdata() {
	qimg create -q -f qcow2 -o "data_file=$1.raw$2" "$1.qcow2" 1M
	qio -c 'write -P 5 64k 64k' -c 'write -z 256k 64k' -c 'write -P 7 300k 4k' \
	    -c 'write -P 9 1020k 4k' "$1.qcow2" >/dev/null
}

@test "fmt-qcow2-full: qemu's images with data files read, map and show as qemu's" {
	qdata d ""
	qdata r ",data_file_raw=on"
	for f in d r; do
		same_as_qemu info $f.qcow2
		same_as_qemu info --output=json $f.qcow2
		same_as_qemu map $f.qcow2
		same_as_qemu map --output=json $f.qcow2
		same_as_qemu check $f.qcow2
		same_as_qemu check --output=json $f.qcow2
		img cat $f.qcow2 >ours.raw
		qimg convert -O raw $f.qcow2 theirs.raw
		cmp ours.raw theirs.raw
	done
	img map d.qcow2 | grep -q ' d.raw$'
	[ "$(qimg info --output=json r.qcow2 | jq '."format-specific".data."data-file-raw"')" = true ]
}

@test "fmt-qcow2-full: writes to data-file images land in the data file" {
	qdata d ""
	qdata r ",data_file_raw=on"
	head -c 200000 /dev/urandom >w.bin
	for f in d r; do
		qimg convert -O raw $f.qcow2 before.raw
		img-write -f qcow2 --offset=100000 $f.qcow2 <w.bin
		qimg check $f.qcow2
		qimg convert -O raw $f.qcow2 out.raw
		cmp -i 0:100000 -n 200000 w.bin out.raw
		cmp -n 100000 before.raw out.raw
		cmp -i 300000 before.raw out.raw
		# the qcow2 file holds metadata only
		[ "$(stat -c %s $f.qcow2)" -le 327680 ]
	done
	# a raw data file is the disk itself
	qimg convert -O raw r.qcow2 out.raw
	cmp out.raw r.raw
	# zeroes and discards keep a raw data file valid
	img-write -f qcow2 --offset=64k r.qcow2 < <(head -c 65536 /dev/zero)
	qimg convert -O raw r.qcow2 out.raw
	cmp out.raw r.raw
	qimg check r.qcow2
}

@test "fmt-qcow2-full: create with data files as qemu-img create, checked by qemu" {
	local o
	for o in "" ",data_file_raw=on" ",preallocation=metadata" \
	    ",data_file_raw=on,preallocation=full" ",cluster_size=4k"; do
		rm -f a.qcow2 a.raw b.qcow2 b.raw
		run -0 img create -f qcow2 -o "data_file=a.raw$o" a.qcow2 1M
		echo "${output//a./X.}" >ours
		run -0 qimg create -f qcow2 -o "data_file=b.raw$o" b.qcow2 1M
		echo "${output//b./X.}" >theirs
		diff ours theirs
		qimg check a.qcow2
		[ "$(stat -c %s a.raw)" = 1048576 ]
		diff <(qimg map --output=json a.qcow2) <(qimg map --output=json b.qcow2)
		diff <(qimg info a.qcow2 | sed 1d | grep -v 'disk size\|data file:') \
		    <(qimg info b.qcow2 | sed 1d | grep -v 'disk size\|data file:')
		printf 'data%.0s' {1..4096} | img-write -f qcow2 --offset=12345 a.qcow2
		qimg check a.qcow2
		printf 'data%.0s' {1..4096} | qio -c 'write -s /dev/stdin 12345 16384' b.qcow2 >/dev/null
		run -0 qimg compare a.qcow2 b.qcow2
	done
}

@test "fmt-qcow2-full: data file options refused as qemu refuses them, nothing made" {
	local o
	for o in "data_file=a.raw,compat=0.10" "data_file_raw=on" \
	    "data_file=a.raw,data_file_raw=on,backing_file=b.qcow2,backing_fmt=qcow2" \
	    "data_file=a.raw,data_file_raw=maybe"; do
		run -1 --separate-stderr img create -f qcow2 -o "$o" z.qcow2 1M
		ours=${stderr#img: }
		run -1 --separate-stderr qimg create -f qcow2 -o "$o" z.qcow2 1M
		[ "$ours" = "${stderr#qemu-img: }" ]
		[ ! -e z.qcow2 ] && [ ! -e a.raw ]
	done
}

@test "fmt-qcow2-full: a missing data file: info goes on, the rest fail as qemu" {
	qdata d ""
	rm d.raw
	same_as_qemu info d.qcow2
	run -1 --separate-stderr img map d.qcow2
	[ "$stderr" = "img: Could not open 'd.qcow2': Could not open 'd.raw': No such file or directory" ]
	echo x >x.txt
	run -1 --separate-stderr img-write -f qcow2 d.qcow2 <x.txt
	[ "$stderr" = "img-write: Could not open 'd.qcow2': Could not open 'd.raw': No such file or directory" ]
	# qemu 7.2 names the data file relative to the working directory
	qdata e ""
	mkdir sub
	mv e.qcow2 sub/
	same_as_qemu map --output=json sub/e.qcow2
	# the incompatible bit without the extension
	qimg create -q -f qcow2 n.qcow2 1M
	poke n.qcow2 79 '\x04'
	same_as_qemu info n.qcow2
	run -1 --separate-stderr img cat n.qcow2
	[ "$stderr" = "img: Could not open 'n.qcow2': 'data-file' is required for this image" ]
}

@test "fmt-qcow2-full: img convert into a data-file image, both ways of data_file_raw" {
	head -c 3M /dev/urandom >src.raw
	img convert -f raw -O qcow2 -o data_file=cv.raw src.raw cv.qcow2
	qimg check cv.qcow2
	run -0 qimg compare -f raw src.raw cv.qcow2
	img convert -f raw -O qcow2 -o data_file=cr.raw,data_file_raw=on src.raw cr.qcow2
	qimg check cr.qcow2
	cmp src.raw cr.raw
	# and back out of qemu's
	qimg convert -f raw -O qcow2 -o data_file=q.raw src.raw q.qcow2
	img convert -O raw q.qcow2 out.raw
	cmp src.raw out.raw
}
