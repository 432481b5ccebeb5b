/*
 * img-write: a raw byte stream from stdin into an existing image, at an
 * offset or into the extents a map names, keeping zeroes sparse as
 * qemu-img convert -S does (img-write(1); the stream format is img-cat(1)'s).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
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

#define SPARSE_DEFAULT	4096		/* qemu-img convert's -S default */
#define SPARSE_MAX	(32768 * 512)	/* qemu's MAX_BUF_SECTORS */

static const char usage_text[] =
    "usage: img-write [--object objectdef] [-f fmt | --image-opts]\n"
    "                 [--offset=offset [--grow]] [--map=mapfile] [-S sparse_size]\n"
    "                 [--whole] [-n | --target-is-zero] [-t cache] [-c]\n"
    "                 [--as-convert] filename\n";

enum { OPT_OFFSET = 256, OPT_MAP, OPT_IMAGE_OPTS, OPT_WHOLE, OPT_LONG, OPT_SHORT,
	OPT_GROW, OPT_OBJECT, OPT_AS_CONVERT };

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "format", required_argument, NULL, 'f' },
	{ "offset", required_argument, NULL, OPT_OFFSET },
	{ "grow", no_argument, NULL, OPT_GROW },
	{ "map", required_argument, NULL, OPT_MAP },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "sparse-size", required_argument, NULL, 'S' },
	{ "target-is-zero", no_argument, NULL, 'n' },
	{ "cache", required_argument, NULL, 't' },
	{ "compress", no_argument, NULL, 'c' },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "whole", no_argument, NULL, OPT_WHOLE },
	{ "as-convert", no_argument, NULL, OPT_AS_CONVERT },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":f:S:nt:ch";

struct write_args {
	const char	*fmt;
	const char	*map;
	uint64_t	 offset;
	uint64_t	 sparse;
	bool		 target_zero;
	int		 flags;		/* IMG_NO_FLUSH for -t unsafe */
	bool		 compress;	/* -c */
	bool		 grow;		/* --grow: the disk ends where the stream does */
	bool		 image_opts;	/* filename is an option string */
	bool		 whole;		/* --whole: no zero detection in data */
};

#define GROW_MIN	(64u << 20)	/* --grow adds at least this much at once */

/* One step of a map: take len bytes of stream for data, none for zeroes. */
struct step {
	uint64_t	 start;
	uint64_t	 len;
	bool		 data;
};

struct plan {
	struct step	*v;
	size_t		 n, cap;
	uint64_t	 bytes;		/* stream bytes the map expects */
};

/*
 * Where bytes land.  Zero ranges are held back and merged, so a long run
 * of zero extents and zero chunks becomes one write_zeroes (or nothing,
 * when the target reads as zeroes already).
 */
struct sink {
	struct img	*img;
	uint64_t	 sparse;	/* zero-detection chunk; 0: none */
	bool		 target_zero;
	uint64_t	 zstart, zlen;	/* zero run not yet written */
	uint8_t		*buf;
	size_t		 bufsize;	/* a multiple of sparse */
	uint64_t	 got;		/* stream bytes read so far */
	bool		 seekable;	/* stdin is a regular file: skip its holes */
	bool		 pipe;		/* stdin is a pipe: splice where we may */
	bool		 detected;	/* the map came through a pipe, zero runs
					   taken out already (img-cat -S): no
					   detection; sparse says how to zero */
	/* -c: a cluster-aligned window of the target, written compressed */
	uint64_t	 cs;		/* cluster size; 0: not compressing */
	uint64_t	 wsize;		/* window bytes: 1 MiB, or one cluster if larger */
	uint64_t	 wbase;		/* target offset of win[0] */
	uint8_t		*win;
	bool		*wtouch;	/* per cluster of win: the stream covered it */
	bool		 wdirty;	/* some cluster of win is touched */
};

static _Noreturn void
usage(void)
{
	printf("%s\nWrite raw bytes from stdin into an existing image.\n\n"
	    "      --object=objdef      define an object such as a secret (the "
	    "key of\n"
	    "                           an encrypted image named by a json: "
	    "name)\n"
	    "  -f, --format=fmt         image format (default: probe)\n"
	    "      --image-opts         filename is an option string "
	    "(driver=...,file.filename=...)\n"
	    "      --offset=offset      write the stream from this byte on\n"
	    "      --grow               the disk grows with the stream and ends "
	    "where it\n"
	    "                           does (rounded up to 512 bytes)\n"
	    "      --map=mapfile        lay the stream into the map's data "
	    "extents;\n"
	    "                           zero the others\n"
	    "  -S, --sparse-size=size   zero chunks of this size stay "
	    "sparse (default 4k,\n"
	    "                           0: write everything)\n"
	    "      --whole              no zero detection in data extents; -S only\n"
	    "                           says how zero extents are written\n"
	    "  -n, --target-is-zero     the image reads as zeroes: skip zero "
	    "ranges\n"
	    "  -c, --compress           write data clusters compressed\n"
	    "      --as-convert         name a failed write by its offset, as "
	    "qemu-img\n"
	    "                           convert does\n"
	    "  -t, --cache=mode         writeback (default) syncs at the end; "
	    "unsafe never\n"
	    "                           syncs (img-convert's default, as "
	    "qemu-img's)\n"
	    "  -h, --help               show this help\n"
	    "\nSee img-write(1).\n", usage_text);
	exit(0);
}

static uint64_t
sparse_arg(const char *s)
{
	uint64_t v;

	if (opt_size(s, &v) < 0 || v % 512 != 0 || v > SPARSE_MAX)
		die("Invalid buffer size for sparse output specified. Valid "
		    "sizes are multiples of 512 up to %d. Select 0 to disable "
		    "sparse detection (fully allocates output).", SPARSE_MAX);
	return v;
}

static uint8_t zero_buf[IO_BUFSIZE];	/* bss: costs nothing until written */

/* --as-convert: where the first write that failed began */
static struct {
	bool		 on;
	bool		 failed;
	uint64_t	 at;
} conv;

/* A write at off failed: -1, the offset kept for --as-convert's message. */
static int
failed(uint64_t off)
{
	if (!conv.failed)
		conv.at = off;
	conv.failed = true;
	return -1;
}

static int zero_flush(struct sink *);

/*
 * -c: the window's touched clusters go out as qemu-img convert -c writes
 * them: those holding data compressed, in runs (the driver compresses a
 * run on several threads); all-zero ones are zeroed unless the target
 * reads as zeroes already, or compressed too with -S 0.  Partly written
 * clusters are completed with zeroes, as qemu-img compresses whole clusters.
 */
/*
 * Compression cannot overwrite anything: qemu fails a compressed write
 * where the image holds a cluster already (qcow2_alloc_compressed_cluster_
 * offset), so qemu-img convert -c -n onto data stops there.
 */
static int
write_compressed(struct sink *s, uint64_t start, uint64_t end)
{
	const uint8_t *p = s->win + (start - s->wbase);
	struct map_ext e;
	uint64_t off, bad = end;

	for (off = start; !s->target_zero && off < end; off += e.length) {
		if (img_status_layer(s->img, off, end - off, &e) < 0)
			return -1;
		if (e.has_offset || (e.present && !e.zero)) {
			bad = ROUND_DOWN(off, s->cs);
			break;
		}
	}
	if (bad > start && img_write_compressed(s->img, start, bad - start,
	    p) < 0)
		return failed(start);
	if (bad < end) {
		err_set(EIO, "error while writing at byte %" PRIu64, bad);
		return failed(bad);
	}
	return 0;
}

static int
win_run(struct sink *s, uint64_t i, uint64_t j, bool zero)
{
	uint64_t start = s->wbase + i * s->cs, end;

	if (start >= s->img->size)
		return 0;
	end = MIN(s->wbase + j * s->cs, s->img->size);
	if (!zero)
		return write_compressed(s, start, end);
	if (s->target_zero)
		return 0;
	if (img_write_zeroes(s->img, start, end - start, IMG_ZERO_UNMAP) < 0)
		return failed(start);
	return 0;
}

/* What a touched cluster becomes: 1 compressed data, 0 zeroes. */
static int
win_kind(const struct sink *s, uint64_t i)
{
	return s->sparse == 0 || !is_zero(s->win + i * s->cs, s->cs);
}

static int
win_flush(struct sink *s)
{
	uint64_t i, j, n = s->wsize / s->cs;
	int k;

	if (!s->wdirty)
		return 0;
	s->wdirty = false;
	for (i = 0; i < n; i = j) {
		if (!s->wtouch[i]) {
			j = i + 1;
			continue;
		}
		k = win_kind(s, i);
		for (j = i + 1; j < n && s->wtouch[j] && win_kind(s, j) == k; j++)
			;
		if (win_run(s, i, j, k == 0) < 0)
			return -1;
	}
	memset(s->win, 0, s->wsize);
	memset(s->wtouch, 0, n * sizeof(*s->wtouch));
	return 0;
}

/* Put len bytes at off into the window (p NULL: zeroes), touching their clusters. */
static int
win_put(struct sink *s, uint64_t off, const uint8_t *p, uint64_t len)
{
	uint64_t n, c;

	if (s->zlen > 0 && zero_flush(s) < 0)
		return -1;
	while (len > 0) {
		if (off < s->wbase || off >= s->wbase + s->wsize) {
			if (win_flush(s) < 0)
				return -1;
			s->wbase = ROUND_DOWN(off, s->wsize);
		}
		n = MIN(len, s->wbase + s->wsize - off);
		if (p != NULL) {
			memcpy(s->win + (off - s->wbase), p, n);
			p += n;
		}
		for (c = (off - s->wbase) / s->cs;
		    c <= (off - s->wbase + n - 1) / s->cs; c++)
			s->wtouch[c] = true;
		s->wdirty = true;
		off += n;
		len -= n;
	}
	return 0;
}

static int
zero_flush(struct sink *s)
{
	uint64_t len = s->zlen, off = s->zstart;
	size_t n;

	s->zlen = 0;
	if (len == 0 || s->target_zero)
		return 0;
	if (s->sparse)
		return img_write_zeroes(s->img, off, len, IMG_ZERO_UNMAP) < 0 ?
		    failed(off) : 0;
	/* -S 0 allocates everything, as qemu-img convert writes zero buffers */
	for (; len > 0; off += n, len -= n) {
		n = (size_t)MIN(len, sizeof(zero_buf));
		if (img_write(s->img, off, n, zero_buf) < 0)
			return failed(off);
	}
	return 0;
}

static int zero_run(struct sink *, uint64_t, uint64_t);

/*
 * A zero extent of the map.  With -c its whole clusters are zeroed (unless
 * the target reads as zeroes); its partial ones go through the window, as
 * qemu-img convert -c takes a cluster that is not wholly zero for data.
 */
static int
zero_add(struct sink *s, uint64_t off, uint64_t len)
{
	uint64_t head, body;

	if (!s->cs || len == 0)
		return zero_run(s, off, len);
	if (s->target_zero)
		return 0;
	head = MIN(len, ROUND_UP(off, s->cs) - off);
	body = ROUND_DOWN(len - head, s->cs);
	if (off + len == s->img->size && (len - head - body) > 0)
		body = len - head;	/* the disk's short last cluster is whole */
	if ((head > 0 && win_put(s, off, NULL, head) < 0) ||
	    zero_run(s, off + head, body) < 0)
		return -1;
	if (len > head + body)
		return win_put(s, off + head + body, NULL, len - head - body);
	return 0;
}

static int
zero_run(struct sink *s, uint64_t off, uint64_t len)
{
	if (len == 0)
		return 0;
	if (s->zlen > 0 && s->zstart + s->zlen == off) {
		s->zlen += len;
		return 0;
	}
	/* -c: in offset order, as qemu-img writes (it decides allocation) */
	if (zero_flush(s) < 0 || (s->cs && win_flush(s) < 0))
		return -1;
	s->zstart = off;
	s->zlen = len;
	return 0;
}

static int
emit(struct sink *s, uint64_t off, const uint8_t *p, size_t len, bool zero)
{
	if (s->cs)
		return win_put(s, off, zero ? NULL : p, len);
	if (zero)
		return zero_add(s, off, len);
	if (zero_flush(s) < 0)
		return -1;
	return img_write(s->img, off, len, p) < 0 ? failed(off) : 0;
}

/*
 * Write len stream bytes at off: chunks of s->sparse bytes (aligned to
 * image offsets) that are all zero become zero ranges, runs of the rest
 * become single writes.
 */
static int
sink_data(struct sink *s, uint64_t off, const uint8_t *p, size_t len)
{
	size_t i = 0, run = 0, n;
	bool z, run_zero = false;

	if (s->sparse == 0 || s->detected)
		return emit(s, off, p, len, false);
	while (i < len) {
		n = (size_t)MIN(len - i, s->sparse - (off + i) % s->sparse);
		z = is_zero(p + i, n);
		if (i > run && z != run_zero) {
			if (emit(s, off + run, p + run, i - run, run_zero) < 0)
				return -1;
			run = i;
		}
		run_zero = z;
		i += n;
	}
	return len ? emit(s, off + run, p + run, len - run, run_zero) : 0;
}

/*
 * Read up to len stream bytes for image offset off into s->buf, ending a
 * short read at a chunk boundary so chunks never straddle two buffers.
 */
static ssize_t
fill(struct sink *s, uint64_t off, uint64_t len)
{
	size_t want = (size_t)MIN(len, s->bufsize);
	ssize_t n;

	if (want < len && s->sparse && !s->detected)
		want = (size_t)(ROUND_DOWN(off + want, s->sparse) - off);
	if ((n = io_read(STDIN_FILENO, s->buf, want)) < 0)
		return err_set(errno, "stdin");
	s->got += (uint64_t)n;
	return n;
}

/*
 * stdin is a regular file: a hole at its offset is zeroes that need no
 * reading.  Returns the bytes taken as a zero range (0: not in a hole).
 */
static int64_t
skip_hole(struct sink *s, uint64_t off, uint64_t len)
{
	struct stat st;
	off_t pos, data;
	uint64_t n;

	if (!s->seekable || (pos = lseek(STDIN_FILENO, 0, SEEK_CUR)) < 0 ||
	    fstat(STDIN_FILENO, &st) < 0 || pos >= st.st_size)
		return 0;
	data = lseek(STDIN_FILENO, pos, SEEK_DATA);
	if (data < 0 && errno == ENXIO)
		data = st.st_size;		/* a hole up to the end */
	if (data <= pos)
		return 0;
	n = MIN(len, (uint64_t)(data - pos));
	if (lseek(STDIN_FILENO, pos + (off_t)n, SEEK_SET) < 0)
		return err_set(errno, "stdin");
	if (emit(s, off, NULL, (size_t)n, true) < 0)
		return -1;
	s->got += n;
	return (int64_t)n;
}

/*
 * Without zero detection, stream bytes from a pipe go straight into the
 * target file where it lets them: splice, no copy through our buffer.
 * Returns the bytes moved (less than the run: EOF), or 0 with *copy set
 * to the bytes that must go through the buffer first; -1 on error.
 */
static int64_t
take_splice(struct sink *s, uint64_t off, uint64_t len, uint64_t *copy)
{
	uint64_t host, run, done = 0;
	loff_t pos;
	ssize_t r;
	int fd, w;

	*copy = len;
	if (!s->pipe || (s->sparse != 0 && !s->detected) || s->cs != 0)
		return 0;
	/* zeroes held back go first: the target allocates in disk order */
	if (zero_flush(s) < 0)
		return -1;
	if ((w = img_write_host(s->img, off, len, &fd, &host, &run)) <= 0) {
		*copy = run;
		return w < 0 ? failed(off) : 0;
	}
	pos = (loff_t)host;
	while (done < run) {
		r = splice(STDIN_FILENO, NULL, fd, &pos,
		    (size_t)MIN(run - done, 1u << 30), SPLICE_F_MOVE);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && done == 0 && s->got == 0 && errno == EINVAL) {
			s->pipe = false;	/* not into this file: copy */
			return 0;
		}
		if (r < 0) {
			err_set(errno, "%s", s->img->filename);
			return failed(off + done);
		}
		if (r == 0)
			break;
		done += (uint64_t)r;
		s->got += (uint64_t)r;
	}
	return (int64_t)done;
}

/* Stream bytes into [off, off+len); returns bytes taken (< len: EOF). */
static int64_t
take(struct sink *s, uint64_t off, uint64_t len)
{
	uint64_t done = 0, copy;
	int64_t z;
	ssize_t n;

	while (done < len) {
		if ((z = take_splice(s, off + done, len - done, &copy)) < 0)
			return -1;
		if (z > 0) {
			done += (uint64_t)z;
			continue;
		}
		if ((z = skip_hole(s, off + done, len - done)) < 0)
			return -1;
		if (z > 0) {
			done += (uint64_t)z;
			continue;
		}
		if ((n = fill(s, off + done, MIN(len - done, copy))) < 0)
			return -1;
		if (n > 0 && sink_data(s, off + done, s->buf, (size_t)n) < 0)
			return -1;
		done += (uint64_t)n;
		if (n == 0)
			break;
	}
	return (int64_t)done;
}

/* True when stdin still has a byte to give. */
static int
more_input(struct sink *s)
{
	ssize_t n = io_read(STDIN_FILENO, s->buf, 1);

	if (n < 0)
		return err_set(errno, "stdin");
	return n > 0;
}

static void
plan_add(struct plan *p, const struct map_ext *e)
{
	bool data = map_carries_data(e);
	struct step *last = p->n ? &p->v[p->n - 1] : NULL;

	if (data)
		p->bytes += e->length;
	if (last && last->data == data && last->start + last->len == e->start) {
		last->len += e->length;
		return;
	}
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 256;
		p->v = xrealloc(p->v, p->cap * sizeof(*p->v));
	}
	p->v[p->n++] = (struct step){ e->start, e->length, data };
}

/* The whole map, checked against the image before anything is written. */
static int
plan_load(struct plan *p, const char *name, const struct img *img)
{
	struct map_reader *r;
	struct map_ext e;
	FILE *f;
	int ret;

	if ((f = fopen(name, "r")) == NULL)
		return err_set(errno, "%s", name);
	r = map_reader_new(f, name);
	while ((ret = map_read_within(r, &e, img->size, img->filename)) > 0)
		plan_add(p, &e);
	map_reader_free(r);
	fclose(f);
	return ret;
}

static int
write_map(struct sink *s, const struct plan *p)
{
	const struct step *st;
	int64_t n;
	int more;

	for (st = p->v; st < p->v + p->n; st++) {
		if (!st->data) {
			if (zero_add(s, st->start, st->len) < 0)
				return -1;
			continue;
		}
		if ((n = take(s, st->start, st->len)) < 0)
			return -1;
		if ((uint64_t)n < st->len)
			return err_set(0, "stdin: stream ended at byte %" PRIu64
			    ", map expects %" PRIu64, s->got, p->bytes);
	}
	if ((more = more_input(s)) != 0)
		return more < 0 ? -1 : err_set(0, "stdin: data left over after "
		    "the %" PRIu64 " bytes the map expects", p->bytes);
	return 0;
}

/*
 * A map that arrives through a pipe (img-cat --map-out) is taken line by
 * line as the stream goes: its writer sends each line before the bytes
 * it stands for.  Checked as it comes, so an error may follow writes.
 */
static int
write_map_stream(struct sink *s, const char *name)
{
	struct map_reader *r;
	struct map_ext e;
	uint64_t want = 0;
	int64_t n = 0;
	bool ended = false;
	int ret, more;
	FILE *f;

	if ((f = fopen(name, "r")) == NULL)
		return err_set(errno, "%s", name);
	s->detected = true;
	r = map_reader_new(f, name);
	while ((ret = map_read_within(r, &e, s->img->size,
	    s->img->filename)) > 0) {
		if (!map_carries_data(&e)) {
			if (zero_add(s, e.start, e.length) < 0)
				break;
			continue;
		}
		want += e.length;
		if (ended)
			continue;	/* the stream fell short: count the rest */
		if ((n = take(s, e.start, e.length)) < 0)
			break;
		ended = (uint64_t)n < e.length;
	}
	map_reader_free(r);
	fclose(f);
	if (ret < 0 || n < 0)
		return -1;
	if (s->got < want)
		return err_set(0, "stdin: stream ended at byte %" PRIu64
		    ", map expects %" PRIu64, s->got, want);
	if ((more = more_input(s)) != 0)
		return more < 0 ? -1 : err_set(0, "stdin: data left over after "
		    "the %" PRIu64 " bytes the map expects", want);
	return 0;
}

static void
start_compress(struct sink *s)
{
	if (!img_can_compress(s->img))
		die("Compression not supported for this file format");
	if (img_cluster_size(s->img, &s->cs) < 0)
		die("%s", err_msg());
	if (s->cs == 0 || !is_pow2(s->cs))
		die("Compression not supported for this file format");
	/* 512 KiB of clusters per run: work for every core, little memory */
	s->wsize = MAX(s->cs, 512u << 10);
	s->win = io_alloc(s->wsize);
	memset(s->win, 0, s->wsize);
	s->wtouch = xcalloc(s->wsize / s->cs, sizeof(*s->wtouch));
}

static int
write_at(struct sink *s, uint64_t off)
{
	uint64_t room = s->img->size - off;
	int64_t n;
	int more;

	if ((n = take(s, off, room)) < 0)
		return -1;
	if ((uint64_t)n == room && (more = more_input(s)) != 0)
		return more < 0 ? -1 : err_set(0, "stdin: stream runs past the "
		    "end of '%s' (%" PRIu64 " bytes); nothing past byte %"
		    PRIu64 " of the stream was written", s->img->filename,
		    s->img->size, room);
	return 0;
}

/*
 * --grow: a stream of unknown length (img-convert's `-` source).  The disk
 * grows ahead of the stream, doubling, and is cut at the end to where the
 * stream ended, rounded up to a 512-byte sector as qemu sizes raw files.
 */
static int
write_grow(struct sink *s, uint64_t off)
{
	uint64_t room, size;
	int64_t n;

	for (;;) {
		room = s->img->size > off ? s->img->size - off : 0;
		if ((n = take(s, off, room)) < 0)
			return -1;
		off += (uint64_t)n;
		if ((uint64_t)n < room)
			break;
		size = s->img->size + MAX(s->img->size, GROW_MIN);
		if (zero_flush(s) < 0 || (s->cs && win_flush(s) < 0) ||
		    img_resize(s->img, size, IMG_PREALLOC_OFF) < 0)
			return -1;
	}
	if (zero_flush(s) < 0 || (s->cs && win_flush(s) < 0))
		return -1;
	return img_resize(s->img, ROUND_UP(off, 512), IMG_PREALLOC_OFF);
}

static void
parse_args(int argc, char *argv[], struct write_args *a)
{
	int c;

	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'f':
			a->fmt = optarg;
			break;
		case 'S':
			a->sparse = sparse_arg(optarg);
			break;
		case 'n':
			a->target_zero = true;
			break;
		case 'c':
			a->compress = true;
			break;
		case 't':
			if (strcmp(optarg, "unsafe") == 0)
				a->flags |= IMG_NO_FLUSH;
			else if (strcmp(optarg, "writeback") && strcmp(optarg, "none") &&
			    strcmp(optarg, "writethrough") &&
			    strcmp(optarg, "directsync"))
				die("Invalid cache option: %s", optarg);
			break;
		case OPT_OFFSET:
			if (opt_size(optarg, &a->offset) < 0)
				die_usage("invalid offset '%s'", optarg);
			break;
		case OPT_MAP:
			a->map = optarg;
			break;
		case OPT_GROW:
			a->grow = true;
			break;
		case OPT_IMAGE_OPTS:
			a->image_opts = true;
			break;
		case OPT_WHOLE:
			a->whole = true;
			break;
		case OPT_AS_CONVERT:
			conv.on = true;
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
	if (optind != argc - 1)
		die_usage("Expecting one image file name");
	if (a->map != NULL && a->offset != 0)
		die_usage("--map cannot be combined with --offset");
	if (a->map != NULL && a->grow)
		die_usage("--map cannot be combined with --grow");
	if (a->map != NULL && strcmp(a->map, "-") == 0)
		die_usage("--map -: stdin is the stream; give the map as a file");
	if (a->image_opts && a->fmt != NULL)
		die("--image-opts and --format are mutually exclusive");
}

int
main(int argc, char *argv[])
{
	struct write_args a = { .sparse = SPARSE_DEFAULT };
	struct plan p = { NULL, 0, 0, 0 };
	struct sink s = { 0 };
	struct stat st;
	bool stream;
	int ret;

	prog_init(argv[0]);
	parse_args(argc, argv, &a);
	s.img = a.image_opts ?
	    img_open_image_opts(argv[optind], IMG_RDWR | a.flags) :
	    img_open(argv[optind], a.fmt, IMG_RDWR | a.flags);
	if (s.img == NULL)
		die("%s", err_msg());
	if (a.offset > s.img->size)
		die("--offset %" PRIu64 " is past the end of '%s' (%" PRIu64
		    " bytes)", a.offset, argv[optind], s.img->size);
	stream = a.map != NULL && stat(a.map, &st) == 0 && S_ISFIFO(st.st_mode);
	if (a.map != NULL && !stream && plan_load(&p, a.map, s.img) < 0)
		die("%s", err_msg());
	s.sparse = a.sparse;
	s.target_zero = a.target_zero;
	s.detected = a.whole;
	s.bufsize = MAX(IO_BUFSIZE, a.sparse);
	if (a.compress) {
		start_compress(&s);
		s.bufsize = MAX(s.wsize, a.sparse);
	}
	s.buf = io_alloc(s.bufsize);
	io_pipe_grow(STDIN_FILENO);
	s.seekable = fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode) &&
	    lseek(STDIN_FILENO, 0, SEEK_CUR) >= 0;
	s.pipe = fstat(STDIN_FILENO, &st) == 0 && S_ISFIFO(st.st_mode);
	ret = stream ? write_map_stream(&s, a.map) :
	    a.map ? write_map(&s, &p) : a.grow ? write_grow(&s, a.offset) :
	    write_at(&s, a.offset);
	/* what was written reaches the disk even when the stream was wrong */
	if ((zero_flush(&s) < 0 || (s.cs && win_flush(&s) < 0)) && ret == 0)
		ret = -1;
	if (ret < 0 && conv.on && conv.failed)
		err_set(err_errno() ? err_errno() : EIO,
		    "error while writing at byte %" PRIu64, conv.at);
	/* the error first, then what closing the image says, as qemu-img */
	if (ret < 0) {
		warn_msg("%s", err_msg());
		img_close_report(s.img, warn_line, NULL);
		exit(1);
	}
	if (!(a.flags & IMG_NO_FLUSH) && img_flush(s.img) < 0)
		die("%s", err_msg());
	img_close_report(s.img, warn_line, NULL);
	free(s.buf);
	free(s.win);
	free(s.wtouch);
	free(p.v);
	return 0;
}
