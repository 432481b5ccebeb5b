/* img-map: print an image's extent map, as qemu-img 7.2's `map` (qemu-img.c img_map). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/secret.h"
#include "../formats/img.h"

static const char usage_text[] =
    "usage: img-map [--object objectdef] [--image-opts] [-f fmt]\n"
    "               [--start-offset=offset] [--max-length=len]\n"
    "               [--output=ofmt] [-U] [--as-convert] filename\n";

enum { OPT_OUTPUT = 256, OPT_OBJECT, OPT_IMAGE_OPTS, OPT_LONG, OPT_SHORT,
    OPT_SNAPSHOT, OPT_SPARSE, OPT_SALVAGE, OPT_AS_CONVERT };

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "format", required_argument, NULL, 'f' },
	{ "output", required_argument, NULL, OPT_OUTPUT },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "snapshot", required_argument, NULL, OPT_SNAPSHOT },
	{ "sparse", no_argument, NULL, OPT_SPARSE },
	{ "salvage", no_argument, NULL, OPT_SALVAGE },
	{ "as-convert", no_argument, NULL, OPT_AS_CONVERT },
	{ "force-share", no_argument, NULL, 'U' },
	{ "start-offset", required_argument, NULL, 's' },
	{ "max-length", required_argument, NULL, 'l' },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":f:s:l:Uh";

struct map_args {
	const char	*fmt;
	int		 output;	/* OUT_HUMAN or OUT_JSON */
	int		 flags;
	bool		 image_opts;
	int64_t		 start;
	int64_t		 max_length;	/* -1: to the end */
	const char	*snapshot;	/* --snapshot: map an internal snapshot */
	bool		 salvage;	/* --salvage: a failing sector is data */
	bool		 as_convert;	/* --as-convert: convert's walk */
};

static _Noreturn void
usage(void)
{
	printf("%s\nPrint the extent map of a disk image, as qemu-img map does.\n\n"
	    "  -f, --format=fmt        image format (default: probe)\n"
	    "      --image-opts        filename is an option string "
	    "(driver=...,file.filename=...)\n"
	    "      --object=objectdef  accepted for qemu-img compatibility\n"
	    "  -s, --start-offset=off  first byte to map\n"
	    "  -l, --max-length=len    map at most len bytes\n"
	    "      --output=ofmt       human (default) or json\n"
	    "  -U, --force-share       open the image in shared mode\n"
	    "      --snapshot=param    map an internal snapshot (as convert -l)\n"
	    "      --sparse            zero ranges as zero even where qemu-img shows data\n"
	    "      --salvage           warn of a sector whose status fails, call it data\n"
	    "      --as-convert        one extent per block status answer, as "
	    "convert walks\n"
	    "  -h, --help              show this help\n"
	    "\nSee img-map(1).\n", usage_text);
	exit(0);
}

/* qemu-img's cvtnum(): a size with suffixes in [0, INT64_MAX], or exit 1. */
static int64_t
cvtnum(const char *name, const char *s)
{
	uint64_t v;
	int r = opt_size(s, &v);

	if (r == -1) {
		warn_msg("Invalid %s specified. You may use k, M, G, T, P or E "
		    "suffixes for", name);
		die("kilobytes, megabytes, gigabytes, terabytes, petabytes and "
		    "exabytes.");
	}
	if (r < 0 || v > INT64_MAX)
		die("Invalid %s specified. Must be between 0 and %" PRId64 ".",
		    name, INT64_MAX);
	return (int64_t)v;
}

/* The human form prints data extents only and folds the rest into zeroes. */
static int
dump(const struct map_args *a, const struct map_ext *e, struct map_ext *next)
{
	if (a->output == OUT_HUMAN) {
		if (e->data && !e->has_offset)
			return err_set(0, "File contains external, encrypted or "
			    "compressed clusters.");
		if (e->data && !e->zero)
			printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n",
			    e->start, e->length, e->has_offset ? e->offset : 0,
			    e->filename ? e->filename : "");
		if (next != NULL && (!next->data || next->zero)) {
			next->data = false;
			next->zero = true;
		}
		return 0;
	}
	map_print_json(stdout, e, false, next == NULL);
	return 0;
}

/* One extent; with --salvage a failing sector is warned of and called data. */
static int
status(struct img *img, const struct map_args *a, uint64_t off, uint64_t len,
    struct map_ext *e)
{
	int r;

	if (!a->salvage)
		return img_status(img, off, len, e);
	if ((r = img_status_salvage(img, off, len, e)) == 1)
		warn_msg("warning: error while reading block status at offset "
		    "%" PRIu64 ": %s", off, strerror(err_errno() ? err_errno() :
		    EIO));
	return 0;
}

/* qemu's BDRV_REQUEST_MAX_BYTES: convert asks no more at once */
#define REQUEST_MAX	((uint64_t)(INT32_MAX >> 9) << 9)

/*
 * --as-convert: the extents qemu-img convert_iteration_sectors steps by,
 * unmerged: each answer is asked for at most REQUEST_MAX bytes, and one
 * that crosses a cluster boundary ends at the last one it crosses.  A
 * failing answer is named as convert names it.
 */
static int
map_convert(struct img *img, const struct map_args *a)
{
	uint64_t align = 0, off, tail;
	struct map_ext e;

	(void)img_cluster_size(img, &align);	/* convert aligns to it */
	align = MAX(align, IMG_SECTOR);

	putchar('[');
	if (img->size == 0)
		puts("]");
	for (off = 0; off < img->size; off += e.length) {
		if (status(img, a, off, MIN(img->size - off, REQUEST_MAX),
		    &e) < 0)
			return err_set(0, "error while reading block status at "
			    "offset %" PRIu64 ": %s", off,
			    strerror(err_errno() ? err_errno() : EIO));
		tail = (off + e.length) % align;
		if (e.length > tail)
			e.length -= tail;
		map_print_json(stdout, &e, false, off + e.length >= img->size);
	}
	return 0;
}

/*
 * Walk block status from start to the end (or start + max_length, with
 * qemu's signed arithmetic: an overflowing sum maps nothing), merging
 * mergeable neighbours.  An empty walk still prints its one empty extent.
 */
static int
map_image(struct img *img, const struct map_args *a)
{
	struct map_ext curr = { .start = (uint64_t)a->start }, next;
	int64_t length = (int64_t)img->size, end;

	if (a->output == OUT_JSON)
		putchar('[');
	else
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to",
		    "File");
	if (a->max_length != -1) {
		end = (int64_t)((uint64_t)a->start + (uint64_t)a->max_length);
		length = MIN(end, length);
	}
	while ((int64_t)(curr.start + curr.length) < length) {
		uint64_t off = curr.start + curr.length;

		/* an I/O error is said as qemu says it, by its errno alone */
		if (status(img, a, off, (uint64_t)length - off, &next) < 0)
			return err_errno() != 0 ? err_set(0, "Could not read file "
			    "metadata: %s", strerror(err_errno())) :
			    err_prefix("Could not read file metadata");
		if (curr.length > 0 && map_mergeable(&curr, &next)) {
			curr.length += next.length;
			continue;
		}
		if (curr.length > 0 && dump(a, &curr, &next) < 0)
			return -1;
		curr = next;
	}
	return dump(a, &curr, NULL);
}

int
main(int argc, char *argv[])
{
	struct map_args a = { .output = OUT_HUMAN, .max_length = -1 };
	const char *output = NULL;
	struct img *img;
	int c;

	prog_init(argv[0]);
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'f':
			a.fmt = optarg;
			break;
		case 'U':
			a.flags |= IMG_SHARE;
			break;
		case 's':
			a.start = cvtnum("start offset", optarg);
			break;
		case 'l':
			a.max_length = cvtnum("max length", optarg);
			break;
		case OPT_OUTPUT:
			output = optarg;
			break;
		case OPT_OBJECT:
			object_add_or_exit(optarg, 1);
			break;
		case OPT_IMAGE_OPTS:
			a.image_opts = true;
			break;
		case OPT_SNAPSHOT:
			a.snapshot = optarg;
			break;
		case OPT_SPARSE:
			a.flags |= IMG_TRUE_STATUS;
			break;
		case OPT_SALVAGE:
			a.salvage = true;
			break;
		case OPT_AS_CONVERT:
			a.as_convert = true;
			break;
		case OPT_LONG:
		case OPT_SHORT:
			opt_print_options(longopts, shortopts, c == OPT_LONG);
		default:
			opt_usage_error(c, argv);
		}
	}
	if (optind != argc - 1)
		die_usage("Expecting one image file name");
	if (output != NULL && (a.output = opt_output(output)) < 0)
		die("--output must be used with human or json as argument.");
	if (a.image_opts && a.fmt != NULL)
		die("--image-opts and --format are mutually exclusive");
	/*
	 * qemu-img map skips filters (blkdebug above the format); convert,
	 * whose views --sparse, --salvage and --as-convert give, asks them
	 */
	if (!a.salvage && !a.as_convert && !(a.flags & IMG_TRUE_STATUS))
		a.flags |= IMG_SKIP_FILTERS;
	img = a.image_opts ? img_open_image_opts(argv[optind], a.flags) :
	    img_open(argv[optind], a.fmt, a.flags);
	if (img == NULL)
		die("%s", err_msg());
	if (a.snapshot != NULL && img_snapshot_load(img, a.snapshot) < 0) {
		char *msg = xasprintf("Failed to load snapshot: %s", err_msg());

		img_close(img);		/* a clean exit for the leak checker */
		die("%s", msg);
	}
	if ((a.as_convert ? map_convert(img, &a) : map_image(img, &a)) < 0) {
		img_close(img);
		die("%s", err_msg());
	}
	img_close(img);
	return close_stdout();
}
