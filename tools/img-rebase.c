/*
 * img-rebase: change an image's backing file, as qemu-img rebase.  Safe
 * mode copies into the image exactly the ranges it leaves unallocated
 * where the old and new backing chains read differently.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "../lib/progress.h"
#include "../lib/secret.h"
#include "../formats/img.h"

#define CHUNK		(2u << 20)	/* qemu-img's IO_BUF_SIZE: one progress step */
#define SECTOR		512

static const char usage_text[] =
    "usage: img-rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt]\n"
    "           [-t cache] [-T src_cache] [-p] [-u] -b backing_file\n"
    "           [-F backing_fmt] filename\n";

enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_LONG, OPT_SHORT };

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "force-share", no_argument, NULL, 'U' },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":hf:F:b:upt:T:qU";

struct args {
	const char	*fmt, *base, *basefmt;
	const char	*cache, *src_cache;	/* -t, -T: qemu's default writeback */
	bool		 unsafe, progress, quiet, image_opts;
	int		 share;
	int		 src_flags;	/* -T's, for the new backing file */
};

struct rebase {
	struct img	*top, *old, *new, *prefix;
	uint8_t		*bold, *bnew;
};

/* the image being rebased, once open: fail() closes it */
static struct img *closing;

/*
 * A failure after the image is open: the error, then what closing it
 * says (qemu-img's goto out and blk_unref), exit 1.
 */
static _Noreturn PRINTF(1, 2) void
fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vwarn_msg(fmt, ap);
	va_end(ap);
	img_close_report(closing, warn_line, NULL);
	exit(1);
}

/* qemu-img names an I/O error by its errno alone */
static const char *
cause(void)
{
	return err_errno() ? strerror(err_errno()) : err_msg();
}

static _Noreturn void
usage(void)
{
	printf("%s\nChange the backing file of an image.\n\n"
	    "  -b FILE            the new backing file (\"\" for none)\n"
	    "  -F FMT             its format\n"
	    "  -u                 unsafe: only rewrite the header, copy nothing\n"
	    "  -f FMT             the image's format (default: probed)\n"
	    "  -p                 show progress\n"
	    "  -q                 quiet\n"
	    "  -t, -T CACHE       cache modes of the image and of the backing "
	    "files:\n"
	    "                     none/off (O_DIRECT), writeback (default), "
	    "unsafe,\n"
	    "                     directsync, writethrough\n"
	    "  -U, --force-share  open the backing files shared\n"
	    "  -h, --help         show this help\n"
	    "\nSee img-rebase(1).\n", usage_text);
	exit(0);
}

/* Shorten *n to the run that is (or is not) allocated in [from, upto). */
static int
allocated_between(struct img *from, struct img *upto, uint64_t off,
    uint64_t *n)
{
	struct map_ext e;
	struct img *l;

	for (l = from; l && l != upto; l = l->backing) {
		/* past a short layer's end everything below reads as zeroes */
		if (off >= l->size)
			return 1;
		if (img_status_layer(l, off, MIN(*n, l->size - off), &e) < 0)
			return -1;
		*n = e.length;
		if (e.present)
			return 1;
	}
	return 0;
}

/* Read [off, off+n) of a backing chain; past its end (or none) reads zero. */
static int
read_side(struct img *b, uint64_t off, uint64_t *n, uint8_t *buf, bool *zero)
{
	*zero = b == NULL || off >= b->size;
	if (*zero) {
		memset(buf, 0, *n);
		return 0;
	}
	*n = MIN(*n, b->size - off);
	return img_read(b, off, *n, buf);
}

/* Length of the run of sectors from p that are (un)equal like the first. */
static uint64_t
same_run(const uint8_t *a, const uint8_t *b, uint64_t n, bool *differ)
{
	uint64_t i = 0, k;

	*differ = memcmp(a, b, MIN(n, SECTOR)) != 0;
	while (i < n) {
		k = MIN(SECTOR, n - i);
		if ((memcmp(a + i, b + i, k) != 0) != *differ)
			break;
		i += k;
	}
	return i;
}

static void
copy_chunk(struct rebase *r, uint64_t off, uint64_t n)
{
	uint64_t done = 0, run;
	bool old_zero, new_zero, differ;

	if (read_side(r->old, off, &n, r->bold, &old_zero) < 0)
		fail("error while reading from old backing file");
	if (read_side(r->new, off, &n, r->bnew, &new_zero) < 0)
		fail("error while reading from new backing file");
	for (; done < n; done += run) {
		run = same_run(r->bold + done, r->bnew + done, n - done, &differ);
		if (!differ)
			continue;
		if ((old_zero ? img_write_zeroes(r->top, off + done, run, 0) :
		    img_write(r->top, off + done, run, r->bold + done)) < 0)
			fail("Error while writing to COW image: %s", cause());
	}
}

static void
copy_differences(struct rebase *r)
{
	uint64_t size = r->top->size, off, n;
	float step = 0;
	struct map_ext e;
	int a;

	if (size != 0)
		step = (float)100 / (float)(size / MIN(size, CHUNK));
	r->bold = io_alloc(CHUNK);
	r->bnew = io_alloc(CHUNK);
	for (off = 0; off < size; off += n) {
		n = MIN(CHUNK, size - off);
		if (img_status_layer(r->top, off, n, &e) < 0)
			fail("error while reading image metadata: %s", cause());
		n = e.length;
		if (e.present)
			continue;
		if (r->prefix != NULL) {
			if ((a = allocated_between(r->top->backing, r->prefix, off,
			    &n)) < 0)
				fail("error while reading image metadata: %s",
				    cause());
			if (a == 0)
				continue;
		}
		copy_chunk(r, off, n);
		progress_print(step, 100);
	}
	free(r->bold);
	free(r->bnew);
}

static void
open_new_backing(struct rebase *r, const struct args *a)
{
	char *path;

	if (a->base[0] == '\0')
		return;
	/* a name qemu cannot resolve against a json: overlay */
	if (strncmp(r->top->filename, "json:", 5) == 0 && a->base[0] != '/' &&
	    strstr(a->base, "://") == NULL)
		fail("Could not resolve backing filename: Cannot use relative "
		    "backing file names for '%s'", r->top->filename);
	path = img_backing_path(r->top->filename, a->base);
	if ((r->prefix = img_chain_find(r->top, path, false, NULL)) != NULL) {
		r->new = r->prefix;
	} else if ((r->new = img_open(path, a->basefmt,
	    a->share | a->src_flags | IMG_NO_PROBE_WARN)) == NULL) {
		err_unprefix("Could not open '%s'", path);
		free(path);
		fail("Could not open new backing file '%s': %s", a->base,
		    err_msg());
	}
	free(path);
}

static void
set_backing(struct img *top, const struct args *a)
{
	const char *b = a->base && a->base[0] ? a->base : NULL;
	int e;

	if (b != NULL && a->basefmt == NULL)
		fail("Could not change the backing file to '%s': backing format must be specified",
		    a->base);
	if (img_set_backing(top, b, b ? a->basefmt : NULL) < 0) {
		/* qemu-img names the errno alone, ENOSPC its own way */
		e = err_errno();
		fail("Could not change the backing file to '%s': %s",
		    a->base ? a->base : "(null)", e == ENOSPC ?
		    "No space left in the file header" : e != 0 ?
		    strerror(e) : err_msg());
	}
}

static void
parse(struct args *a, int argc, char **argv)
{
	int c;

	while ((c = getopt_long(argc, argv, shortopts, longopts,
	    NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'f': a->fmt = optarg; break;
		case 'F': a->basefmt = optarg; break;
		case 'b': a->base = optarg; break;
		case 'u': a->unsafe = true; break;
		case 'p': a->progress = true; break;
		case 'q': a->quiet = true; break;
		case 'U': a->share = IMG_SHARE; break;
		case 't':
			a->cache = optarg;
			break;
		case 'T':
			a->src_cache = optarg;
			break;
		case OPT_OBJECT:
			object_add_or_exit(optarg, 1);
			break;
		case OPT_IMAGE_OPTS:
			a->image_opts = true;
			break;
		case OPT_LONG:
		case OPT_SHORT:
			opt_print_options(longopts, shortopts, c == OPT_LONG);
		default:
			opt_usage_error(c, argv);
		}
	}
	if (a->quiet)
		a->progress = false;
	if (optind != argc - 1)
		die_usage("Expecting one image file name");
	if (!a->unsafe && a->base == NULL)
		die_usage("Must specify backing file (-b) or use unsafe mode (-u)");
}

int
main(int argc, char *argv[])
{
	struct args a = { .cache = "writeback", .src_cache = "writeback" };
	struct rebase r = { 0 };
	const char *name;
	int flags, cache, src_cache;

	prog_init(argv[0]);
	parse(&a, argc, argv);
	name = argv[optind];
	if ((cache = img_cache_flags(a.cache)) < 0)
		die("Invalid cache option: %s", a.cache);
	if ((src_cache = img_cache_flags(a.src_cache)) < 0)
		die("Invalid source cache option: %s", a.src_cache);
	a.src_flags = src_cache & IMG_DIRECT;
	flags = IMG_RDWR | a.share | (a.unsafe ? IMG_NO_BACKING : 0) | cache;
	r.top = a.image_opts ? img_open_image_opts(name, flags) :
	    img_open(name, a.fmt, flags);
	if (r.top == NULL)
		die("%s", err_msg());
	closing = r.top;
	progress_init(a.progress, 2.0);
	progress_print(0, 100);
	if (a.basefmt != NULL && !img_driver_known(a.basefmt))
		die("Invalid format name: '%s'", a.basefmt);
	if (!a.unsafe) {
		r.old = r.top->backing;
		open_new_backing(&r, &a);
		copy_differences(&r);
	}
	set_backing(r.top, &a);
	progress_print(100, 0);
	progress_end();
	if (r.new != r.prefix)
		img_close(r.new);
	img_close_report(r.top, warn_line, NULL);
	return close_stdout();
}
