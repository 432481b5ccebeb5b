/*
 * img-convert: copy an image into a new one of any format, as qemu-img
 * convert does, composed as img-map SRC, then img-cat --map | img-write --map.
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/int.h"
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
	const char	*out_fmt;	/* -O, default raw (none: --target-image-opts) */
	const char	*cache;		/* -t */
	const char	*src_cache;	/* -T */
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
	bool		 target_opts;	/* --target-image-opts: so is the target */
	bool		 salvage;	/* --salvage: read errors become zeroes */
	bool		 bitmaps;	/* --bitmaps: copy persistent bitmaps */
	bool		 skip_broken;	/* --skip-broken-bitmaps */
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
	struct ext	*ext;		/* what happens to the target, in order */
	size_t		 next;
	int		 write_fd;	/* memfd: img-write's map of the target */
};

/*
 * What qemu-img convert does with one range of the target (its
 * ImgConvertBlockStatus): copy the sources' data, zero it, or leave it to
 * the target's backing file.
 */
enum { K_DATA, K_ZERO, K_BACKING };

struct ext {
	uint64_t	 start;		/* in the target */
	uint64_t	 length;
	int		 kind;
};

/* One source: where it lands, and its map as img-cat reads it. */
struct source {
	const char	*name;
	uint64_t	 base;		/* where it lands in the target */
	uint64_t	 size;
	int		 cat_fd;	/* memfd: the data extents, in the source */
	char		*said;		/* img-map's stderr: --salvage's warnings */
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
	uint64_t	 chunk;		/* a step: CHUNK, or with -c one cluster */
};

/* The stream's bytes before this img-cat's (base) and in it (last), for -p. */
struct streamed {
	uint64_t	 base;
	uint64_t	 last;
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

/*
 * qcow2_has_zero_init: a preallocated encrypted qcow2 reads its zeroed
 * clusters decrypted, not as zeroes.
 */
static bool
prealloc_encrypted(const struct conv *c)
{
	const char *p = opt_list_get(&c->o, "preallocation");
	const char *e = opt_list_get(&c->o, "encryption");

	return c->out_fmt != NULL && strcmp(c->out_fmt, "qcow2") == 0 &&
	    p != NULL && strcmp(p, "off") != 0 &&
	    (opt_list_get(&c->o, "encrypt.format") != NULL ||
	    (e != NULL && strcmp(e, "on") == 0));
}

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
	    "  -c                 write the target compressed (qcow2)\n"
	    "  -l snapshot_param  convert an internal snapshot of the source\n"
	    "  --target-image-opts  with -n: the target is an option string\n"
	    "  --salvage          read errors of the sources become zeroes, "
	    "with warnings\n"
	    "  --bitmaps          copy the source's persistent bitmaps (qcow2)\n"
	    "  --skip-broken-bitmaps  with --bitmaps: skip inconsistent ones\n"
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

static void
parse_opt(struct conv *c, int ch, char **argv)
{
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
	case OPT_TARGET_IMAGE_OPTS:
		c->target_opts = true;
		break;
	case OPT_SALVAGE:
		c->salvage = true;
		break;
	case OPT_BITMAPS:
		c->bitmaps = true;
		break;
	case OPT_SKIP_BROKEN:
		c->skip_broken = true;
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

/* The order of qemu-img's checks, so the same mistake gets the same message. */
static void
check_args(struct conv *c, int argc, char **argv)
{
	if (c->out_fmt == NULL && !c->target_opts)
		c->out_fmt = "raw";
	if (c->skip_broken && !c->bitmaps)
		die("Use of --skip-broken-bitmaps requires --bitmaps");
	if (c->compressed && c->copy_range)
		die("Cannot enable copy offloading when -c is used");
	if (c->copy_range && c->sparse_set)
		die("Cannot enable copy offloading when -S is used");
	if (c->copy_range && c->salvage)
		die("Cannot use copy offloading in salvaging mode");
	if (c->target_opts && !c->no_create)
		die("--target-image-opts requires use of -n flag");
	if (c->no_create && c->options)
		die("-o has no effect when skipping image creation");
	if (c->target_is_zero && !c->no_create)
		die("--target-is-zero requires use of -n flag");
	c->nsrc = argc - optind - 1;
	if (c->options && opt_list_parse(&c->o, c->options) < 0)
		die("%s", err_msg());
	if (opt_list_has_help(&c->o)) {
		if (c->out_fmt == NULL)
			die("Option help requires a format be specified");
		/* print_block_option_help(), for the target's name if given */
		c->dst = c->nsrc >= 1 ? argv[argc - 1] : NULL;
		option_help(c);
	}
	if (c->nsrc < 1)
		die("Must specify image file name");
	if (c->src_cache && opt_cache_mode(c->src_cache) < 0)
		die("Invalid source cache option: %s", c->src_cache);
	if (c->cache && opt_cache_mode(c->cache) < 0)
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
	struct streamed *st = arg;
	const struct step *e;
	uint64_t n;

	if (st != NULL) {
		st->last = bytes;
		bytes += st->base;
	}
	for (; prog.i < prog.end; prog.i++, prog.off = 0) {
		e = &prog.step[prog.i];
		for (; prog.off < e->length; prog.off += n) {
			n = MIN(e->length - prog.off, prog.chunk);
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
progress_add(const struct ext *e)
{
	struct step *s;

	if (!prog.on)
		return;
	if ((prog.n & (prog.n - 1)) == 0)
		prog.step = xrealloc(prog.step,
		    (prog.n ? 2 * prog.n : 1) * sizeof(*prog.step));
	s = &prog.step[prog.n++];
	s->length = e->length;
	/* with -S 0 zero extents are data already */
	s->streamed = s->counted = e->kind == K_DATA;
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
 * Run one stage, already wired; fail with its message if it fails.  What
 * it said on stderr goes to *said when wanted, else on to ours.
 */
static void
run_stage(struct proc *p, char **said)
{
	int start = proc_start(p);

	stop_pids[0] = p->pid;
	close_ends(p, 1);
	proc_wait(p, 1);
	stop_pids[0] = 0;
	if (start < 0 || proc_check(p, 1) < 0)
		die("%s", err_msg());
	if (said != NULL)
		*said = proc_stderr(p);
	else
		pass_stderr(p, 1);
	proc_free(p);
}

/* A line of --salvage's warnings: what it names, in the order qemu-img prints. */
struct warning {
	uint64_t	 off;
	int		 kind;		/* 0: block status, 1: read */
	size_t		 seq;		/* among lines of the same place */
	const char	*line;
	int		 len;
};

static int
salvage_kind(const char *line, size_t len, uint64_t *off)
{
	static const char *const what[] = {
	    ": warning: error while reading block status at offset ",
	    ": warning: error while reading offset ",
	};
	const char *p;
	int k;

	for (k = 0; k < 2; k++)
		if ((p = memmem(line, len, what[k], strlen(what[k]))) != NULL) {
			*off = strtoull(p + strlen(what[k]), NULL, 10);
			return k;
		}
	return -1;
}

static int
warning_cmp(const void *a, const void *b)
{
	const struct warning *x = a, *y = b;

	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	if (x->kind != y->kind)
		return x->kind - y->kind;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Split text into lines: other lines printed now, warnings added to w. */
static size_t
collect(const char *text, bool keep_others, struct warning **w, size_t n)
{
	const char *p, *end;
	uint64_t off;
	size_t len;
	int k;

	for (p = text; p != NULL && *p != '\0'; p = end) {
		end = strchr(p, '\n');
		end = end ? end + 1 : p + strlen(p);
		len = (size_t)(end - p);
		if ((k = salvage_kind(p, len, &off)) < 0) {
			if (keep_others)
				fwrite(p, 1, len, stderr);
			continue;
		}
		if ((n & (n - 1)) == 0)
			*w = xrealloc(*w, (n ? 2 * n : 1) * sizeof(**w));
		(*w)[n] = (struct warning){ off, k, n, p, (int)len };
		n++;
	}
	return n;
}

/*
 * Pass on what a stage said.  qemu-img convert asks block status twice,
 * once to count and once as it copies, so --salvage's block-status
 * warnings (img-map's) come once alone, then again among the read
 * warnings (img-cat's) in offset order; -q silences them all.
 */
static void
say(const struct conv *c, const char *map_said, const char *cat_said)
{
	struct warning *w = NULL;
	size_t n, i;

	n = collect(cat_said ? cat_said : map_said, true, &w, 0);
	if (cat_said != NULL)
		n = collect(map_said, false, &w, n);
	if (n > 1)
		qsort(w, n, sizeof(*w), warning_cmp);
	for (i = 0; i < n && !c->quiet; i++)
		fprintf(stderr, "%.*s", w[i].len, w[i].line);
	free(w);
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
	if (c->salvage)
		proc_arg(p, "--salvage");
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

static void
ext_add(struct conv *c, uint64_t start, uint64_t length, int kind)
{
	if ((c->next & (c->next - 1)) == 0)
		c->ext = xrealloc(c->ext,
		    (c->next ? 2 * c->next : 1) * sizeof(*c->ext));
	c->ext[c->next++] = (struct ext){ start, length, kind };
}

/*
 * One extent of a source, as qemu-img treats it (convert_iteration_sectors):
 * with a target backing file only the source's top counts, and what it
 * leaves unallocated, or zero past the end of that backing file, is left
 * alone; -S 0 makes zero extents data, written as zero buffers.
 */
static void
take(struct conv *c, const struct source *s, const struct map_ext *e)
{
	int kind;

	if (c->has_backing && (e->depth > 0 || (e->zero &&
	    c->backing_size >= 0 && e->start >= (uint64_t)c->backing_size)))
		kind = K_BACKING;
	else if (c->sparse == 0 || map_carries_data(e))
		kind = K_DATA;
	else
		kind = K_ZERO;
	ext_add(c, s->base + e->start, e->length, kind);
}

/* The map of one source, read back from img-map's output, appended to c->ext. */
static void
load_map(struct conv *c, struct source *s, int fd)
{
	struct map_reader *r;
	struct map_ext e, tail;
	uint64_t end = 0;
	FILE *f;
	int ret;

	/* img-map left the shared offset at its end */
	if (lseek(fd, 0, SEEK_SET) < 0 || (f = fdopen(fd, "r")) == NULL)
		die_errno("map");
	r = map_reader_new(f, "map");
	while ((ret = map_read(r, &e)) > 0) {
		if (e.start != end)
			die("map: extent at %llu leaves a gap",
			    (unsigned long long)e.start);
		end = e.start + e.length;
		/* qemu-img steps apart where the target's backing file ends */
		if (split_at(&e, &tail, c->backing_size))
			take(c, s, &e);
		take(c, s, &tail);
	}
	if (ret < 0)
		die("%s", err_msg());
	map_reader_free(r);
	fclose(f);
	s->size = end;
	c->size = s->base + end;
}

/* img-map of one source, into a memfd we read back. */
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
	proc_arg(&p, "--as-convert");	/* convert's steps, and its messages */
	proc_arg(&p, s->name);
	if ((p.out = dup(fd)) < 0)
		die_errno("dup");
	run_stage(&p, &s->said);
	say(c, s->said, NULL);
	load_map(c, s, fd);
}

/*
 * -c: qemu-img writes whole clusters of the target.  A cluster that one
 * extent covers wholly is treated as that extent; any other (one that
 * extents, or sources, share) is data: read whole, then compressed, or
 * zeroed when it reads as zeroes.
 */
static void
align_clusters(struct conv *c, uint64_t cs)
{
	struct ext *old = c->ext;
	size_t n = c->next, i = 0;
	uint64_t at = 0, cend, eend, run;

	if (cs == 0)
		return;
	c->ext = NULL;
	c->next = 0;
	while (at < c->size) {
		cend = MIN(at + cs, c->size);
		while (i < n && old[i].start + old[i].length <= at)
			i++;
		assert(i < n);
		eend = old[i].start + old[i].length;
		if (eend >= cend) {
			run = eend >= c->size ? c->size - at :
			    ROUND_DOWN(eend - at, cs);
			ext_add(c, at, run, old[i].kind);
			at += run;
		} else {
			ext_add(c, at, cend - at, K_DATA);
			at = cend;
		}
	}
	free(old);
}

static void
put_ext(struct map_out *m, uint64_t start, uint64_t length, int kind)
{
	struct map_ext e = { .start = start, .length = length,
	    .present = true, .zero = kind == K_ZERO, .data = kind == K_DATA };

	mout_put(m, &e);
}

/*
 * The maps the copy stages read: img-write's, of the whole target (what
 * is left to the backing file is left out), and each source's img-cat
 * map, of the data it streams; and the progress steps.
 */
static void
make_maps(struct conv *c, struct source *src)
{
	struct map_out wr, *cat = xcalloc((size_t)c->nsrc, sizeof(*cat));
	const struct ext *e;
	const struct source *s;
	uint64_t a, b;
	int i;

	mout_open(&wr, 0);
	for (i = 0; i < c->nsrc; i++)
		mout_open(&cat[i], 0);
	for (e = c->ext; e < c->ext + c->next; e++) {
		if (e->kind == K_BACKING)
			continue;
		put_ext(&wr, e->start, e->length, e->kind);
		progress_add(e);
		for (i = 0, s = src; e->kind == K_DATA && i < c->nsrc; i++, s++) {
			a = MAX(e->start, s->base);
			b = MIN(e->start + e->length, s->base + s->size);
			if (a < b)
				put_ext(&cat[i], a - s->base, b - a, K_DATA);
		}
	}
	c->write_fd = mout_close(&wr);
	for (i = 0; i < c->nsrc; i++)
		src[i].cat_fd = mout_close(&cat[i]);
	free(cat);
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

/* The existing target (-n), named by file and -O, or by --target-image-opts. */
static struct img *
open_target(const struct conv *c, int flags)
{
	if (!c->target_opts)
		return img_open(c->target, c->out_fmt, flags);
	if (c->out_fmt != NULL) {
		err_set(0, "--image-opts and --format are mutually exclusive");
		return NULL;
	}
	return img_open_image_opts(c->dst, flags);
}

/* A persistent bitmap of the source, as --bitmaps copies it. */
struct bitmap {
	char		*name;
	uint64_t	 granularity;
	bool		 enabled;	/* "auto" */
	bool		 in_use;	/* inconsistent */
};

static struct img *
open_source(const struct conv *c, int flags)
{
	if (c->share)
		flags |= IMG_SHARE;
	return c->image_opts ? img_open_image_opts(c->src[0], flags) :
	    img_open(c->src[0], c->fmt, flags | IMG_NO_PROBE_WARN);
}

static bool
has_flag(const struct jnode *flags, const char *name)
{
	const struct jnode *f;

	for (f = flags ? flags->child : NULL; f != NULL; f = f->next)
		if (f->type == JN_STR && strcmp(f->s, name) == 0)
			return true;
	return false;
}

/* The source's bitmaps, as img-info lists them; *n of them. */
static struct bitmap *
source_bitmaps(struct img *img, size_t *n)
{
	const struct jnode *list, *b, *v;
	struct bitmap *bm = NULL;
	struct img_info info;

	*n = 0;
	if (img_get_info(img, &info) < 0)
		die("%s", err_msg());
	/* the driver's part of "format-specific": its "data" */
	list = info.specific ? jn_get(info.specific, "bitmaps") : NULL;
	for (b = list ? list->child : NULL; b != NULL; b = b->next) {
		bm = xrealloc(bm, (*n + 1) * sizeof(*bm));
		v = jn_get(b, "name");
		bm[*n].name = xstrdup(v && v->type == JN_STR ? v->s : "");
		v = jn_get(b, "granularity");
		bm[*n].granularity = v ? (v->type == JN_UINT ? v->u :
		    (uint64_t)v->i) : 0;
		bm[*n].enabled = has_flag(jn_get(b, "flags"), "auto");
		bm[*n].in_use = has_flag(jn_get(b, "flags"), "in-use");
		(*n)++;
	}
	jn_free(info.specific);
	img_snapshots_free(info.snapshots, info.nb_snapshots);
	return bm;
}

static void
bitmaps_free(struct bitmap *bm, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(bm[i].name);
	free(bm);
}

/* convert_check_bitmaps(): before the target is made, as qemu-img checks. */
static void
check_bitmaps(const struct conv *c)
{
	struct bitmap *bm;
	struct img *img;
	uint64_t size;
	size_t n, i;

	if (!c->bitmaps)
		return;
	if (c->nsrc > 1)
		die("Copying bitmaps only possible with single source");
	if ((img = open_source(c, 0)) == NULL)
		die("%s", err_msg());
	if (!img_bitmaps_size(img, 65536, &size))
		die("Source lacks bitmap support");
	bm = source_bitmaps(img, &n);
	img_close(img);
	for (i = 0; i < n && !c->skip_broken; i++)
		if (bm[i].in_use) {
			warn_msg("Cannot copy inconsistent bitmap '%s'",
			    bm[i].name);
			fputs("Try --skip-broken-bitmaps, or use 'qemu-img bitmap "
			    "--remove' to delete it\n", stderr);
			exit(1);
		}
	bitmaps_free(bm, n);
}

/*
 * What qemu-img checks of the target once it is open: it carries bitmaps
 * (--bitmaps), compresses (-c).  The image is closed when it fails.
 */
static void
target_can(const struct conv *c, struct img *img)
{
	uint64_t size;

	if (c->bitmaps && !img_bitmaps_size(img, 65536, &size))
		err_set(0, "Format driver '%s' does not support bitmaps",
		    img_format(img));
	else if (c->compressed && !img_can_compress(img))
		err_set(0, "Compression not supported for this file format");
	else
		return;
	img_close(img);
	die("%s", err_msg());
}

static void
check_target_bitmaps(const struct conv *c)
{
	struct img *img;

	if (!c->bitmaps)
		return;
	if ((img = open_target(c, IMG_SHARE)) == NULL)
		die("%s", err_msg());
	target_can(c, img);
	img_close(img);
}

/* Add bitmap b of src to the target, as qemu's block-dirty-bitmap-add and -merge. */
static void
add_bitmap(const struct conv *c, const struct bitmap *b, struct img *src)
{
	struct img_bitmap_act acts[3];
	struct img *dst;
	size_t k = 0, failed;

	acts[k++] = (struct img_bitmap_act){ IMG_BM_ADD, NULL };
	if (!b->enabled)
		acts[k++] = (struct img_bitmap_act){ IMG_BM_DISABLE, NULL };
	acts[k++] = (struct img_bitmap_act){ IMG_BM_MERGE, b->name };
	/* one img_bitmap per open, as img-bitmap does */
	if ((dst = open_target(c, IMG_RDWR)) == NULL)
		die("%s", err_msg());
	if (img_bitmap(dst, b->name, acts, k, b->granularity, src, &failed) < 0) {
		err_prefix("Failed to %s bitmap %s", failed == 0 ? "create" :
		    "populate", b->name);
		die("%s", err_msg());
	}
	img_close(dst);
}

static bool
has_bitmap(const struct bitmap *bm, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(bm[i].name, name) == 0)
			return true;
	return false;
}

/*
 * convert_copy_bitmaps(): after the copy, each persistent bitmap of the
 * source is added to the target (same granularity, disabled if it was)
 * and the source's bits merged in.  qemu walks them last first and stops
 * at the first that fails (one the target has already, or a target of
 * another size, which qemu cannot merge into): the failures are found
 * that way first, then the bitmaps qemu added are added in directory
 * order, which is also the order qemu stores them in.
 */
static void
copy_bitmaps(const struct conv *c)
{
	struct img *src, *dst;
	struct bitmap *bm, *old;
	size_t n, nold, i, first = 0;
	uint64_t dsize;
	char *msg = NULL;

	if (!c->bitmaps)
		return;
	if ((src = open_source(c, 0)) == NULL ||
	    (dst = open_target(c, IMG_SHARE)) == NULL)
		die("%s", err_msg());
	bm = source_bitmaps(src, &n);
	old = source_bitmaps(dst, &nold);
	dsize = dst->size;
	img_close(dst);
	for (i = n; i-- > 0 && msg == NULL;) {
		if (bm[i].in_use)	/* check_bitmaps() let only --skip-broken by */
			warn_msg("warning: Skipping inconsistent bitmap '%s'",
			    bm[i].name);
		else if (has_bitmap(old, nold, bm[i].name))
			msg = xasprintf("Failed to create bitmap %s: Bitmap "
			    "already exists: %s", bm[i].name, bm[i].name);
		else if (dsize != src->size)
			msg = xasprintf("Failed to populate bitmap %s: Bitmaps "
			    "are of different sizes (destination size is %" PRIu64
			    ", source size is %" PRIu64 ") and can't be merged",
			    bm[i].name, dsize, src->size);
		if (msg != NULL)
			first = i + 1;
	}
	for (i = first; i < n; i++)
		if (!bm[i].in_use)
			add_bitmap(c, &bm[i], src);
	if (msg != NULL)
		die("%s", msg);
	bitmaps_free(bm, n);
	bitmaps_free(old, nold);
	img_close(src);
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
	if (img_node_protocol(c->dst) != NULL)
		die("Protocol driver '%s' does not support image creation",
		    img_node_protocol(c->dst));
	driver_opts(c, &c->o, &o);
	backing_opts(c, &o);
	check_bitmaps(c);
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
	run_stage(&p, NULL);
	exit(close_stdout());
}

/* -n: the target must exist and hold the whole source. */
static void
check_target(struct conv *c)
{
	struct img *img;
	uint64_t size;

	check_backing(c);
	check_bitmaps(c);
	check_not_source(c);
	/* img-write's open warns of a probed image (a quorum's raw child,
	 * a blkverify test image), once */
	if ((img = open_target(c, IMG_RDWR | IMG_NO_PROBE_WARN)) == NULL)
		die("%s", err_msg());
	target_can(c, img);
	size = img->size;
	img_close(img);
	if (size < c->size)
		die("output file is smaller than input file");
}

/*
 * img-write --map, reading the sources' stream from fd.  refine: zero
 * detection (-S) is img-cat's where it can be (one source, no -p, -c or
 * -C): it leaves zero chunks out of the stream and sends img-write the map
 * of what it streams through a second pipe (refine[0] here), so img-write,
 * with nothing to look at, splices the stream straight into the target.
 */
static void
write_stage(const struct conv *c, struct proc *p, int fd, const int *refine)
{
	size_t i;

	proc_arg(p, "img-write");
	if (c->target_opts)
		proc_arg(p, "--image-opts");
	else
		proc_argf(p, "-f%s", c->out_fmt);
	if (refine != NULL) {
		proc_argf(p, "--map=/dev/fd/%d", refine[0]);
		p->keep = refine[0];
	} else {
		proc_argf(p, "--map=/dev/fd/%d", c->write_fd);
	}
	if (c->compressed)
		proc_arg(p, "-c");
	/* qemu-img convert's target cache defaults to unsafe: no fsync */
	proc_argf(p, "-t%s", c->cache ? c->cache : "unsafe");
	/* -C copies data extents whole, zeroes and all, as copy offloading does */
	proc_argf(p, "-S%llu", (unsigned long long)c->sparse);
	if (c->copy_range)
		proc_arg(p, "--whole");
	proc_arg(p, "--as-convert");	/* a failed write named by its offset */
	/* a new target reads as zeroes, unless -S 0 asks for it allocated */
	if (c->target_is_zero || (!c->no_create && c->sparse != 0 &&
	    !c->has_backing && img_format_zero_init(c->out_fmt) &&
	    !prealloc_encrypted(c)))
		proc_arg(p, "--target-is-zero");
	for (i = 0; i < c->nobjects; i++)
		proc_argf(p, "--object=%s", c->objects[i]);
	proc_arg(p, c->target_opts ? c->dst : c->target);
	p->in = fd;
}

/*
 * Start one img-cat --map into the stream: straight into img-write's pipe
 * `to`, or with -p into a pipe of ours (a[0] returned) that we relay.
 */
static int
cat_start(const struct conv *c, const struct source *s, struct proc *p,
    int to, int *relay_from, const int *refine)
{
	int a[2] = { -1, -1 }, start;

	common_args(c, p, "img-cat");
	/* read errors named as convert does, by its pieces */
	proc_argf(p, "--as-convert=%llu", (unsigned long long)prog.chunk);
	/* refining, img-cat passes img-write's zero extents on: it gets them */
	proc_argf(p, "--map=/dev/fd/%d", refine ? c->write_fd : s->cat_fd);
	if (refine != NULL) {
		proc_argf(p, "-S%llu", (unsigned long long)c->sparse);
		proc_argf(p, "--map-out=/dev/fd/%d", refine[1]);
		p->keep = refine[1];
	}
	proc_arg(p, s->name);
	if (prog.on && proc_pipe(a) < 0)
		die("%s", err_msg());
	if ((p->out = dup(prog.on ? a[1] : to)) < 0)
		die_errno("dup");
	start = proc_start(p);
	stop_pids[0] = p->pid;
	close_ends(p, 1);
	if (prog.on)
		close(a[1]);
	*relay_from = a[0];
	return start;
}

/*
 * Let a started img-cat run to its end, relaying its stream with -p.  0;
 * 1 when it failed (p says how); -1 with err_set when only the relay did.
 */
static int
cat_finish(struct proc *p, int relay_from, int to, struct streamed *st)
{
	int relay = 0;

	if (relay_from >= 0) {
		relay = proc_relay(relay_from, to, progress_stream, st);
		close(relay_from);
		st->base += st->last;
		st->last = 0;
	}
	proc_wait(p, 1);
	stop_pids[0] = 0;
	if (proc_check(p, 1) < 0)
		return 1;
	return relay < 0 ? -1 : 0;
}

/*
 * Where qemu-img's piece holding byte at begins: convert_iteration_sectors
 * takes a zero extent whole, data in pieces from its start (IO_BUF_SIZE,
 * or with -c a cluster: the progress steps).
 */
static uint64_t
piece_of(const struct conv *c, uint64_t at)
{
	const struct ext *e;

	for (e = c->ext; e < c->ext + c->next; e++)
		if (at >= e->start && at - e->start < e->length)
			return e->kind == K_DATA ? e->start +
			    ROUND_DOWN(at - e->start, prog.chunk) : e->start;
	return at;
}

/*
 * A copy stage failed: its message, but a read error's offset counts from
 * the start of the first source, as qemu-img's sector numbers do, and a
 * write error is named by the piece qemu-img would have been writing.
 */
static _Noreturn void
die_copy(const struct conv *c, uint64_t base)
{
	static const char *const what[] = { "error while reading at byte ",
	    "error while writing at byte " };
	const char *m = err_msg(), *rest;
	unsigned long long at;

	if (strncmp(m, what[0], strlen(what[0])) == 0) {
		at = strtoull(m + strlen(what[0]), (char **)&rest, 10);
		die("%s%llu%s", what[0], at + base, rest);
	}
	if (strncmp(m, what[1], strlen(what[1])) == 0) {
		at = strtoull(m + strlen(what[1]), (char **)&rest, 10);
		die("%s%llu%s", what[1], (unsigned long long)piece_of(c, at),
		    rest);
	}
	die("%s", m);
}

/*
 * The copy: one img-write for the whole target, fed by one img-cat per
 * source in turn (a compressed cluster may take bytes of two sources).
 * The first img-cat starts first, so a missing stage is named in order.
 */
static void
copy(const struct conv *c, const struct source *src)
{
	struct proc p[2] = { PROC_INIT, PROC_INIT };
	struct streamed st = { 0, 0 };
	char *msg = NULL, *said;
	int b[2], m[2], i, r = 0, from;
	bool refine = !prog.on && !c->compressed && !c->copy_range &&
	    c->sparse != 0 && c->nsrc == 1;

	if (proc_pipe(b) < 0 || (refine && proc_pipe(m) < 0))
		die("%s", err_msg());
	if (prog.on)
		signal(SIGPIPE, SIG_IGN);
	prog.end = prog.n;
	write_stage(c, &p[1], b[0], refine ? m : NULL);
	for (i = 0; i < c->nsrc && r == 0; i++) {
		if (cat_start(c, &src[i], &p[0], b[1], &from,
		    refine ? m : NULL) < 0)
			die("%s", err_msg());
		if (i == 0 && proc_start(&p[1]) < 0) {
			msg = xstrdup(err_msg());
			close_ends(&p[1], 1);	/* img-cat ends on a broken pipe */
			if (from >= 0)
				close(from);
			proc_wait(&p[0], 1);
			die("%s", msg);
		}
		stop_pids[1] = p[1].pid;
		close_ends(&p[1], 1);
		if ((r = cat_finish(&p[0], from, b[1], &st)) < 0)
			msg = xstrdup(err_msg());
		if (r == 0) {
			said = proc_stderr(&p[0]);
			say(c, src[i].said, said);
			free(said);
			proc_free(&p[0]);
			p[0] = (struct proc)PROC_INIT;
		}
	}
	close(b[1]);
	proc_wait(&p[1], 1);
	stop_pids[1] = 0;
	/* the stage at fault: a broken pipe only follows img-write's failure */
	if (r < 0 && proc_check(&p[1], 1) == 0)
		die("%s", msg);
	if (proc_check(p, 2) < 0)
		die_copy(c, r == 1 ? src[i - 1].base : 0);
	if (prog.on)
		progress_stream(UINT64_MAX, NULL);	/* zero steps at its end */
	pass_stderr(&p[1], 1);
	proc_free(&p[1]);
}

/* The target's cluster size, which -c compresses whole (0: none, or unknown). */
static uint64_t
target_cluster(const struct conv *c)
{
	struct img *img;
	uint64_t cs = 0;

	/* a target that will not open, or has no clusters, img-write refuses */
	if ((img = open_target(c, IMG_SHARE)) == NULL)
		return 0;
	(void)img_cluster_size(img, &cs);
	img_close(img);
	return cs;
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
	if (c->compressed && (opt_bool_on(&c->o, "encryption") ||
	    opt_list_get(&c->o, "encrypt.format") != NULL))
		die("Compression and encryption not supported at the same time");
	if (!c->has_backing || c->no_create)
		return;
	/* unknown when it cannot be opened: the target's own open will say */
	path = img_backing_path(c->dst, name);
	if ((img = img_open(path, fmt, IMG_SHARE)) != NULL)
		c->backing_size = (int64_t)img->size;
	img_close(img);
	free(path);
}

/*
 * `-` as the target: raw output only, the sources' disks one after another
 * on our standard output, each streamed by img-cat (holes stay holes when
 * it is a regular file).  No progress: it would go into the stream.
 */
static _Noreturn void
to_stdout(const struct conv *c)
{
	struct proc p;
	int i;

	if (strcmp(c->out_fmt, "raw") != 0)
		die("convert: '-' as the target takes raw output only (-O raw)");
	if (c->no_create || c->backing || c->compressed || c->options ||
	    c->copy_range)
		die("convert: '-' as the target takes none of -n, -B, -c, -C, -o");
	for (i = 0; i < c->nsrc; i++) {
		if (strcmp(c->src[i], "-") == 0)
			die("convert: '-' cannot be the source and the target");
		p = (struct proc)PROC_INIT;
		common_args(c, &p, "img-cat");
		proc_arg(&p, c->src[i]);
		run_stage(&p, NULL);
	}
	exit(close_stdout());
}

/*
 * `-` as the only source: a raw stream of unknown length on standard
 * input.  A new target is created empty and grows with the stream
 * (img-write --grow); with -n the stream goes into it from its start.
 */
static void
from_stdin(struct conv *c)
{
	struct proc p = PROC_INIT;
	size_t i;

	if (c->nsrc != 1)
		die("convert: '-' as a source cannot be concatenated");
	if (c->fmt != NULL && strcmp(c->fmt, "raw") != 0)
		die("convert: '-' as the source is a raw stream (-f raw)");
	if (c->image_opts || c->snapshot || c->backing || c->copy_range ||
	    opt_list_get(&c->o, "backing_file") != NULL)
		die("convert: '-' as the source takes none of --image-opts, -l, "
		    "-B, -C, -o backing_file");
	if (!c->no_create)
		create_target(c);
	proc_arg(&p, "img-write");
	proc_argf(&p, "-f%s", c->out_fmt);
	proc_argf(&p, "-t%s", c->cache ? c->cache : "unsafe");
	proc_argf(&p, "-S%llu", (unsigned long long)c->sparse);
	if (c->compressed)
		proc_arg(&p, "-c");
	if (!c->no_create)
		proc_arg(&p, "--grow");
	if (c->target_is_zero || (!c->no_create && c->sparse != 0 &&
	    img_format_zero_init(c->out_fmt)))
		proc_arg(&p, "--target-is-zero");
	for (i = 0; i < c->nobjects; i++)
		proc_argf(&p, "--object=%s", c->objects[i]);
	proc_arg(&p, c->target);
	run_stage(&p, NULL);
}

int
main(int argc, char *argv[])
{
	struct conv c = { .sparse = SPARSE_DEFAULT };
	uint64_t cs;
	struct source *src;
	int ch, i;

	prog_init(argv[0]);
	while ((ch = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1)
		parse_opt(&c, ch, argv);
	check_args(&c, argc, argv);
	if (strcmp(c.dst, "-") == 0)
		to_stdout(&c);
	prog.on = c.progress && !c.quiet;
	progress_init(prog.on, 1.0f);
	progress_print(0, 100);
	atexit(at_exit);
	catch_signals();
	find_backing(&c);
	target_name(&c);
	if (strcmp(c.src[0], "-") == 0) {
		from_stdin(&c);
		progress_print(100, 0);
		progress_end();
		prog.ended = true;
		stop_unlink = NULL;
		free(c.target);
		opt_list_free(&c.o);
		return close_stdout();
	}
	src = xcalloc((size_t)c.nsrc, sizeof(*src));
	for (i = 0; i < c.nsrc; i++) {
		src[i].name = c.src[i];
		src[i].base = c.size;
		map_source(&c, &src[i]);
	}
	if (c.no_create)
		check_target(&c);
	else
		create_target(&c);
	if (!c.no_create)
		check_target_bitmaps(&c);
	prog.chunk = CHUNK;
	if (c.compressed) {
		/* qemu-img compresses, and counts, a cluster at a time */
		cs = target_cluster(&c);
		align_clusters(&c, cs);
		prog.chunk = cs ? MIN(cs, CHUNK) : CHUNK;
	}
	make_maps(&c, src);
	copy(&c, src);
	copy_bitmaps(&c);
	progress_print(100, 0);
	progress_end();
	prog.ended = true;
	stop_unlink = NULL;
	close(c.write_fd);
	for (i = 0; i < c.nsrc; i++) {
		close(src[i].cat_fd);
		free(src[i].said);
	}
	free(src);
	free(c.ext);
	free(prog.step);
	free(c.options);
	free(c.target);
	free(c.objects);
	opt_list_free(&c.o);
	return close_stdout();
}
