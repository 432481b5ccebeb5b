/*
 * img-dd: copy an image, or a block range of it, into a new image, as
 * qemu-img 7.2's dd (qemu-img.c, img_dd): bs=, count=, skip=, if=, of=.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "../lib/opt.h"
#include "../lib/secret.h"
#include "../formats/img.h"

#define DD_SECTOR	512	/* bdrv_create rounds every new image up to this */

static const char usage_text[] =
    "usage: img-dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size]\n"
    "              [count=blocks] [skip=blocks] if=input of=output\n";

struct dd {
	const char	*fmt;		/* -f, NULL: probe */
	const char	*out_fmt;	/* -O */
	bool		 image_opts;
	int		 flags;		/* IMG_SHARE */
	int64_t		 bs;		/* bs=, bytes */
	bool		 has_count, has_skip;
	int64_t		 count;		/* count=, blocks */
	int64_t		 skip;		/* skip=, blocks */
	const char	*in;		/* if= */
	const char	*out;		/* of= */
};

enum { OPT_IMAGE_OPTS = 256, OPT_OBJECT, OPT_LONG, OPT_SHORT };

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "force-share", no_argument, NULL, 'U' },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":hf:O:U";

static _Noreturn void
usage(void)
{
	printf("%s\n"
	    "Copy INPUT into a new image OUTPUT, BLOCK_SIZE bytes at a time.\n\n"
	    "  -f FMT            format of the input (default: probe)\n"
	    "  -O OUTPUT_FMT     format of the output (default: raw)\n"
	    "  -U, --force-share open the input shared with other users\n"
	    "  --image-opts      INPUT is a list of options (driver=...,file.filename=...)\n"
	    "  --object DEF      accepted for qemu-img compatibility, ignored\n"
	    "  bs=BLOCK_SIZE     block size in bytes (default 512; k, M, G... suffixes)\n"
	    "  count=BLOCKS      stop after BLOCKS input blocks\n"
	    "  skip=BLOCKS       start BLOCKS input blocks into INPUT\n"
	    "  if=INPUT          the image to read\n"
	    "  of=OUTPUT         the image to create\n"
	    "\nSee img-dd(1).\n", usage_text);
	exit(close_stdout());
}

/* qemu-img's cvtnum_full(): the value, or exit after qemu's message. */
static int64_t
cvtnum(const char *name, const char *value, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (opt_cvtnum(name, value, min, max, &v) < 0)
		die("%s", err_msg());
	return (int64_t)v;
}

/* One operand, "name=value" (qemu-img's DdOpts table); exits on error. */
static void
operand(struct dd *d, const char *arg)
{
	static const char *const names[] = { "bs", "count", "skip", "if", "of" };
	const char *eq = strchr(arg, '='), *v;
	size_t i, n;

	/* qemu names the whole operand without '=', else the part before it */
	if (eq == NULL)
		die("unrecognized operand %s", arg);
	n = (size_t)(eq - arg);
	v = eq + 1;
	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (strlen(names[i]) == n && strncmp(arg, names[i], n) == 0)
			break;
	switch (i) {
	case 0:
		d->bs = cvtnum("bs", v, 1, INT32_MAX);
		break;
	case 1:
		d->count = cvtnum("count", v, 0, INT64_MAX);
		d->has_count = true;
		break;
	case 2:
		d->skip = cvtnum("skip", v, 0, INT64_MAX);
		d->has_skip = true;
		break;
	case 3:
		d->in = v;
		break;
	case 4:
		d->out = v;
		break;
	default:
		die("unrecognized operand %.*s", (int)n, arg);
	}
}

static bool
dd_range(const struct dd *d, uint64_t insize, uint64_t *end, uint64_t *start)
{
	uint64_t size = insize;

	/* count is counted from the start of the input, skipped blocks included */
	if (d->has_count && d->count <= INT64_MAX / d->bs &&
	    (uint64_t)(d->count * d->bs) < size)
		size = (uint64_t)(d->count * d->bs);
	*end = size;
	if (d->has_skip && (d->skip > INT64_MAX / d->bs ||
	    size < (uint64_t)(d->skip * d->bs))) {
		*start = size;
		return false;	/* past the end: an empty output, like dd(1) */
	}
	*start = d->has_skip ? (uint64_t)(d->skip * d->bs) : 0;
	return true;
}

static const char *
io_error(void)
{
	return err_errno() ? strerror(err_errno()) : err_msg();
}

/*
 * Copy [start, end) of in to out at 0.  Blocks of bs bytes read and write
 * the same bytes as larger sequential runs, so this moves IO_BUFSIZE at a
 * time; every byte is written, zeroes included, so the output is allocated
 * as qemu-img dd's is.  Where requests are watched (blkdebug's rules,
 * blkverify's messages name them), a block is one read, as in qemu.
 */
static int
copy(struct img *in, struct img *out, uint64_t start, uint64_t end,
    uint64_t bs)
{
	uint64_t step = io_fault != NULL || io_copies != NULL ? bs : IO_BUFSIZE;
	size_t n, bufsize = (size_t)MIN(MIN((uint64_t)IO_BUFSIZE, step),
	    end - start);
	uint8_t *buf = io_alloc(bufsize ? bufsize : IO_ALIGN);
	uint64_t pos;

	for (pos = start; pos < end; pos += n) {
		n = (size_t)MIN((uint64_t)bufsize, end - pos);
		if (img_read(in, pos, n, buf) < 0) {
			warn_msg("error while reading from input image file: %s",
			    io_error());
			goto fail;
		}
		if (img_write(out, pos - start, n, buf) < 0) {
			warn_msg("error while writing to output image file: %s",
			    io_error());
			goto fail;
		}
	}
	free(buf);
	return 0;
fail:
	free(buf);
	return -1;
}

static int
dd(const struct dd *d)
{
	struct opt_list none = { 0, NULL };
	struct img *in, *out;
	uint64_t start, end, outsize;
	bool existed, skip_ok;
	struct stat st;
	const char *msg;
	char why[1024];
	size_t plen;
	int r;

	if (d->image_opts && d->fmt != NULL)
		die("--image-opts and --format are mutually exclusive");
	in = d->image_opts ? img_open_image_opts_share(d->in, d->flags) :
	    img_open(d->in, d->fmt, d->flags);
	if (in == NULL)
		die("%s", err_msg());
	if (!img_format_known(d->out_fmt))
		die("Unknown file format");
	/* qemu's bdrv_find_protocol: a json: name names no protocol */
	if (strncmp(d->out, "json:", 5) == 0)
		die("Unknown protocol 'json'");
	if (img_create_opts(d->out_fmt) == NULL)
		die("Format driver '%s' does not support image creation", d->out_fmt);
	if (img_node_protocol(d->out) != NULL)
		die("Protocol driver '%s' does not support image creation",
		    img_node_protocol(d->out));
	skip_ok = dd_range(d, in->size, &end, &start);
	outsize = ROUND_UP(end - start, DD_SECTOR);
	existed = stat(d->out, &st) == 0;
	if (img_create(d->out, d->out_fmt, outsize, &none) < 0) {
		/* img_create's message starts with the file name, as qemu's does */
		msg = err_msg();
		plen = strlen(d->out);
		if (strncmp(msg, d->out, plen) == 0 && strncmp(msg + plen, ": ", 2) == 0)
			msg += plen + 2;
		snprintf(why, sizeof(why), "%s", msg);
		img_close(in);	/* closed, not left for the leak checker */
		die("%s: error while creating output image: %s", d->out, why);
	}
	if ((out = img_open(d->out, d->out_fmt, IMG_RDWR)) == NULL)
		die("%s", err_msg());
	if (!skip_ok)
		warn_msg("%s: cannot skip to specified offset", d->in);
	/* no flush of its own: qemu-img's comes when the images close */
	r = copy(in, out, start, end, (uint64_t)d->bs);
	img_close(in);
	img_close_report(out, warn_line, NULL);
	if (r < 0 && !existed)
		unlink(d->out);	/* nothing half-written is left behind */
	return r;
}

int
main(int argc, char *argv[])
{
	struct dd d = { .out_fmt = "raw", .bs = 512 };
	int c, i;

	prog_init(argv[0]);
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'f':
			d.fmt = optarg;
			break;
		case 'O':
			d.out_fmt = optarg;
			break;
		case 'U':
			d.flags |= IMG_SHARE;
			break;
		case OPT_IMAGE_OPTS:
			d.image_opts = true;
			break;
		case OPT_OBJECT:
			object_add_or_exit(optarg, 1);
			break;
		case OPT_LONG:
		case OPT_SHORT:
			opt_print_options(longopts, shortopts, c == OPT_LONG);
		default:
			opt_usage_error(c, argv);
		}
	}
	for (i = optind; i < argc; i++)
		operand(&d, argv[i]);
	if (d.in == NULL || d.out == NULL)
		die("Must specify both input and output files");
	return dd(&d) < 0 ? 1 : 0;
}
