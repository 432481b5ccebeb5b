/* img-check: check (and repair) an image's metadata, as qemu-img check. */
#include <errno.h>
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

/* qemu-img check's exit statuses */
enum {
	CHECK_OK	= 0,
	CHECK_FAILED	= 1,	/* the check did not complete, or internal errors */
	CHECK_CORRUPT	= 2,
	CHECK_LEAKS	= 3,	/* leaked clusters only */
	CHECK_NOTSUP	= 63,	/* the format has no check */
};

static const char usage_text[] =
    "usage: img-check [--object objectdef] [--image-opts] [-q] [-f fmt]\n"
    "           [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U]\n"
    "           filename\n";

enum { OPT_OUTPUT = 256, OPT_OBJECT, OPT_IMAGE_OPTS, OPT_LONG, OPT_SHORT };

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "format", required_argument, NULL, 'f' },
	{ "repair", required_argument, NULL, 'r' },
	{ "output", required_argument, NULL, OPT_OUTPUT },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "force-share", no_argument, NULL, 'U' },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":hf:r:T:qU";

struct args {
	const char	*fmt;
	const char	*output;
	const char	*cache;
	const char	*filename;
	int		 fix;
	int		 flags;
	bool		 quiet;
	bool		 image_opts;
};

static _Noreturn void
usage(void)
{
	printf("%s\nCheck a disk image's metadata; with -r, repair it.\n\n"
	    "  -f, --format FMT     format of filename (default: probed)\n"
	    "  -r, --repair WHAT    repair leaks, or all errors\n"
	    "  --output=FMT         human (default) or json\n"
	    "  -q                   quiet: no report on stdout\n"
	    "  -T CACHE             cache mode (none, writeback, ...)\n"
	    "  -U, --force-share    open filename shared with its other users\n"
	    "  --image-opts         filename is an option list (driver=...)\n"
	    "  --object OBJDEF      accepted for qemu-img compatibility\n"
	    "  -h, --help           show this help\n"
	    "\nSee img-check(1).\n", usage_text);
	exit(0);
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
		case 'r':
			if (strcmp(optarg, "leaks") == 0)
				a->fix = IMG_FIX_LEAKS;
			else if (strcmp(optarg, "all") == 0)
				a->fix = IMG_FIX_LEAKS | IMG_FIX_ERRORS;
			else
				die_usage("Unknown option value for -r (expecting "
				    "'leaks' or 'all'): %s", optarg);
			break;
		case OPT_OUTPUT:
			a->output = optarg;
			break;
		case 'T':
			a->cache = optarg;
			break;
		case 'q':
			a->quiet = true;
			break;
		case 'U':
			a->flags |= IMG_SHARE;
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
	if (optind != argc - 1)
		die_usage("Expecting one image file name");
	a->filename = argv[optind];
}

static void
to_stderr(const char *line, void *arg)
{
	(void)arg;
	/* no fflush(stdout): qemu's notes pass its buffered output (2>&1) */
	fprintf(stderr, "%s\n", line);
}

static void
print_human(const struct img_check *r)
{
	if (!(r->corruptions || r->leaks || r->check_errors)) {
		printf("No errors were found on the image.\n");
	} else {
		if (r->corruptions)
			printf("\n%lld errors were found on the image.\n"
			    "Data may be corrupted, or further writes to the "
			    "image may corrupt it.\n", (long long)r->corruptions);
		if (r->leaks)
			printf("\n%lld leaked clusters were found on the image.\n"
			    "This means waste of disk space, but no harm to "
			    "data.\n", (long long)r->leaks);
		if (r->check_errors)
			printf("\n%lld internal errors have occurred during the "
			    "check.\n", (long long)r->check_errors);
	}
	if (r->total_clusters != 0 && r->allocated_clusters != 0)
		printf("%llu/%llu = %0.2f%% allocated, %0.2f%% fragmented, "
		    "%0.2f%% compressed clusters\n",
		    (unsigned long long)r->allocated_clusters,
		    (unsigned long long)r->total_clusters,
		    r->allocated_clusters * 100.0 / r->total_clusters,
		    r->fragmented_clusters * 100.0 / r->allocated_clusters,
		    r->compressed_clusters * 100.0 / r->allocated_clusters);
	if (r->image_end_offset)
		printf("Image end offset: %llu\n",
		    (unsigned long long)r->image_end_offset);
}

/* QAPI's ImageCheck: optional members only when non-zero. */
static void
print_json(const struct img_check *r, const char *filename, const char *fmt)
{
	struct jnode *j = jn_new_obj();

	jn_str(j, "filename", filename);
	jn_str(j, "format", fmt);
	jn_int(j, "check-errors", r->check_errors);
	if (r->image_end_offset)
		jn_uint(j, "image-end-offset", r->image_end_offset);
	if (r->corruptions)
		jn_int(j, "corruptions", r->corruptions);
	if (r->leaks)
		jn_int(j, "leaks", r->leaks);
	if (r->corruptions_fixed)
		jn_int(j, "corruptions-fixed", r->corruptions_fixed);
	if (r->leaks_fixed)
		jn_int(j, "leaks-fixed", r->leaks_fixed);
	if (r->total_clusters)
		jn_uint(j, "total-clusters", r->total_clusters);
	if (r->allocated_clusters)
		jn_uint(j, "allocated-clusters", r->allocated_clusters);
	if (r->fragmented_clusters)
		jn_uint(j, "fragmented-clusters", r->fragmented_clusters);
	if (r->compressed_clusters)
		jn_uint(j, "compressed-clusters", r->compressed_clusters);
	json_print(stdout, j, true);
	putchar('\n');
	jn_free(j);
}

static struct img *
open_flags(const struct args *a, int flags)
{
	if (a->image_opts)
		return img_open_image_opts(a->filename, flags);
	return img_open(a->filename, a->fmt, flags);
}

/*
 * A repair opens the image read-write, as qemu-img does (and warns about a
 * probed raw image).  A driver that refuses to write a dirty or corrupt
 * image still lets check repair it: then open read-only and let img_check
 * reopen the file for writing.
 */
static struct img *
open_image(const struct args *a)
{
	struct img *img;

	if (a->fix) {
		if ((img = open_flags(a, a->flags | IMG_RDWR)) != NULL)
			return img;
		if (err_errno() != 0)
			die("%s", err_msg());
	}
	if ((img = open_flags(a, a->flags | IMG_NO_PROBE_WARN)) == NULL)
		die("%s", err_msg());
	return img;
}

/* Check, and after a repair check again (qemu-img prints the second). */
static int
run_check(struct img *img, const struct args *a, struct img_check *r)
{
	int64_t cfixed, lfixed;

	r->note = to_stderr;
	if (img_check(img, a->fix, r) < 0)
		return -1;
	if (!r->corruptions_fixed && !r->leaks_fixed)
		return 0;
	cfixed = r->corruptions_fixed;
	lfixed = r->leaks_fixed;
	if (strcmp(a->output, "human") == 0 && !a->quiet)
		printf("The following inconsistencies were found and repaired:\n\n"
		    "    %lld leaked clusters\n    %lld corruptions\n\n"
		    "Double checking the fixed image now...\n",
		    (long long)lfixed, (long long)cfixed);
	if (img_check(img, 0, r) < 0)
		return -1;
	r->corruptions_fixed = cfixed;
	r->leaks_fixed = lfixed;
	return 0;
}

int
main(int argc, char *argv[])
{
	struct args a = { .output = NULL, .cache = "writeback" };
	struct img_check r = { 0 };
	struct img *img;
	int ret;

	prog_init(argv[0]);
	parse(&a, argc, argv);
	a.flags |= IMG_NO_REPAIR;	/* qemu-img check opens BDRV_O_CHECK */
	if (a.output == NULL)
		a.output = "human";
	if (opt_output(a.output) < 0)
		die("--output must be used with human or json as argument.");
	if (opt_cache_mode(a.cache) < 0)
		die("Invalid source cache option: %s", a.cache);
	if (a.image_opts && a.fmt != NULL)
		die("--image-opts and --format are mutually exclusive");
	img = open_image(&a);
	if (run_check(img, &a, &r) < 0) {
		if (strcmp(err_msg(), IMG_CHECK_NOTSUP) == 0) {
			warn_msg("%s", err_msg());
			img_close_report(img, warn_line, NULL);
			return CHECK_NOTSUP;
		}
		warn_msg("Check failed: %s", strerror(err_errno() ? err_errno() : EIO));
		img_close_report(img, warn_line, NULL);
		close_stdout();
		return CHECK_FAILED;
	}
	if (!a.quiet) {
		if (strcmp(a.output, "json") == 0)
			print_json(&r, a.filename, img_format(img));
		else
			print_human(&r);
	}
	ret = r.corruptions ? CHECK_CORRUPT : r.leaks ? CHECK_LEAKS : CHECK_OK;
	if (r.check_errors) {
		fflush(stdout);
		warn_msg("Check failed");
		ret = CHECK_FAILED;
	}
	/* what closing a repaired image says comes last, as qemu-img's */
	img_close_report(img, warn_line, NULL);
	if (close_stdout() != 0)
		return CHECK_FAILED;
	return ret;
}
