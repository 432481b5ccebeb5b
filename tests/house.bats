#!/usr/bin/env bats
# The house rules as tests: what every program (tools/*.c) owes.  Each test walks every
# program and names each one that falls short, so a program without its page, its
# options in the page, its completion or its tests fails here.
load helpers
bats_require_minimum_version 1.5.0

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

# every program, from its source: img, img-create, ...
progs() {
	local f
	for f in "$ROOT"/tools/*.c; do
		[ -e "$f" ] && basename "$f" .c
	done
}

# a page as plain text on long lines (no hyphenation breaks an option in two)
page_text() {
	groff -mdoc -Tascii -P-cbou -rLL=5000n "$1" 2>/dev/null
}

# the hidden options every program has for completion; img(1) documents them once
hidden_opt() {
	[ "$1" = --long-options ] || [ "$1" = --short-options ]
}

# simulate a completion: complete WORD... ; the last word is the one being completed
complete_words() {
	bash -c 'source "$1/completions/img" || exit 9
		shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		_img; printf "%s\n" "${COMPREPLY[@]}"' _ "$ROOT" "$@"
}

bad=()
owe() { bad+=("$*"); }
settle() {
	[ ${#bad[@]} -eq 0 ] && return 0
	printf '%s\n' "${bad[@]}"
	return 1
}

@test "house: the programs are found" {
	run progs
	[ "$status" -eq 0 ]
	[[ " ${lines[*]} " == *" img "* ]]
}

@test "house: every program is built in \$IMG_BIN" {
	local p
	for p in $(progs); do
		[ -x "$IMG_BIN/$p" ] || owe "$p: no $IMG_BIN/$p"
	done
	settle
}

@test "house: every program's --help exits 0 on stdout and names its page" {
	local p
	for p in $(progs); do
		[ -x "$IMG_BIN/$p" ] || { owe "$p: not built"; continue; }
		run --separate-stderr "$IMG_BIN/$p" --help
		[ "$status" -eq 0 ] || owe "$p --help: exit $status"
		[ -z "$stderr" ] || owe "$p --help: wrote to stderr: $stderr"
		[[ $output == *"See $p(1)"* ]] || owe "$p --help: does not say \"See $p(1).\""
	done
	settle
}

@test "house: every program has man/NAME.1 naming it" {
	local p f
	for p in $(progs); do
		f=$ROOT/man/$p.1
		[ -f "$f" ] || { owe "$p: no man/$p.1"; continue; }
		grep -qx "\.Nm $p" "$f" || owe "$p: man/$p.1 has no '.Nm $p' line"
		grep -qx "\.Dt ${p^^} 1" "$f" || owe "$p: man/$p.1 has no '.Dt ${p^^} 1' line"
		grep -q '^\.Nd ..*' "$f" || owe "$p: man/$p.1 has no .Nd line"
	done
	settle
}

@test "house: every --long-options entry is in the program's page" {
	local p o n text
	for p in $(progs); do
		[ -x "$IMG_BIN/$p" ] && [ -f "$ROOT/man/$p.1" ] || { owe "$p: not built or no page"; continue; }
		run --separate-stderr "$IMG_BIN/$p" --long-options
		[ "$status" -eq 0 ] || { owe "$p --long-options: exit $status"; continue; }
		text=$(page_text "$ROOT/man/$p.1")
		n=0
		for o in "${lines[@]}"; do
			o=${o%%=*}
			[[ $o == --?* ]] || { owe "$p --long-options: '$o' is not a long option"; continue; }
			n=$((n + 1))
			hidden_opt "$o" && continue
			grep -Eq -- "(^|[^[:alnum:]-])$o([^[:alnum:]-]|\$)" <<<"$text" ||
			    owe "$p: $o is not in man/$p.1"
		done
		[ "$n" -gt 0 ] || owe "$p --long-options: printed nothing"
	done
	settle
}

@test "house: every --short-options entry is in the program's page" {
	local p o text
	for p in $(progs); do
		[ -x "$IMG_BIN/$p" ] && [ -f "$ROOT/man/$p.1" ] || { owe "$p: not built or no page"; continue; }
		run --separate-stderr "$IMG_BIN/$p" --short-options
		[ "$status" -eq 0 ] || { owe "$p --short-options: exit $status"; continue; }
		[ ${#lines[@]} -gt 0 ] || owe "$p --short-options: printed nothing"
		text=$(page_text "$ROOT/man/$p.1")
		for o in "${lines[@]}"; do
			[[ $o =~ ^-[[:alnum:]]$ ]] || { owe "$p --short-options: '$o' is not a short option"; continue; }
			# as "-f fmt" or inside a cluster such as "[-hV]"
			grep -Eq -- "(^|[^[:alnum:]-])-[[:alnum:]]*${o#-}" <<<"$text" ||
			    owe "$p: $o is not in man/$p.1"
		done
	done
	settle
}

@test "house: every listed option is one the program accepts" {
	local p o
	for p in $(progs); do
		[ -x "$IMG_BIN/$p" ] || { owe "$p: not built"; continue; }
		for o in $("$IMG_BIN/$p" --long-options 2>/dev/null) \
		    $("$IMG_BIN/$p" --short-options 2>/dev/null); do
			o=${o%%=*}
			# alone, without a file: a usage error at most, never an unknown option
			run --separate-stderr timeout 10 "$IMG_BIN/$p" "$o" </dev/null
			[[ $stderr != *"unrecognized option"* ]] || owe "$p $o: $stderr"
			[ "$status" -lt 124 ] || owe "$p $o: exit $status"
		done
	done
	settle
}

@test "house: man pages lint clean (groff -mdoc -ww -z)" {
	local f out n=0
	for f in "$ROOT"/man/*.1; do
		[ -e "$f" ] || continue
		n=$((n + 1))
		out=$(groff -mdoc -ww -z "$f" 2>&1) || owe "${f##*/}: groff exit $?"
		[ -z "$out" ] || owe "${f##*/}: $out"
	done
	[ "$n" -gt 0 ] || owe "no man pages in man/"
	settle
}

@test "house: img(1) SEE ALSO names every img-NAME(1) page" {
	local f n
	for f in "$ROOT"/man/img-*.1; do
		[ -e "$f" ] || continue
		n=$(basename "$f" .1)
		grep -qx "\.Xr $n 1 ,\{0,1\}" "$ROOT/man/img.1" || owe "man/img.1: no '.Xr $n 1'"
	done
	settle
}

@test "house: README.md's table names every program and nothing else" {
	local p
	for p in $(progs); do
		grep -q -- "^| \`$p\` |" "$ROOT/README.md" || owe "README.md: no '| \`$p\` |' row"
	done
	for p in $(sed -n 's/^| `\(img[a-z-]*\)` |.*/\1/p' "$ROOT/README.md"); do
		[ -e "$ROOT/tools/$p.c" ] || owe "README.md: a row for $p, but no tools/$p.c"
	done
	settle
}

@test "house: every program has its tests/NAME.bats" {
	local p
	for p in $(progs); do
		compgen -G "$ROOT/tests/$p.bats" >/dev/null ||
		    compgen -G "$ROOT/tests/$p-*.bats" >/dev/null ||
		    owe "$p: no tests/$p.bats"
	done
	settle
}

@test "house: completions/img names every program" {
	local p
	for p in $(progs); do
		grep -qw -- "$p" "$ROOT/completions/img" || owe "completions/img does not name $p"
	done
	settle
}

@test "house: the completion file sources cleanly and registers img and every img-NAME" {
	local p
	run bash -c 'source "$1/completions/img" && complete -p' _ "$ROOT"
	[ "$status" -eq 0 ] || owe "sourcing completions/img: exit $status: $output"
	for p in $(progs); do
		grep -qx -- "complete -F _img $p" <<<"$output" ||
		    owe "$p: 'complete -p $p' finds no _img"
	done
	settle
}

@test "house: completion offers every program's options" {
	local p c o direct via
	for p in $(progs); do
		[ -x "$IMG_BIN/$p" ] || { owe "$p: not built"; continue; }
		c=${p#img-}
		if [ "$p" = img ]; then
			via=$(complete_words img -)
			direct=$via
		else
			via=$(complete_words img "$c" -)
			direct=$(complete_words "$p" -)
			[[ $'\n'$(complete_words img "${c:0:1}")$'\n' == *$'\n'$c$'\n'* ]] ||
			    owe "img ${c:0:1}<TAB> lacks $c"
		fi
		for o in $("$IMG_BIN/$p" --long-options 2>/dev/null) \
		    $("$IMG_BIN/$p" --short-options 2>/dev/null); do
			o=${o%%=*}
			hidden_opt "$o" && continue
			[[ $'\n'$via$'\n' == *$'\n'$o$'\n'* ]] ||
			    owe "${p/-/ } -<TAB> lacks $o"
			[[ $'\n'$direct$'\n' == *$'\n'$o$'\n'* ]] || owe "$p -<TAB> lacks $o"
		done
	done
	settle
}

@test "house: completion offers formats after -f, -O, -F and human/json after --output" {
	local want
	want=$(img --list-formats)
	[ -n "$want" ]
	run complete_words img info -f ""
	[ "$output" = "$want" ]
	run complete_words img-convert -O ""
	[ "$output" = "$want" ]
	run complete_words img create -F ""
	[ "$output" = "$want" ]
	run complete_words img map --output ""
	[ "$output" = $'human\njson' ]
	run complete_words img map --output = j		# bash splits at "="
	[ "$output" = json ]
	run complete_words img map --output =
	[ "$output" = $'human\njson' ]
	run complete_words img-info --output=h
	[ "$output" = --output=human ]
	touch some-file.qcow2
	run complete_words img info some-f
	[ "$output" = some-file.qcow2 ]
}
