/* img-amend: change the format options of an existing image, as qemu-img amend. */
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/img.h"
#include "../lib/err.h"
#include "../lib/human.h"
#include "../lib/int.h"
#include "../lib/opt.h"
#include "../lib/progress.h"
#include "../lib/secret.h"

static const char usage_text[] =
    "usage: img-amend [--object objectdef] [--image-opts] [-p] [-q] "
    "[-f fmt]\n"
    "                 [-t cache] [--force] -o options filename\n";

enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_FORCE, OPT_LONG, OPT_SHORT };

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "force", no_argument, NULL, OPT_FORCE },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":f:ho:pqt:";

struct args {
	char		*options;	/* the -o lists joined by commas */
	const char	*fmt;
	const char	*cache;
	const char	*filename;
	bool		 progress;
	bool		 quiet;
	bool		 force;
	bool		 image_opts;
};

static _Noreturn void
usage(void)
{
	printf("%s\nChange the format options of an existing image.\n\n"
	    "  -o OPTIONS          the options to change (-o help lists them)\n"
	    "  -f FMT              the image's format (default: probe)\n"
	    "  -t CACHE            cache mode: none, writeback, unsafe, "
	    "directsync, writethrough\n"
	    "  -p                  show progress\n"
	    "  -q                  quiet (no progress)\n"
	    "      --force         accepted for qemu-img compatibility\n"
	    "      --image-opts    FILENAME is an option list "
	    "(driver=...,file.filename=...)\n"
	    "      --object OBJDEF accepted for qemu-img compatibility\n"
	    "  -h, --help          show this help\n"
	    "\nSee img-amend(1).\n", usage_text);
	exit(close_stdout());
}

/* qemu-img's is_valid_option_list: not empty, no lone trailing comma. */
static bool
valid_list(const char *s)
{
	size_t len = strlen(s), i;

	if (s[0] == '\0' || s[0] == ',')
		return false;
	for (i = len; i > 0 && s[i - 1] == ','; i--)
		;
	return (len - i) % 2 == 0;
}

static void
add_options(struct args *a, const char *s)
{
	char *n;

	if (!valid_list(s)) {
		free(a->options);
		die("Invalid option list: %s", s);
	}
	n = a->options ? xasprintf("%s,%s", a->options, s) : xstrdup(s);
	free(a->options);
	a->options = n;
}

static void
parse(struct args *a, int argc, char **argv)
{
	int c;

	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'o':
			add_options(a, optarg);
			break;
		case 'f':
			a->fmt = optarg;
			break;
		case 't':
			a->cache = optarg;
			break;
		case 'p':
			a->progress = true;
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
		case OPT_FORCE:
			a->force = true;
			break;
		case OPT_LONG:
		case OPT_SHORT:
			opt_print_options(longopts, shortopts, c == OPT_LONG);
		default:
			opt_usage_error(c, argv);
		}
	}
	if (a->options == NULL)
		die_usage("Must specify options (-o)");
	if (optind == argc - 1)
		a->filename = argv[optind];
}

/* print_amend_option_help */
static int
print_help(const char *fmt)
{
	const struct opt_desc *d, *p[64];
	size_t n = 0;

	if (!img_format_known(fmt)) {
		warn_msg("Unknown file format '%s'", fmt);
		return 1;
	}
	if ((d = img_amend_opts(fmt)) == NULL) {
		warn_msg("Format driver '%s' does not support option amendment",
		    fmt);
		return 1;
	}
	for (; d->name != NULL && n < ARRAY_SIZE(p); d++)
		p[n++] = d;
	printf("Amend options for '%s':\n", fmt);
	human_opt_help(stdout, p, n);
	return close_stdout();
}

static bool
has_help(const char *options)
{
	struct opt_list l = { 0, NULL };
	bool r;

	if (opt_list_parse(&l, options) < 0)
		return false;
	r = opt_list_has_help(&l);
	opt_list_free(&l);
	return r;
}

static int
amend(struct args *a, struct img *img)
{
	struct opt_list l = { 0, NULL };
	int r;

	if (!img_can_amend(img)) {
		warn_msg("Format driver '%s' does not support option amendment",
		    img_format(img));
		return 1;
	}
	if (opt_list_parse(&l, a->options) < 0) {
		warn_msg("%s", err_msg());
		return 1;
	}
	progress_init(a->progress && !a->quiet, 1.0f);
	progress_print(0.0f, 0);
	/* no flush of its own: qemu-img's comes at close */
	r = img_amend(img, &l, a->force);
	if (r == 0)
		progress_print(100.0f, 0);
	progress_end();
	if (r < 0)
		warn_msg("%s", err_msg());
	opt_list_free(&l);
	return r < 0;
}

int
main(int argc, char *argv[])
{
	struct args a = { .cache = "writeback" };
	struct img_snapshot *sn = NULL;
	struct img *img;
	size_t n = 0;
	/* the cache mode is checked only: metadata writes are not O_DIRECT-sized */
	int r, flags = IMG_RDWR;

	prog_init(argv[0]);
	parse(&a, argc, argv);
	if (a.fmt != NULL && has_help(a.options)) {
		r = print_help(a.fmt);
		free(a.options);
		return r;
	}
	if (a.filename == NULL) {
		free(a.options);
		die("Expecting one image file name");
	}
	if (opt_cache_mode(a.cache) < 0) {
		free(a.options);
		die("Invalid cache option: %s", a.cache);
	}
	if (a.image_opts && a.fmt != NULL) {
		free(a.options);
		die("--image-opts and --format are mutually exclusive");
	}
	img = a.image_opts ? img_open_image_opts(a.filename, flags) :
	    img_open(a.filename, a.fmt, flags);
	/* qemu reads the snapshot table when it opens the image */
	if (img != NULL && img_snapshot_list(img, &sn, &n) < 0) {
		img_close(img);
		img = NULL;
	}
	if (img == NULL) {
		free(a.options);
		die("%s", err_msg());
	}
	img_snapshots_free(sn, n);
	r = has_help(a.options) ? print_help(img_format(img)) : amend(&a, img);
	img_close_report(img, warn_line, NULL);
	free(a.options);
	return r;
}
