/*
 * img-bench: time sequential reads or writes to an image, as qemu-img 7.2's
 * bench (qemu-img.c, img_bench and bench_cb), with -d worker threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "../lib/opt.h"
#include "../formats/img.h"

/* Threads beyond this share the queue: the depth is reported, not spawned. */
#define BENCH_MAX_THREADS	1024
#define BENCH_STACK		(256u << 10)

static const char usage_text[] =
    "usage: img-bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval]\n"
    "                 [-i aio] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q]\n"
    "                 [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename\n";

struct bench {
	/* the command line */
	const char	*fmt;
	bool		 image_opts;
	int		 flags;		/* IMG_RDWR, IMG_SHARE, IMG_DIRECT */
	bool		 native_aio;	/* -n, -i native: needs IMG_DIRECT */
	bool		 writethrough;	/* -t writethrough, directsync */
	bool		 no_flush;	/* -t unsafe */
	bool		 write;
	int		 count;
	int		 depth;
	uint64_t	 offset;
	size_t		 bufsize;
	size_t		 step;
	int		 pattern;
	int		 flush_interval;
	bool		 drain;

	/* the run */
	struct img	*img;
	uint64_t	 size;
	bool		 fast;		/* raw bytes at identical offsets: use the fd */
	size_t		 align;		/* O_DIRECT offsets and lengths */
	bool		 rmw_lock;	/* direct writes may be read-modify-write */
	uint8_t		*buf;		/* the pattern every write writes */
	pthread_mutex_t	 io_lock;	/* the format layer, or read-modify-write */
	pthread_mutex_t	 lock;		/* what follows */
	pthread_cond_t	 cond;
	int		 nrreq;		/* requests in flight at most: the threads */
	int		 n;		/* requests not yet completed */
	int		 in_flight;	/* issued: queued or running */
	uint64_t	*queue;		/* offsets issued, not yet taken: a ring */
	int		 qhead, qlen;
	bool		 flush_wanted;	/* --no-drain: for the flusher thread */
	bool		 flusher_stop;
	uint64_t	 write_gen;	/* writes completed */
	uint64_t	 flushed_gen;	/* write_gen at the last flush */
	uint64_t	 next;		/* offset of the next request */
	bool		 failed;
	char		 errmsg[1024];
};

enum {
	OPT_FLUSH_INTERVAL = 256, OPT_IMAGE_OPTS, OPT_PATTERN, OPT_NO_DRAIN,
	OPT_LONG, OPT_SHORT,
};

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "flush-interval", required_argument, NULL, OPT_FLUSH_INTERVAL },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "pattern", required_argument, NULL, OPT_PATTERN },
	{ "no-drain", no_argument, NULL, OPT_NO_DRAIN },
	{ "force-share", no_argument, NULL, 'U' },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":hc:d:f:ni:o:qs:S:t:wU";

static _Noreturn void
usage(void)
{
	printf("%s\n"
	    "Time COUNT sequential requests of BUFFER_SIZE bytes, DEPTH at a time.\n\n"
	    "  -c COUNT             requests in all (default 75000)\n"
	    "  -d DEPTH             requests in flight at once (default 64)\n"
	    "  -f FMT               image format (default: probe)\n"
	    "  --flush-interval=N   flush whenever N requests remain (with -w)\n"
	    "  --no-drain           flush without waiting for requests in flight\n"
	    "  -i AIO               threads, native or io_uring (all run as threads)\n"
	    "  -n                   native AIO: as -i native; needs -t none or directsync\n"
	    "  -o OFFSET            first request at this byte (default 0)\n"
	    "  --pattern=BYTE       fill written buffers with BYTE (default 0)\n"
	    "  -q                   accepted for qemu-img compatibility\n"
	    "  -s BUFFER_SIZE       bytes per request (default 4096)\n"
	    "  -S STEP_SIZE         bytes between requests (default BUFFER_SIZE)\n"
	    "  -t CACHE             none, off, directsync, writeback, unsafe, writethrough\n"
	    "  -w                   write instead of read\n"
	    "  -U, --force-share    open the image shared with other users (not with -w)\n"
	    "  --image-opts         FILENAME is an option list (driver=...,file.filename=...)\n"
	    "\nSee img-bench(1).\n", usage_text);
	exit(close_stdout());
}

/* qemu_strtoul(s, NULL, 0, &v) and at most max: base 0, all of s, no overflow. */
static bool
parse_ulong(const char *s, unsigned long max, int *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno != 0 || end == s || *end != '\0' || v > max)
		return false;
	*out = (int)v;
	return true;
}

/* qemu-img's cvtnum_full(): the value, or exit after qemu's message. */
static uint64_t
cvtnum(const char *name, const char *value, uint64_t max)
{
	uint64_t v;

	if (opt_cvtnum(name, value, 0, max, &v) < 0)
		die("%s", err_msg());
	return v;
}

/* bdrv_parse_cache_mode(); false for an unknown mode. */
static bool
cache_mode(struct bench *b, const char *mode)
{
	int m = opt_cache_mode(mode);

	if (m < 0)
		return false;
	b->flags &= ~IMG_DIRECT;
	if (m & OPT_CACHE_DIRECT)
		b->flags |= IMG_DIRECT;
	b->no_flush = (m & OPT_CACHE_NO_FLUSH) != 0;
	b->writethrough = (m & OPT_CACHE_WRITETHROUGH) != 0;
	return true;
}

static void
option(struct bench *b, int c, const char *arg)
{
	switch (c) {
	case 'c':
		if (!parse_ulong(arg, INT_MAX, &b->count))
			die("Invalid request count specified");
		break;
	case 'd':
		if (!parse_ulong(arg, INT_MAX, &b->depth))
			die("Invalid queue depth specified");
		break;
	case 'f':
		b->fmt = arg;
		break;
	case 'n':
		b->native_aio = true;
		break;
	case 'i':
		if (strcmp(arg, "native") == 0)
			b->native_aio = true;
		else if (strcmp(arg, "threads") != 0 && strcmp(arg, "io_uring") != 0)
			die("Invalid aio option: %s", arg);
		break;
	case 'o':
		b->offset = cvtnum("offset", arg, INT64_MAX);
		break;
	case 's':
		b->bufsize = cvtnum("buffer size", arg, INT_MAX);
		break;
	case 'S':
		b->step = cvtnum("step_size", arg, INT_MAX);
		break;
	case 't':
		if (!cache_mode(b, arg))
			die("Invalid cache mode");
		break;
	case 'w':
		b->flags |= IMG_RDWR;
		b->write = true;
		break;
	case 'U':
		b->flags |= IMG_SHARE;
		break;
	case OPT_PATTERN:
		if (!parse_ulong(arg, 0xff, &b->pattern))
			die("Invalid pattern byte specified");
		break;
	case OPT_FLUSH_INTERVAL:
		if (!parse_ulong(arg, INT_MAX, &b->flush_interval))
			die("Invalid flush interval specified");
		break;
	case OPT_NO_DRAIN:
		b->drain = false;
		break;
	case OPT_IMAGE_OPTS:
		b->image_opts = true;
		break;
	}
}

static void
check_aio(const struct bench *b, const char *name, const char *file, int flags)
{
	int fd;

	if (!b->native_aio || (flags & IMG_DIRECT))
		return;
	if (file != NULL &&
	    (fd = open(file, (flags & IMG_RDWR ? O_RDWR : O_RDONLY) | O_CLOEXEC)) < 0)
		return;		/* img_open says why it cannot open the file */
	if (file != NULL)
		close(fd);
	die("Could not open '%s': aio=native was specified, but it requires cache.direct=on, which was not specified.",
	    name);
}

static struct img *
open_image(const struct bench *b, const char *filename)
{
	struct img *img;

	if (b->image_opts && b->fmt != NULL)
		die("--image-opts and --format are mutually exclusive");
	if (b->image_opts) {
		img = img_open_image_opts_share(filename, b->flags);
	} else {
		if ((b->flags & IMG_SHARE) && (b->flags & IMG_RDWR))
			die("Could not open '%s': force-share=on can only be used with read-only images",
			    filename);
		check_aio(b, filename, filename, b->flags);
		img = img_open(filename, b->fmt, b->flags);
	}
	if (img == NULL)
		die("%s", err_msg());
	if (b->image_opts)
		check_aio(b, filename, NULL, img->flags);
	return img;
}

/*
 * The fast path: an image without a backing file whose every byte lies at
 * the same offset of its own file (raw) is read and written with
 * pread/pwrite on its fd from all threads at once.  Anything else goes
 * through img_read/img_write, one request at a time.
 */
static bool
identity_mapped(struct img *img)
{
	struct map_ext e;
	uint64_t off;

	if (img->backing != NULL)
		return false;
	for (off = 0; off < img->size; off += e.length) {
		if (img_status_layer(img, off, img->size - off, &e) < 0 ||
		    !e.has_offset || e.offset != off || (e.filename != NULL &&
		    strcmp(e.filename, img->filename) != 0))
			return false;
	}
	return true;
}

/* O_DIRECT's alignment for offsets and lengths: 512, or 4096 if 512 fails. */
static size_t
direct_align(int fd)
{
	uint8_t *p = io_alloc(IO_ALIGN);
	size_t align = 512;

	if (pread(fd, p, 512, 0) < 0 && errno == EINVAL)
		align = IO_ALIGN;
	free(p);
	return align;
}

static size_t
buf_size(const struct bench *b)
{
	return MAX(ROUND_UP(b->bufsize, IO_ALIGN), IO_ALIGN);
}

/* Read len bytes at off; the part past the end of the file reads as zeroes. */
static int
fd_read(int fd, uint8_t *p, size_t len, uint64_t off)
{
	size_t done = 0, want;
	ssize_t r;

	while (done < len) {
		want = len - done;
		r = pread(fd, p + done, want, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		done += (size_t)r;
		if ((size_t)r < want)
			break;	/* the end of the file (O_DIRECT can't go on) */
	}
	memset(p + done, 0, len - done);
	return 0;
}

/* An O_DIRECT request off the alignment: through an aligned bounce buffer. */
static int
fd_bounce(struct bench *b, uint64_t off, uint8_t *buf, uint8_t **bounce)
{
	uint64_t lo = ROUND_DOWN(off, b->align);
	size_t n = (size_t)(ROUND_UP(off + b->bufsize, b->align) - lo);

	if (*bounce == NULL)
		*bounce = io_alloc(b->bufsize + 2 * b->align);
	if (fd_read(b->img->fd, *bounce, n, lo) < 0)
		return -1;
	if (!b->write) {
		memcpy(buf, *bounce + (off - lo), b->bufsize);
		return 0;
	}
	memcpy(*bounce + (off - lo), buf, b->bufsize);
	return io_pwrite(b->img->fd, *bounce, n, lo);
}

static int
fd_request(struct bench *b, uint64_t off, uint8_t *buf, uint8_t **bounce)
{
	int fd = b->img->fd, r, e;
	bool aligned = off % b->align == 0 && b->bufsize % b->align == 0;

	if (b->rmw_lock)
		pthread_mutex_lock(&b->io_lock);
	if (!aligned)
		r = fd_bounce(b, off, buf, bounce);
	else if (b->write)
		r = io_pwrite(fd, buf, b->bufsize, off);
	else
		r = fd_read(fd, buf, b->bufsize, off);
	e = r < 0 ? errno : 0;
	if (b->rmw_lock)
		pthread_mutex_unlock(&b->io_lock);
	if (e == 0 && b->write && b->writethrough && fdatasync(fd) < 0 &&
	    errno != EINVAL)
		e = errno;
	return e;
}

/* One request: 0, or an errno with msg set. */
static int
request(struct bench *b, uint64_t off, uint8_t *buf, uint8_t **bounce, char *msg,
    size_t msgsize)
{
	int r;

	/* blk_check_byte_request() */
	if (off > b->size || b->size - off < b->bufsize)
		r = EIO;
	else if (b->fast)
		r = fd_request(b, off, buf, bounce);
	else {
		pthread_mutex_lock(&b->io_lock);
		r = b->write ? img_write(b->img, off, b->bufsize, buf) :
		    img_read(b->img, off, b->bufsize, buf);
		if (r == 0 && b->write && b->writethrough)
			r = img_flush(b->img);
		if (r < 0) {
			r = err_errno() ? err_errno() : EIO;
			snprintf(msg, msgsize, "%s", err_errno() ?
			    strerror(err_errno()) : err_msg());
		}
		pthread_mutex_unlock(&b->io_lock);
		return r;
	}
	if (r != 0)
		snprintf(msg, msgsize, "%s", strerror(r));
	return r;
}

/*
 * Flush, unless nothing was written since the last flush (bdrv_co_flush's
 * write_gen check) or -t unsafe.  Called with b->lock held, which it drops
 * around the flush; flushes never overlap (see flush_point).
 */
static int
flush(struct bench *b, char *msg, size_t msgsize)
{
	uint64_t gen = b->write_gen;
	int r = 0;

	if (b->no_flush || gen == b->flushed_gen)
		return 0;
	pthread_mutex_unlock(&b->lock);
	pthread_mutex_lock(&b->io_lock);
	if (img_flush(b->img) < 0) {
		r = -1;
		snprintf(msg, msgsize, "%s", err_errno() ? strerror(err_errno()) :
		    err_msg());
	}
	pthread_mutex_unlock(&b->io_lock);
	pthread_mutex_lock(&b->lock);
	if (r == 0)
		b->flushed_gen = gen;
	return r;
}

/* Record the first failure and wake everyone; called with b->lock held. */
static void
fail(struct bench *b, const char *what, const char *msg)
{
	if (!b->failed)
		snprintf(b->errmsg, sizeof(b->errmsg), "%s: %s", what, msg);
	b->failed = true;
	pthread_cond_broadcast(&b->cond);
}

/* bench_cb's refill: issue requests until depth are in flight. */
static void
fill(struct bench *b)
{
	while (b->n > b->in_flight && b->in_flight < b->nrreq) {
		b->queue[(b->qhead + b->qlen) % b->nrreq] = b->next;
		b->qlen++;
		b->in_flight++;
		b->next = b->size ? (b->next + b->step) % b->size : 0;
	}
	pthread_cond_broadcast(&b->cond);
}

/*
 * A request completed: qemu-img's bench_cb, under b->lock.  "Issued" means
 * queued for the workers, so the counts, and with them the flush points,
 * are qemu's: a flush comes when a completion finds a multiple of the
 * flush interval of requests not yet issued.  Draining, nothing more is
 * issued until the last request in flight completes and flushes.  Without
 * draining, the flusher thread flushes beside the requests; asking while it
 * flushes makes one more flush, as concurrent flushes coalesce in qemu.
 */
static void
completed(struct bench *b, char *msg, size_t msgsize)
{
	int remaining = b->n - b->in_flight;

	b->n--;
	b->in_flight--;
	if (b->write && !b->writethrough)
		b->write_gen++;
	if (b->flush_interval && remaining % b->flush_interval == 0) {
		if (!b->drain) {
			b->flush_wanted = true;
		} else if (b->in_flight > 0) {
			return;
		} else if (flush(b, msg, msgsize) < 0) {
			fail(b, "Failed request", msg);
			return;
		}
	}
	fill(b);
}

static void *
flusher(void *arg)
{
	struct bench *b = arg;
	char msg[512];

	pthread_mutex_lock(&b->lock);
	for (;;) {
		while (!b->flush_wanted && !b->flusher_stop)
			pthread_cond_wait(&b->cond, &b->lock);
		if (!b->flush_wanted || b->failed)
			break;
		b->flush_wanted = false;
		if (flush(b, msg, sizeof(msg)) < 0)
			fail(b, "Failed flush request", msg);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

static void *
worker(void *arg)
{
	struct bench *b = arg;
	/* writes share the pattern; each read has a buffer of its own */
	uint8_t *buf = b->write ? b->buf : io_alloc(buf_size(b)), *bounce = NULL;
	char msg[512];
	uint64_t off;
	int r;

	pthread_mutex_lock(&b->lock);
	for (;;) {
		while (b->qlen == 0 && b->n > 0 && !b->failed)
			pthread_cond_wait(&b->cond, &b->lock);
		if (b->qlen == 0 || b->failed)
			break;
		off = b->queue[b->qhead];
		b->qhead = (b->qhead + 1) % b->nrreq;
		b->qlen--;
		pthread_mutex_unlock(&b->lock);
		r = request(b, off, buf, &bounce, msg, sizeof(msg));
		pthread_mutex_lock(&b->lock);
		if (r != 0)
			fail(b, "Failed request", msg);
		else
			completed(b, msg, sizeof(msg));
	}
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	if (!b->write)
		free(buf);
	free(bounce);
	return NULL;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run the requests on nrreq threads; the seconds they took. */
static double
run(struct bench *b)
{
	pthread_t *t = xcalloc((size_t)MAX(b->nrreq, 1), sizeof(*t));
	pthread_attr_t attr;
	pthread_t ft;
	double t1, t2;
	int i, e;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, BENCH_STACK);
	if ((e = pthread_create(&ft, &attr, flusher, b)) != 0)
		die("pthread_create: %s", strerror(e));
	t1 = now();
	pthread_mutex_lock(&b->lock);
	fill(b);
	pthread_mutex_unlock(&b->lock);
	for (i = 0; i < b->nrreq; i++)
		if ((e = pthread_create(&t[i], &attr, worker, b)) != 0)
			die("pthread_create: %s", strerror(e));
	for (i = 0; i < b->nrreq; i++)
		pthread_join(t[i], NULL);
	t2 = now();
	pthread_mutex_lock(&b->lock);
	b->flusher_stop = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	pthread_join(ft, NULL);
	pthread_attr_destroy(&attr);
	free(t);
	return t2 - t1;
}

static void
setup(struct bench *b, const char *filename)
{
	b->img = open_image(b, filename);
	b->size = b->img->size;
	b->step = b->step ? b->step : b->bufsize;
	b->fast = identity_mapped(b->img);
	b->align = b->img->flags & IMG_DIRECT ? direct_align(b->img->fd) : 1;
	/* unaligned direct writes read-modify-write: none may overlap another */
	b->rmw_lock = b->fast && b->write && b->align > 1 &&
	    (b->offset % b->align || b->bufsize % b->align ||
	    b->step % b->align || b->size % b->align);
	if (b->write) {
		b->buf = io_alloc(buf_size(b));
		memset(b->buf, b->pattern, b->bufsize);
	}
	b->n = b->count;
	b->nrreq = MIN(MIN(b->depth, b->count), BENCH_MAX_THREADS);
	b->queue = xcalloc((size_t)MAX(b->nrreq, 1), sizeof(*b->queue));
	b->next = b->offset;
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_init(&b->io_lock, NULL);
	pthread_cond_init(&b->cond, NULL);
}

static int
bench(struct bench *b, const char *filename)
{
	char msg[512];
	double secs;
	int r;

	if (!b->write && b->flush_interval)
		die("--flush-interval is only available in write tests");
	if (b->flush_interval && b->flush_interval < b->depth)
		die("Flush interval can't be smaller than depth");
	/* qemu-img waits forever with nothing in flight; refuse instead */
	if (b->depth == 0 && b->count > 0)
		die("Invalid queue depth specified");
	setup(b, filename);
	printf("Sending %d %s requests, %d bytes each, %d in parallel "
	    "(starting at offset %" PRIu64 ", step size %d)\n",
	    b->count, b->write ? "write" : "read", (int)b->bufsize, b->depth,
	    b->offset, (int)b->step);
	if (b->flush_interval)
		printf("Sending flush every %d requests\n", b->flush_interval);
	fflush(stdout);
	secs = run(b);
	if (b->failed)
		die("%s", b->errmsg);
	printf("Run completed in %3.3f seconds.\n", secs);
	/* as closing the image does in qemu-img, after the clock stops */
	pthread_mutex_lock(&b->lock);
	r = flush(b, msg, sizeof(msg));
	pthread_mutex_unlock(&b->lock);
	if (r < 0)
		die("Failed flush request: %s", msg);
	img_close(b->img);
	free(b->queue);
	free(b->buf);
	return close_stdout();
}

int
main(int argc, char *argv[])
{
	struct bench b = {
		.count = 75000, .depth = 64, .bufsize = 4096, .drain = true,
	};
	int c;

	prog_init(argv[0]);
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case OPT_LONG:
		case OPT_SHORT:
			opt_print_options(longopts, shortopts, c == OPT_LONG);
		case ':':
		case '?':
			opt_usage_error(c, argv);
		default:
			option(&b, c, optarg);
		}
	}
	if (optind != argc - 1)
		die_usage("Expecting one image file name");
	return bench(&b, argv[optind]);
}
