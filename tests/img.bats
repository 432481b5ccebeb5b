#!/usr/bin/env bats
# img, the dispatcher: global options, command lookup, qemu-img's messages, install.
load helpers
bats_require_minimum_version 1.5.0

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

# a stand-in program img-NAME in folder DIR that shows how it was run
fake_prog() {
	mkdir -p "$1"
	printf '#!/bin/sh\necho "%s IMG_PROG=$IMG_PROG args:$*"\n' "$2" >"$1/img-$2"
	chmod +x "$1/img-$2"
}

@test "img --help: usage, every command page's .Nd line, exit 0" {
	local f n nd
	run --separate-stderr img --help
	[ "$status" -eq 0 ] && [ -z "$stderr" ]
	[ "${lines[0]}" = "usage: img [-h] [-V] [-T TRACE] COMMAND [ARGS...]" ]
	[[ $output == *"See img(1)"* ]]
	for f in "$ROOT"/man/img-*.1; do
		[ -e "$f" ] || continue
		n=$(basename "$f" .1); n=${n#img-}
		nd=$(sed -n 's/^\.Nd //p' "$f")
		grep -qxF -- "$(printf '  %-10s %s' "$n" "$nd")" <<<"$output" ||
		    { echo "img --help lacks: $n  $nd"; return 1; }
	done
}

@test "img --list-commands: exactly the man/img-*.1 pages" {
	local f want=()
	for f in "$ROOT"/man/img-*.1; do
		[ -e "$f" ] && { f=$(basename "$f" .1); want+=("${f#img-}"); }
	done
	run -0 img --list-commands
	[ "$output" = "$(printf '%s\n' "${want[@]}" | sed '/^$/d' | LC_ALL=C sort)" ]
}

@test "img --list-formats: raw and qcow2, one per line" {
	run -0 img --list-formats
	[[ $'\n'$output$'\n' == *$'\nraw\n'* ]]
	[[ $'\n'$output$'\n' == *$'\nqcow2\n'* ]]
}

@test "img -V, --version: one version line, exit 0" {
	run -0 --separate-stderr img -V
	[[ ${lines[0]} == "img version "* ]] && [ -z "$stderr" ]
	run -0 img --version
	[[ ${lines[0]} == "img version "* ]]
}

@test "img NAME: runs img-NAME with the arguments unchanged and IMG_PROG=img" {
	fake_prog fake zzfake
	PATH=$PWD/fake:$PATH run -0 img zzfake -f qcow2 'a b' c
	[ "$output" = "zzfake IMG_PROG=img args:-f qcow2 a b c" ]
}

@test "img NAME: img-NAME beside img wins over PATH" {
	mkdir own
	cp "$IMG_BIN/img" own/img
	fake_prog own zzfake
	fake_prog onpath zzfake
	sed -i 's/zzfake IMG/path IMG/' onpath/img-zzfake
	PATH=$PWD/onpath:$PATH run -0 own/img zzfake x
	[ "$output" = "zzfake IMG_PROG=img args:x" ]
	PATH=$PWD/onpath:$PATH run -0 img zzfake x
	[ "$output" = "path IMG_PROG=img args:x" ]
}

@test "img help NAME: runs img-NAME --help" {
	local p
	fake_prog fake zzfake
	PATH=$PWD/fake:$PATH run -0 img help zzfake
	[ "$output" = "zzfake IMG_PROG=img args:--help" ]
	for p in "$IMG_BIN"/img-*; do
		[ -x "$p" ] || continue
		p=${p##*/}
		[ "$(img help "${p#img-}" 2>&1)" = "$("$p" --help 2>&1)" ] ||
		    { echo "img help ${p#img-} differs from $p --help"; return 1; }
	done
}

@test "img help: the usage, exit 0" {
	run -0 img help
	[ "${lines[0]}" = "usage: img [-h] [-V] [-T TRACE] COMMAND [ARGS...]" ]
}

@test "img: an unknown command is qemu-img's two lines, exit 1" {
	run -1 --separate-stderr img foo
	[ -z "$output" ]
	[ "$stderr" = "img: Command not found: foo
Try 'img --help' for more information" ]
	run -1 --separate-stderr img help foo
	[ "$stderr" = "img: Command not found: foo
Try 'img --help' for more information" ]
	run -1 --separate-stderr img ../img
	[ "$stderr" = "img: Command not found: ../img
Try 'img --help' for more information" ]
}

@test "img: no command is qemu-img's 'Not enough arguments', exit 1" {
	run -1 --separate-stderr img
	[ -z "$output" ]
	[ "$stderr" = "img: Not enough arguments
Try 'img --help' for more information" ]
}

@test "img: bad options are qemu-img's messages, exit 1" {
	run -1 --separate-stderr img -x info
	[ "$stderr" = "img: unrecognized option '-x'
Try 'img --help' for more information" ]
	run -1 --separate-stderr img --bogus
	[ "$stderr" = "img: unrecognized option '--bogus'
Try 'img --help' for more information" ]
	run -1 --separate-stderr img -T
	[ "$stderr" = "img: missing argument for option '-T'
Try 'img --help' for more information" ]
}

@test "img -T: accepted and ignored" {
	fake_prog fake zzfake
	PATH=$PWD/fake:$PATH run -0 img -T 'enable=bdrv_*' zzfake a
	[ "$output" = "zzfake IMG_PROG=img args:a" ]
	PATH=$PWD/fake:$PATH run -0 img --trace=x zzfake a
	[ "$output" = "zzfake IMG_PROG=img args:a" ]
	run -1 --separate-stderr img -T x foo
	[ "$stderr" = "img: Command not found: foo
Try 'img --help' for more information" ]
	run -0 img -T x		# as qemu-img: options but no command is no error
	[ -z "$output" ]
}

# run the real qemu-img and our symlink named qemu-img; both exit and stderr must match
same_as_real() {
	need_qemu || return 1
	local want wstat got gstat
	# "|| ..." keeps bats' errexit from stopping at a failing command
	want=$(command qemu-img "$@" 2>&1 >/dev/null) && wstat=0 || wstat=$?
	got=$(./qemu-img "$@" 2>&1 >/dev/null) && gstat=0 || gstat=$?
	if [ "$want" != "$got" ] || [ "$wstat" != "$gstat" ]; then
		printf 'qemu-img %s (exit %s):\n%s\n' "$*" "$wstat" "$want"
		printf 'img as qemu-img (exit %s):\n%s\n' "$gstat" "$got"
		return 1
	fi
}

@test "img as qemu-img: the dispatcher's messages are qemu-img's" {
	ln -s "$IMG_BIN/img" qemu-img
	same_as_real foo
	same_as_real
	same_as_real -x
	same_as_real --bogus
	same_as_real -T
	run -0 ./qemu-img -V
	[[ ${lines[0]} == "qemu-img version "* ]]
}

@test "img as qemu-img: the commands it runs print qemu-img: too" {
	[ -x "$IMG_BIN/img-info" ] || skip "img-info not built yet"
	ln -s "$IMG_BIN/img" qemu-img
	same_as_real info nonexistent
	run -1 --separate-stderr ./qemu-img info nonexistent
	[[ $stderr == "qemu-img: "* ]]
	fake_prog fake zzfake
	PATH=$PWD/fake:$PATH run -0 ./qemu-img zzfake
	[ "$output" = "zzfake IMG_PROG=qemu-img args:" ]
}

@test "make install DESTDIR=...: programs, pages, completion and its symlinks" {
	local d=$PWD/dest p f
	run env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$ROOT" -o all install \
	    BIN="$IMG_BIN" DESTDIR="$d" PREFIX=/usr
	echo "$output"
	[ "$status" -eq 0 ]
	for f in "$ROOT"/tools/*.c; do
		p=$(basename "$f" .c)
		[ -x "$d/usr/bin/$p" ] || { echo "no usr/bin/$p"; return 1; }
		[ "$p" = img ] && continue
		[ "$(readlink "$d/usr/share/bash-completion/completions/$p")" = img ] ||
		    { echo "no completion symlink for $p"; return 1; }
	done
	for f in "$ROOT"/man/*.1; do
		cmp "$f" "$d/usr/share/man/man1/${f##*/}"
	done
	cmp "$ROOT/completions/img" "$d/usr/share/bash-completion/completions/img"
	# the installed img runs the installed commands
	PATH=/usr/bin:/bin run -0 "$d/usr/bin/img" --list-commands
	[ "$output" = "$(img --list-commands)" ]
}

@test "installed completion: bash-completion loads it for img-NAME on first use" {
	local bc=/usr/share/bash-completion/bash_completion
	if [ ! -f "$bc" ]; then
		[ "${CI:-}" = true ] && { echo "bash-completion missing under CI"; return 1; }
		skip "bash-completion not installed"
	fi
	local d=$PWD/dest
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$ROOT" -o all install \
	    BIN="$IMG_BIN" DESTDIR="$d" PREFIX=/usr
	# a program that img does not list: found through its symlink alone
	ln -s img "$d/usr/share/bash-completion/completions/img-zzfake"
	printf '#!/bin/sh\ncase "$1" in --long-options) echo --zzopt ;; esac\n' >"$d/usr/bin/img-zzfake"
	chmod +x "$d/usr/bin/img-zzfake"
	run bash -c 'source "$1"; PATH=$2/usr/bin:$PATH
		XDG_DATA_DIRS=$2/usr/share __load_completion img-zzfake || exit 7
		complete -p img-zzfake || exit 8
		COMP_WORDS=(img-zzfake --zz); COMP_CWORD=1; _img
		printf "%s\n" "${COMPREPLY[@]}"' _ "$bc" "$d"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "complete -F _img img-zzfake" ]
	[ "${lines[1]}" = --zzopt ]
}

@test "make demo: tests/demo.sh runs to the end" {
	run env IMG_BIN="$IMG_BIN" "$ROOT/tests/demo.sh"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[-1]}" = "demo: done" ]
}
