/* img-bitmap: add, remove, clear, enable, disable and merge persistent dirty bitmaps, as qemu-img bitmap. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/img.h"
#include "../lib/err.h"
#include "../lib/opt.h"
#include "../lib/secret.h"

static const char usage_text[] =
    "usage: img-bitmap (--merge SOURCE | --add | --remove | --clear |\n"
    "                  --enable | --disable)... [-b source_file "
    "[-F source_fmt]]\n"
    "                  [-g granularity] [--object objectdef]\n"
    "                  [--image-opts | -f fmt] filename bitmap\n";

enum {
	OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_ADD, OPT_REMOVE, OPT_CLEAR,
	OPT_ENABLE, OPT_DISABLE, OPT_MERGE, OPT_LONG, OPT_SHORT
};

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "add", no_argument, NULL, OPT_ADD },
	{ "remove", no_argument, NULL, OPT_REMOVE },
	{ "clear", no_argument, NULL, OPT_CLEAR },
	{ "enable", no_argument, NULL, OPT_ENABLE },
	{ "disable", no_argument, NULL, OPT_DISABLE },
	{ "merge", required_argument, NULL, OPT_MERGE },
	{ "granularity", required_argument, NULL, 'g' },
	{ "source-file", required_argument, NULL, 'b' },
	{ "source-format", required_argument, NULL, 'F' },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":b:f:F:g:h";

/* qemu-img's names of the actions, for "Operation add on bitmap ..." */
static const char *const act_names[] = {
	"add", "remove", "clear", "enable", "disable", "merge"
};

struct args {
	struct img_bitmap_act	*acts;
	size_t			 nacts;
	bool			 add, merge, image_opts;
	uint64_t		 granularity;
	const char		*fmt, *src_file, *src_fmt;
	const char		*filename, *bitmap;
};

static _Noreturn void
usage(void)
{
	printf("%s\nChange the persistent dirty bitmaps of a qcow2 image; the "
	    "actions apply in order.\n\n"
	    "      --add           create BITMAP (enabled)\n"
	    "      --remove        delete BITMAP\n"
	    "      --clear         reset every bit of BITMAP\n"
	    "      --enable        let writes be recorded in BITMAP\n"
	    "      --disable       stop recording writes in BITMAP\n"
	    "      --merge SOURCE  add the bits of bitmap SOURCE to BITMAP\n"
	    "  -b, --source-file FILE  SOURCE is in image FILE\n"
	    "  -F, --source-format FMT FILE's format\n"
	    "  -g, --granularity SIZE  bytes per bit of a new bitmap\n"
	    "  -f FMT              the image's format\n"
	    "      --image-opts    FILENAME is an option list "
	    "(driver=...,file.filename=...)\n"
	    "      --object OBJDEF accepted for qemu-img compatibility\n"
	    "  -h, --help          show this help\n"
	    "\nSee img-bitmap(1).\n", usage_text);
	exit(close_stdout());
}

static void
push(struct args *a, int act, const char *src)
{
	a->acts = xrealloc(a->acts, (a->nacts + 1) * sizeof(*a->acts));
	a->acts[a->nacts].act = act;
	a->acts[a->nacts++].src = src;
	a->add |= act == IMG_BM_ADD;
	a->merge |= act == IMG_BM_MERGE;
}

static void
option(struct args *a, int c, char **argv)
{
	switch (c) {
	case 'b':
		a->src_file = optarg;
		break;
	case 'f':
		a->fmt = optarg;
		break;
	case 'F':
		a->src_fmt = optarg;
		break;
	case 'g':
		if (opt_cvtnum("granularity", optarg, 0, INT64_MAX,
		    &a->granularity) < 0)
			die("%s", err_msg());
		break;
	case OPT_ADD: case OPT_REMOVE: case OPT_CLEAR:
	case OPT_ENABLE: case OPT_DISABLE:
		push(a, IMG_BM_ADD + (c - OPT_ADD), NULL);
		break;
	case OPT_MERGE:
		push(a, IMG_BM_MERGE, optarg);
		break;
	case OPT_OBJECT:
		object_add_or_exit(optarg, 1);
		break;
	case OPT_IMAGE_OPTS:
		a->image_opts = true;
		break;
	default:
		opt_usage_error(c, argv);
	}
}

/* qemu-img's checks, in its order */
static void
parse(struct args *a, int argc, char **argv)
{
	int c;

	while ((c = getopt_long(argc, argv, shortopts, longopts,
	    NULL)) != -1) {
		if (c == 'h')
			usage();
		if (c == OPT_LONG || c == OPT_SHORT)
			opt_print_options(longopts, shortopts, c == OPT_LONG);
		option(a, c, argv);
	}
	if (a->nacts == 0)
		die("Need at least one of --add, --remove, --clear, --enable, "
		    "--disable, or --merge");
	if (a->granularity && !a->add)
		die("granularity only supported with --add");
	if (a->src_fmt && !a->src_file)
		die("-F only supported with -b");
	if (a->src_file && !a->merge)
		die("Merge bitmap source file only supported with --merge");
	if (optind != argc - 2)
		die("Expecting filename and bitmap name");
	if (a->image_opts && a->fmt != NULL)
		die("--image-opts and --format are mutually exclusive");
	a->filename = argv[optind];
	a->bitmap = argv[optind + 1];
}

int
main(int argc, char *argv[])
{
	struct args a = { .acts = NULL };
	struct img *img, *src = NULL;
	size_t failed;
	int r;

	prog_init(argv[0]);
	parse(&a, argc, argv);
	img = a.image_opts ? img_open_image_opts(a.filename, IMG_RDWR) :
	    img_open(a.filename, a.fmt, IMG_RDWR);
	if (img == NULL)
		die("%s", err_msg());
	if (a.src_file != NULL &&
	    (src = img_open(a.src_file, a.src_fmt, 0)) == NULL) {
		img_close(img);
		die("%s", err_msg());
	}
	r = img_bitmap(img, a.bitmap, a.acts, a.nacts, a.granularity, src,
	    &failed);
	if (r < 0 && failed < a.nacts)
		warn_msg("Operation %s on bitmap %s failed: %s",
		    act_names[a.acts[failed].act], a.bitmap, err_msg());
	else if (r < 0)
		warn_msg("%s", err_msg());
	img_close(src);
	img_close_report(img, warn_line, NULL);
	free(a.acts);
	if (r < 0)
		return 1;
	return close_stdout();
}
