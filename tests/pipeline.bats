#!/usr/bin/env bats
# Hand-written pipelines of img-map, img-cat and img-write, as the man pages show them.
load helpers
bats_require_minimum_version 1.5.0

# a qcow2 chain: base with data, top with data, zeroes and compressed clusters
mkchain() {
	qimg create -q -f qcow2 base.qcow2 64M
	qio -c 'write -P 1 0 2M' -c 'write -P 2 16M 1M' -c 'write -P 6 60M 4M' \
	    base.qcow2 >/dev/null
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
	qio -c 'write -P 3 1M 64k' -c 'write -z 16M 512k' -c 'write -c -P 4 32M 256k' \
	    -c 'write -P 0 40M 1M' top.qcow2 >/dev/null
}

@test "pipeline: convert by hand, qcow2 chain to a new qcow2" {
	mkchain
	img-map --output=json top.qcow2 > m
	qimg create -q -f qcow2 y.qcow2 64M
	img-cat --map m top.qcow2 | img-write --map m --target-is-zero y.qcow2
	qimg compare top.qcow2 y.qcow2
	qimg check y.qcow2
	# zero and unallocated extents moved no bytes, and the zero data cluster stayed sparse
	[ "$(img-map --output=json y.qcow2 | jq '[.[] | select(.data) | .length] | add')" -le $((8 << 20)) ]
}

@test "pipeline: convert by hand to raw; the result is qemu-img convert's" {
	mkchain
	img-map --output=json top.qcow2 > m
	truncate -s 64M y.raw
	img-cat --map m top.qcow2 | img-write -f raw --map m -n y.raw
	qimg convert -O raw top.qcow2 want.raw
	cmp y.raw want.raw
}

@test "pipeline: the map through jq -c, JSON Lines" {
	mkchain
	img-map --output=json top.qcow2 | jq -c '.[]' > m
	qimg create -q -f qcow2 y.qcow2 64M
	img-cat --map m top.qcow2 | img-write --map m --target-is-zero y.qcow2
	qimg compare top.qcow2 y.qcow2
}

@test "pipeline: only the top's own extents, into its backing file (commit by hand)" {
	mkchain
	cp base.qcow2 base0.qcow2
	img-map --output=json top.qcow2 | jq -c '.[] | select(.depth == 0 and .present)' > m
	# -U: the reader opens base as the backing file the writer changes
	img-cat -U --map m top.qcow2 | img-write -f qcow2 --map m base.qcow2
	qimg check base.qcow2
	# the base now reads as the top did
	qimg compare -f qcow2 -F qcow2 top.qcow2 base.qcow2
}

@test "pipeline: only the data extents, by jq select(.data)" {
	qimg create -q -f raw src.raw 16M
	qio -f raw -c 'write -P 5 1M 1M' -c 'write -P 6 9M 512k' src.raw >/dev/null
	img-map -f raw --output=json src.raw | jq -c '.[] | select(.data)' > m
	qimg create -q -f qcow2 y.qcow2 16M
	img-cat -f raw --map m src.raw | img-write --map m -n y.qcow2
	qimg compare -f raw -F qcow2 src.raw y.qcow2
}

@test "pipeline: a whole-disk stream, raw to qcow2, stays sparse" {
	qimg create -q -f raw src.raw 256M
	qio -f raw -c 'write -P 5 1M 1M' -c 'write -P 6 200M 64k' src.raw >/dev/null
	qimg create -q -f qcow2 y.qcow2 256M
	img-cat -f raw src.raw | img-write -f qcow2 --target-is-zero y.qcow2
	qimg compare -f raw -F qcow2 src.raw y.qcow2
	qimg check y.qcow2
	[ "$(img-map --output=json y.qcow2 | jq '[.[] | select(.data) | .length] | add')" -eq $(((1 << 20) + (64 << 10))) ]
}

@test "pipeline: the map from stdin, img-map | img-cat --map -" {
	mkchain
	img-map --output=json top.qcow2 > m
	img-map --output=json top.qcow2 | img-cat --map - top.qcow2 > s1
	img-cat --map m top.qcow2 > s2
	cmp s1 s2
}

@test "pipeline: a stream through a compressor and back" {
	mkchain
	img-map --output=json top.qcow2 > m
	qimg create -q -f qcow2 y.qcow2 64M
	img-cat --map m top.qcow2 | gzip -1 | gzip -d | img-write --map m -n y.qcow2
	qimg compare top.qcow2 y.qcow2
}

@test "pipeline: the human map works as well as JSON" {
	qimg create -q -f qcow2 src.qcow2 32M
	qio -c 'write -P 1 0 1M' -c 'write -P 2 8M 64k' src.qcow2 >/dev/null
	img-map src.qcow2 > m
	qimg create -q -f qcow2 y.qcow2 32M
	img-cat --map m src.qcow2 | img-write --map m -n y.qcow2
	qimg compare src.qcow2 y.qcow2
}

@test "pipeline: a failing img-cat makes img-write fail too, never succeed" {
	mkchain
	img-map --output=json top.qcow2 > m
	qimg create -q -f qcow2 y.qcow2 64M
	run -1 --separate-stderr bash -c 'set -o pipefail; img-cat --map m top.qcow2 | head -c 3000000 | img-write --map m -n y.qcow2'
	[[ $stderr == "img-write: stdin: stream ended at byte 3000000, map expects "* ]]
	qimg check y.qcow2
}

@test "pipeline: 1 GiB of sparse qcow2 converts in a few seconds" {
	qimg create -q -f qcow2 src.qcow2 1G
	qio -c 'write -P 1 0 16M' -c 'write -P 2 512M 16M' src.qcow2 >/dev/null
	img-map --output=json src.qcow2 > m
	qimg create -q -f qcow2 y.qcow2 1G
	timeout 10 bash -c 'img-cat --map m src.qcow2 | img-write --map m -n y.qcow2'
	qimg compare src.qcow2 y.qcow2
}
