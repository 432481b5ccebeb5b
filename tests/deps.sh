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
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: missing packages; as root run: apt-get install$need" >&2
	exit 1
fi
echo "deps: installing$need"
export DEBIAN_FRONTEND=noninteractive
# a fresh machine's own apt jobs may hold the lock for a while: wait for it
apt="apt-get -q -o DPkg::Lock::Timeout=600"
tries=0
# shellcheck disable=SC2086
until $apt update </dev/null >/dev/null &&
    $apt install -y --no-install-recommends $need </dev/null >/dev/null; do
	tries=$((tries + 1))
	if [ "$tries" -ge 3 ]; then
		echo "deps: apt-get failed; install by hand:$need" >&2
		exit 1
	fi
	echo "deps: apt-get failed, trying again in 10 s" >&2
	sleep 10
done
echo "deps: installed$need"
