/*
 * img-commit: write an image's data into a backing file below it, as
 * qemu-img commit; the image is emptied afterwards unless -d.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
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

static const char usage_text[] =
    "usage: img-commit [--object objectdef] [--image-opts] [-q] [-f fmt]\n"
    "           [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename\n";

enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_LONG, OPT_SHORT };

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":hf:t:b:dpqr:";

struct args {
	const char	*fmt, *base;
	const char	*cache;		/* -t, qemu's default writeback */
	bool		 drop, progress, quiet, image_opts;
};

static _Noreturn void
usage(void)
{
	printf("%s\nCommit an image's changes into its backing file.\n\n"
	    "  -b BASE            commit into BASE, anywhere in the backing chain\n"
	    "                     (default: the image's own backing file)\n"
	    "  -d                 don't empty the image afterwards\n"
	    "  -f FMT             the image's format (default: probed)\n"
	    "  -p                 show progress\n"
	    "  -q                 quiet\n"
	    "  -t CACHE           none/off (O_DIRECT), writeback (default), unsafe,\n"
	    "                     directsync, writethrough\n"
	    "  -r RATE            a rate limit, checked and accepted\n"
	    "  -h, --help         show this help\n"
	    "\nSee img-commit(1).\n", usage_text);
	exit(0);
}

/* qemu's path_has_protocol: a colon before any slash */
static bool
has_protocol(const char *path)
{
	return path[strcspn(path, ":/")] == ':';
}

/*
 * bdrv_find_backing_image: name is taken relative to each image of the
 * chain in turn and compared with the backing file that image names (as
 * files, or as strings where either is a protocol name).
 */
static struct img *
find_base(struct img *top, const char *name, int *depth)
{
	char want[PATH_MAX], have[PATH_MAX], *tmp;
	struct img *cur, *b;
	bool same;

	for (*depth = 1, cur = top; (b = cur->backing) != NULL;
	    cur = b, (*depth)++) {
		if (has_protocol(name) || (cur->backing_file != NULL &&
		    has_protocol(cur->backing_file))) {
			if ((cur->backing_file != NULL &&
			    !strcmp(name, cur->backing_file)) ||
			    !strcmp(name, b->filename))
				return b;
			continue;
		}
		tmp = img_backing_path(cur->path ? cur->path : cur->filename,
		    name);
		same = cur->backing_path != NULL && realpath(tmp, want) &&
		    realpath(cur->backing_path, have) && !strcmp(want, have);
		free(tmp);
		if (same)
			return b;
	}
	return NULL;
}

/*
 * An I/O error stops qemu's commit job: "Block job failed: strerror".  The
 * images still close (what their caches hold reaches the files), as qemu's.
 */
static _Noreturn void
job_failed(struct img *top, struct img *base)
{
	char *msg = err_errno() != 0 ? xasprintf("Block job failed: %s",
	    strerror(err_errno())) : xstrdup(err_msg());

	img_close(base);
	img_close(top);
	die("%s", msg);
}

/* Copy what the layers above base hold into base (opened for writing). */
static void
copy_down(struct img *top, struct img *base, int depth)
{
	uint64_t off, n, k;
	struct map_ext e;
	uint8_t *buf = io_alloc(IO_BUFSIZE);

	for (off = 0; off < top->size; off += n) {
		if (img_status(top, off, top->size - off, &e) < 0)
			job_failed(top, base);
		n = e.length;
		if (e.depth >= depth || !e.present)
			continue;
		if (e.zero) {
			if (img_write_zeroes(base, off, n, IMG_ZERO_UNMAP) < 0)
				job_failed(top, base);
			continue;
		}
		for (k = 0; k < n; k += IO_BUFSIZE) {
			size_t len = MIN(IO_BUFSIZE, n - k);

			if (img_read(top, off + k, len, buf) < 0 ||
			    img_write(base, off + k, len, buf) < 0)
				job_failed(top, base);
		}
		progress_print((float)n * 100 / (float)top->size, 100);
	}
	free(buf);
}

static void
parse(struct args *a, int argc, char **argv)
{
	uint64_t rate;
	int c;

	while ((c = getopt_long(argc, argv, shortopts, longopts,
	    NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'f': a->fmt = optarg; break;
		case 'b':	/* as in qemu-img, -b implies -d */
			a->base = optarg;
			a->drop = true;
			break;
		case 'd': a->drop = true; break;
		case 'p': a->progress = true; break;
		case 'q': a->quiet = true; break;
		case 't':
			a->cache = optarg;
			break;
		case 'r':
			if (opt_cvtnum("rate limit", optarg, 0, INT64_MAX,
			    &rate) < 0)
				die("%s", err_msg());
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
}

int
main(int argc, char *argv[])
{
	struct args a = { .cache = "writeback" };
	struct img *top, *base, *bw;
	const char *name;
	char what[4096];	/* top's name, for after it closes */
	int depth = 1, cache, flags, e;

	prog_init(argv[0]);
	parse(&a, argc, argv);
	name = argv[optind];
	if ((cache = img_cache_flags(a.cache)) < 0)
		die("Invalid cache option: %s", a.cache);
	flags = IMG_RDWR | cache;
	top = a.image_opts ? img_open_image_opts(name, flags) :
	    img_open(name, a.fmt, flags);
	if (top == NULL)
		die("%s", err_msg());
	progress_init(a.progress, 1.0);
	progress_print(0, 100);
	if (a.base != NULL) {
		if ((base = find_base(top, a.base, &depth)) == NULL)
			die("Did not find '%s' in the backing chain of '%s'",
			    a.base, name);
	} else if ((base = top->backing) == NULL) {
		die("Image does not have a backing file");
	}
	/* a second handle on base, for writing; the chain's stays read-only */
	if ((bw = img_open(base->filename, img_format(base), flags |
	    IMG_NO_BACKING | IMG_NO_PROBE_WARN)) == NULL)
		die("%s", err_msg());
	/* qemu guards the block 0 of a probed raw image */
	bw->probed = base->probed;
	/* a smaller backing file grows to the image's size, as qemu's job does */
	if (bw->size < top->size &&
	    img_resize(bw, top->size, IMG_PREALLOC_OFF) < 0)
		job_failed(top, bw);
	copy_down(top, bw, depth);
	if (img_flush(bw) < 0)
		job_failed(top, bw);
	img_close(bw);
	/* what closing top says comes before the error, as qemu-img's */
	if (!a.drop && img_make_empty(top) < 0) {
		e = err_errno() ? err_errno() : EIO;
		snprintf(what, sizeof(what), "%s",
		    top->data_name ? top->data_name : top->filename);
		progress_end();
		img_close_report(top, warn_line, NULL);
		die("Failed to empty %s: %s", what, strerror(e));
	}
	progress_print(100, 0);
	progress_end();
	img_close_report(top, warn_line, NULL);
	if (!a.quiet)
		printf("Image committed.\n");
	return close_stdout();
}
