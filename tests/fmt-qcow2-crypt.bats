#!/usr/bin/env bats
# Encrypted qcow2 written by img (encrypt.format=luks and the legacy aes):
# creates laid out as qemu-img's, writes encrypted as qemu's (LUKS IVs
# from host sectors, AES ones from guest sectors), read back both ways.
# encrypt.iter-time=10 keeps key derivation short.
load helpers
bats_require_minimum_version 1.5.0

SEC="--object secret,id=sec0,data=123456"
LUKS="encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"
AES="encrypt.format=aes,encrypt.key-secret=sec0"

# opts FILE: the --image-opts string of an encrypted qcow2
opts() { echo "driver=qcow2,encrypt.key-secret=sec0,file.filename=$1"; }
# jname FILE: its json: name, for img-write
jname() {
	echo "json:{\"driver\":\"qcow2\",\"encrypt.key-secret\":\"sec0\",\"file\":{\"driver\":\"file\",\"filename\":\"$1\"}}"
}

setup_file() {
	need_qemu || return 0
	cd "$BATS_FILE_TMPDIR" || return 1
	# a failed try prints its Formatting line too: the last one is the one
	qemu_luks create $SEC -f qcow2 -o "$LUKS" q.qcow2 64M >q.tries &&
	    tail -n 1 q.tries >q.create
	qemu_luks create -q $SEC -f qcow2 -o "$LUKS,cluster_size=4096" \
	    q4k.qcow2 4M
}

setup() {
	cd "$BATS_TEST_TMPDIR" || return 1
	need_qemu
}

# mask: info without what differs per image (uuid, iterations, names)
mask() {
	sed -E 's/(uuid: ).*/\1U/; s/(iters: ).*/\1N/; s/^(image: ).*/\1X/'
}

# pattern BYTE N: N bytes of BYTE (decimal)
pattern() {
	python3 -c "import sys; sys.stdout.buffer.write(bytes([$1]) * $2)"
}

# The writes both sides make: offset, length, byte; partial sectors,
# partial clusters (COW), whole clusters, rewrites in place.
OPS="1000:3000:171 65536:65536:34 200000:5:17 131072:70000:99 4000000:1000:5 1000:100:8 70000:9000:3"

# apply_ops FILE: OPS through img-write, then through qemu-io on FILE.q
apply_ops() {
	local o off n p
	for o in $OPS; do
		IFS=: read -r off n p <<<"$o"
		pattern "$p" "$n" >chunk
		img-write $SEC --offset="$off" "$(jname "$1")" <chunk || return 1
		command qemu-io $SEC --image-opts "$(opts "$1.q")" \
		    -c "write -P $p $off $n" >/dev/null || return 1
	done
}

@test "fmt-qcow2-crypt: luks create: Formatting line, layout, check and info as qemu-img" {
	run -0 img-create $SEC -f qcow2 -o "$LUKS" i.qcow2 64M
	[ "$output" = "$(sed 's/q\.qcow2/i.qcow2/' "$BATS_FILE_TMPDIR"/q.create)" ]
	# header, refcounts, L1 and the CRYPTO extension: the same bytes
	cmp -n 262144 i.qcow2 "$BATS_FILE_TMPDIR"/q.qcow2
	[ "$(stat -c %s i.qcow2)" = "$(stat -c %s "$BATS_FILE_TMPDIR"/q.qcow2)" ]
	run -0 command qemu-img check $SEC --image-opts "$(opts i.qcow2)"
	command qemu-img info i.qcow2 | mask >want
	command qemu-img info "$BATS_FILE_TMPDIR"/q.qcow2 | mask >got
	diff want got
	img-info i.qcow2 | mask >ours
	diff want ours
}

@test "fmt-qcow2-crypt: aes create and writes: the bytes of qemu's" {
	run -0 img-create $SEC -f qcow2 -o "$AES" i.qcow2 4M
	command qemu-img create -q $SEC -f qcow2 -o "$AES" i.qcow2.q 4M
	cmp i.qcow2 i.qcow2.q
	apply_ops i.qcow2
	cmp i.qcow2 i.qcow2.q
	run -0 img-create -q $SEC -f qcow2 -o encryption=on,encrypt.key-secret=sec0 o.qcow2 4M
	command qemu-img create -q $SEC -f qcow2 -o encryption=on,encrypt.key-secret=sec0 o.qcow2.q 4M
	cmp o.qcow2 o.qcow2.q
}

@test "fmt-qcow2-crypt: luks writes on qemu's image: the bytes of qemu-io's" {
	cp "$BATS_FILE_TMPDIR"/q4k.qcow2 i.qcow2
	cp "$BATS_FILE_TMPDIR"/q4k.qcow2 i.qcow2.q
	apply_ops i.qcow2
	cmp i.qcow2 i.qcow2.q
	# and no plaintext on disk
	run -1 grep -c "$(pattern 34 64)" i.qcow2
}

@test "fmt-qcow2-crypt: random writes and zeroes on our images read back by qemu" {
	local fmt off n z
	python3 -c '
import random
random.seed(11)
for i in range(24):
    off = random.randrange(0, 2 << 20)
    n = min(random.choice([1, 700, 4096, 65536, 100000]), (2 << 20) - off)
    print(off, n, random.choice([0, 0, 1]))' >ops
	for fmt in "$LUKS,cluster_size=4096" "$AES"; do
		rm -f i.qcow2 ref.raw
		img-create -q $SEC -f qcow2 -o "$fmt" i.qcow2 2M
		truncate -s 2M ref.raw
		while read -r off n z; do
			if [ "$z" = 1 ]; then head -c "$n" /dev/urandom >chunk
			else head -c "$n" /dev/zero >chunk; fi
			img-write $SEC --offset="$off" "$(jname i.qcow2)" <chunk
			dd if=chunk of=ref.raw oflag=seek_bytes seek="$off" \
			    conv=notrunc status=none
		done <ops
		run -0 command qemu-img compare $SEC --image-opts \
		    driver=raw,file.filename=ref.raw "$(opts i.qcow2)"
		run -0 command qemu-img check $SEC --image-opts "$(opts i.qcow2)"
	done
}

@test "fmt-qcow2-crypt: img reads what qemu-io wrote" {
	cp "$BATS_FILE_TMPDIR"/q4k.qcow2 q.qcow2
	command qemu-io $SEC --image-opts "$(opts q.qcow2)" \
	    -c 'write -P 7 1000 100000' >/dev/null
	img-convert $SEC "$(jname q.qcow2)" -O raw r.raw
	{ head -c 1000 /dev/zero; pattern 7 100000; head -c $((4194304 - 101000)) /dev/zero; } >want.raw
	cmp r.raw want.raw
}

@test "fmt-qcow2-crypt: convert to encrypted qcow2 compares identical, maps as qemu's" {
	head -c 1M /dev/urandom >src.raw
	dd if=/dev/zero of=src.raw bs=64k seek=4 count=3 conv=notrunc status=none
	truncate -s 3M src.raw
	run -0 img-convert $SEC -O qcow2 -o "$LUKS" src.raw l.qcow2
	run -0 img-convert $SEC -O qcow2 -o "$AES" src.raw a.qcow2
	for f in l.qcow2 a.qcow2; do
		run -0 command qemu-img compare $SEC --image-opts \
		    driver=raw,file.filename=src.raw "$(opts $f)"
		[ "$output" = "Images are identical." ]
		run -0 img-compare $SEC --image-opts \
		    driver=raw,file.filename=src.raw "$(opts $f)"
		run -0 command qemu-img check $SEC --image-opts "$(opts $f)"
	done
	command qemu-img convert $SEC -O qcow2 -o "$AES" src.raw q.qcow2
	cmp a.qcow2 q.qcow2
	command qemu-img map $SEC --output=json --image-opts "$(opts q.qcow2)" >want
	command qemu-img map $SEC --output=json --image-opts "$(opts l.qcow2)" >got
	diff want got
}

@test "fmt-qcow2-crypt: bad encryption options: qemu's errors, nothing created" {
	local o
	for o in encrypt.format=luks encrypt.format=aes \
	    "$LUKS,encrypt.cipher-alg=foo" "$AES,encrypt.cipher-alg=aes-128" \
	    encrypt.format=luks,encrypt.key-secret=nosec \
	    encrypt.format=xx,encrypt.key-secret=sec0 \
	    encrypt.key-secret=sec0 encryption=off,encrypt.key-secret=sec0 \
	    "encryption=on,$AES" "$LUKS,encrypt.cipher-alg=des" \
	    "$LUKS,encrypt.cipher-alg=sm4" "$LUKS,encrypt.cipher-alg=cast5-128" \
	    "$LUKS,encrypt.cipher-alg=cast5-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv" \
	    "$LUKS,encrypt.cipher-alg=serpent-128,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=ripemd160" \
	    "$LUKS,encrypt.hash-alg=md4"; do
		command qemu-img create $SEC -f qcow2 -o "$o" x.qcow2 1M \
		    >want 2>&1 && return 1
		run -1 img-create $SEC -f qcow2 -o "$o" x.qcow2 1M
		[ "$output" = "$(sed 's/^qemu-img:/img-create:/' want)" ] ||
		    { echo "$o"; cat want; echo "$output"; return 1; }
		[ ! -e x.qcow2 ]
	done
}

@test "fmt-qcow2-crypt: compressed and encrypted refused as qemu-img" {
	head -c 64k /dev/urandom >src.raw
	command qemu-img convert $SEC -c -O qcow2 -o "$AES" src.raw q.qcow2 \
	    2>want && return 1
	run -1 img-convert $SEC -c -O qcow2 -o "$AES" src.raw i.qcow2
	[ "$output" = "$(sed 's/^qemu-img:/img-convert:/' want)" ]
}

@test "fmt-qcow2-crypt: amend adds and erases LUKS keyslots as qemu-img" {
	local S="$SEC --object secret,id=sec1,data=abc" p f
	img-create -q $SEC -f qcow2 -o "$LUKS" i.qcow2 1M
	cp i.qcow2 q.qcow2
	for p in img-amend qemu-img; do
		f=i.qcow2
		[ $p = qemu-img ] && f=q.qcow2 p="qemu_luks amend"
		$p $S --image-opts "$(opts $f)" -o encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10,encrypt.keyslot=3
		$p $S --image-opts "$(opts $f)" -o encrypt.state=inactive,encrypt.keyslot=0
	done
	# the copy's allocation differs: disk size aside
	command qemu-img info i.qcow2 | mask | grep -v '^disk size' >got
	command qemu-img info q.qcow2 | mask | grep -v '^disk size' >want
	diff want got
	run -0 command qemu-io $S --image-opts \
	    "driver=qcow2,encrypt.key-secret=sec1,file.filename=i.qcow2" -c 'read -P 0 0 64k'
	[[ $output != *fail* ]]
	# the last slot stays, in qemu's words
	run -1 command qemu-img amend $S --image-opts "driver=qcow2,encrypt.key-secret=sec1,file.filename=q.qcow2" \
	    -o encrypt.state=inactive,encrypt.keyslot=3
	want=${output/qemu-img/img-amend}
	run -1 img-amend $S --image-opts "driver=qcow2,encrypt.key-secret=sec1,file.filename=i.qcow2" \
	    -o encrypt.state=inactive,encrypt.keyslot=3
	[ "$output" = "$want" ]
}

@test "fmt-qcow2-crypt: amend of aes and plain images refused as qemu-img" {
	img-create -q $SEC -f qcow2 -o "$AES" a.qcow2 1M
	img-create -q -f qcow2 p.qcow2 1M
	run -1 command qemu-img amend $SEC --image-opts "$(opts a.qcow2)" -o encrypt.state=inactive,encrypt.keyslot=0
	want=${output/qemu-img/img-amend}
	run -1 img-amend $SEC --image-opts "$(opts a.qcow2)" -o encrypt.state=inactive,encrypt.keyslot=0
	[ "$output" = "$want" ]
	run -1 command qemu-img amend -o encrypt.state=inactive p.qcow2
	want=${output/qemu-img/img-amend}
	run -1 img-amend -o encrypt.state=inactive p.qcow2
	[ "$output" = "$want" ]
}

@test "fmt-qcow2-crypt: measure counts the LUKS header clusters as qemu-img" {
	local o
	for o in "$LUKS" "$LUKS,cluster_size=512" "$AES" encrypt.format=luks; do
		qemu_luks measure $SEC -O qcow2 -o "$o" --size 64M >want 2>&1 ||
		    sed -i 's/^qemu-img:/img-measure:/' want
		run img-measure $SEC -O qcow2 -o "$o" --size 64M
		[ "$output" = "$(cat want)" ]
	done
}

@test "fmt-qcow2-crypt: convert to a preallocated encrypted qcow2 writes its zeroes" {
	head -c 64k /dev/urandom >src.raw
	truncate -s 1M src.raw
	run -0 img-convert $SEC -O qcow2 -o "$LUKS,cluster_size=4k,preallocation=metadata" src.raw l.qcow2
	run -0 command qemu-img compare $SEC --image-opts \
	    driver=raw,file.filename=src.raw "$(opts l.qcow2)"
	qemu_luks convert $SEC -O qcow2 -o "$LUKS,cluster_size=4k,preallocation=metadata" src.raw q.qcow2
	command qemu-img map $SEC --output=json --image-opts "$(opts q.qcow2)" >want
	command qemu-img map $SEC --output=json --image-opts "$(opts l.qcow2)" >got
	diff want got
}

@test "fmt-qcow2-crypt: Twofish, Serpent and CAST-128 with ripemd160/md5, both ways" {
	local o f
	qemu_luks create -q $SEC -f qcow2 -o "$LUKS,encrypt.cipher-alg=twofish-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.hash-alg=ripemd160" q.qcow2 2M
	img-create -q $SEC -f qcow2 -o "$LUKS,encrypt.cipher-alg=serpent-192,encrypt.hash-alg=md5" s.qcow2 2M
	img-create -q $SEC -f qcow2 -o "$LUKS,encrypt.cipher-alg=cast5-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=md5" c.qcow2 2M
	for f in q.qcow2 s.qcow2 c.qcow2; do
		command qemu-io $SEC --image-opts "$(opts $f)" \
		    -c 'write -P 0x41 1000 3000' -c 'write -P 0x42 300k 70k' >/dev/null
		pattern 67 5000 | img-write $SEC --offset=1M "$(jname $f)"
		{ head -c 1000 /dev/zero; pattern 65 3000; head -c $((300 * 1024 - 4000)) /dev/zero
		  pattern 66 71680; head -c $((1024 * 1024 - 370 * 1024)) /dev/zero; pattern 67 5000
		  head -c $((1024 * 1024 - 5000)) /dev/zero; } >want.raw
		img-convert $SEC "$(jname $f)" -O raw got.raw
		cmp got.raw want.raw
		run -0 command qemu-img compare $SEC --image-opts driver=raw,file.filename=want.raw "$(opts $f)"
		run -0 command qemu-img check $SEC --image-opts "$(opts $f)"
		command qemu-img info $f | mask >want
		img-info $f | mask >got
		diff want got
	done
}
