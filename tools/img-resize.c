/* img-resize: change an image's virtual size, as qemu-img resize (qemu-img.c img_resize). */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/img.h"
#include "../lib/err.h"
#include "../lib/opt.h"
#include "../lib/secret.h"

static const char usage_text[] =
    "usage: img-resize [--object objectdef] [--image-opts] [-f fmt]\n"
    "                  [--preallocation=prealloc] [-q] [--shrink] filename\n"
    "                  [+ | -]size\n";

enum {
	OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_PREALLOC, OPT_SHRINK, OPT_LONG,
	OPT_SHORT,
};

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "preallocation", required_argument, NULL, OPT_PREALLOC },
	{ "shrink", no_argument, NULL, OPT_SHRINK },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":f:hq";

static const char *const prealloc_names[] = {
	"off", "metadata", "falloc", "full", NULL
};

struct args {
	const char	*fmt;
	const char	*filename;
	const char	*size;
	int		 prealloc;
	bool		 quiet;
	bool		 shrink;
	bool		 image_opts;
};

static _Noreturn void
usage(void)
{
	printf("%s\nChange the virtual size of a disk image; +size and -size "
	    "are relative.\n\n"
	    "  -f FMT                  the image's format (default: probe)\n"
	    "      --image-opts        FILENAME is an option list "
	    "(driver=...,file.filename=...)\n"
	    "      --object OBJDEF     accepted for qemu-img compatibility\n"
	    "      --preallocation=M   off, metadata, falloc or full, for "
	    "the grown part\n"
	    "      --shrink            allow the image to shrink (data past "
	    "the end is lost)\n"
	    "  -q                      quiet: no \"Image resized.\"\n"
	    "  -h, --help              show this help\n"
	    "\nSee img-resize(1).\n", usage_text);
	exit(close_stdout());
}

static int
suffix_shift(int c)
{
	static const char s[] = "bkmgtpe";
	const char *p;

	if (c == '\0' || (p = strchr(s, c | 0x20)) == NULL)
		return -1;
	return (int)(p - s) * 10;
}

/*
 * qemu's qemu_strtosz as the "size" option parses it: decimal (or 0x hex
 * without a suffix), an optional fraction that needs a suffix, below 2^64.
 * 0, -1 for garbage, -2 when out of range.
 */
static int
parse_size(const char *s, uint64_t *out)
{
	unsigned __int128 v;
	const char *p = s;
	char *end;
	double frac = 0;
	uint64_t val;
	int shift = 0;

	while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
		p++;
	if (*p == '-' || *p == '+' || *p == '\0')
		return -1;
	errno = 0;
	val = strtoull(p, &end, 10);
	if (end == p)
		return -1;
	if (errno == ERANGE)
		return -2;
	if (val == 0 && (*end == 'x' || *end == 'X')) {
		errno = 0;
		val = strtoull(p, &end, 16);
		if (errno == ERANGE)
			return -2;
		if (*end != '\0')
			return -1;
		*out = val;
		return 0;
	}
	if (*end == '.') {
		const char *f = end;

		frac = strtod(f, &end);
		if (end == f)
			end = (char *)f + 1;
		else if (memchr(f, 'e', (size_t)(end - f)) ||
		    memchr(f, 'E', (size_t)(end - f)))
			return -1;
	}
	if (*end != '\0') {
		if ((shift = suffix_shift((unsigned char)*end)) < 0 ||
		    end[1] != '\0')
			return -1;
	} else if (frac != 0) {
		return -1;
	}
	/* 64.64 fixed point times the suffix, the fraction rounded half up */
	v = (unsigned __int128)val << shift;
	v += (unsigned __int128)(frac * (double)(1ull << shift) + 0.5);
	if (v >> 64)
		return -2;
	*out = (uint64_t)v;
	return 0;
}

static void
parse(struct args *a, int argc, char **argv)
{
	int c, i;

	/* qemu takes the size off the end first: "-1G" is no option */
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		usage();
	if (argc == 2 && !strcmp(argv[1], "--long-options"))
		opt_print_options(longopts, shortopts, true);
	if (argc == 2 && !strcmp(argv[1], "--short-options"))
		opt_print_options(longopts, shortopts, false);
	if (argc < 3)
		die_usage("Not enough arguments");
	a->size = argv[--argc];
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'f':
			a->fmt = optarg;
			break;
		case 'q':
			a->quiet = true;
			break;
		case OPT_OBJECT:
			object_add_or_exit(optarg, 1);
			break;
		case OPT_IMAGE_OPTS:
			a->image_opts = true;
			break;
		case OPT_PREALLOC:
			for (i = 0; prealloc_names[i]; i++)
				if (strcmp(optarg, prealloc_names[i]) == 0)
					break;
			if (prealloc_names[i] == NULL)
				die("Invalid preallocation mode '%s'", optarg);
			a->prealloc = i;
			break;
		case OPT_SHRINK:
			a->shrink = true;
			break;
		case OPT_LONG:
		case OPT_SHORT:
			opt_print_options(longopts, shortopts, c == OPT_LONG);
		default:
			opt_usage_error(c, argv);
		}
	}
	if (optind != argc - 1)
		die_usage("Expecting image file name and size");
	a->filename = argv[optind];
}

/* The new size from "[+|-]N" and the current one (int64 arithmetic, as qemu). */
static int64_t
new_size(const char *arg, int64_t cur)
{
	uint64_t n;
	int rel = 0, r;

	if (*arg == '+' || *arg == '-')
		rel = *arg++ == '+' ? 1 : -1;
	if ((r = parse_size(arg, &n)) == -2)
		die("Value '%s' is out of range for parameter 'size'", arg);
	if (r < 0)
		die("Parameter 'size' expects a non-negative number below 2^64\n"
		    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
		    "tera-, peta-\nand exabytes, respectively.");
	if (rel == 0)
		return (int64_t)n;
	return (int64_t)((uint64_t)cur + (rel > 0 ? n : -n));
}

/*
 * Report a failure after the image is open: the error, then what closing
 * the image says (as qemu-img's blk_unref after error_report), exit 1.
 */
static _Noreturn PRINTF(2, 3) void
fail(struct img *img, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	warn_msg("%s", msg);
	img_close_report(img, warn_line, NULL);
	exit(1);
}

int
main(int argc, char *argv[])
{
	struct args a = { .prealloc = IMG_PREALLOC_OFF };
	struct img_snapshot *sn;
	struct img *img;
	int64_t size;
	size_t n;

	prog_init(argv[0]);
	parse(&a, argc, argv);
	/* the size is checked before the image is opened, as qemu does */
	(void)new_size(a.size, 0);
	if (a.image_opts && a.fmt != NULL)
		die("--image-opts and --format are mutually exclusive");
	img = a.image_opts ? img_open_image_opts(a.filename, IMG_RDWR) :
	    img_open(a.filename, a.fmt, IMG_RDWR);
	if (img == NULL)
		die("%s", err_msg());
	/* qemu reads the snapshot table when it opens the image */
	if (img_snapshot_list(img, &sn, &n) < 0)
		fail(img, "%s", err_msg());
	img_snapshots_free(sn, n);
	size = new_size(a.size, (int64_t)img->size);
	if (size <= 0)
		fail(img, "New image size must be positive");
	if ((uint64_t)size <= img->size && a.prealloc != IMG_PREALLOC_OFF)
		fail(img, "Preallocation can only be used for growing "
		    "images");
	if ((uint64_t)size < img->size && !a.shrink) {
		fprintf(stderr, "%s: Use the --shrink option to perform a shrink "
		    "operation.\n", prog_name());
		fail(img, "warning: Shrinking an image will delete all "
		    "data beyond the shrunken image's end. Before performing such "
		    "an operation, make sure there is no important data there.");
	}
	if (img_resize(img, (uint64_t)size, a.prealloc) < 0)
		fail(img, "%s", err_msg());
	if (!a.quiet)
		printf("Image resized.\n");
	flush_stdout();
	img_close_report(img, warn_line, NULL);
	return close_stdout();
}
