#!/bin/sh
# Install what building and testing need on a fresh Debian machine (as root), or say what is missing.
need=""
command -v cc >/dev/null 2>&1 || need="$need gcc"
command -v make >/dev/null 2>&1 || need="$need make"
[ -e /usr/include/zlib.h ] || need="$need zlib1g-dev"
[ -e /usr/include/zstd.h ] || need="$need libzstd-dev"
command -v bats >/dev/null 2>&1 || need="$need bats"
command -v jq >/dev/null 2>&1 || need="$need jq"
command -v qemu-img >/dev/null 2>&1 || need="$need qemu-utils"
command -v groff >/dev/null 2>&1 || need="$need groff-base"
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "installing:$need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq </dev/null >/dev/null 2>&1
	# shellcheck disable=SC2086
	apt-get install -y -qq $need </dev/null >/dev/null || exit 1
else
	echo "missing packages; as root run: apt-get install$need" >&2
	exit 1
fi
