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
#include <sys/mman.h>
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
    "               [-S sparse_size --map-out=mapfile] [--salvage]\n"
    "               [--as-convert=piece_size] filename\n";

enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_OFFSET, OPT_LENGTH, OPT_MAP,
	OPT_LONG, OPT_SHORT, OPT_SNAPSHOT, OPT_MAP_OUT, OPT_SALVAGE,
	OPT_AS_CONVERT
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
	{ "sparse-size", required_argument, NULL, 'S' },
	{ "map-out", required_argument, NULL, OPT_MAP_OUT },
	{ "salvage", no_argument, NULL, OPT_SALVAGE },
	{ "as-convert", required_argument, NULL, OPT_AS_CONVERT },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":f:US:h";

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
	uint64_t	 sparse;	/* -S: zero chunks leave the stream */
	const char	*map_out;	/* --map-out: the map of what was streamed */
};

/*
 * -S with --map-out: the map's data extents are cut into chunks of sparse
 * bytes (aligned to image offsets, as img-write -S cuts them); chunks that
 * read as zeroes leave the stream and become zero extents of the map we
 * write, one JSON line before the bytes it stands for, so a reader of both
 * (img-write --map, -S 0) can take them as they come.
 */
struct refine {
	FILE		*f;
	uint64_t	 sparse;
	uint64_t	 window;	/* bytes looked at at once, chunks whole */
	uint8_t		*buf;		/* window bytes, when read */
	uint64_t	 start, len;	/* data run not yet streamed */
};

/* --salvage: read and block-status errors become zeroes, with a warning */
static bool salvage;

/*
 * --as-convert: a read that fails is named as qemu-img convert names it,
 * by the start of the piece it reads at once: piece bytes counted from
 * the start of the map's extent.  The data extents being copied and the
 * range whose read failed are kept for that.
 */
#define CONVERT_RUN	1024	/* extents kept at most, near enough */

static struct {
	bool		 on;
	uint64_t	 piece;
	struct map_ext	*ext;		/* data extents of the run being copied */
	size_t		 n;
	uint64_t	 off, len;	/* the read that failed */
} conv;

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
	    "  -S, --sparse-size=size  with --map: chunks of size bytes that "
	    "are zero\n"
	    "                        stay out of the stream ...\n"
	    "      --map-out=mapfile ... and out of the map written here "
	    "(JSON Lines)\n"
	    "      --salvage         sectors that fail to read are zeroes, "
	    "with a warning\n"
	    "      --as-convert=size with --map: name a read error as "
	    "qemu-img convert does,\n"
	    "                        by the piece of size bytes (from its "
	    "extent's start)\n"
	    "  -h, --help            show this help\n"
	    "\nSee img-cat(1).\n", usage_text);
	exit(0);
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

/* A read of [off, off+len) failed: kept for --as-convert's message. */
static int
failed(uint64_t off, uint64_t len)
{
	conv.off = off;
	conv.len = len;
	return -1;
}

/* --as-convert: e is a data extent being copied, the first of a run if fresh. */
static void
conv_add(const struct map_ext *e, bool fresh)
{
	if (!conv.on)
		return;
	if (fresh)
		conv.n = 0;
	if ((conv.n & (conv.n - 1)) == 0)
		conv.ext = xrealloc(conv.ext,
		    (conv.n ? 2 * conv.n : 1) * sizeof(*conv.ext));
	conv.ext[conv.n++] = *e;
}

/*
 * --as-convert: the pieces of qemu-img convert that overlap the failed
 * read are read again one by one; the first that fails is named (or,
 * if none fails again, the first).
 */
static _Noreturn void
convert_error(struct img *img)
{
	uint64_t a = conv.off, b = conv.off + conv.len, first = a, p, s, e, end;
	int err = err_errno() ? err_errno() : EIO;
	uint8_t *buf = io_alloc((size_t)conv.piece);
	bool any = false;
	size_t i;

	for (i = 0; i < conv.n; i++) {
		end = conv.ext[i].start + conv.ext[i].length;
		if (end <= a || conv.ext[i].start >= b)
			continue;
		p = conv.ext[i].start + ROUND_DOWN(MAX(a, conv.ext[i].start) -
		    conv.ext[i].start, conv.piece);
		for (; p < MIN(b, end); p += conv.piece) {
			if (!any)
				first = p;
			any = true;
			s = MAX(p, a);
			e = MIN(MIN(p + conv.piece, end), b);
			/* a node that compares reads names the whole piece */
			if (io_copies != NULL) {
				s = p;
				e = MIN(p + conv.piece, end);
			}
			if (img_read(img, s, (size_t)(e - s), buf) < 0)
				die("error while reading at byte %" PRIu64 ": %s",
				    p, strerror(err_errno() ? err_errno() : EIO));
		}
	}
	die("error while reading at byte %" PRIu64 ": %s", first,
	    strerror(err));
}

/* img_host_run, its failure kept as a read's. */
static int
host_run(struct img *img, uint64_t off, uint64_t len, int *fd,
    uint64_t *host, uint64_t *run)
{
	int r = img_host_run(img, off, len, fd, host, run);

	return r < 0 ? failed(off, len) : r;
}

static void
warn_errno(const char *what, uint64_t off)
{
	warn_msg("warning: error while reading %s%" PRIu64 ": %s", what, off,
	    strerror(err_errno() ? err_errno() : EIO));
}

/*
 * --salvage, as qemu-img convert_co_read: a read that failed is done again
 * sector by sector; a sector that fails is warned of and read as zeroes.
 */
static void
read_sectors(struct img *img, uint64_t off, size_t len, uint8_t *buf)
{
	size_t n;

	for (; len > 0; off += n, buf += n, len -= n) {
		n = (size_t)MIN(len, IMG_SECTOR);
		if (img_read(img, off, n, buf) < 0) {
			warn_errno("offset ", off);
			memset(buf, 0, n);
		}
	}
}

/* img_read, or with --salvage its sectors one by one. */
static int
read_some(struct img *img, uint64_t off, size_t len, uint8_t *buf)
{
	if (img_read(img, off, len, buf) == 0)
		return 0;
	if (!salvage)
		return failed(off, len);
	read_sectors(img, off, len, buf);
	return 0;
}

/* Read [off, off+len) of the virtual disk, through the backing chain, and write it. */
static int
copy_read(struct img *img, struct out *o, uint64_t off, uint64_t len)
{
	size_t n;

	for (; len > 0; off += n, len -= n) {
		/* keep the reads aligned to the buffer size after the first */
		n = (size_t)MIN(len, IO_BUFSIZE - off % IO_BUFSIZE);
		if (read_some(img, off, n, o->buf) < 0)
			return -1;
		out_write(o, o->buf, n);
	}
	return 0;
}

/* Copy [off, off+len): runs stored verbatim are spliced, the rest read. */
static int
copy(struct img *img, struct out *o, uint64_t off, uint64_t len)
{
	uint64_t host, run, rd = 0;	/* rd: bytes from off still to read */
	int fd, r;

	while (o->pipe && len > rd) {
		if ((r = host_run(img, off + rd, len - rd, &fd, &host, &run)) < 0)
			return -1;
		/* runs to read in a row are read together (up to a buffer) */
		if (r == 0 && (rd += run) < IO_BUFSIZE)
			continue;
		if (rd > 0 && copy_read(img, o, off, rd) < 0)
			return -1;
		off += rd;
		len -= rd;
		rd = 0;
		if (r == 1 && !out_splice(o, fd, host, run))
			break;
		if (r == 1) {
			off += run;
			len -= run;
		}
	}
	return copy_read(img, o, off, len);
}

/* The whole range: data is read, zero extents come from zero_buf or are holes. */
static int
cat_range(struct img *img, struct out *o, uint64_t off, uint64_t len)
{
	struct map_ext e;
	uint64_t data = 0;	/* data extents in a row before off: one copy */

	while (len > 0) {
		if (!salvage && img_status(img, off, len, &e) < 0)
			return -1;
		if (salvage && img_status_salvage(img, off, len, &e) == 1)
			warn_errno("block status at offset ", off);
		/* where reads are compared, zeroes are read too */
		if (e.zero && img_reads_checked(img))
			e.zero = false;
		if (data > 0 && e.zero) {
			if (copy(img, o, off - data, data) < 0)
				return -1;
			data = 0;
		}
		if (e.zero)
			out_zeroes(o, e.length);
		else if (!salvage)	/* its warnings stay in extent order */
			data += e.length;
		else if (copy(img, o, off, e.length) < 0)
			return -1;
		off += e.length;
		len -= e.length;
	}
	return data > 0 ? copy(img, o, off - data, data) : 0;
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

/* One line of the map we write, out before the bytes it stands for. */
static void
refine_line(struct refine *rf, const struct map_ext *e)
{
	fprintf(rf->f, "{\"start\":%" PRIu64 ",\"length\":%" PRIu64
	    ",\"depth\":%" PRId64 ",\"present\":%s,\"zero\":%s,\"data\":%s}\n",
	    e->start, e->length, e->depth, e->present ? "true" : "false",
	    e->zero ? "true" : "false", e->data ? "true" : "false");
	if (fflush(rf->f) == EOF)
		die_errno("%s", "--map-out");
}

/*
 * Stream [off, off+len), whose bytes are at p (and verbatim at host in
 * fd when fd >= 0): runs of zero chunks become zero lines, the rest data
 * lines and bytes.
 */
static void
refine_window(struct refine *rf, struct out *o, uint64_t off, uint64_t len,
    const uint8_t *p, int fd, uint64_t host)
{
	struct map_ext e = { .present = true };
	uint64_t i = 0, run = 0, n = 0;
	bool z, run_zero = false;

	for (;;) {
		z = false;
		if (i < len) {
			n = MIN(len - i, rf->sparse - (off + i) % rf->sparse);
			z = is_zero(p + i, (size_t)n);
		}
		if (i == len || (i > run && z != run_zero)) {
			e.start = off + run;
			e.length = i - run;
			e.zero = run_zero;
			e.data = !run_zero;
			refine_line(rf, &e);
			if (!run_zero && (fd < 0 ||
			    !out_splice(o, fd, host + run, i - run)))
				out_write(o, p + run, (size_t)(i - run));
			run = i;
		}
		if (i == len)
			return;
		run_zero = z;
		i += n;
	}
}

/* Data bytes stored verbatim in a file: looked at through a mapping, spliced. */
static bool
refine_mapped(struct refine *rf, struct out *o, uint64_t off, uint64_t len,
    int fd, uint64_t host)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t skew = host % page;
	void *m;

	m = mmap(NULL, (size_t)(len + skew), PROT_READ, MAP_SHARED |
	    MAP_POPULATE, fd, (off_t)(host - skew));
	if (m == MAP_FAILED)
		return false;
	refine_window(rf, o, off, len, (const uint8_t *)m + skew, fd, host);
	munmap(m, (size_t)(len + skew));
	return true;
}

/* The pending data run, window by window; no chunk straddles two windows. */
static int
refine_flush(struct img *img, struct out *o, struct refine *rf)
{
	uint64_t off = rf->start, end = rf->start + rf->len;
	uint64_t host, n, w;
	int fd, r;

	rf->len = 0;
	while (off < end) {
		w = MIN(end - off, rf->window);
		r = o->pipe ? host_run(img, off, w, &fd, &host, &n) : 0;
		if (r < 0)
			return -1;
		if (r == 1 && off + n < end)	/* end on a chunk boundary */
			n = ROUND_DOWN(off + n, rf->sparse) > off ?
			    ROUND_DOWN(off + n, rf->sparse) - off : 0;
		if (r == 1 && n > 0 && refine_mapped(rf, o, off, n, fd, host)) {
			off += n;
			continue;
		}
		if (off + w < end)
			w = ROUND_DOWN(off + w, rf->sparse) > off ?
			    ROUND_DOWN(off + w, rf->sparse) - off :
			    MIN(end - off, rf->sparse - off % rf->sparse);
		if (read_some(img, off, (size_t)w, rf->buf) < 0)
			return -1;
		refine_window(rf, o, off, w, rf->buf, -1, 0);
		off += w;
	}
	return 0;
}

/*
 * The data extents: adjacent ones make one run (so its chunks are cut as
 * img-write would cut them); other extents pass into the map unchanged.
 */
static int
refine_ext(struct img *img, struct out *o, struct refine *rf,
    const struct map_ext *e)
{
	/* --as-convert keeps the run's extents: a long run streams in parts,
	 * cut where a chunk begins, so the chunks stay the same */
	if (map_carries_data(e) && rf->len > 0 &&
	    rf->start + rf->len == e->start &&
	    !(conv.n >= CONVERT_RUN && e->start % rf->sparse == 0)) {
		rf->len += e->length;
		conv_add(e, false);
		return 0;
	}
	if (rf->len > 0 && refine_flush(img, o, rf) < 0)
		return -1;
	if (map_carries_data(e)) {
		conv_add(e, true);
		rf->start = e->start;
		rf->len = e->length;
	} else {
		refine_line(rf, e);
	}
	return 0;
}

/* In map order, the bytes of exactly the extents that carry data. */
static int
cat_map(struct img *img, struct out *o, const char *name, struct refine *rf)
{
	FILE *f = open_map(name);
	struct map_reader *r;
	struct map_ext e;
	int ret;

	r = map_reader_new(f, f == stdin ? "stdin" : name);
	while ((ret = map_read_within(r, &e, img->size, img->filename)) > 0) {
		if (rf != NULL) {
			ret = refine_ext(img, o, rf, &e);
		} else if (map_carries_data(&e)) {
			conv_add(&e, true);
			ret = copy(img, o, e.start, e.length);
		}
		if (ret < 0)
			break;
	}
	if (ret == 0 && rf != NULL && rf->len > 0)
		ret = refine_flush(img, o, rf);
	map_reader_free(r);
	if (f != stdin)
		fclose(f);
	return ret;
}

/* -S and --map-out: the map is opened before the image, as a stage's is. */
static struct refine *
refine_open(const struct cat_args *a)
{
	struct refine *rf;

	if (a->map_out == NULL)
		return NULL;
	rf = xcalloc(1, sizeof(*rf));
	if ((rf->f = fopen(a->map_out, "w")) == NULL)
		die_errno("%s", a->map_out);
	rf->sparse = a->sparse;
	/* mapped windows count in our RSS: 1 MiB is as fast as more */
	rf->window = MAX(1u << 20, a->sparse);
	rf->buf = io_alloc((size_t)rf->window);
	return rf;
}

static void
refine_close(struct refine *rf)
{
	if (rf == NULL)
		return;
	if (fclose(rf->f) == EOF)
		die_errno("%s", "--map-out");
	free(rf->buf);
	free(rf);
}

static void
parse_args(int argc, char *argv[], struct cat_args *a)
{
	int c;

	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
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
		case 'S':
			a->sparse = size_arg("sparse size", optarg);
			break;
		case OPT_MAP_OUT:
			a->map_out = optarg;
			break;
		case OPT_SALVAGE:
			salvage = true;
			break;
		case OPT_AS_CONVERT:
			conv.on = true;
			conv.piece = size_arg("piece size", optarg);
			/* qemu-img convert reads data extents only */
			a->flags |= IMG_DATA_READS;
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
	if (a->map != NULL && a->has_range)
		die_usage("--map cannot be combined with --offset or --length");
	if (a->image_opts && a->fmt != NULL)
		die("--image-opts and --format are mutually exclusive");
	if (conv.on && a->map == NULL)
		die_usage("--as-convert goes with --map");
	if (conv.on && (conv.piece == 0 || conv.piece % 512 != 0 ||
	    conv.piece > (64u << 20)))
		die_usage("--as-convert: sizes are multiples of 512 up to 64 MiB");
	if ((a->sparse != 0 || a->map_out != NULL) &&
	    (a->map == NULL || a->map_out == NULL || a->sparse == 0))
		die_usage("-S and --map-out go together, with --map");
	if (a->sparse % 512 != 0 || a->sparse > (16u << 20))
		die_usage("-S: sizes are multiples of 512 up to 16 MiB");
}

int
main(int argc, char *argv[])
{
	struct cat_args a = { 0 };
	struct out o = { 0 };
	struct refine *rf;
	struct img *img;
	int ret;

	prog_init(argv[0]);
	/* a reader that goes away ends us quietly, even if our parent ignores SIGPIPE */
	signal(SIGPIPE, SIG_DFL);
	parse_args(argc, argv, &a);
	rf = refine_open(&a);
	/* the bytes are the same either way: know the zeroes qemu-img would read */
	img = a.image_opts ?
	    img_open_image_opts(argv[optind], a.flags | IMG_TRUE_STATUS) :
	    img_open(argv[optind], a.fmt,
	    a.flags | IMG_NO_PROBE_WARN | IMG_TRUE_STATUS);
	if (img == NULL)
		die("%s", err_msg());
	if (a.snapshot != NULL && img_snapshot_load(img, a.snapshot) < 0) {
		char *msg = xasprintf("Failed to load snapshot: %s", err_msg());

		img_close(img);		/* a clean exit for the leak checker */
		die("%s", msg);
	}
	if (!a.has_length)
		a.length = a.offset < img->size ? img->size - a.offset : 0;
	if (a.offset > img->size || a.length > img->size - a.offset)
		die("%s: range %" PRIu64 "+%" PRIu64 " is past the end of the "
		    "image (%" PRIu64 " bytes)", argv[optind], a.offset, a.length,
		    img->size);
	out_init(&o);
	/* salvaging reads every byte through the driver, where errors arise */
	if (salvage)
		o.pipe = false;
	ret = a.map ? cat_map(img, &o, a.map, rf) :
	    cat_range(img, &o, a.offset, a.length);
	if (ret < 0 && conv.on)
		convert_error(img);
	if (ret < 0)
		die("%s", err_msg());
	free(conv.ext);
	refine_close(rf);
	img_close(img);
	out_close(&o);
	return 0;
}
