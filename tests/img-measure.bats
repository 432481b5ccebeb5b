#!/usr/bin/env bats
bats_require_minimum_version 1.5.0
# img-measure: the numbers, output forms and messages of qemu-img measure.

load helpers

@test "img-measure: --size matches qemu-img over a table of sizes and options" {
	need_qemu
	for size in 0 1 512 1M 1G 100G 2T 64T; do
		for o in "" cluster_size=512 cluster_size=4k cluster_size=2M \
		    refcount_bits=1 refcount_bits=64 extended_l2=on \
		    preallocation=metadata preallocation=full compat=0.10 \
		    lazy_refcounts=on,cluster_size=128k; do
			same_as_qemu measure -O qcow2 ${o:+-o $o} --size $size
			same_as_qemu measure -O qcow2 ${o:+-o $o} --size $size --output=json
		done
		same_as_qemu measure -O raw --size $size
		same_as_qemu measure --size $size --output=json
	done
}

@test "img-measure: an input image's data counts, zeroes do not" {
	qimg create -q -f qcow2 a.qcow2 64M
	qio -f qcow2 -c 'write -P 1 0 1M' -c 'write -z 2M 64k' \
	    -c 'write -P 2 5M 3k' -c 'write -c -P 3 9M 64k' a.qcow2 >/dev/null
	truncate -s 40M r.raw
	dd if=/dev/urandom of=r.raw bs=4k count=3 seek=1000 conv=notrunc status=none
	for o in "" cluster_size=4k compat=0.10 preallocation=full backing_file=x.qcow2; do
		same_as_qemu measure -O qcow2 ${o:+-o $o} a.qcow2
		same_as_qemu measure -O qcow2 ${o:+-o $o} --output=json a.qcow2
		same_as_qemu measure -O qcow2 ${o:+-o $o} -f raw r.raw
	done
	same_as_qemu measure -O raw a.qcow2
	same_as_qemu measure -O raw --output=json -f raw r.raw
}

@test "img-measure: a backing chain is measured as a whole" {
	qimg create -q -f qcow2 base.qcow2 16M
	qio -f qcow2 -c 'write -P 1 0 2M' base.qcow2 >/dev/null
	qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
	qio -f qcow2 -c 'write -P 2 8M 1M' top.qcow2 >/dev/null
	same_as_qemu measure -O qcow2 top.qcow2
	same_as_qemu measure -O qcow2 --output=json top.qcow2
}

@test "img-measure: option errors are qemu-img's" {
	need_qemu
	for args in "" "--size 1G x.raw" "-f raw --size 1G" "-l s --size 1G" \
	    "--size 1Q" "--size -1" "--size 1G --output=xml" \
	    "--size 1G -O foo" "--size 1G -O qcow2 -o foo=bar" \
	    "--size 1G -O qcow2 -o cluster_size=3" \
	    "--size 1G -O qcow2 -o cluster_size=foo" \
	    "--size 1G -O qcow2 -o refcount_bits=3" \
	    "--size 1G -O qcow2 -o compat=0.9" \
	    "--size 1G -O qcow2 -o compat=0.10,refcount_bits=8" \
	    "--size 1G -O qcow2 -o extended_l2=on,cluster_size=4k" \
	    "--size 1G -O qcow2 -o extended_l2=foo" \
	    "--size 1G -O qcow2 -o preallocation=foo" \
	    "--size 100P -O qcow2" "a b" "nonexistent"; do
		wstat=0 gstat=0
		want=$(command qemu-img measure $args 2>&1) || wstat=$?
		got=$(img measure $args 2>&1) || gstat=$?
		want=${want//qemu-img:/img:}
		[ "$want" = "$got" ] || { echo "args: $args"; diff <(echo "$want") <(echo "$got"); false; }
		[ "$wstat" = "$gstat" ]
	done
}

@test "img-measure: garbage and truncated inputs give one error line" {
	head -c 1000 /dev/urandom > g.bin
	run -1 --separate-stderr img-measure -f qcow2 -O qcow2 g.bin
	[ -z "$output" ] && [ "${#stderr_lines[@]}" -eq 1 ]
	[[ $stderr == "img-measure: Could not open 'g.bin': "* ]]
	qimg create -q -f qcow2 t.qcow2 1G
	truncate -s 100 t.qcow2
	run -1 --separate-stderr img-measure -f qcow2 -O qcow2 t.qcow2
	[ "${#stderr_lines[@]}" -eq 1 ]
}

@test "img-measure: --help, --long-options and bad options" {
	run -0 img-measure --help
	[[ $output == *"See img-measure(1)."* ]]
	run -0 img-measure --long-options
	[[ $output == *"--size"* ]]
	run -1 --separate-stderr img-measure --bogus
	[ "${stderr_lines[1]}" = "Try 'img-measure --help' for more information" ]
}

@test "img-measure: persistent bitmaps of the input are sized as qemu-img does" {
	qimg create -q -f qcow2 b.qcow2 1G
	qimg bitmap --add b.qcow2 b0
	qimg bitmap --add -g 512k b.qcow2 a-longer-bitmap-name
	same_as_qemu measure -O qcow2 b.qcow2
	same_as_qemu measure -O qcow2 -o cluster_size=4k --output=json b.qcow2
	same_as_qemu measure -O qcow2 -o compat=0.10 b.qcow2
}
