#!/usr/bin/env bash
# make demo: a small qcow2 on a backing file, described, mapped, converted to raw and
# back, and checked, with img's own programs ($IMG_BIN, default bin/).  A step whose
# program is not built yet is skipped with a message; a step that fails stops the demo.
set -u
cd "$(dirname "$0")/.." || exit 1
IMG_BIN=$(cd "${IMG_BIN:-bin}" 2>/dev/null && pwd) && [ -x "$IMG_BIN/img" ] ||
    { echo "demo: img is not built: run 'make' first"; exit 1; }
PATH=$IMG_BIN:$PATH
work=$(mktemp -d "${TMPDIR:-/tmp}/img-demo.XXXXXX") || exit 1
if [ -n "${DEMO_KEEP:-}" ]; then
	echo "demo: working in $work (kept)"
else
	trap 'rm -rf "$work"' EXIT
fi
cd "$work" || exit 1

skipped=()
# have NAME...: every img-NAME is built; else say which is not and return 1
have() {
	local p
	for p; do
		if [ ! -x "$IMG_BIN/img-$p" ]; then
			echo "demo: skipped: img-$p is not built yet (no tools/img-$p.c)"
			skipped+=("img-$p")
			return 1
		fi
	done
}
have_qemu() { command -v qemu-img >/dev/null 2>&1 && command -v qemu-io >/dev/null 2>&1; }
# sh 'COMMAND LINE': show it, run it (pipes fail as a whole), stop the demo if it fails
sh() {
	printf '\n$ %s\n' "$1"
	bash -o pipefail -c "$1" || { echo "demo: FAILED (exit $?): $1"; exit 1; }
}
title() { printf '\n=== %s\n' "$*"; }

title "The example: base.qcow2 (64 MiB, 1 MiB of data) under top.qcow2 (data and zeroes)"
if have create; then
	mk=img
else
	have_qemu || { echo "demo: cannot make the example without img-create or qemu-img"; exit 0; }
	echo "demo: making the example with qemu-img instead"
	mk=qemu-img
fi
sh "$mk create -f qcow2 base.qcow2 64M"
sh "$mk create -f qcow2 -b base.qcow2 -F qcow2 top.qcow2"
if have_qemu; then
	sh "qemu-io -f qcow2 -c 'write -q -P 0x11 0 1M' base.qcow2"
	sh "qemu-io -f qcow2 -c 'write -q -P 0x22 512K 1M' -c 'write -q -z 4M 1M' -c 'write -q -P 0x33 60M 64K' top.qcow2"
elif have write; then
	echo "demo: qemu-io is not installed: writing the data with img-write"
	sh "head -c 1M /dev/zero | tr '\\0' A | img write base.qcow2"
	sh "head -c 512K /dev/zero | tr '\\0' B | img write top.qcow2"
else
	echo "demo: the example stays empty: neither qemu-io nor img-write is there"
fi

title "What it is"
have info && sh "img info --backing-chain top.qcow2"
title "Where its data is"
if have map; then
	sh "img map top.qcow2"
	sh "img map --output=json top.qcow2"
	if command -v jq >/dev/null; then
		sh "img map --output=json top.qcow2 | jq '[.[] | select(.data) | .length] | add'"
		sh "img map --output=json top.qcow2 | jq -c '.[] | select(.data and .depth > 0)'"
	fi
fi

title "Convert to raw and back to qcow2"
converted=
if have convert; then
	sh "img convert -O raw top.qcow2 top.raw"
	sh "img convert -f raw -O qcow2 top.raw back.qcow2"
	converted=1
	have info && sh "img info back.qcow2"
	have map && sh "img map --output=json back.qcow2"
fi

title "The same by hand: map, cat and write on a pipe"
piped=
if have map cat write create; then
	sh "img map --output=json top.qcow2 > m"
	sh "img create -q -f qcow2 copy.qcow2 64M"
	sh "img cat --map m top.qcow2 | img write --map m --target-is-zero copy.qcow2"
	piped=1
fi

title "Check: the copies hold the same bytes as the original"
for copy in ${converted:+top.raw back.qcow2} ${piped:+copy.qcow2}; do
	if have compare; then
		sh "img compare top.qcow2 $copy"
	fi
	if have cat; then
		sh "img cat top.qcow2 | cmp - <(img cat $copy) && echo 'same bytes'"
	fi
	if have_qemu && [ "$copy" != top.raw ]; then
		sh "qemu-img check -q $copy && qemu-img compare top.qcow2 $copy"
	fi
done
[ -n "$converted$piped" ] || echo "demo: nothing was copied, so nothing to check"

if [ ${#skipped[@]} -gt 0 ]; then
	echo
	echo "demo: steps were skipped; not built yet: $(printf '%s\n' "${skipped[@]}" | sort -u | tr '\n' ' ')"
fi
echo "demo: done"
