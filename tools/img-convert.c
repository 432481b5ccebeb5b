/*
 * img-convert: copy an image into a new one of any format, as qemu-img
 * convert does, composed as img-map SRC, then img-cat --map | img-write --map.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/io.h"
#include "../lib/json.h"
#include "../lib/map.h"
#include "../lib/opt.h"
#include "../lib/proc.h"
#include "../lib/progress.h"
#include "../lib/secret.h"
#include "../formats/img.h"

#define SECTOR		512
#define SPARSE_DEFAULT	4096		/* qemu-img's min_sparse: 8 sectors */
#define SPARSE_MAX	(32768 * SECTOR)	/* MAX_BUF_SECTORS */
#define CHUNK		(2u << 20)	/* qemu-img's IO_BUF_SIZE: one progress step */
#define COROUTINES_MAX	16

static const char usage_text[] =
    "usage: img-convert [--object objectdef] [--image-opts] [--target-image-opts]\n"
    "           [--target-is-zero] [--bitmaps] [-U] [-C] [-c] [-p] [-q] [-n]\n"
    "           [-f fmt] [-t cache] [-T src_cache] [-O output_fmt]\n"
    "           [-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param]\n"
    "           [-S sparse_size] [-r rate_limit] [-m num_coroutines] [-W] [--salvage]\n"
    "           filename [filename2 [...]] output_filename\n";

struct conv {
	const char	*fmt;		/* -f, or NULL: probe */
	const char	*out_fmt;	/* -O, default raw */
	const char	*cache;		/* -t */
	const char	*src_cache;	/* -T */
	const char	*unsupported;	/* the first option this version lacks */
	char		*options;	/* -o, accumulated as qemu-img does */
	struct opt_list	 o;		/* the same, parsed */
	uint64_t	 sparse;	/* -S in bytes; 0: fully allocate */
	bool		 sparse_set;	/* -S given */
	bool		 copy_range;	/* -C: data extents copied whole */
	bool		 compressed;	/* -c */
	const char	*snapshot;	/* -l: the sources' internal snapshot */
	bool		 progress;
	bool		 quiet;
	bool		 no_create;	/* -n */
	bool		 target_is_zero;
	bool		 share;		/* -U */
	bool		 image_opts;	/* --image-opts: sources are option strings */
	char		**objects;	/* --object, for the stages that open sources */
	size_t		 nobjects;
	char		**src;		/* the sources, concatenated in this order */
	const char	*dst;
	char		*target;	/* dst as the target is opened: with its keys */
	int		 nsrc;
	uint64_t	 size;		/* the target's: the sources' sum */
	const char	*backing;	/* -B */
	const char	*backing_fmt;	/* -F */
	bool		 has_backing;	/* -B or -o backing_file: sources' tops only */
	int64_t		 backing_size;	/* the new target's backing file's; -1: unknown */
};

/* One source: its map, as img-cat reads it and as img-write lays it out. */
struct source {
	const char	*name;
	int		 cat_fd;	/* memfd: img-map's output (-S 0: all data) */
	int		 write_fd;	/* memfd: the same moved to where it lands */
	uint64_t	 base;		/* where it lands in the target */
	size_t		 steps;		/* the end of its progress steps */
};

/* What progress needs of one map extent. */
struct step {
	uint64_t	 length;
	bool		 streamed;	/* its bytes travel in the stream */
	bool		 counted;	/* qemu-img counts it in its progress */
};

/* Where -p is: the chunks qemu-img counts, and how far the stream went. */
struct progress {
	bool		 on;
	bool		 ended;		/* progress_end() done */
	struct step	*step;		/* the map, when on */
	size_t		 n;
	size_t		 end;		/* the steps of the pipeline running */
	size_t		 i;		/* extent being accounted */
	uint64_t	 off;		/* bytes of it accounted */
	uint64_t	 streamed;	/* stream bytes those extents took */
	uint64_t	 done;
	uint64_t	 total;
};

static struct progress prog;
static volatile sig_atomic_t stop_pids[2];
static const char *volatile stop_unlink;	/* the target while we may remove it */

enum {
	OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_TARGET_IMAGE_OPTS, OPT_SALVAGE,
	OPT_TARGET_IS_ZERO, OPT_BITMAPS, OPT_SKIP_BROKEN, OPT_LONG, OPT_SHORT,
};

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "force-share", no_argument, NULL, 'U' },
	{ "target-image-opts", no_argument, NULL, OPT_TARGET_IMAGE_OPTS },
	{ "salvage", no_argument, NULL, OPT_SALVAGE },
	{ "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
	{ "bitmaps", no_argument, NULL, OPT_BITMAPS },
	{ "skip-broken-bitmaps", no_argument, NULL, OPT_SKIP_BROKEN },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:";

static _Noreturn void option_help(struct conv *c);

static _Noreturn void
usage(void)
{
	printf("%s\nConvert an image into a new image of any format.\n\n"
	    "  -f fmt             source format (default: probe)\n"
	    "  -O output_fmt      target format (default: raw)\n"
	    "  -o options         target creation options ('-o help' lists them)\n"
	    "  -n                 write into an existing target, don't create it\n"
	    "  --target-is-zero   with -n: the target reads as zeroes already\n"
	    "  -S sparse_size     zero runs this long stay holes (default 4k; 0:\n"
	    "                     allocate everything)\n"
	    "  -p                 show progress\n"
	    "  -q                 quiet\n"
	    "  -U, --force-share  open the source shared with other users\n"
	    "  -t cache, -T src_cache, -m num_coroutines, -W, -r rate_limit\n"
	    "                     accepted; they change only speed\n"
	    "  -B backing_file    the target's backing file: copy only the sources' top\n"
	    "  -F backing_fmt     its format\n"
	    "  --image-opts       the sources are option strings (driver=...,file.filename=...)\n"
	    "  --object objectdef passed on to the stages that open the sources\n"
	    "  -C                 copy data extents whole (no zero detection)\n"
	    "  -c, -l, --target-image-opts,\n"
	    "  --bitmaps, --skip-broken-bitmaps, --salvage\n"
	    "                     not supported yet: refused\n"
	    "\nSee img-convert(1).\n", usage_text);
	exit(0);
}

/* -o lists join with ',' (qemu-img's accumulate_options). */
static void
add_options(struct conv *c, const char *arg)
{
	size_t len = strlen(arg), i;
	char *s;

	for (i = len; i > 0 && arg[i - 1] == ','; i--)
		;
	if (arg[0] == '\0' || arg[0] == ',' || (len - i) % 2)
		die("Invalid option list: %s", arg);
	s = c->options ? xasprintf("%s,%s", c->options, arg) : xstrdup(arg);
	free(c->options);
	c->options = s;
}

/* cvtnum() with its two-line message for garbage. */
static uint64_t
size_arg(const char *what, const char *arg)
{
	uint64_t v;
	int r = opt_size(arg, &v);

	if (r == -1) {
		warn_msg("Invalid %s specified. You may use k, M, G, T, P or E "
		    "suffixes for", what);
		die("kilobytes, megabytes, gigabytes, terabytes, petabytes and "
		    "exabytes.");
	}
	if (r < 0)
		die("Invalid %s specified. Must be between 0 and %lld.", what,
		    (long long)INT64_MAX);
	return v;
}

static void
sparse_arg(struct conv *c, const char *arg)
{
	c->sparse = size_arg("buffer size for sparse output", arg);
	c->sparse_set = true;
	if (c->sparse % SECTOR != 0 || c->sparse > SPARSE_MAX)
		die("Invalid buffer size for sparse output specified. Valid sizes "
		    "are multiples of %d up to %d. Select 0 to disable sparse "
		    "detection (fully allocates output).", SECTOR, SPARSE_MAX);
}

static void
coroutines_arg(const char *arg)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(arg, &end, 0);
	if (errno != 0 || end == arg || *end != '\0' || n < 1 ||
	    n > COROUTINES_MAX)
		die("Invalid number of coroutines. Allowed number of coroutines "
		    "is between 1 and %d", COROUTINES_MAX);
}

static const char *
unsupported_name(int ch, const struct option *lo)
{
	static char s[64];

	if (ch < 256)
		snprintf(s, sizeof(s), "-%c", ch);
	for (; ch >= 256 && lo->name; lo++)
		if (lo->val == ch)
			snprintf(s, sizeof(s), "--%s", lo->name);
	return s;
}

/* Options that change what is written but that this version lacks. */
static bool
refused(struct conv *c, int ch)
{
	switch (ch) {
	case OPT_TARGET_IMAGE_OPTS:
	case OPT_SALVAGE: case OPT_BITMAPS: case OPT_SKIP_BROKEN:
		if (c->unsupported == NULL)
			c->unsupported = unsupported_name(ch, longopts);
		return true;
	}
	return false;
}

static void
parse_opt(struct conv *c, int ch, char **argv)
{
	if (refused(c, ch))
		return;
	switch (ch) {
	case 'l':
		c->snapshot = optarg;
		break;
	case 'c':
		c->compressed = true;
		break;
	case 'h':
		usage();
	case 'f':
		c->fmt = optarg;
		break;
	case 'O':
		c->out_fmt = optarg;
		break;
	case 'B':
		c->backing = optarg;
		break;
	case 'C':
		c->copy_range = true;
		break;
	case 'F':
		c->backing_fmt = optarg;
		break;
	case 'o':
		add_options(c, optarg);
		break;
	case 'S':
		sparse_arg(c, optarg);
		break;
	case 'p':
		c->progress = true;
		break;
	case 't':
		c->cache = optarg;
		break;
	case 'T':
		c->src_cache = optarg;
		break;
	case 'q':
		c->quiet = true;
		break;
	case 'n':
		c->no_create = true;
		break;
	case 'm':
		coroutines_arg(optarg);
		break;
	case 'W':
		break;
	case 'U':
		c->share = true;
		break;
	case 'r':
		(void)size_arg("rate limit", optarg);
		break;
	case OPT_TARGET_IS_ZERO:
		c->target_is_zero = true;
		break;
	case OPT_IMAGE_OPTS:
		c->image_opts = true;
		break;
	case OPT_OBJECT:
		object_add_or_exit(optarg, 1);
		c->objects = xrealloc(c->objects,
		    (c->nobjects + 1) * sizeof(*c->objects));
		c->objects[c->nobjects++] = optarg;
		break;
	case OPT_LONG:
	case OPT_SHORT:
		opt_print_options(longopts, shortopts, ch == OPT_LONG);
	default:
		opt_usage_error(ch, argv);
	}
}

/* bdrv_parse_cache_mode()'s names */
static bool
cache_ok(const char *mode)
{
	static const char *const modes[] = { "none", "off", "directsync",
	    "writeback", "unsafe", "writethrough", NULL };
	size_t i;

	for (i = 0; modes[i]; i++)
		if (strcmp(mode, modes[i]) == 0)
			return true;
	return false;
}

/* The order of qemu-img's checks, so the same mistake gets the same message. */
static void
check_args(struct conv *c, int argc, char **argv)
{
	if (c->unsupported != NULL)
		die("convert: option '%s' is not supported yet",
		    c->unsupported);
	if (c->copy_range && c->sparse_set)
		die("Cannot enable copy offloading when -S is used");
	if (c->no_create && c->options)
		die("-o has no effect when skipping image creation");
	if (c->target_is_zero && !c->no_create)
		die("--target-is-zero requires use of -n flag");
	c->nsrc = argc - optind - 1;
	if (c->options && opt_list_parse(&c->o, c->options) < 0)
		die("%s", err_msg());
	if (opt_list_has_help(&c->o)) {
		/* print_block_option_help(), for the target's name if given */
		c->dst = c->nsrc >= 1 ? argv[argc - 1] : NULL;
		option_help(c);
	}
	if (c->nsrc < 1)
		die("Must specify image file name");
	if (c->src_cache && !cache_ok(c->src_cache))
		die("Invalid source cache option: %s", c->src_cache);
	if (c->cache && !cache_ok(c->cache))
		die("Invalid cache option: %s", c->cache);
	c->src = argv + optind;
	c->dst = argv[argc - 1];
	if (c->snapshot && strncmp(c->snapshot, "snapshot.", 9) != 0 &&
	    c->nsrc > 1)
		die("No support for concatenating multiple snapshot");
}

/* Account the chunks the first `bytes` bytes of the stream finished. */
static void
progress_stream(uint64_t bytes, void *arg)
{
	const struct step *e;
	uint64_t n;

	(void)arg;
	for (; prog.i < prog.end; prog.i++, prog.off = 0) {
		e = &prog.step[prog.i];
		for (; prog.off < e->length; prog.off += n) {
			n = e->length - prog.off < CHUNK ? e->length - prog.off : CHUNK;
			if (e->streamed) {
				if (prog.streamed + n > bytes)
					return;
				prog.streamed += n;
			}
			if (!e->counted)
				continue;
			prog.done += n;
			progress_print((float)(100.0 * (double)prog.done /
			    (double)prog.total), 0);
		}
	}
}

/*
 * qemu-img counts progress in the chunks it copies: each data extent (and
 * with -S 0 each zero extent too) in steps of at most 2 MiB.
 */
static void
progress_add(const struct conv *c, const struct map_ext *e)
{
	struct step *s;

	if (!prog.on)
		return;
	if ((prog.n & (prog.n - 1)) == 0)
		prog.step = xrealloc(prog.step,
		    (prog.n ? 2 * prog.n : 1) * sizeof(*prog.step));
	s = &prog.step[prog.n++];
	s->length = e->length;
	s->streamed = map_carries_data(e);
	s->counted = s->streamed || c->sparse == 0;
	if (s->counted)
		prog.total += e->length;
}

/* On SIGINT/SIGTERM/SIGHUP: stop the stages, remove what we created, die of it. */
static void
on_signal(int sig)
{
	size_t i;

	for (i = 0; i < 2; i++)
		if (stop_pids[i] > 0)
			kill((pid_t)stop_pids[i], SIGTERM);
	if (stop_unlink != NULL)
		unlink(stop_unlink);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigfillset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/*
 * Every exit once progress started: a failure removes the target we
 * created; qemu-img ends its progress line either way.
 */
static void
at_exit(void)
{
	if (stop_unlink != NULL)
		unlink(stop_unlink);
	if (!prog.ended)
		progress_end();
}

/* Pass on what the stages said when they succeeded (warnings). */
static void
pass_stderr(const struct proc *p, size_t n)
{
	char *s;
	size_t i;

	for (i = 0; i < n; i++) {
		s = proc_stderr(&p[i]);
		fputs(s, stderr);
		free(s);
	}
}

static void
close_ends(struct proc *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i].in >= 0)
			close(p[i].in);
		if (p[i].out >= 0)
			close(p[i].out);
		if (p[i].keep >= 0)
			close(p[i].keep);
		p[i].in = p[i].out = p[i].keep = -1;
	}
}

/*
 * Run the stages p[0..n-1], already wired (relaying the stream from
 * relay_from to relay_to when >= 0); fail with one message if any does.
 */
static void
run_stages(struct proc *p, size_t n, int relay_from, int relay_to)
{
	int start = 0, relay = 0;
	size_t i;

	for (i = 0; i < n && start == 0; i++) {
		start = proc_start(&p[i]);
		if (i < 2)
			stop_pids[i] = p[i].pid;
	}
	/* our copies of the pipe ends go: a stage sees EOF or EPIPE when its peer ends */
	close_ends(p, n);
	if (relay_from >= 0) {
		if (start == 0)
			relay = proc_relay(relay_from, relay_to, progress_stream,
			    NULL);
		close(relay_from);
		close(relay_to);
	}
	proc_wait(p, n);
	stop_pids[0] = stop_pids[1] = 0;
	/* a stage that could not start says so, before what followed from it */
	if (start < 0 || proc_check(p, n) < 0 || relay < 0)
		die("%s", err_msg());
	pass_stderr(p, n);
	for (i = 0; i < n; i++)
		proc_free(&p[i]);
}

/* The options of the stages that open the sources: img-map and img-cat. */
static void
common_args(const struct conv *c, struct proc *p, const char *prog_)
{
	size_t i;

	proc_arg(p, prog_);
	for (i = 0; i < c->nobjects; i++)
		proc_argf(p, "--object=%s", c->objects[i]);
	if (c->image_opts)
		proc_arg(p, "--image-opts");
	if (c->fmt) {
		proc_arg(p, "-f");
		proc_arg(p, c->fmt);
	}
	if (c->share)
		proc_arg(p, "-U");
	if (c->snapshot)
		proc_argf(p, "--snapshot=%s", c->snapshot);
}

/* A map being written as qemu-img map's JSON: one extent held back to know the last. */
struct map_out {
	FILE		*f;
	int		 fd;
	uint64_t	 shift;		/* added to every start */
	struct map_ext	 prev;
	bool		 have;
	bool		 any;
};

static void
mout_open(struct map_out *m, uint64_t shift)
{
	memset(m, 0, sizeof(*m));
	m->shift = shift;
	if ((m->fd = memfd_create("img-convert map", 0)) < 0 ||
	    (m->f = fdopen(dup(m->fd), "w")) == NULL)
		die_errno("map");
}

static void
mout_put(struct map_out *m, const struct map_ext *e)
{
	if (m->have)
		map_print_json(m->f, &m->prev, !m->any, false);
	m->any = m->any || m->have;
	m->prev = *e;
	m->prev.start += m->shift;
	m->prev.has_offset = false;	/* the source's host offsets mean nothing there */
	m->have = true;
}

static int
mout_close(struct map_out *m)
{
	if (m->have)
		map_print_json(m->f, &m->prev, !m->any, true);
	if (fclose(m->f) != 0)
		die_errno("map");
	return m->fd;
}

/* Cut e at off when off falls inside it: e keeps the head, tail gets the rest. */
static bool
split_at(struct map_ext *e, struct map_ext *tail, int64_t off)
{
	*tail = *e;
	if (off <= 0 || (uint64_t)off <= e->start ||
	    (uint64_t)off >= e->start + e->length)
		return false;
	e->length = (uint64_t)off - e->start;
	tail->start = (uint64_t)off;
	tail->length -= e->length;
	tail->offset += e->length;
	return true;
}

/*
 * One extent of a source, as qemu-img treats it (convert_iteration_sectors):
 * with a target backing file only the source's top counts, and what it
 * leaves unallocated, or zero past the end of that backing file, is left
 * alone; -S 0 makes zero extents data; progress counts what remains.
 */
static void
take(const struct conv *c, const struct source *s, struct map_ext *e,
    struct map_out *cat, struct map_out *wr)
{
	if (c->has_backing && (e->depth > 0 || (e->zero &&
	    c->backing_size >= 0 && e->start >= (uint64_t)c->backing_size)))
		return;
	if (c->sparse == 0) {
		e->present = e->data = true;
		e->zero = false;
	}
	if (cat != NULL)
		mout_put(cat, e);
	if (s->base != 0)
		mout_put(wr, e);
	progress_add(c, e);
}

/*
 * The map of one source, read back from img-map's output: its size and
 * progress steps.  -S 0 allocates the whole target, zeroes included, as
 * qemu-img does by writing zero buffers: the maps handed on then call every
 * extent data, so img-cat streams the zeroes too and img-write writes them.
 * A source after the first lands further on: img-write's map is moved there.
 * With a target backing file the maps keep only what take() keeps.
 */
static void
load_map(struct conv *c, struct source *s, int fd)
{
	struct map_out cat, wr;
	struct map_reader *r;
	struct map_ext e, tail;
	uint64_t end = 0;
	bool rewrite = c->sparse == 0 || c->has_backing;
	FILE *f;
	int ret;

	/* img-map left the shared offset at its end */
	if (lseek(fd, 0, SEEK_SET) < 0 || (f = fdopen(dup(fd), "r")) == NULL)
		die_errno("map");
	if (rewrite)
		mout_open(&cat, 0);
	if (s->base != 0)
		mout_open(&wr, s->base);
	r = map_reader_new(f, "map");
	while ((ret = map_read(r, &e)) > 0) {
		if (e.start != end)
			die("map: extent at %llu leaves a gap",
			    (unsigned long long)e.start);
		end = e.start + e.length;
		/* qemu-img steps apart where the target's backing file ends */
		if (split_at(&e, &tail, c->backing_size))
			take(c, s, &e, rewrite ? &cat : NULL, &wr);
		take(c, s, &tail, rewrite ? &cat : NULL, &wr);
	}
	if (ret < 0)
		die("%s", err_msg());
	map_reader_free(r);
	fclose(f);
	s->cat_fd = rewrite ? mout_close(&cat) : fd;
	s->write_fd = s->base != 0 ? mout_close(&wr) : s->cat_fd;
	if (s->cat_fd != fd)
		close(fd);
	s->steps = prog.n;
	c->size = s->base + end;
}

/* Maps live in memfds left open across exec: the stages open /dev/fd/N. */
static void
map_source(struct conv *c, struct source *s)
{
	struct proc p = PROC_INIT;
	int fd = memfd_create("img-convert map", 0);

	if (fd < 0)
		die_errno("memfd_create");
	common_args(c, &p, "img-map");
	proc_arg(&p, "--output=json");
	proc_arg(&p, "--sparse");	/* empty vhdx blocks need not travel */
	proc_arg(&p, s->name);
	if ((p.out = dup(fd)) < 0)
		die_errno("dup");
	run_stages(&p, 1, -1, -1);
	load_map(c, s, fd);
}

/*
 * qemu-img holds its sources open, locked, while it creates or opens the
 * target, so a target that is one of their files (a backing file too) fails
 * to get its write lock, unless -U shared them.  We hold no locks across
 * the stages: look for that file among the sources' instead.
 */
static void
check_not_source(const struct conv *c)
{
	struct stat st, ls;
	struct img *img, *l;
	int i;

	if (c->share || stat(c->dst, &st) < 0)
		return;
	for (i = 0; i < c->nsrc; i++) {
		img = c->image_opts ? img_open_image_opts(c->src[i], IMG_SHARE) :
		    img_open(c->src[i], c->fmt, IMG_SHARE);
		if (img == NULL)
			continue;	/* img-map opened it: let its stages say */
		for (l = img; l != NULL; l = l->backing)
			if (fstat(l->fd, &ls) == 0 && ls.st_dev == st.st_dev &&
			    ls.st_ino == st.st_ino)
				break;
		img_close(img);
		if (l == NULL)
			continue;
		if (c->no_create)
			die("Could not open '%s': Failed to get \"write\" lock\n"
			    "Is another process using the image [%s]?", c->dst,
			    c->dst);
		die("%s: error while converting %s: Failed to get \"write\" "
		    "lock\nIs another process using the image [%s]?", c->dst,
		    c->out_fmt, c->dst);
	}
}

/*
 * The file protocol's creation options, which qemu-img appends to every
 * format's (qemu_opts_append): accepted for any format, they tune the file
 * only, so a driver that does not list them never sees them.
 */
static const struct opt_desc file_opts[] = {
	{ "nocow", OPT_BOOL, NULL, NULL },
	{ "extent_size_hint", OPT_SIZE, NULL, NULL },
	{ NULL, 0, NULL, NULL },
};

static const struct opt_desc *
find_desc(const struct opt_desc *d, const char *name)
{
	for (; d != NULL && d->name != NULL; d++)
		if (strcmp(d->name, name) == 0)
			return d;
	return NULL;
}

/*
 * qemu_opts_do_parse() on the -o list: every name known to the format or
 * the file protocol, every value of its type; out gets the driver's own.
 */
static void
driver_opts(const struct conv *c, const struct opt_list *o,
    struct opt_list *out)
{
	const struct opt_desc *d, *own = img_create_opts(c->out_fmt);
	const char *v;
	char buf[32];
	size_t i;

	for (i = 0; i < o->n; i++) {
		if ((d = find_desc(own, o->v[i].key)) == NULL &&
		    (d = find_desc(file_opts, o->v[i].key)) == NULL)
			die("Invalid parameter '%s'", o->v[i].key);
		if (opt_check(d, o->v[i].val, buf, sizeof(buf), &v) < 0)
			die("%s", err_msg());
		if (find_desc(own, d->name) != NULL)
			opt_list_set(out, d->name, v);
	}
}

/* qemu-img's refusals of a target backing file, once the sources are open. */
static void
check_backing(const struct conv *c)
{
	if (c->target_is_zero && c->has_backing)
		die("Cannot use --target-is-zero when the destination image has "
		    "a backing file");
	if (c->nsrc > 1 && c->has_backing)
		die("Having a backing file for the target makes no sense when "
		    "concatenating multiple input images");
}

/* add_old_style_options() for -B and -F, then qemu-img's checks of them. */
static void
backing_opts(const struct conv *c, struct opt_list *o)
{
	const struct opt_desc *own = img_create_opts(c->out_fmt);

	if (c->backing != NULL) {
		if (find_desc(own, "backing_file") == NULL)
			die("Backing file not supported for file format '%s'",
			    c->out_fmt);
		opt_list_set(o, "backing_file", c->backing);
	}
	if (c->backing_fmt != NULL) {
		if (find_desc(own, "backing_fmt") == NULL)
			die("Backing file format not supported for file format "
			    "'%s'", c->out_fmt);
		opt_list_set(o, "backing_fmt", c->backing_fmt);
	}
	check_backing(c);
	if (opt_list_get(o, "backing_file") != NULL &&
	    opt_list_get(o, "backing_fmt") == NULL)
		die("Use of backing file requires explicit backing format");
}

static void
create_target(struct conv *c)
{
	struct opt_list o = { 0, NULL };
	struct stat st;
	bool existed;
	char size[32];

	if (!img_format_known(c->out_fmt))
		die("Unknown file format '%s'", c->out_fmt);
	if (img_create_opts(c->out_fmt) == NULL)
		die("Format driver '%s' does not support image creation",
		    c->out_fmt);
	driver_opts(c, &c->o, &o);
	backing_opts(c, &o);
	snprintf(size, sizeof(size), "%llu", (unsigned long long)c->size);
	opt_list_set(&o, "size", size);
	check_not_source(c);
	existed = stat(c->dst, &st) == 0;
	if (img_create(c->dst, c->out_fmt, c->size, &o) < 0) {
		/* the driver names the file first; qemu-img says it once */
		err_unprefix("%s", c->dst);
		die("%s: error while converting %s: %s", c->dst, c->out_fmt,
		    err_msg());
	}
	opt_list_free(&o);
	/* only a file we made goes on failure: never a device or an old file */
	if (!existed)
		stop_unlink = c->dst;
}

/* -o help: img-create prints the options, as qemu-img create -o help does. */
static _Noreturn void
option_help(struct conv *c)
{
	struct proc p = PROC_INIT;

	proc_arg(&p, "img-create");
	proc_argf(&p, "-f%s", c->out_fmt);
	proc_argf(&p, "-o%s", c->options);
	if (c->dst != NULL)
		proc_arg(&p, c->dst);
	fflush(stdout);
	run_stages(&p, 1, -1, -1);
	exit(close_stdout());
}

static bool
opt_bool_on(const struct opt_list *o, const char *key)
{
	const char *v = opt_list_get(o, key);

	return v != NULL && opt_bool(v) == 1;
}

/*
 * img_add_key_secrets: qemu-img opens the target with the -o options that
 * name keys, so an encrypted target is named by a json: name with them.
 */
static void
target_name(struct conv *c)
{
	const char *k = opt_list_get(&c->o, "key-secret");
	const char *ek = opt_list_get(&c->o, "encrypt.key-secret");
	struct jnode *j, *f;
	size_t len = 0;
	FILE *m;

	if (k == NULL && ek == NULL) {
		c->target = xstrdup(c->dst);
		return;
	}
	j = jn_new_obj();
	jn_str(j, "driver", c->out_fmt);
	f = jn_obj(j, "file");
	jn_str(f, "driver", "file");
	jn_str(f, "filename", c->dst);
	if (k != NULL)
		jn_str(j, "key-secret", k);
	if (ek != NULL)
		jn_str(jn_obj(j, "encrypt"), "key-secret", ek);
	if ((m = open_memstream(&c->target, &len)) == NULL)
		die_errno("open_memstream");
	fputs("json:", m);
	json_print(m, j, false);
	fclose(m);
	jn_free(j);
}

/* -n: the target must exist and hold the whole source. */
static void
check_target(struct conv *c)
{
	struct img *img;
	uint64_t size;

	check_backing(c);
	check_not_source(c);
	if ((img = img_open(c->target, c->out_fmt, IMG_RDWR)) == NULL)
		die("%s", err_msg());
	size = img->size;
	img_close(img);
	if (size < c->size)
		die("output file is smaller than input file");
}

/*
 * img-cat --map | img-write --map for one source, through us with -p.
 * Zero detection (-S) is img-cat's where it can be (one source, no -p,
 * -c or -C): it leaves zero chunks out of the stream and sends img-write
 * the map of what it streams through a second pipe, so img-write, with
 * nothing to look at, splices the stream straight into the target.
 */
static void
copy(const struct conv *c, const struct source *s)
{
	struct proc p[2] = { PROC_INIT, PROC_INIT };
	int a[2], b[2] = { -1, -1 }, m[2] = { -1, -1 };
	bool refine = !prog.on && !c->compressed && !c->copy_range &&
	    c->sparse != 0 && s->base == 0;
	size_t i;

	if (proc_pipe(a) < 0 || (prog.on && proc_pipe(b) < 0) ||
	    (refine && proc_pipe(m) < 0))
		die("%s", err_msg());
	common_args(c, &p[0], "img-cat");
	proc_argf(&p[0], "--map=/dev/fd/%d", s->cat_fd);
	if (refine) {
		proc_argf(&p[0], "-S%llu", (unsigned long long)c->sparse);
		proc_argf(&p[0], "--map-out=/dev/fd/%d", m[1]);
		p[0].keep = m[1];
	}
	proc_arg(&p[0], s->name);
	p[0].out = a[1];
	proc_arg(&p[1], "img-write");
	proc_argf(&p[1], "-f%s", c->out_fmt);
	if (refine) {
		proc_argf(&p[1], "--map=/dev/fd/%d", m[0]);
		p[1].keep = m[0];
	} else {
		proc_argf(&p[1], "--map=/dev/fd/%d", s->write_fd);
	}
	if (c->compressed)
		proc_arg(&p[1], "-c");
	/* qemu-img convert's target cache defaults to unsafe: no fsync */
	proc_argf(&p[1], "-t%s", c->cache ? c->cache : "unsafe");
	/* -C copies data extents whole, zeroes and all, as copy offloading does */
	proc_argf(&p[1], "-S%llu", c->copy_range || refine ? 0ULL :
	    (unsigned long long)c->sparse);
	/* a new target reads as zeroes, unless -S 0 asks for it allocated */
	if (c->target_is_zero || (!c->no_create && c->sparse != 0 &&
	    !c->has_backing && img_format_zero_init(c->out_fmt)))
		proc_arg(&p[1], "--target-is-zero");
	for (i = 0; i < c->nobjects; i++)
		proc_argf(&p[1], "--object=%s", c->objects[i]);
	proc_arg(&p[1], c->target);
	p[1].in = prog.on ? b[0] : a[0];
	prog.end = s->steps;
	prog.streamed = 0;
	if (prog.on) {
		signal(SIGPIPE, SIG_IGN);
		run_stages(p, 2, a[0], b[1]);
		progress_stream(UINT64_MAX, NULL);	/* zero steps at its end */
	} else {
		run_stages(p, 2, -1, -1);
	}
}

/*
 * A target backing file (-B, or -o backing_file; -B wins as in qemu-img):
 * then only the sources' tops are copied, and zeroes past the end of the
 * new target's backing file are left alone, so its size is wanted.
 */
static void
find_backing(struct conv *c)
{
	const char *name = c->backing, *fmt = c->backing_fmt;
	struct img *img;
	char *path;

	if (name == NULL)
		name = opt_list_get(&c->o, "backing_file");
	if (fmt == NULL)
		fmt = opt_list_get(&c->o, "backing_fmt");
	c->has_backing = name != NULL;
	c->backing_size = -1;
	/* there zero extents are written, and img-write -S 0 would not unmap them */
	if (c->compressed && c->copy_range)
		die("Cannot enable copy offloading when -c is used");
	if (c->compressed && (opt_bool_on(&c->o, "encryption") ||
	    opt_list_get(&c->o, "encrypt.format") != NULL))
		die("Compression and encryption not supported at the same time");
	if (c->compressed && (c->no_create || c->has_backing))
		die("convert: option '-c' with -n or a target backing file is not "
		    "supported yet");
	if (c->copy_range && (c->no_create || c->has_backing))
		die("convert: option '-C' with -n or a target backing file is not "
		    "supported yet");
	if (!c->has_backing || c->no_create)
		return;
	/* unknown when it cannot be opened: the target's own open will say */
	path = img_backing_path(c->dst, name);
	if ((img = img_open(path, fmt, IMG_SHARE)) != NULL)
		c->backing_size = (int64_t)img->size;
	img_close(img);
	free(path);
}

int
main(int argc, char *argv[])
{
	struct conv c = { .out_fmt = "raw", .sparse = SPARSE_DEFAULT };
	struct source *src;
	int ch, i;

	prog_init(argv[0]);
	while ((ch = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1)
		parse_opt(&c, ch, argv);
	check_args(&c, argc, argv);
	prog.on = c.progress && !c.quiet;
	progress_init(prog.on, 1.0f);
	progress_print(0, 100);
	atexit(at_exit);
	catch_signals();
	find_backing(&c);
	src = xcalloc((size_t)c.nsrc, sizeof(*src));
	for (i = 0; i < c.nsrc; i++) {
		src[i].name = c.src[i];
		src[i].base = c.size;
		map_source(&c, &src[i]);
	}
	target_name(&c);
	if (c.no_create)
		check_target(&c);
	else
		create_target(&c);
	for (i = 0; i < c.nsrc; i++)
		copy(&c, &src[i]);
	progress_print(100, 0);
	progress_end();
	prog.ended = true;
	stop_unlink = NULL;
	for (i = 0; i < c.nsrc; i++) {
		if (src[i].write_fd != src[i].cat_fd)
			close(src[i].write_fd);
		close(src[i].cat_fd);
	}
	free(src);
	free(prog.step);
	free(c.options);
	free(c.target);
	free(c.objects);
	opt_list_free(&c.o);
	return close_stdout();
}
