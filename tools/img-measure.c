/* img-measure: the size a new image would need, as qemu-img measure. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/err.h"
#include "../lib/json.h"
#include "../lib/opt.h"
#include "../lib/secret.h"
#include "../formats/img.h"

static const char usage_text[] =
    "usage: img-measure [--output=ofmt] [-O output_fmt] [-o options]\n"
    "           [--size N | [--image-opts] [-f fmt] [-l snapshot_param] [-U] filename]\n";

enum {
	OPT_OUTPUT = 256, OPT_SIZEARG, OPT_OBJECT, OPT_IMAGE_OPTS, OPT_LONG,
	OPT_SHORT,
};

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "output", required_argument, NULL, OPT_OUTPUT },
	{ "size", required_argument, NULL, OPT_SIZEARG },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "force-share", no_argument, NULL, 'U' },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":hf:o:O:l:U";

struct args {
	const char	*fmt;
	const char	*out_fmt;
	const char	*filename;
	const char	*snapshot;
	int		 output;
	int		 flags;
	bool		 image_opts;
	bool		 have_size;
	uint64_t	 size;
	struct opt_list	 opts;
};

static _Noreturn void
usage(void)
{
	printf("%s\nPrint the size a new image of output_fmt would need.\n\n"
	    "  -O FMT             format of the new image (default raw)\n"
	    "  -o OPTIONS         its creation options, as img-create -o\n"
	    "  --size N           measure an empty disk of N bytes (suffixes k M G T P E)\n"
	    "  -f FMT             format of filename (default: probed)\n"
	    "  -l SNAPSHOT        measure an internal snapshot of filename\n"
	    "  -U, --force-share  open filename shared with its other users\n"
	    "  --output=FMT       human (default) or json\n"
	    "  -h, --help         show this help\n"
	    "\nSee img-measure(1).\n", usage_text);
	exit(0);
}

static void
print_result(const struct img_measure *m, int output)
{
	struct jnode *j;

	if (output == OUT_HUMAN) {
		printf("required size: %llu\n", (unsigned long long)m->required);
		printf("fully allocated size: %llu\n",
		    (unsigned long long)m->fully_allocated);
		if (m->has_bitmaps)
			printf("bitmaps size: %llu\n",
			    (unsigned long long)m->bitmaps);
		return;
	}
	j = jn_new_obj();
	if (m->has_bitmaps)
		jn_uint(j, "bitmaps", m->bitmaps);
	jn_uint(j, "required", m->required);
	jn_uint(j, "fully-allocated", m->fully_allocated);
	json_print(stdout, j, true);
	putchar('\n');
	jn_free(j);
}

static void
check_args(struct args *a, int argc, char **argv)
{
	if (argc - optind > 1)
		die("At most one filename argument is allowed.");
	if (argc - optind == 1)
		a->filename = argv[optind];
	if (a->filename == NULL && (a->image_opts || a->fmt || a->snapshot))
		die("--image-opts, -f, and -l require a filename argument.");
	if (a->filename != NULL && a->have_size)
		die("--size N cannot be used together with a filename.");
	if (a->filename == NULL && !a->have_size)
		die("Either --size N or one filename must be specified.");
}

static void
parse(struct args *a, int argc, char **argv)
{
	int c;

	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'f':
			a->fmt = optarg;
			break;
		case 'O':
			a->out_fmt = optarg;
			break;
		case 'o':
			if (opt_list_parse(&a->opts, optarg) < 0)
				die("%s", err_msg());
			break;
		case 'l':
			a->snapshot = optarg;
			break;
		case 'U':
			a->flags |= IMG_SHARE;
			break;
		case OPT_OUTPUT:
			if ((a->output = opt_output(optarg)) < 0)
				die("--output must be used with human or json as argument.");
			break;
		case OPT_SIZEARG:
			if (opt_cvtnum("image size", optarg, 0, INT64_MAX, &a->size) < 0)
				die("%s", err_msg());
			a->have_size = true;
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
	check_args(a, argc, argv);
}

int
main(int argc, char *argv[])
{
	struct args a = { .out_fmt = "raw", .output = OUT_HUMAN };
	struct img_measure m;
	struct img *in = NULL;

	prog_init(argv[0]);
	parse(&a, argc, argv);
	if (a.image_opts)
		die("--image-opts is not supported yet");
	if (a.filename != NULL &&
	    (in = img_open(a.filename, a.fmt, a.flags | IMG_NO_PROBE_WARN)) == NULL)
		die("%s", err_msg());
	if (a.snapshot != NULL)
		die("Failed to load snapshot: internal snapshots are not supported yet");
	if (!img_format_known(a.out_fmt))
		die("Unknown file format '%s'", a.out_fmt);
	if (img_create_opts(a.out_fmt) == NULL)
		die("Format driver '%s' does not support image creation",
		    a.out_fmt);
	if (img_opts_check(a.out_fmt, &a.opts) < 0) {
		warn_msg("%s", err_msg());
		die("Invalid options for file format '%s'", a.out_fmt);
	}
	if (img_measure(a.out_fmt, &a.opts, in, a.size, &m) < 0)
		die("%s", err_msg());
	print_result(&m, a.output);
	img_close(in);
	opt_list_free(&a.opts);
	return close_stdout();
}
