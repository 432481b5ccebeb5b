# Shared by every suite: the programs under test come from $IMG_BIN (bin/ or bin-asan/).
IMG_BIN=${IMG_BIN:-$(cd "$BATS_TEST_DIRNAME/../bin" && pwd)}
PATH=$IMG_BIN:$PATH
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

setup() {
	cd "$BATS_TEST_TMPDIR" || return 1
}

# The real qemu-img / qemu-io, the oracle; missing: skip, but fail under CI=true.
need_qemu() {
	if ! command -v qemu-img >/dev/null 2>&1 || ! command -v qemu-io >/dev/null 2>&1; then
		[ "${CI:-}" = true ] && { echo "qemu-utils missing under CI" >&2; return 1; }
		skip "qemu-img/qemu-io not installed"
	fi
}
qimg() { need_qemu && command qemu-img "$@"; }
qio() { need_qemu && command qemu-io "$@"; }

# Same stdout and exit status as qemu-img for the same arguments (img NAME ARGS).
same_as_qemu() {
	need_qemu || return 1
	local want wstat got gstat
	wstat=0 gstat=0
	want=$(command qemu-img "$@" 2>/dev/null) || wstat=$?
	got=$(img "$@" 2>/dev/null) || gstat=$?
	if [ "$want" != "$got" ] || [ "$wstat" != "$gstat" ]; then
		echo "qemu-img $* (exit $wstat):"; echo "$want"
		echo "img $* (exit $gstat):"; echo "$got"
		diff <(echo "$want") <(echo "$got")
		return 1
	fi
}

# poke FILE OFFSET BYTES: overwrite bytes (printf escapes) at a decimal offset.
poke() {
	printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

sum() { md5sum < "$1" | cut -d' ' -f1; }

# ours_as_qemu: ours installed as $BATS_TEST_TMPDIR/ours/qemu-img, so its
# messages carry that prefix
ours_as_qemu() {
	mkdir -p "$BATS_TEST_TMPDIR/ours"
	ln -sf "$IMG_BIN/img" "$BATS_TEST_TMPDIR/ours/qemu-img"
}

# outputs_match ARGS...: qemu-img's q.out, q.err and q.rc are ours' i.out,
# i.err and i.rc to the byte; else show the differences for ARGS
outputs_match() {
	local f ok=0
	for f in out err rc; do
		cmp -s q.$f i.$f || { echo "--- $f differs for: $*"; diff q.$f i.$f; ok=1; }
	done
	return $ok
}

# same ARGS...: qemu-img ARGS and ours installed as qemu-img: same stdout,
# stderr and status
same() {
	need_qemu || return 1
	ours_as_qemu
	local i
	for ((i = 0; i < 60; i++)); do	# qemu's PBKDF2 benchmark: see qemu_luks
		command qemu-img "$@" >q.out 2>q.err && echo 0 >q.rc || echo $? >q.rc
		grep -q 'Unable to get accurate CPU usage' q.err || break
	done
	"$BATS_TEST_TMPDIR/ours/qemu-img" "$@" >i.out 2>i.err && echo 0 >i.rc ||
	    echo $? >i.rc
	outputs_match "$@"
}

# on_copies CMD SRC ARGS...: qemu-img CMD ARGS q.qcow2 and img-CMD ARGS
# i.qcow2 on copies of SRC: the same output (names aside) and status
on_copies() {
	need_qemu || return 1
	local cmd=$1 src=$2 want got wstat=0 gstat=0
	shift 2
	cp "$src" q.qcow2 && cp "$src" i.qcow2
	want=$(command qemu-img "$cmd" "$@" q.qcow2 2>&1) || wstat=$?
	got=$("img-$cmd" "$@" i.qcow2 2>&1) || gstat=$?
	want=${want//q.qcow2/X} got=${got//i.qcow2/X}
	want=${want//qemu-img:/PROG:} got=${got//img-$cmd:/PROG:}
	want=${want//"'qemu-img --help'"/HELP} got=${got//"'img-$cmd --help'"/HELP}
	if [ "$want" != "$got" ] || [ "$wstat" != "$gstat" ]; then
		echo "qemu-img $cmd $* (exit $wstat):"; echo "$want"
		echo "img-$cmd $* (exit $gstat):"; echo "$got"
		return 1
	fi
}

# same_content IMG: img cat IMG equals qemu-img convert -O raw IMG
same_content() {
	img cat "$1" >ours.raw
	qimg convert -O raw "$1" theirs.raw
	cmp ours.raw theirs.raw
}

# same_view IMG: info and map, human and json, as qemu-img shows them
same_view() {
	same info "$1" && same info --output=json "$1" &&
	    same map "$1" && same map --output=json "$1" && same_content "$1"
}

# bits IMG: each qcow2 bitmap's name, flags, granularity and set bits,
# read as qcow2.txt lays them out
bits() {
	python3 - "$1" <<'EOF'
import struct, sys
d = open(sys.argv[1], 'rb').read()
hl = struct.unpack('>I', d[100:104])[0]
cs = 1 << struct.unpack('>I', d[20:24])[0]
size = struct.unpack('>Q', d[24:32])[0]
pos, ext = hl, None
while pos + 8 <= cs:
    m, l = struct.unpack('>II', d[pos:pos + 8])
    if m == 0:
        break
    if m == 0x23852875:
        ext = d[pos + 8:pos + 8 + l]
    pos += 8 + (l + 7) // 8 * 8
if ext is None:
    print('none')
    sys.exit()
nb, _, dsz, p = struct.unpack('>IIQQ', ext)
for i in range(nb):
    toff, tsz, fl, ty, gb, nl, ex = struct.unpack('>QIIBBHI', d[p:p + 24])
    bits = bytearray()
    for j in range(tsz):
        e = struct.unpack('>Q', d[toff + 8 * j:toff + 8 * j + 8])[0]
        o = e & 0x00fffffffffffe00
        bits += d[o:o + cs] if o else (b'\xff' if e & 1 else b'\0') * cs
    n = -(-size // (1 << gb))
    print(d[p + 24 + ex:p + 24 + ex + nl].decode(), fl, 1 << gb,
          [k for k in range(n) if bits[k // 8] >> (k % 8) & 1])
    p += (24 + ex + nl + 7) // 8 * 8
EOF
}

# blkdebug_json FILE IOTYPE:SECTOR...: a json: name of qcow2 FILE under blkdebug
# whose requests of IOTYPE (read, block-status) touching SECTOR fail with EIO
blkdebug_json() {
	local f=$1 r j
	shift
	j="json:{'driver':'blkdebug','image':{'driver':'qcow2','file':{'driver':'file',"
	j+="'filename':'$f'}},'inject-error':["
	for r; do
		j+="{'event':'none','iotype':'${r%:*}','errno':5,'sector':${r#*:}},"
	done
	echo "${j%,}]}"
}

# cut_copies FMT: full.FMT with data at 0 and 8M, c.FMT cut 1000 bytes
# short of it, h.FMT cut in half (truncated files)
cut_copies() {
	local sz
	qimg create -q -f "$1" "full.$1" 16M
	qio -f "$1" -c 'write -P 1 0 4M' -c 'write -P 2 8M 1M' "full.$1" >/dev/null
	sz=$(stat -c %s "full.$1")
	head -c $((sz - 1000)) "full.$1" >"c.$1"
	head -c $((sz / 2)) "full.$1" >"h.$1"
}

# A format's suite sets FMT (its format) and BAD (its hostile image's name)
# for the helpers below; a suite whose images differ defines its own.

# patterned IMG FMT: qemu-io writes three patterns into IMG
patterned() {
	qio -f "$2" -c 'write -P 0x11 0 4k' -c 'write -P 0x22 1536k 700k' \
	    -c 'write -P 0x33 5M 1k' "$1" >/dev/null
}

# patterned_raw: p.raw, 7 MiB of raw with the patterns in it
patterned_raw() {
	qimg create -q -f raw p.raw 7M
	patterned p.raw raw
}

# reads_patterns IMG: qemu-io reads back from IMG (of FMT) what patterned wrote
reads_patterns() {
	run -0 qio -f "$FMT" -c 'read -P 0x11 0 4k' \
	    -c 'read -P 0x22 1536k 700k' -c 'read -P 0x33 5M 1k' \
	    -c 'read -P 0 4k 1020k' -c 'read -P 0 3M 2M' "$1"
	[[ "$output" != *fail* ]] || { echo "$output"; return 1; }
}

# bad OFFSET BYTES: BAD is a fresh 8 MiB qemu image of FMT with a poke
bad() {
	rm -f "$BAD"
	qimg create -q -f "$FMT" "$BAD" 8M
	poke "$BAD" "$1" "$2"
}

# img_refuses MESSAGE: img info -f FMT BAD fails with exactly this one line
img_refuses() {
	run -1 --separate-stderr img info -f "$FMT" "$BAD"
	[ -z "$output" ] || { echo "stdout: $output"; return 1; }
	[ "${#stderr_lines[@]}" -eq 1 ] || { echo "$stderr"; return 1; }
	[ "$stderr" = "img: Could not open '$BAD': $1" ] ||
	    { echo "got: $stderr"; echo "want: $1"; return 1; }
}

# refused MESSAGE: that, and qemu-img says the same to the byte
refused() {
	img_refuses "$1" && same info -f "$FMT" "$BAD"
}

# Debian's qemu 7.2 has the PBKDF2 benchmark bug of qemu commit c72cab5a
# (fixed in 9.2): on a fast machine a LUKS create fails now and then with
# "Unable to get accurate CPU usage" (here about one time in four, on the
# CI machine more often: six tries in a row once failed there).
# qemu_luks ARGS...: qemu-img ARGS, asked again, up to 60 times, when it does.
qemu_luks() {
	local i
	for ((i = 0; i < 60; i++)); do
		command qemu-img "$@" 2>qemu.err && return 0
		grep -q 'Unable to get accurate CPU usage' qemu.err || break
	done
	cat qemu.err >&2
	return 1
}

# faults_as_qemu SETUP EVENT[:ONCE]... -- ARGS...: for each blkdebug event
# below the format of t.qcow2 (@J in ARGS names it), with once false and
# true (or only the ONCE given) and errno 5 and 28: on copies of what SETUP
# (a function) builds, qemu-img ARGS in q/ and ours,
# installed as qemu-img, in i/ give the same stdout, stderr (what closing
# the image says included) and status
faults_as_qemu() {
	need_qemu || return 1
	local setup=$1 spec ev onces o e j bad=0 specs=()
	shift
	while [ "$1" != -- ]; do specs+=("$1"); shift; done
	shift
	ours_as_qemu
	rm -rf tpl && mkdir tpl
	(cd tpl && "$setup" >/dev/null 2>&1) || { echo "$setup failed"; return 1; }
	for spec in "${specs[@]}"; do
		ev=${spec%%:*} onces="false true"
		[ "$spec" != "$ev" ] && onces=${spec#*:}
		for o in $onces; do for e in 5 28; do
			j="json:{'driver':'qcow2','file':{'driver':'blkdebug',"
			j+="'inject-error':[{'event':'$ev','errno':$e,'once':$o}],"
			j+="'image':{'driver':'file','filename':'t.qcow2'}}}"
			rm -rf q i && cp -a tpl q && cp -a tpl i
			(cd q && { command qemu-img "${@//@J/$j}" >../q.out \
			    2>../q.err && echo 0 || echo $?; } >../q.rc)
			(cd i && { "$BATS_TEST_TMPDIR/ours/qemu-img" \
			    "${@//@J/$j}" >../i.out 2>../i.err && echo 0 ||
			    echo $?; } >../i.rc)
			outputs_match "$ev once=$o errno=$e" || bad=1
		done; done
	done
	return $bad
}
