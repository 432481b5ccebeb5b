/*
 * img-cat: an image's virtual disk as a raw byte stream on stdout: all of
 * it, a range, or the bytes of the extents a map says carry data (img-cat(1)).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "../lib/secret.h"
#include "../formats/img.h"

static const char usage_text[] =
    "usage: img-cat [--object objectdef] [--image-opts] [-f fmt] [-U]\n"
    "               [--offset=offset] [--length=len] [--map=mapfile]\n"
    "               filename\n";

enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_OFFSET, OPT_LENGTH, OPT_MAP,
	OPT_LONG, OPT_SHORT, OPT_SNAPSHOT
};

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "format", required_argument, NULL, 'f' },
	{ "force-share", no_argument, NULL, 'U' },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "snapshot", required_argument, NULL, OPT_SNAPSHOT },
	{ "offset", required_argument, NULL, OPT_OFFSET },
	{ "length", required_argument, NULL, OPT_LENGTH },
	{ "map", required_argument, NULL, OPT_MAP },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

struct cat_args {
	const char	*fmt;
	const char	*map;
	int		 flags;
	bool		 image_opts;
	uint64_t	 offset;
	uint64_t	 length;
	bool		 has_range;	/* --offset or --length given */
	bool		 has_length;
	const char	*snapshot;	/* --snapshot: an internal snapshot's disk */
};

/* Where the bytes go: stdout, which may be a regular file we can leave holes in. */
struct out {
	uint8_t		*buf;		/* IO_BUFSIZE, aligned */
	bool		 seekable;	/* a regular file, writing at its end */
	bool		 pipe;		/* a pipe: file bytes can be spliced in */
	uint64_t	 pos;		/* offset in that file */
	uint64_t	 end;		/* highest offset written or skipped */
};

static uint8_t zero_buf[IO_BUFSIZE];	/* bss: costs nothing until written out */

static _Noreturn void
usage(void)
{
	printf("%s\nWrite the virtual disk of an image to stdout as raw bytes.\n\n"
	    "  -f, --format=fmt      image format (default: probe)\n"
	    "      --image-opts      filename is an option string "
	    "(driver=...,file.filename=...)\n"
	    "      --object=objdef   accepted for qemu-img compatibility\n"
	    "  -U, --force-share     open the image in shared mode\n"
	    "      --snapshot=param  an internal snapshot's disk (as convert -l)\n"
	    "      --offset=offset   start at this byte (default 0)\n"
	    "      --length=len      write len bytes (default: to the end)\n"
	    "      --map=mapfile     write only the bytes of the map's data "
	    "extents ('-': stdin)\n"
	    "  -h, --help            show this help\n"
	    "\nSee img-cat(1).\n", usage_text);
	exit(0);
}

static void
list_options(int what)
{
	const struct option *o;

	if (what == OPT_LONG)
		for (o = longopts; o->name; o++)
			printf("--%s\n", o->name);
	else
		puts("-f\n-U\n-h");
	exit(close_stdout());
}

static uint64_t
size_arg(const char *opt, const char *s)
{
	uint64_t v;

	if (opt_size(s, &v) < 0)
		die_usage("invalid %s '%s'", opt, s);
	return v;
}

static void
out_init(struct out *o)
{
	struct stat st;
	off_t pos;
	int fl;

	o->buf = io_alloc(IO_BUFSIZE);
	io_pipe_grow(STDOUT_FILENO);
	/*
	 * Into a regular file that ends where we start (`> file`), zeroes can
	 * be holes: seek over them, set the length at the end.
	 */
	if (fstat(STDOUT_FILENO, &st) == 0 && S_ISFIFO(st.st_mode))
		o->pipe = true;
	if (fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode) &&
	    (fl = fcntl(STDOUT_FILENO, F_GETFL)) >= 0 && !(fl & O_APPEND) &&
	    (pos = lseek(STDOUT_FILENO, 0, SEEK_CUR)) >= 0 &&
	    pos == st.st_size) {
		o->seekable = true;
		o->pos = o->end = (uint64_t)pos;
	}
}

static void
out_write(struct out *o, const void *buf, size_t len)
{
	if (io_write(STDOUT_FILENO, buf, len) < 0)
		die_errno("stdout");
	o->pos += len;
	o->end = MAX(o->end, o->pos);
}

static void
out_zeroes(struct out *o, uint64_t len)
{
	size_t n;

	if (o->seekable && o->pos + len <= INT64_MAX) {
		if (lseek(STDOUT_FILENO, (off_t)len, SEEK_CUR) < 0)
			die_errno("stdout");
		o->pos += len;
		o->end = MAX(o->end, o->pos);
		return;
	}
	for (; len > 0; len -= n) {
		n = (size_t)MIN(len, sizeof(zero_buf));
		out_write(o, zero_buf, n);
	}
}

static void
out_close(struct out *o)
{
	/* a file that ends in a hole gets its length now */
	if (o->seekable && ftruncate(STDOUT_FILENO, (off_t)o->end) < 0)
		die_errno("stdout");
	if (close(STDOUT_FILENO) < 0)
		die_errno("stdout");
	free(o->buf);
}

/*
 * Bytes stored verbatim in an image file go into a pipe by splice: page
 * cache pages move, no copy through our buffer.  false: use read/write.
 */
static bool
out_splice(struct out *o, int fd, uint64_t host, uint64_t len)
{
	loff_t in = (loff_t)host;
	ssize_t r;

	while (len > 0) {
		r = splice(fd, &in, STDOUT_FILENO, NULL, (size_t)MIN(len, 1u << 30),
		    SPLICE_F_MORE);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && o->pos == 0 && (errno == EINVAL || errno == ENOSYS)) {
			o->pipe = false;	/* not here: read and write */
			return false;
		}
		if (r <= 0)
			die_errno("stdout");
		o->pos += (uint64_t)r;
		len -= (uint64_t)r;
	}
	o->end = MAX(o->end, o->pos);
	return true;
}

/* Read [off, off+len) of the virtual disk, through the backing chain, and write it. */
static int
copy_read(struct img *img, struct out *o, uint64_t off, uint64_t len)
{
	size_t n;

	for (; len > 0; off += n, len -= n) {
		/* keep the reads aligned to the buffer size after the first */
		n = (size_t)MIN(len, IO_BUFSIZE - off % IO_BUFSIZE);
		if (img_read(img, off, n, o->buf) < 0)
			return -1;
		out_write(o, o->buf, n);
	}
	return 0;
}

/* Copy [off, off+len): runs stored verbatim are spliced, the rest read. */
static int
copy(struct img *img, struct out *o, uint64_t off, uint64_t len)
{
	uint64_t host, run;
	int fd, r;

	while (o->pipe && len > 0) {
		if ((r = img_host_run(img, off, len, &fd, &host, &run)) < 0)
			return -1;
		if (r == 1 && !out_splice(o, fd, host, run))
			break;
		if (r == 0 && copy_read(img, o, off, run) < 0)
			return -1;
		off += run;
		len -= run;
	}
	return copy_read(img, o, off, len);
}

/* The whole range: data is read, zero extents come from zero_buf or are holes. */
static int
cat_range(struct img *img, struct out *o, uint64_t off, uint64_t len)
{
	struct map_ext e;

	while (len > 0) {
		if (img_status(img, off, len, &e) < 0)
			return -1;
		if (e.zero)
			out_zeroes(o, e.length);
		else if (copy(img, o, off, e.length) < 0)
			return -1;
		off += e.length;
		len -= e.length;
	}
	return 0;
}

static FILE *
open_map(const char *name)
{
	FILE *f;

	if (strcmp(name, "-") == 0)
		return stdin;
	if ((f = fopen(name, "r")) == NULL)
		die_errno("%s", name);
	return f;
}

/* In map order, the bytes of exactly the extents that carry data. */
static int
cat_map(struct img *img, struct out *o, const char *name)
{
	FILE *f = open_map(name);
	struct map_reader *r;
	struct map_ext e;
	int ret;

	r = map_reader_new(f, f == stdin ? "stdin" : name);
	while ((ret = map_read_within(r, &e, img->size, img->filename)) > 0) {
		if (map_carries_data(&e) &&
		    (ret = copy(img, o, e.start, e.length)) < 0)
			break;
	}
	map_reader_free(r);
	if (f != stdin)
		fclose(f);
	return ret;
}

static void
parse_args(int argc, char *argv[], struct cat_args *a)
{
	int c;

	while ((c = getopt_long(argc, argv, ":hf:U", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'f':
			a->fmt = optarg;
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
		case OPT_SNAPSHOT:
			a->snapshot = optarg;
			break;
		case OPT_OFFSET:
			a->offset = size_arg("offset", optarg);
			a->has_range = true;
			break;
		case OPT_LENGTH:
			a->length = size_arg("length", optarg);
			a->has_range = a->has_length = true;
			break;
		case OPT_MAP:
			a->map = optarg;
			break;
		case OPT_LONG:
		case OPT_SHORT:
			list_options(c);
			break;
		case ':':
			die_usage("missing argument for option '%s'", argv[optind - 1]);
		default:
			die_usage("unrecognized option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		die_usage("Expecting one image file name");
	if (a->map != NULL && a->has_range)
		die_usage("--map cannot be combined with --offset or --length");
	if (a->image_opts && a->fmt != NULL)
		die("--image-opts and --format are mutually exclusive");
}

int
main(int argc, char *argv[])
{
	struct cat_args a = { 0 };
	struct out o = { 0 };
	struct img *img;
	int ret;

	prog_init(argv[0]);
	/* a reader that goes away ends us quietly, even if our parent ignores SIGPIPE */
	signal(SIGPIPE, SIG_DFL);
	parse_args(argc, argv, &a);
	/* the bytes are the same either way: know the zeroes qemu-img would read */
	img = a.image_opts ?
	    img_open_image_opts(argv[optind], a.flags | IMG_TRUE_STATUS) :
	    img_open(argv[optind], a.fmt,
	    a.flags | IMG_NO_PROBE_WARN | IMG_TRUE_STATUS);
	if (img == NULL)
		die("%s", err_msg());
	if (a.snapshot != NULL && img_snapshot_load(img, a.snapshot) < 0)
		die("Failed to load snapshot: %s", err_msg());
	if (!a.has_length)
		a.length = a.offset < img->size ? img->size - a.offset : 0;
	if (a.offset > img->size || a.length > img->size - a.offset)
		die("%s: range %" PRIu64 "+%" PRIu64 " is past the end of the "
		    "image (%" PRIu64 " bytes)", argv[optind], a.offset, a.length,
		    img->size);
	out_init(&o);
	ret = a.map ? cat_map(img, &o, a.map) :
	    cat_range(img, &o, a.offset, a.length);
	if (ret < 0)
		die("%s", err_msg());
	img_close(img);
	out_close(&o);
	return 0;
}
