/*
 * img-compare: are two images' contents the same?  qemu-img compare, walking
 * both block-status maps side by side (qemu-img.c img_compare) and reading
 * only what the maps cannot settle, on two cores.
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "../lib/progress.h"
#include "../lib/secret.h"
#include "../formats/img.h"

/* Exit codes, qemu-img's */
enum {
	CMP_SAME	= 0,
	CMP_DIFFER	= 1,
	CMP_OPEN	= 2,	/* bad --object, -T, or an image that won't open */
	CMP_STATUS	= 3,	/* block status failed */
	CMP_READ	= 4,	/* a read failed */
};

/* qemu's BDRV_BLOCK_* bits: -s compares these words */
enum {
	BS_DATA		= 0x01,
	BS_ZERO		= 0x02,
	BS_OFFSET	= 0x04,
	BS_ALLOC	= 0x10,
	BS_EOF		= 0x20,
};

#define SECTOR		512
#define CHUNK_MAX	(2u << 20)	/* qemu-img's IO_BUF_SIZE: the most read at once */
#define WIN_BYTES	(4u << 20)	/* read buffer per image: one batch of chunks */
#define WIN_RECS	1024		/* chunks per batch */
#define JOB_BYTES	(1u << 20)	/* reads are split at 1 MiB boundaries */
#define JOBS_MAX	(WIN_RECS * 2 * 3)	/* a chunk spans <= 3 pieces a side */
#define PAR_MIN		(128u << 10)	/* smaller batches aren't worth a helper */

static const char usage_text[] =
    "usage: img-compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt]\n"
    "                   [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2\n";

/* One qemu-img compare step: what the walk decided for [off, off+len). */
enum rec_kind {
	R_SKIP,		/* equal by the maps alone */
	R_READ,		/* read (need: bit 0 image 1, bit 1 image 2) and compare */
	R_WARN,		/* the sizes differ: from here, only the larger image */
	R_STRICT,	/* -s: block status differs at off */
	R_STATERR,	/* block status of image `side` failed */
};

struct rec {
	uint64_t	 off;
	uint64_t	 len;
	uint8_t		 kind;
	uint8_t		 need;
	uint8_t		 side;
	uint32_t	 bufoff;	/* R_READ: where its bytes sit in each buffer */
	uint32_t	 job[2];	/* R_READ: its first job for each image */
	uint32_t	 njob[2];	/* and how many */
};

/* A piece of a read, done by whichever process claims it first. */
struct job {
	uint64_t	 off;
	uint32_t	 len;
	uint32_t	 bufoff;
	uint32_t	 side;
	int32_t		 err;		/* errno of a failed read, else 0 */
	uint32_t	 done;
};

/* Shared with the helper process (MAP_SHARED), then the two buffers. */
struct shared {
	uint32_t	 njobs;
	uint32_t	 next;		/* next job to claim, atomically */
	struct job	 jobs[JOBS_MAX];
};

struct side {
	struct img	*img;
	const char	*name;		/* as given: qemu's messages quote it */
	uint64_t	 size;
};

struct cmp {
	struct side	 s[2];
	bool		 strict;
	bool		 quiet;
	uint64_t	 off;		/* the walk */
	bool		 over;		/* past the smaller image's end */
	bool		 walk_done;
	char		*why;		/* R_STATERR: the driver's words */
	struct rec	 recs[WIN_RECS];	/* the batch not yet judged */
	unsigned	 nrec;
	uint32_t	 bufused;
	struct shared	*sh;
	uint8_t		*buf[2];
	pid_t		 helper;	/* 0: not yet started, -1: none */
	int		 go_fd;		/* parent -> helper: a batch is ready */
	int		 done_fd;	/* helper -> parent: it has no more jobs */
};

/* qemu_progress_print(((float)chunk / progress_base) * 100, 100) */
static void
progress_chunk(const struct cmp *c, uint64_t len)
{
	uint64_t base = MAX(c->s[0].size, c->s[1].size);

	progress_print(((float)len / (float)base) * 100, 100);
}

static void
say(const struct cmp *c, const char *fmt, ...) PRINTF(2, 3);

static void
say(const struct cmp *c, const char *fmt, ...)
{
	va_list ap;

	if (c->quiet)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
}

static bool
in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

/*
 * --image-opts: "driver=FMT,file.filename=NAME,..." names an image by
 * qemu's block options.  The options img honours or can ignore safely are
 * taken; others are refused in qemu's words.
 */
static const char *const generic_keys[] = {
	"driver", "node-name", "read-only", "auto-read-only", "force-share",
	"discard", "detect-zeroes", "cache.direct", "cache.no-flush", NULL,
};

static const char *const qcow2_keys[] = {
	"lazy-refcounts", "pass-discard-request", "pass-discard-snapshot",
	"pass-discard-other", "overlap-check", "cache-size", "l2-cache-size",
	"l2-cache-entry-size", "refcount-cache-size", "cache-clean-interval",
	"encrypt.key-secret",
	NULL,
};

static const char *const file_keys[] = {
	"filename", "driver", "locking", "aio", "aio-max-batch", "node-name",
	"read-only", "auto-read-only", "force-share", "discard",
	"detect-zeroes", "cache.direct", "cache.no-flush", "drop-cache",
	"x-check-cache-dropped", NULL,
};

struct iopts {
	const char	*filename;
	const char	*fmt;		/* NULL: probe */
	int		 flags;
};

static int
iopts_key(const char *fmt, const char *key, const char *val, struct iopts *o)
{
	if (strncmp(key, "file.", 5) == 0) {
		if (!in_list(file_keys, key + 5))
			return err_set(0, "Block protocol 'file' doesn't support the option '%s'",
			    key + 5);
		if (strcmp(key, "file.driver") == 0 && strcmp(val, "file") != 0)
			return err_set(0, "Unknown driver '%s'", val);
		return 0;
	}
	if (strcmp(key, "backing") == 0) {
		if (*val == '\0')
			fprintf(stderr, "%s: warning: Use of \"backing\": \"\" is deprecated; use \"backing\": null instead\n",
			    prog_name());
		else if (strcmp(val, "null") != 0)
			return err_set(0, "Cannot find device='%s' nor node-name='%s'",
			    val, val);
		o->flags |= IMG_NO_BACKING;
		return 0;
	}
	if (in_list(generic_keys, key) ||
	    (fmt != NULL && strcmp(fmt, "qcow2") == 0 && in_list(qcow2_keys, key)) ||
	    (fmt != NULL && strcmp(fmt, "luks") == 0 && !strcmp(key, "key-secret")))
		return 0;
	if (strcmp(key, "file") == 0)
		return err_set(0, "Cannot find device='%s' nor node-name='%s'",
		    val, val);
	return err_set(0, "Block format '%s' does not support the option '%s'",
	    fmt ? fmt : "raw", key);
}

static int
iopts_parse(const struct opt_list *l, struct iopts *o)
{
	const char *drv = opt_list_get(l, "driver");
	const char *fn = opt_list_get(l, "file.filename");
	size_t i;

	if (drv != NULL && strcmp(drv, "file") == 0) {
		/* the protocol alone: the file's bytes, as raw */
		fn = opt_list_get(l, "filename");
		drv = "raw";
	} else if (drv == NULL && fn == NULL && opt_list_get(l, "file") == NULL) {
		return err_set(0, "Must specify either driver or file");
	} else if (opt_list_get(l, "filename") != NULL && fn == NULL) {
		return err_set(0, "A block device must be specified for \"file\"");
	}
	if (drv != NULL && !img_format_known(drv))
		return err_set(0, "Unknown driver '%s'", drv);
	for (i = 0; i < l->n; i++)
		if (strcmp(l->v[i].key, "filename") != 0 &&
		    iopts_key(drv, l->v[i].key, l->v[i].val, o) < 0)
			return -1;
	if (fn == NULL || *fn == '\0')
		return err_set(0, "The 'file' block driver requires a file name");
	o->filename = fn;
	o->fmt = drv;
	return 0;
}

/* Open one image as qemu-img's img_open does; NULL after a message. */
static struct img *
open_image(const char *name, const char *fmt, int flags, bool image_opts)
{
	struct opt_list l = { 0, NULL };
	struct iopts o = { NULL, NULL, flags };
	struct img *img = NULL;
	char *pre, *s;
	size_t n;

	if (!image_opts) {
		if ((img = img_open(name, fmt, flags)) == NULL)
			warn_msg("%s", err_msg());
		return img;
	}
	if (fmt != NULL) {
		warn_msg("--image-opts and --format are mutually exclusive");
		return NULL;
	}
	/* qemu-img's "source" options take a bare first item as file= */
	s = opt_implied_key(name, "file");
	if (opt_list_parse(&l, s) < 0 || iopts_parse(&l, &o) < 0) {
		warn_msg("Could not open '%s': %s", name, err_msg());
	} else if (opt_list_get(&l, "key-secret") != NULL ||
	    opt_list_get(&l, "encrypt.key-secret") != NULL) {
		/* the driver takes its key from the options */
		if ((img = img_open_image_opts(name, o.flags)) == NULL)
			warn_msg("%s", err_msg());
	} else if ((img = img_open(o.filename, o.fmt, o.flags)) == NULL) {
		/* qemu names the option string, then the file at fault */
		pre = xasprintf("Could not open '%s': ", o.filename);
		n = strlen(pre);
		warn_msg("Could not open '%s': %s", name,
		    strncmp(err_msg(), pre, n) == 0 ? err_msg() + n : err_msg());
		free(pre);
	}
	free(s);
	opt_list_free(&l);
	return img;
}

/*
 * Block status through the chain, as qemu's bdrv_block_status_above: -s
 * compares these words, EOF bit and all, so it must match qemu's rules:
 * unallocated with no backing file (or past its end) reads as zero;
 * zeroes past a short backing file count as allocated.
 */
static int
layer_status(struct img *img, uint64_t off, uint64_t bytes, uint64_t *pnum,
    unsigned *st)
{
	struct map_ext e;

	if (off >= img->size) {
		*pnum = 0;
		*st = BS_EOF;
		return 0;
	}
	if (img_status_layer(img, off, MIN(bytes, img->size - off), &e) < 0)
		return -1;
	*st = (e.data ? BS_DATA : 0) | (e.zero ? BS_ZERO : 0) |
	    (e.has_offset ? BS_OFFSET : 0);
	if (e.data || e.zero)
		*st |= BS_ALLOC;
	else if (img->backing == NULL || off >= img->backing->size)
		*st |= BS_ZERO;
	*pnum = e.length;
	if (off + e.length == img->size)
		*st |= BS_EOF;
	return 0;
}

static int
chain_status(struct img *img, uint64_t off, uint64_t bytes, uint64_t *pnum,
    unsigned *st)
{
	struct img *p;
	uint64_t eof = 0;

	if (layer_status(img, off, bytes, pnum, st) < 0)
		return -1;
	if (*pnum == 0 || (*st & BS_ALLOC))
		return 0;
	if (*st & BS_EOF)
		eof = off + *pnum;
	bytes = *pnum;
	for (p = img->backing; p != NULL; p = p->backing) {
		if (layer_status(p, off, bytes, pnum, st) < 0)
			return -1;
		if (*pnum == 0) {
			*pnum = bytes;
			*st = BS_ZERO | BS_ALLOC;
			break;
		}
		if (*st & BS_ALLOC) {
			*st &= ~(unsigned)BS_EOF;
			break;
		}
		bytes = *pnum;
	}
	if (off + *pnum == eof)
		*st |= BS_EOF;
	return 0;
}

/* The next step of qemu-img's compare loop over [0, min size). */
static void
walk_common(struct cmp *c, struct rec *r)
{
	uint64_t n[2];
	unsigned st[2];
	bool a1, a2;
	int i;

	memset(r, 0, sizeof(*r));
	r->off = c->off;
	for (i = 0; i < 2; i++) {
		if (chain_status(c->s[i].img, c->off, c->s[i].size - c->off,
		    &n[i], &st[i]) < 0 || n[i] == 0) {
			r->kind = R_STATERR;
			r->side = i;
			return;
		}
	}
	r->len = MIN(n[0], n[1]);
	a1 = st[0] & BS_ALLOC;
	a2 = st[1] & BS_ALLOC;
	if (c->strict && st[0] != st[1]) {
		r->kind = R_STRICT;
	} else if (((st[0] & st[1]) & BS_ZERO) || (!a1 && !a2)) {
		r->kind = R_SKIP;
	} else {
		/*
		 * qemu reads each allocated side, zero or not (a blkverify
		 * node compares what it reads); unallocated reads as zero
		 */
		r->kind = R_READ;
		r->len = MIN(r->len, CHUNK_MAX);
		r->need = (a1 ? 1 : 0) | (a2 ? 2 : 0);
	}
}

/* Past the smaller image: the larger one's data must read as zeroes. */
static void
walk_over(struct cmp *c, struct rec *r)
{
	int big = c->s[0].size > c->s[1].size ? 0 : 1;
	uint64_t end = c->s[big].size;
	unsigned st;

	memset(r, 0, sizeof(*r));
	r->off = c->off;
	r->side = big;
	if (chain_status(c->s[big].img, c->off, end - c->off, &r->len, &st) < 0 ||
	    r->len == 0) {
		r->kind = R_STATERR;
	} else if ((st & BS_ALLOC) && !(st & BS_ZERO)) {
		r->kind = R_READ;
		r->len = MIN(r->len, CHUNK_MAX);
		r->need = 1 << big;
	} else {
		r->kind = R_SKIP;
	}
}

/* The next record, or false when the walk is over. */
static bool
walk(struct cmp *c, struct rec *r)
{
	uint64_t common = MIN(c->s[0].size, c->s[1].size);
	uint64_t end = MAX(c->s[0].size, c->s[1].size);

	if (c->walk_done)
		return false;
	if (!c->over && c->off >= common) {
		c->over = true;
		if (common == end) {
			c->walk_done = true;
			return false;
		}
		memset(r, 0, sizeof(*r));
		r->kind = R_WARN;
		return true;
	}
	if (c->off >= end) {
		c->walk_done = true;
		return false;
	}
	if (c->over)
		walk_over(c, r);
	else
		walk_common(c, r);
	/* a plain I/O error goes unsaid, as qemu's block layer says none */
	if (r->kind == R_STATERR && err_errno() == 0)
		c->why = xstrdup(err_msg());
	if (r->kind == R_STRICT || r->kind == R_STATERR)
		c->walk_done = true;
	c->off += r->len;
	return true;
}

/* Reading: jobs claimed by the parent and the helper process alike. */

static void
do_job(struct cmp *c, struct job *j)
{
	j->err = 0;
	if (img_read(c->s[j->side].img, j->off, j->len,
	    c->buf[j->side] + j->bufoff) < 0)
		j->err = err_errno() ? err_errno() : EIO;
	__atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
}

static void
do_jobs(struct cmp *c)
{
	struct shared *sh = c->sh;
	uint32_t i;

	while ((i = __atomic_fetch_add(&sh->next, 1, __ATOMIC_ACQ_REL)) <
	    sh->njobs)
		do_job(c, &sh->jobs[i]);
}

static _Noreturn void
helper_main(struct cmp *c)
{
	char ch;

	while (io_read(c->go_fd, &ch, 1) == 1) {
		do_jobs(c);
		if (io_write(c->done_fd, "d", 1) < 0)
			break;
	}
	_exit(0);
}

/*
 * A second process to read with: decompressing or reading one image while
 * this one reads the other (or the other half) uses both cores.  Without
 * one, this process does every job itself.
 */
static void
helper_start(struct cmp *c)
{
	int go[2], done[2];

	c->helper = -1;
	/*
	 * injected errors (blkdebug) follow one process's sequence of reads;
	 * a blkverify node's mismatch ends the process that reads it
	 */
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2 || io_fault != NULL ||
	    io_copies != NULL || pipe(go) < 0)
		return;
	if (pipe(done) < 0) {
		close(go[0]);
		close(go[1]);
		return;
	}
	/* no fflush: the helper never prints and leaves by _exit */
	if ((c->helper = fork()) == 0) {
		close(go[1]);
		close(done[0]);
		c->go_fd = go[0];
		c->done_fd = done[1];
		helper_main(c);
	}
	close(go[0]);
	close(done[1]);
	c->go_fd = go[1];
	c->done_fd = done[0];
	if (c->helper < 0) {
		close(go[1]);
		close(done[0]);
	}
}

static void
helper_stop(struct cmp *c)
{
	if (c->helper <= 0)
		return;
	close(c->go_fd);
	close(c->done_fd);
	waitpid(c->helper, NULL, 0);
	c->helper = -1;
}

static void
add_jobs(struct cmp *c, struct rec *r, int side, uint64_t *total)
{
	struct shared *sh = c->sh;
	uint64_t off = r->off, end = r->off + r->len, n;
	struct job *j;

	r->job[side] = sh->njobs;
	for (; off < end; off += n, r->njob[side]++) {
		n = MIN(end - off, ROUND_DOWN(off, JOB_BYTES) + JOB_BYTES - off);
		/* a node that compares reads names them: qemu's whole chunk */
		if (io_copies != NULL)
			n = end - off;
		assert(sh->njobs < JOBS_MAX);
		j = &sh->jobs[sh->njobs++];
		j->off = off;
		j->len = (uint32_t)n;
		j->bufoff = r->bufoff + (uint32_t)(off - r->off);
		j->side = (uint32_t)side;
		j->err = 0;
		j->done = 0;
		*total += n;
	}
}

/* Read what the batch needs, sharing the jobs with the helper. */
static void
read_batch(struct cmp *c)
{
	struct shared *sh = c->sh;
	uint64_t total = 0;
	bool helped = false;
	unsigned i;
	char ch;

	sh->njobs = 0;
	for (i = 0; i < c->nrec; i++) {
		if (c->recs[i].kind != R_READ)
			continue;
		if (c->recs[i].need & 1)
			add_jobs(c, &c->recs[i], 0, &total);
		if (c->recs[i].need & 2)
			add_jobs(c, &c->recs[i], 1, &total);
	}
	__atomic_store_n(&sh->next, 0, __ATOMIC_RELEASE);
	if (total >= PAR_MIN && c->helper == 0)
		helper_start(c);	/* the first batch worth sharing */
	if (total >= PAR_MIN && c->helper > 0)
		helped = io_write(c->go_fd, "g", 1) == 0;
	do_jobs(c);
	if (helped && io_read(c->done_fd, &ch, 1) != 1) {
		/* the helper died: do what it left undone */
		helper_stop(c);
		for (i = 0; i < sh->njobs; i++)
			if (!__atomic_load_n(&sh->jobs[i].done, __ATOMIC_ACQUIRE))
				do_job(c, &sh->jobs[i]);
	}
}

/* The errno of the first failed job of record r on side, else 0. */
static int
job_error(const struct cmp *c, const struct rec *r, int side)
{
	const struct job *j = &c->sh->jobs[r->job[side]];
	uint32_t i;

	for (i = 0; i < r->njob[side]; i++)
		if (j[i].err)
			return j[i].err;
	return 0;
}

/* Index of the first byte where a and b differ (NULL reads as zeroes), or len. */
static uint64_t
first_diff(const uint8_t *a, const uint8_t *b, uint64_t len)
{
	uint64_t i = 0, n;

	if (a == NULL && b == NULL)
		return len;
	if (a == NULL || b == NULL) {
		const uint8_t *p = a ? a : b;

		for (; i < len; i += n) {
			n = MIN(len - i, 4096);
			if (!is_zero(p + i, n))
				break;
		}
		while (i < len && p[i] == 0)
			i++;
		return i;
	}
	for (; i < len; i += n) {
		n = MIN(len - i, 4096);
		if (memcmp(a + i, b + i, n) != 0)
			break;
	}
	while (i < len && a[i] == b[i])
		i++;
	return i;
}

/*
 * Judge one read record: qemu reports the start of the first differing
 * 512-byte sector counted from the chunk's start.
 */
static int
judge_read(struct cmp *c, const struct rec *r)
{
	const uint8_t *p[2];
	uint64_t d;
	int i, e;

	for (i = 0; i < 2; i++) {
		if ((r->need & (1 << i)) && (e = job_error(c, r, i)) != 0) {
			warn_msg("Error while reading offset %" PRIu64 " of %s: %s",
			    r->off, c->s[i].name, strerror(e));
			return CMP_READ;
		}
		p[i] = (r->need & (1 << i)) ? c->buf[i] + r->bufoff : NULL;
	}
	if ((d = first_diff(p[0], p[1], r->len)) < r->len) {
		say(c, "Content mismatch at offset %" PRIu64 "!\n",
		    r->off + ROUND_DOWN(d, SECTOR));
		return CMP_DIFFER;
	}
	return CMP_SAME;
}

/* Read and judge the batch in order; CMP_SAME means go on. */
static int
judge_batch(struct cmp *c)
{
	const struct rec *r;
	unsigned i;
	int ret;

	read_batch(c);
	for (i = 0; i < c->nrec; i++) {
		r = &c->recs[i];
		switch (r->kind) {
		case R_READ:
			if ((ret = judge_read(c, r)) != CMP_SAME)
				return ret;
			/* FALLTHROUGH */
		case R_SKIP:
			progress_chunk(c, r->len);
			break;
		case R_WARN:
			say(c, "Warning: Image size mismatch!\n");
			break;
		case R_STRICT:
			say(c, "Strict mode: Offset %" PRIu64
			    " block status mismatch!\n", r->off);
			return CMP_DIFFER;
		case R_STATERR:
			/* qemu's drivers say why first, as qcow2 on corruption */
			if (c->why != NULL)
				warn_msg("%s", c->why);
			warn_msg("Sector allocation test failed for %s",
			    c->s[r->side].name);
			return CMP_STATUS;
		}
	}
	c->nrec = 0;
	c->bufused = 0;
	return CMP_SAME;
}

/* Queue a record; false when the batch is full. */
static bool
batch_add(struct cmp *c, struct rec *r)
{
	if (c->nrec == WIN_RECS)
		return false;
	if (r->kind == R_READ) {
		if (c->bufused + r->len > WIN_BYTES)
			return false;
		r->bufoff = c->bufused;
		/* 4 KiB aligned, for O_DIRECT (-T none) */
		c->bufused += (uint32_t)ROUND_UP(r->len, IO_ALIGN);
	}
	c->recs[c->nrec++] = *r;
	return true;
}

static int
compare(struct cmp *c)
{
	struct rec r;
	int ret;

	progress_print(0, 100);
	if (c->strict && c->s[0].size != c->s[1].size) {
		say(c, "Strict mode: Image size mismatch!\n");
		return CMP_DIFFER;
	}
	while (walk(c, &r)) {
		if (!batch_add(c, &r)) {
			if ((ret = judge_batch(c)) != CMP_SAME)
				return ret;
			batch_add(c, &r);
		}
	}
	if ((ret = judge_batch(c)) != CMP_SAME)
		return ret;
	say(c, "Images are identical.\n");
	return CMP_SAME;
}

static int
run(struct cmp *c)
{
	size_t shsize = ROUND_UP(sizeof(struct shared), IO_ALIGN);
	uint8_t *m;
	int ret;

	m = mmap(NULL, shsize + 2 * (size_t)WIN_BYTES, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		warn_msg("%s", strerror(errno));
		return CMP_READ;
	}
	c->sh = (struct shared *)m;
	c->buf[0] = m + shsize;
	c->buf[1] = m + shsize + WIN_BYTES;
	ret = compare(c);
	helper_stop(c);
	munmap(m, shsize + 2 * (size_t)WIN_BYTES);
	return ret;
}

static _Noreturn void
usage(void)
{
	printf("%s\n"
	    "Compare the contents of two disk images; exit 0 if they are the same.\n\n"
	    "  -f fmt           format of filename1\n"
	    "  -F fmt           format of filename2\n"
	    "  -T src_cache     cache mode for reading (none, writeback, ...)\n"
	    "  -p               show progress\n"
	    "  -q               quiet: print nothing but errors\n"
	    "  -s               strict: sizes and block status must match too\n"
	    "  -U, --force-share  open images others may be writing\n"
	    "  --image-opts     filenames are option strings (driver=...,file.filename=...)\n"
	    "  --object def     define an object such as a secret\n"
	    "  -h, --help       show this help\n\n"
	    "Exit status: 0 same, 1 different, 2 open error, 3 block status error,\n"
	    "4 read error.  See img-compare(1).\n", usage_text);
	exit(close_stdout());
}

enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_LONG, OPT_SHORT };

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "force-share", no_argument, NULL, 'U' },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":f:F:T:pqsUh";

struct args {
	const char	*fmt[2];
	const char	*cache;
	bool		 progress;
	bool		 image_opts;
	int		 flags;
};

static void
parse_args(int argc, char *argv[], struct args *a, struct cmp *c)
{
	int ch;

	while ((ch = getopt_long(argc, argv, shortopts, longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'h':
			usage();
		case 'f':
			a->fmt[0] = optarg;
			break;
		case 'F':
			a->fmt[1] = optarg;
			break;
		case 'T':
			a->cache = optarg;
			break;
		case 'p':
			a->progress = true;
			break;
		case 'q':
			c->quiet = true;
			break;
		case 's':
			c->strict = true;
			break;
		case 'U':
			a->flags |= IMG_SHARE;
			break;
		case OPT_OBJECT:
			object_add_or_exit(optarg, CMP_OPEN);
			break;
		case OPT_IMAGE_OPTS:
			a->image_opts = true;
			break;
		case OPT_LONG:
		case OPT_SHORT:
			opt_print_options(longopts, shortopts, ch == OPT_LONG);
		default:
			opt_usage_error(ch, argv);
		}
	}
	if (optind != argc - 2)
		die_usage("Expecting two image file names");
}

int
main(int argc, char *argv[])
{
	struct args a = { .cache = "writeback" };
	struct cmp c = { .helper = 0 };
	int ret = CMP_OPEN, cf, i;

	prog_init(argv[0]);
	parse_args(argc, argv, &a, &c);
	progress_init(a.progress && !c.quiet, 2.0);
	if ((cf = img_cache_flags(a.cache)) < 0) {
		warn_msg("Invalid source cache option: %s", a.cache);
		goto out;
	}
	for (i = 0; i < 2; i++) {
		c.s[i].name = argv[optind + i];
		c.s[i].img = open_image(c.s[i].name, a.fmt[i], a.flags | cf,
		    a.image_opts);
		if (c.s[i].img == NULL)
			goto out;
		c.s[i].size = c.s[i].img->size;
	}
	ret = run(&c);
out:
	progress_end();
	img_close(c.s[1].img);
	img_close(c.s[0].img);
	free(c.why);
	if (close_stdout() != 0 && ret < CMP_OPEN)
		ret = CMP_OPEN;
	return ret;
}
