#!/bin/sh
# Install what building and testing need on a fresh Debian machine (as root), or say what
# is missing.  Quiet and quick when everything is there.  Used by make check/demo/bench
# and .ci/run.
need=""
want() { need="$need $1"; }
command -v cc >/dev/null 2>&1 || want gcc
[ -e /usr/include/stdio.h ] || want libc6-dev
command -v make >/dev/null 2>&1 || want make
[ -e /usr/include/zlib.h ] || want zlib1g-dev
[ -e /usr/include/zstd.h ] || want libzstd-dev
command -v bats >/dev/null 2>&1 || want bats
command -v jq >/dev/null 2>&1 || want jq
{ command -v qemu-img && command -v qemu-io; } >/dev/null 2>&1 || want qemu-utils
command -v groff >/dev/null 2>&1 || want groff-base
[ -f /usr/share/bash-completion/bash_completion ] || want bash-completion
command -v strace >/dev/null 2>&1 || want strace	# tests/img-bench.bats
command -v python3 >/dev/null 2>&1 || want python3	# tests/bench/mkimage
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: missing packages; as root run: apt-get install$need" >&2
	exit 1
fi
echo "deps: installing$need"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine's own apt jobs (apt-daily, unattended-upgrades) may hold the locks
# for a while: dpkg's lock is waited for, the lists' lock and the network are retried.
apt="apt-get -q -o DPkg::Lock::Timeout=600"
tries=0
# shellcheck disable=SC2086
until $apt update </dev/null >/dev/null &&
    $apt install -y --no-install-recommends $need </dev/null >/dev/null; do
	tries=$((tries + 1))
	if [ "$tries" -ge 6 ]; then
		echo "deps: apt-get failed; install by hand:$need" >&2
		exit 1
	fi
	echo "deps: apt-get failed, trying again in 20 s" >&2
	sleep 20
done
echo "deps: installed$need"
