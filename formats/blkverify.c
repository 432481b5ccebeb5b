/*
 * qemu's blkverify node (block/blkverify.c): each request goes to a raw
 * reference file and to a test image; a read whose bytes differ prints
 * qemu's message and exits 1 there and then, as qemu's blkverify_err does.
 * The raw file is the image's own fd (under a format, or as the image);
 * its requests reach the test image through lib/io.c's io_copies hook.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "blkverify.h"
#include "fmt.h"

struct blkverify {
	struct blkverify	*next;
	int			 fd;	/* the raw file (the image's fd) */
	char			*raw;	/* its name */
	struct img		*test;
	/*
	 * qemu-img convert's reads (IMG_DATA_READS), once open: the first
	 * mismatch fails the read, so the program reads its pieces again
	 * one by one as qemu-img cut them, and the next names the piece
	 */
	bool			 defer;
};

/* Every blkverify open in this process, so the hook finds one by its fd. */
static struct blkverify *bv_list;

/* What any node takes besides its own options (bdrv_runtime_opts). */
static const char *const node_keys[] = {
	"driver", "node-name", "read-only", "auto-read-only", "force-share",
	"discard", "detect-zeroes", "cache.direct", "cache.no-flush",
	"x-raw", "x-image", NULL
};

const char *
blkverify_prefix(const struct opt_list *o)
{
	const char *d;

	if ((d = opt_list_get(o, "driver")) != NULL && !strcmp(d, "blkverify"))
		return "";
	if ((d = opt_list_get(o, "file.driver")) != NULL &&
	    !strcmp(d, "blkverify"))
		return "file.";
	return NULL;
}

int
blkverify_parse_name(const char *name, struct opt_list *o)
{
	const char *c;
	char *raw;

	name += strlen("blkverify:");
	if ((c = strchr(name, ':')) == NULL)
		return err_set(0, "blkverify requires raw copy and original "
		    "image path");
	raw = xasprintf("%.*s", (int)(c - name), name);
	opt_list_set(o, "file.driver", "blkverify");
	opt_list_set(o, "file.x-raw", raw);
	opt_list_set(o, "file.x-image", c + 1);
	free(raw);
	return 0;
}

static const char *
get(const struct opt_list *o, const char *prefix, const char *key)
{
	char *k = xasprintf("%s%s", prefix, key);
	const char *v = opt_list_get(o, k);

	free(k);
	return v;
}

/* Whether o has a key under prefix+child+"." */
static bool
has_child(const struct opt_list *o, const char *prefix, const char *child)
{
	char *pre = xasprintf("%s%s.", prefix, child);
	size_t i;
	bool has = false;

	for (i = 0; i < o->n && !has; i++)
		has = strncmp(o->v[i].key, pre, strlen(pre)) == 0;
	free(pre);
	return has;
}

const char *
blkverify_raw(const struct opt_list *o, const char *prefix)
{
	const char *f = get(o, prefix, "x-raw"), *d;

	if ((d = get(o, prefix, "raw")) != NULL) {
		err_set(0, "Cannot find device='%s' nor node-name='%s'", d, d);
		return NULL;
	}
	if (f != NULL && get(o, prefix, "raw.filename") != NULL) {
		err_set(0, "Can't specify 'file' and 'filename' options at the "
		    "same time");
		return NULL;
	}
	if (f != NULL)
		return f;
	if (!has_child(o, prefix, "raw")) {
		err_set(0, "A block device must be specified for \"raw\"");
		return NULL;
	}
	if ((d = get(o, prefix, "raw.driver")) != NULL && strcmp(d, "file")) {
		err_set(0, "blkverify: a raw child of driver '%s' is not "
		    "supported", d);
		return NULL;
	}
	if ((f = get(o, prefix, "raw.filename")) == NULL)
		err_set(0, "The 'file' block driver requires a file name");
	return f;
}

/* The test image: x-image, or the node its "test." options describe. */
static struct img *
open_test(const struct opt_list *o, const char *prefix, int flags)
{
	struct opt_list t = { 0, NULL };
	const char *x;
	char *pre = xasprintf("%stest.", prefix);
	struct img *img;
	size_t i;

	if ((x = get(o, prefix, "test")) != NULL) {
		free(pre);
		err_set(0, "Cannot find device='%s' nor node-name='%s'", x, x);
		return NULL;
	}
	x = get(o, prefix, "x-image");
	for (i = 0; x == NULL && i < o->n; i++)
		if (!strncmp(o->v[i].key, pre, strlen(pre)))
			opt_list_set(&t, o->v[i].key + strlen(pre),
			    o->v[i].val);
	free(pre);
	if (x == NULL && t.n == 0) {
		err_set(0, "A block device must be specified for \"test\"");
		return NULL;
	}
	/* the test image reads through its backing chain, whatever the
	 * image above the node does without its own (qemu's BDRV_O_NO_BACKING
	 * is the top node's) */
	img = img_open_child(x, x == NULL ? &t : NULL, flags & ~IMG_NO_BACKING);
	opt_list_free(&t);
	return img;
}

/* Keys under prefix that are nobody's, in qemu's words. */
static int
check_keys(const struct opt_list *o, const char *prefix)
{
	size_t i, j, plen = strlen(prefix);
	const char *k;

	for (i = 0; i < o->n; i++) {
		if (strncmp(o->v[i].key, prefix, plen) != 0)
			continue;
		k = o->v[i].key + plen;
		if (!strncmp(k, "raw.", 4) || !strncmp(k, "test.", 5))
			continue;
		for (j = 0; node_keys[j] != NULL && strcmp(node_keys[j], k); j++)
			continue;
		if (node_keys[j] == NULL)
			return err_set(0, "Block protocol 'blkverify' doesn't "
			    "support the option '%s'", k);
	}
	return 0;
}

/* qemu's blkverify_err: the request, what went wrong, exit 1. */
static _Noreturn void
fail(const struct io_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
fail(const struct io_req *r, const char *fmt, ...)
{
	va_list ap;
	char *what;

	va_start(ap, fmt);
	if (vasprintf(&what, fmt, ap) < 0)
		what = NULL;
	va_end(ap);
	die_notice("blkverify: %s offset=%" PRId64 " bytes=%" PRId64 " %s",
	    r->type == IO_READ ? "read" : "write", (int64_t)r->off,
	    (int64_t)r->len, what != NULL ? what : fmt);
}

/* The test image's answer as qemu's return value: 0 or -errno. */
static int
test_ret(int r)
{
	int e = err_errno();

	return r < 0 ? -(e ? e : EIO) : 0;
}

/* The length of [off, off+len) inside the node (the test image). */
static uint64_t
inside(const struct blkverify *b, uint64_t off, uint64_t len)
{
	return off >= b->test->size ? 0 : MIN(len, b->test->size - off);
}

static ssize_t
bv_read(struct blkverify *b, const struct io_req *r)
{
	uint64_t n = inside(b, r->off, r->len), i;
	uint8_t *raw = r->buf, *test = xcalloc(1, r->len ? r->len : 1);
	ssize_t got;
	int tr, rr;

	tr = n == 0 ? 0 : test_ret(img_read(b->test, r->off, n, test));
	got = io_do(b->fd, r);
	rr = got < 0 ? -(errno ? errno : EIO) : 0;
	if (tr != rr)
		fail(r, "return value mismatch %d != %d", tr, rr);
	if (rr < 0) {
		free(test);
		errno = -rr;
		return -1;
	}
	/* the block layer reads past a node's end as zeroes */
	if ((uint64_t)got < r->len)
		memset(raw + got, 0, r->len - (uint64_t)got);
	for (i = 0; i < r->len && raw[i] == test[i]; i++)
		continue;
	free(test);
	if (i < r->len && b->defer) {
		b->defer = false;
		errno = EIO;
		return -1;
	}
	if (i < r->len)
		fail(r, "contents mismatch at offset %" PRId64,
		    (int64_t)(r->off + i));
	return (ssize_t)n;
}

static ssize_t
bv_write(const struct blkverify *b, const struct io_req *r)
{
	uint64_t n = inside(b, r->off, r->len), done = 0;
	uint8_t *buf = xmalloc(r->len ? r->len : 1);
	int i, tr, rr;

	for (i = 0; i < r->iovcnt; i++) {
		memcpy(buf + done, r->iov[i].iov_base, r->iov[i].iov_len);
		done += r->iov[i].iov_len;
	}
	/* past the test image's end (raw grown alone): the raw file only */
	tr = n == 0 ? 0 : test_ret(img_write(b->test, r->off, n, buf));
	free(buf);
	rr = io_do(b->fd, r) < 0 ? -(errno ? errno : EIO) : 0;
	if (tr != rr)
		fail(r, "return value mismatch %d != %d", tr, rr);
	errno = -rr;
	return rr < 0 ? -1 : 0;
}

/* A zeroed range: qemu's block layer writes zero buffers to both. */
static ssize_t
bv_zero(const struct blkverify *b, const struct io_req *r)
{
	struct io_req w = *r;
	struct iovec v;
	uint64_t n;
	ssize_t ret = 0;
	void *z = xcalloc(1, IO_BUFSIZE);

	w.type = IO_WRITE;
	w.iov = &v;
	w.iovcnt = 1;
	for (; ret == 0 && w.off < r->off + r->len; w.off += n) {
		n = MIN(IO_BUFSIZE, r->off + r->len - w.off);
		v.iov_base = z;
		v.iov_len = n;
		w.len = n;
		ret = bv_write(b, &w);
	}
	free(z);
	return ret;
}

/* io_copies: the requests on a blkverify's raw file reach its test image. */
static ssize_t
bv_io(int fd, const struct io_req *r)
{
	struct blkverify *b;

	for (b = bv_list; b != NULL && b->fd != fd; b = b->next)
		continue;
	if (b == NULL)
		return IO_NOT_COPIES;
	switch (r->type) {
	case IO_READ:
		return bv_read(b, r);
	case IO_WRITE:
		return bv_write(b, r);
	case IO_WRITE_ZEROES:
		return bv_zero(b, r);
	case IO_DISCARD:
		return 0;	/* qemu's blkverify has no discard */
	case IO_FLUSH:
		/* "the raw file is not important": only the test image */
		return img_flush(b->test) < 0 ? -1 : 0;
	case IO_TRUNCATE:
		/* a filter without truncate: qemu truncates its file child */
		return io_do(fd, r);
	default:
		errno = EINVAL;
		return -1;
	}
}

struct blkverify *
blkverify_open(const struct opt_list *o, const char *prefix, int fd, int flags)
{
	struct blkverify *b;
	struct img *test;

	if ((test = open_test(o, prefix, flags)) == NULL)
		return NULL;
	if (check_keys(o, prefix) < 0) {
		img_close(test);
		return NULL;
	}
	b = xcalloc(1, sizeof(*b));
	b->fd = fd;
	b->raw = xstrdup(blkverify_raw(o, prefix));
	b->test = test;
	b->next = bv_list;
	bv_list = b;
	io_copies_add(bv_io);
	return b;
}

void
blkverify_free(struct blkverify *b)
{
	struct blkverify **p;

	if (b == NULL)
		return;
	for (p = &bv_list; *p != NULL; p = &(*p)->next)
		if (*p == b) {
			*p = b->next;
			break;
		}
	if (bv_list == NULL)
		io_copies_del(bv_io);
	img_close(b->test);
	free(b->raw);
	free(b);
}

void
blkverify_opened(struct blkverify *b, int flags)
{
	b->defer = (flags & IMG_DATA_READS) != 0;
}

uint64_t
blkverify_size(const struct blkverify *b)
{
	return b->test->size;
}

char *
blkverify_name(const struct blkverify *b)
{
	return xasprintf("blkverify:%s:%s", b->raw, b->test->filename);
}

char *
blkverify_raw_name(const struct blkverify *b)
{
	return xstrdup(b->raw);
}

/* driver=blkverify as the image: its bytes are the node's. */
static int
node_open(struct img *img)
{
	img->size = blkverify_size(img->blkverify);
	return 0;
}

static int
node_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	if (io_pread_zero(img->fd, buf, len, off) < 0)
		return err_set(errno, "%s: read at %#llx", img->filename,
		    (unsigned long long)off);
	return 0;
}

static int
node_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	if (io_pwrite(img->fd, buf, len, off) < 0)
		return err_set(errno, "%s: write at %#llx", img->filename,
		    (unsigned long long)off);
	return 0;
}

/*
 * qemu's block status of a filter without its own: data with an offset
 * in the node, which qemu-img map shows as the raw file's (its filtered
 * child), holes and all.
 */
static int
node_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	uint64_t n;
	bool zero;

	if (fmt_file_status(img, off, len, &n, &zero) < 0)
		return -1;
	st->offset = off;
	st->len = n;
	st->flags = (zero ? ST_ZERO : ST_DATA) | ST_OFFSET;
	return 0;
}

/* bdrv_get_info answers, with nothing to say but "not dirty" */
static int
node_info(struct img *img, struct img_info *info)
{
	(void)img;
	(void)info;
	return 0;
}

/* qemu's blkverify has no allocated size: "disk size: unavailable" */
static int64_t
node_actual_size(struct img *img)
{
	(void)img;
	return -1;
}

const struct fmt_ops blkverify_ops = {
	.name		= "blkverify",
	.whole_reads	= true,
	.open		= node_open,
	.read		= node_read,
	.write		= node_write,
	.flush		= fmt_sync,
	.block_status	= node_status,
	.info		= node_info,
	.actual_size	= node_actual_size,
};
