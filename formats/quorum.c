/*
 * qemu's quorum node below a format (block/quorum.c): the children are
 * copies of one file.  Every change goes to each copy and succeeds when
 * vote-threshold copies take it; reads vote on the copies' bytes (or, with
 * read-pattern=fifo, take the first copy that reads).  The node has no
 * folder for relative names (bdrv_dirname fails on it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/io.h"
#include "../lib/json.h"
#include "../lib/lock.h"
#include "blkdebug.h"
#include "img.h"
#include "quorum.h"

struct quorum {
	struct quorum	*next;
	int		 n;		/* children */
	int		 threshold;	/* vote-threshold */
	bool		 fifo;		/* read-pattern=fifo */
	bool		 rewrite;	/* rewrite-corrupted=on */
	int		*fd;		/* fd[0] is the image's own (img->fd) */
};

/* Every quorum open in this process, so io_copies finds one by its fd. */
static struct quorum *quorum_list;

/* The node's own options, as qemu's quorum_runtime_opts. */
static const struct opt_desc quorum_opts[] = {
	{ "vote-threshold", OPT_NUMBER, NULL, NULL },
	{ "blkverify", OPT_BOOL, NULL, NULL },
	{ "rewrite-corrupted", OPT_BOOL, NULL, NULL },
	{ "read-pattern", OPT_STRING, NULL, NULL },
	{ NULL, OPT_STRING, NULL, NULL }
};

/* What any node takes (bdrv_runtime_opts and the generic ones). */
static const char *const node_keys[] = {
	"node-name", "read-only", "auto-read-only", "force-share",
	"cache.direct", "cache.no-flush", "discard", "detect-zeroes", NULL
};

bool
quorum_file(const struct opt_list *o)
{
	const char *d = opt_list_get(o, "file.driver");

	return d != NULL && strcmp(d, "quorum") == 0;
}

/* Child i's key, the quorum node's options being under pre ("file." or "") */
static const char *
pchild(const struct opt_list *o, const char *pre, unsigned i, const char *key)
{
	char *k = xasprintf("%schildren.%u.%s", pre, i, key);
	const char *v = opt_list_get(o, k);

	free(k);
	return v;
}

static const char *
child(const struct opt_list *o, unsigned i, const char *key)
{
	return pchild(o, "file.", i, key);
}

/* Whether child i is a raw node over its file, not the file itself. */
static bool
raw_child(const struct opt_list *o, unsigned i)
{
	const char *d = child(o, i, "driver");

	return d != NULL && strcmp(d, "raw") == 0;
}

/* Child i's file: children.i.filename, or a raw child's file.filename. */
static const char *
child_file(const struct opt_list *o, unsigned i)
{
	return child(o, i, raw_child(o, i) ? "file.filename" : "filename");
}

/* How many children.N (a subtree or a node reference) are under pre. */
static unsigned
nchildren(const struct opt_list *o, const char *pre)
{
	char *sub, *ref;
	unsigned n;
	size_t i;

	for (n = 0;; n++) {
		sub = xasprintf("%schildren.%u.", pre, n);
		ref = xasprintf("%schildren.%u", pre, n);
		for (i = 0; i < o->n && strncmp(o->v[i].key, sub,
		    strlen(sub)) && strcmp(o->v[i].key, ref); i++)
			continue;
		free(sub);
		free(ref);
		if (i == o->n)
			return n;
	}
}

/* Child i's driver and file as qemu opens them: "file", or raw on a file. */
static int
check_child(const struct opt_list *o, unsigned i)
{
	const char *d = child(o, i, "driver"), *fd = child(o, i, "file.driver");
	const char *ref = child(o, i, "file");
	char *k = xasprintf("file.children.%u", i);
	const char *node = opt_list_get(o, k);

	free(k);
	if (node != NULL)
		return err_set(0, "Cannot find device='%s' nor node-name='%s'",
		    node, node);
	if (d == NULL)
		return err_set(0, "Must specify either driver or file");
	if (strcmp(d, "file") && strcmp(d, "raw"))
		return err_set(0, "Unknown driver '%s'", d);
	if (raw_child(o, i) && ref != NULL)
		return err_set(0, "Cannot find device='%s' nor node-name='%s'",
		    ref, ref);
	if (raw_child(o, i) && fd != NULL && strcmp(fd, "file"))
		return err_set(0, "Unknown driver '%s'", fd);
	if (child_file(o, i) == NULL)
		return raw_child(o, i) && fd == NULL ?
		    err_set(0, "A block device must be specified for \"file\"") :
		    err_set(0, "The 'file' block driver requires a file name");
	return 0;
}

/* The value of the node's option name, checked as qemu_opts_absorb_qdict. */
static int
get_opt(const struct opt_list *o, const char *pre, const char *name,
    const char **val)
{
	static char buf[32];
	const struct opt_desc *d;
	char *k = xasprintf("%s%s", pre, name);
	const char *v = opt_list_get(o, k);

	free(k);
	*val = NULL;
	for (d = quorum_opts; strcmp(d->name, name); d++)
		continue;
	return v == NULL ? 0 : opt_check(d, v, buf, sizeof(buf), val);
}

/* The node's keys (under pre): its options, its children's, any node's. */
int
quorum_check_keys(const struct opt_list *o, const char *pre)
{
	const struct opt_desc *d;
	const char *k;
	size_t i, j, plen = strlen(pre);

	for (i = 0; i < o->n; i++) {
		if (strncmp(o->v[i].key, pre, plen) != 0)
			continue;
		k = o->v[i].key + plen;
		for (d = quorum_opts; d->name != NULL && strcmp(d->name, k); d++)
			continue;
		for (j = 0; node_keys[j] != NULL && strcmp(node_keys[j], k); j++)
			continue;
		if (d->name == NULL && node_keys[j] == NULL &&
		    strcmp(k, "driver") && strncmp(k, "children.", 9) &&
		    (plen > 0 || strcmp(k, "filename")))
			return err_set(0, "Block format 'quorum' does not "
			    "support the option '%s'", k);
	}
	return 0;
}

int
quorum_params(const struct opt_list *o, const char *pre,
    struct quorum_params *p)
{
	const char *t, *v;
	int bv = 0, rw = 0;

	memset(p, 0, sizeof(*p));
	if ((p->n = (int)nchildren(o, pre)) == 0)
		return err_set(0, "Number of provided children must be 1 or more");
	if (get_opt(o, pre, "vote-threshold", &t) < 0 ||
	    get_opt(o, pre, "blkverify", &v) < 0 || (v != NULL &&
	    (bv = opt_bool(v)) < 0) ||
	    get_opt(o, pre, "rewrite-corrupted", &v) < 0 ||
	    (v != NULL && (rw = opt_bool(v)) < 0) ||
	    get_opt(o, pre, "read-pattern", &v) < 0)
		return -1;
	/* qemu_opt_get_number into an int: "-1" wraps to -1 */
	p->threshold = t != NULL ? (int)strtoull(t, NULL, 0) : 0;
	if (p->threshold < 1)
		return err_set(0, "Parameter 'vote-threshold' expects a value >= 1");
	if (p->threshold > p->n)
		return err_set(0, "threshold may not exceed children count");
	if (v != NULL && strcmp(v, "quorum") && strcmp(v, "fifo"))
		return err_set(0, "Please set read-pattern as fifo or quorum");
	p->fifo = v != NULL && !strcmp(v, "fifo");
	if (!p->fifo && bv && (p->n != 2 || p->threshold != 2))
		return err_set(0, "blkverify=on can only be set if there are "
		    "exactly two files and vote-threshold is 2");
	if (!p->fifo && bv && rw)
		return err_set(0, "rewrite-corrupted=on cannot be used with "
		    "blkverify=on");
	p->blkverify = !p->fifo && bv;
	p->rewrite = !p->fifo && rw;
	return 0;
}

/*
 * The node's options in the order quorum_open checks them, then its
 * children's files (each opened as qemu does), then leftover keys.
 */
const char *
quorum_check(const struct opt_list *o)
{
	struct quorum_params p;
	const char *f;
	int i, fd;

	if (quorum_params(o, "file.", &p) < 0)
		return NULL;
	for (i = 0; i < p.n; i++) {
		if (check_child(o, (unsigned)i) < 0)
			return NULL;
		f = child_file(o, (unsigned)i);
		if ((fd = open(f, O_RDONLY | O_CLOEXEC)) < 0) {
			err_set(errno, "Could not open '%s'", f);
			return NULL;
		}
		close(fd);
	}
	if (quorum_check_keys(o, "file.") < 0)
		return NULL;
	return child_file(o, 0);
}

/* A child of a quorum open for writing, as file-posix opens it. */
static int
open_child(const struct opt_list *o, unsigned i, int flags, bool metadata)
{
	const char *f = child_file(o, i);
	const char *lk = child(o, i, raw_child(o, i) ? "file.locking" : "locking");
	struct stat st;
	int fd;

	fd = open(f, ((flags & IMG_RDWR) ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return err_set(errno, "Could not open '%s'", f);
	if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(0, "'file' driver requires '%s' to be a regular "
		    "file", f);
	}
	if ((lk == NULL || opt_bool(lk) != 0) && lock_image(fd, f,
	    flags & IMG_RDWR, flags & IMG_SHARE, metadata, 0) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* quorum_getlength: the copies must be as long as each other. */
static int
same_length(const struct quorum *q)
{
	struct stat st;
	off_t len = 0;
	int i;

	for (i = 0; i < q->n; i++) {
		if (fstat(q->fd[i], &st) < 0)
			return err_set(errno, "Could not refresh total sector "
			    "count");
		if (i > 0 && st.st_size != len)
			return err_set(EIO, "Could not refresh total sector "
			    "count");
		len = st.st_size;
	}
	return 0;
}

int
quorum_twice(const int *fd, int i, const char *name)
{
	struct stat a, b;
	int j;

	if (fstat(fd[i], &a) < 0)
		return 0;
	for (j = 0; j < i; j++)
		if (fstat(fd[j], &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino)
			return err_set(0, "Failed to get \"write\" lock\n"
			    "Is another process using the image [%s]?", name);
	return 0;
}

static ssize_t quorum_io(int fd, const struct io_req *r);

struct quorum *
quorum_open(const struct opt_list *o, int fd, int flags, bool metadata)
{
	struct quorum *q = xcalloc(1, sizeof(*q));
	const char *v = opt_list_get(o, "file.read-pattern");

	q->n = (int)nchildren(o, "file.");
	q->threshold = (int)strtoull(opt_list_get(o, "file.vote-threshold"),
	    NULL, 0);
	q->fifo = v != NULL && !strcmp(v, "fifo");
	v = opt_list_get(o, "file.rewrite-corrupted");
	q->rewrite = !q->fifo && v != NULL && opt_bool(v) == 1;
	q->fd = xcalloc((size_t)q->n, sizeof(*q->fd));
	q->fd[0] = fd;
	for (q->n = 1; q->n < (int)nchildren(o, "file."); q->n++)
		if ((q->fd[q->n] = open_child(o, (unsigned)q->n, flags,
		    metadata)) < 0 || ((flags & IMG_RDWR) &&
		    quorum_twice(q->fd, q->n, child_file(o, (unsigned)q->n)) < 0)) {
			q->n += q->fd[q->n] >= 0;
			goto fail;
		}
	if (same_length(q) < 0)
		goto fail;
	/* quorum_child_perm: rewriting takes write on the children */
	if (q->rewrite && !(flags & IMG_RDWR)) {
		err_set(0, "Block node is read-only");
		goto fail;
	}
	q->next = quorum_list;
	quorum_list = q;
	io_copies_add(quorum_io);
	return q;
fail:
	q->fd[0] = -1;
	quorum_free(q);
	return NULL;
}

int
quorum_fds(const struct quorum *q, const int **fds)
{
	*fds = q->fd;
	return q->n;
}

void
quorum_free(struct quorum *q)
{
	struct quorum **p;
	int i;

	if (q == NULL)
		return;
	for (p = &quorum_list; *p != NULL; p = &(*p)->next)
		if (*p == q) {
			*p = q->next;
			break;
		}
	if (quorum_list == NULL)
		io_copies_del(quorum_io);
	for (i = 1; i < q->n; i++) {
		lock_drop(q->fd[i]);
		close(q->fd[i]);
	}
	free(q->fd);
	free(q);
}

/*
 * quorum_vote_error: the errno most copies failed with; among as many, the
 * one whose first copy comes last (qemu's vote list grows at its head).
 */
int
quorum_vote_error(const int *err, int n)
{
	int i, j, c, best = 0, e = EIO;

	for (i = 0; i < n; i++) {
		if (err[i] == 0)
			continue;
		for (j = 0; j < i && err[j] != err[i]; j++)
			continue;
		if (j < i)
			continue;	/* counted with its first copy */
		for (c = 0, j = i; j < n; j++)
			c += err[j] == err[i];
		if (c >= best) {
			best = c;
			e = err[i];
		}
	}
	return e;
}

/* A change: on every copy; vote-threshold of them must take it. */
static ssize_t
change_all(const struct quorum *q, const struct io_req *r)
{
	int *err = xcalloc((size_t)q->n, sizeof(*err));
	int i, ok = 0, e;

	for (i = 0; i < q->n; i++) {
		if (io_do(q->fd[i], r) < 0)
			err[i] = errno ? errno : EIO;
		else
			ok++;
	}
	e = quorum_vote_error(err, q->n);
	free(err);
	if (ok >= q->threshold)
		return 0;
	errno = e;
	return -1;
}

/* read-pattern=fifo: the first copy that reads. */
static ssize_t
read_fifo(const struct quorum *q, const struct io_req *r)
{
	ssize_t n = -1;
	int i;

	for (i = 0; i < q->n && n < 0; i++)
		n = io_do(q->fd[i], r);
	return n;
}

bool
quorum_same(ssize_t na, const void *a, ssize_t nb, const void *b)
{
	return na == nb && memcmp(a, b, (size_t)na) == 0;
}

/*
 * The winning version of a vote on got[0..n) (got[i] < 0: copy i failed):
 * most votes; among as many, the one first read from the last copy, as
 * quorum_get_vote_winner walks qemu's list.  *votes gets its count.
 */
int
quorum_winner(int n, uint8_t *const *buf, const ssize_t *got, int *votes)
{
	int i, j, c, best = -1;

	*votes = 0;
	for (i = 0; i < n; i++) {
		if (got[i] < 0)
			continue;
		for (j = 0; j < i && (got[j] < 0 ||
		    !quorum_same(got[i], buf[i], got[j], buf[j])); j++)
			continue;
		if (j < i)
			continue;
		for (c = 0, j = i; j < n; j++)
			c += got[j] >= 0 &&
			    quorum_same(got[i], buf[i], got[j], buf[j]);
		if (c >= *votes) {
			*votes = c;
			best = i;
		}
	}
	return best;
}

void
quorum_vote_new(struct quorum_vote *v, int n, void *first, size_t len)
{
	int i;

	v->n = n;
	v->buf = xcalloc((size_t)n, sizeof(*v->buf));
	v->got = xcalloc((size_t)n, sizeof(*v->got));
	v->err = xcalloc((size_t)n, sizeof(*v->err));
	for (i = 0; i < n; i++)
		v->buf[i] = i == 0 ? first : xmalloc(len ? len : 1);
}

int
quorum_vote_count(const struct quorum_vote *v, int threshold, int *votes,
    int *ok)
{
	int i, w;

	for (*ok = 0, i = 0; i < v->n; i++)
		*ok += v->got[i] >= 0;
	if (*ok < threshold) {
		errno = quorum_vote_error(v->err, v->n);
		return -1;
	}
	w = quorum_winner(v->n, v->buf, v->got, votes);
	if (*votes < threshold) {
		errno = EIO;
		return -1;
	}
	return w;
}

void
quorum_vote_take(struct quorum_vote *v, int w)
{
	if (w != 0)
		memcpy(v->buf[0], v->buf[w], (size_t)v->got[w]);
}

bool
quorum_vote_lost(const struct quorum_vote *v, int i, int w)
{
	return v->got[i] >= 0 &&
	    !quorum_same(v->got[i], v->buf[i], v->got[w], v->buf[w]);
}

void
quorum_vote_free(struct quorum_vote *v)
{
	int i;

	for (i = 1; i < v->n; i++)
		free(v->buf[i]);
	free(v->buf);
	free(v->got);
	free(v->err);
}

/* Copies that read other bytes than the winner's get the winner's. */
static void
rewrite(const struct quorum *q, const struct quorum_vote *v, int w,
    uint64_t off)
{
	struct iovec iov = { v->buf[w], (size_t)v->got[w] };
	struct io_req r = { .type = IO_WRITE, .iov = &iov, .iovcnt = 1,
	    .off = off, .len = (uint64_t)v->got[w] };
	int i;

	for (i = 0; i < q->n; i++)
		if (quorum_vote_lost(v, i, w))
			(void)io_do(q->fd[i], &r);	/* a repair, as qemu's */
}

/* read-pattern=quorum: read every copy and vote on the bytes. */
static ssize_t
read_vote(const struct quorum *q, const struct io_req *r)
{
	struct quorum_vote v;
	struct io_req one = *r;
	ssize_t n = -1;
	int i, w, ok, votes;

	quorum_vote_new(&v, q->n, r->buf, r->len);
	for (i = 0; i < q->n; i++) {
		one.buf = v.buf[i];
		if ((v.got[i] = io_do(q->fd[i], &one)) < 0)
			v.err[i] = errno ? errno : EIO;
	}
	if ((w = quorum_vote_count(&v, q->threshold, &votes, &ok)) >= 0) {
		if (q->rewrite && votes < ok)
			rewrite(q, &v, w, r->off);
		quorum_vote_take(&v, w);
		n = v.got[w];
	}
	quorum_vote_free(&v);
	return n;
}

/* io_copies: the requests on a quorum's first copy reach every copy. */
static ssize_t
quorum_io(int fd, const struct io_req *r)
{
	struct quorum *q;

	for (q = quorum_list; q != NULL && q->fd[0] != fd; q = q->next)
		continue;
	if (q == NULL)
		return IO_NOT_COPIES;
	switch (r->type) {
	case IO_READ:
		return q->fifo ? read_fifo(q, r) : read_vote(q, r);
	case IO_DISCARD:
		return 0;	/* qemu's quorum has no discard */
	case IO_TRUNCATE:
		if (r->mode == 1)
			return change_all(q, r);
		errno = ENOTSUP;	/* nor truncate */
		return -1;
	default:
		return change_all(q, r);
	}
}

int
quorum_resize(const char *fmt, uint64_t old, uint64_t size, int prealloc)
{
	static const char no[] = "Image format driver does not support resize";
	bool grow = size > old;

	/* raw truncates its file; qcow2 truncates it to preallocate */
	if (!strcmp(fmt, "raw") || (!strcmp(fmt, "qcow2") && grow &&
	    prealloc == IMG_PREALLOC_METADATA))
		return err_set(0, "%s", no);
	if (!strcmp(fmt, "qcow2") && grow && prealloc != IMG_PREALLOC_OFF)
		return err_set(0, "Failed to resize underlying file: %s", no);
	return 0;
}

int64_t
quorum_copies_size(const struct opt_list *o)
{
	struct stat st;
	const char *f;
	int64_t sum = 0;
	unsigned i;

	for (i = 1; (f = child_file(o, i)) != NULL; i++)
		if (stat(f, &st) == 0)
			sum += (int64_t)st.st_blocks * 512;
	return sum;
}

char *
quorum_name(const struct opt_list *o, const char *fmt)
{
	struct jnode *top = jn_new_obj(), *q, *arr, *c;
	const char *f;
	unsigned i;

	if (fmt != NULL) {
		jn_str(top, "driver", fmt);
		q = jn_obj(top, "file");
	} else {
		q = top;
	}
	arr = jn_arr(q, "children");
	for (i = 0; (f = child_file(o, i)) != NULL; i++) {
		c = jn_obj(arr, NULL);
		if (raw_child(o, i)) {
			jn_str(c, "driver", "raw");
			c = jn_obj(c, "file");
		}
		jn_str(c, "driver", "file");
		jn_str(c, "filename", f);
	}
	quorum_json_opts(q, o, "file.");
	return blkdbg_json_name(top);
}

void
quorum_json_opts(struct jnode *q, const struct opt_list *o, const char *pre)
{
	const struct opt_desc *d;
	char *key;

	jn_str(q, "driver", "quorum");
	for (d = quorum_opts; d->name != NULL; d++) {
		key = xasprintf("%s%s", pre, d->name);
		if (opt_list_get(o, key) != NULL)
			blkdbg_member(q, d->name, key, opt_list_get(o, key));
		free(key);
	}
}
