/* The generic layer: open by name with probing, backing chains, I/O through them. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "../lib/lock.h"
#include "blkdebug.h"
#include "blkverify.h"
#include "fmt.h"
#include "quorum.h"

#define PROBE_BYTES	512	/* BLOCK_PROBE_BUF_SIZE */

struct chain {
	dev_t	dev[IMG_MAX_CHAIN];
	ino_t	ino[IMG_MAX_CHAIN];
	int	n;
};

const struct fmt_ops *
fmt_probe(const uint8_t *buf, size_t len, const char *filename)
{
	const struct fmt_ops *best = fmt_find("raw");
	int i, score, top = 0;

	for (i = 0; fmt_list[i] != NULL; i++) {
		if (fmt_list[i]->probe == NULL)
			continue;
		score = fmt_list[i]->probe(buf, len, filename);
		if (score > top) {
			top = score;
			best = fmt_list[i];
		}
	}
	return best;
}

int
fmt_file_size(struct img *img, uint64_t *size)
{
	struct stat st;

	/* a blkverify node is as long as its test image */
	if (img->blkverify != NULL) {
		*size = blkverify_size(img->blkverify);
		return 0;
	}
	if (fstat(img->fd, &st) < 0)
		return err_set(errno, "%s", img->filename);
	*size = (uint64_t)st.st_size;
	return 0;
}

/* fmt_file_status of one file of fsize bytes */
static void
fd_status(int fd, uint64_t fsize, uint64_t host, uint64_t len, uint64_t *n,
    bool *zero)
{
	off_t data, hole;

	*n = len;
	*zero = true;
	if (host >= fsize)
		return;
	data = lseek(fd, (off_t)host, SEEK_DATA);
	if (data < 0 && errno == ENXIO)
		return;		/* a hole up to the end */
	if (data < 0) {
		*zero = false;	/* no SEEK_DATA: all data */
		return;
	}
	if ((uint64_t)data > host) {
		*n = MIN(len, (uint64_t)data - host);
		return;
	}
	*zero = false;
	hole = lseek(fd, (off_t)host, SEEK_HOLE);
	if (hole < 0 || (uint64_t)hole >= fsize)
		hole = (off_t)fsize;
	*n = MIN(len, (uint64_t)hole - host);
}

/*
 * The file's status; on a quorum, quorum_co_block_status's: zero where
 * every child is (the shortest such run), else data (the longest run).
 */
int
fmt_file_status(struct img *img, uint64_t host, uint64_t len, uint64_t *n,
    bool *zero)
{
	const int *fds = &img->fd;
	uint64_t fsize, cn, dn = 0, zn = len;
	int i, nfd = 1;
	bool cz;

	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	if (img->quorum != NULL)
		nfd = quorum_fds(img->quorum, &fds);
	for (i = 0; i < nfd; i++) {
		fd_status(fds[i], fsize, host, len, &cn, &cz);
		if (cz)
			zn = MIN(zn, cn);
		else
			dn = MAX(dn, cn);
	}
	*zero = dn == 0;
	*n = dn != 0 ? dn : zn;
	return 0;
}

int
fmt_read_backing(struct img *img, uint64_t off, uint64_t n, uint8_t *p)
{
	struct img *b = img->backing;
	uint64_t bn = 0;

	if (b != NULL && off < b->size) {
		bn = MIN(n, b->size - off);
		if (img_read(b, off, bn, p) < 0)
			return -1;
	}
	memset(p + bn, 0, n - bn);
	return 0;
}

int
fmt_sync(struct img *img)
{
	if (img->flags & IMG_NO_FLUSH)
		return 0;
	if (io_fault != NULL && io_fault_check(img->fd, IO_FLUSH, 0, 0) < 0)
		return err_set(errno, "%s: fsync", img->filename);
	if (io_fdatasync(img->fd) < 0 && errno != EINVAL)
		return err_set(errno, "%s: fsync", img->filename);
	return 0;
}

struct img *
img_chain_find(struct img *top, const char *name, bool by_name, int *depth)
{
	char want[PATH_MAX], have[PATH_MAX];
	bool real = realpath(name, want) != NULL;
	struct img *b;
	int d;

	for (d = 1, b = top->backing; b; b = b->backing, d++) {
		if ((by_name && strcmp(b->filename, name) == 0) ||
		    (real && realpath(b->filename, have) != NULL &&
		    strcmp(want, have) == 0)) {
			if (depth != NULL)
				*depth = d;
			return b;
		}
	}
	return NULL;
}

char *
img_backing_path(const char *image, const char *backing)
{
	const char *slash;

	/* path_combine(): absolute names and protocol URIs stand as they are */
	if (backing[0] == '/' || strstr(backing, "://") != NULL ||
	    strncmp(backing, "json:", 5) == 0 ||
	    strncmp(backing, "blkdebug:", 9) == 0 ||
	    strncmp(backing, "blkverify:", 10) == 0 ||
	    (slash = strrchr(image, '/')) == NULL)
		return xstrdup(backing);
	return xasprintf("%.*s%s", (int)(slash - image + 1), image, backing);
}

static int
open_file(struct img *img, const char *filename, int flags)
{
	int oflags = (flags & IMG_RDWR) ? O_RDWR : O_RDONLY;
	struct stat st;

	/*
	 * IMG_DIRECT (cache=none) does not become O_DIRECT: drivers read
	 * metadata into unaligned buffers.  It changes what block status
	 * reports, as qemu's request alignment does.
	 */
	img->fd = open(filename, oflags | O_CLOEXEC);
	if (img->fd < 0)
		return err_set(errno, "Could not open '%s'", filename);
	if (fstat(img->fd, &st) == 0 && S_ISDIR(st.st_mode))
		return err_set(0, "'file' driver requires '%s' to be a regular file",
		    filename);
	return 0;
}

static int
choose_format(struct img *img, const char *fmt)
{
	uint8_t buf[PROBE_BYTES];
	ssize_t n;

	if (fmt != NULL) {
		if ((img->ops = fmt_find(fmt)) == NULL)
			return err_set(0, "Unknown driver '%s'", fmt);
		return 0;
	}
	if ((n = io_pread(img->fd, buf, sizeof(buf), 0)) < 0)
		return err_set(errno, "Could not read image for determining its format");
	/* an empty file is raw without asking the drivers, as in qemu */
	img->ops = n == 0 ? fmt_find("raw") :
	    fmt_probe(buf, (size_t)n, img->filename);
	img->probed = true;
	return 0;
}

static int
in_chain(struct chain *c, int fd, const char *name)
{
	struct stat st;
	int i;

	if (fstat(fd, &st) < 0)
		return err_set(errno, "%s", name);
	for (i = 0; i < c->n; i++)
		if (c->dev[i] == st.st_dev && c->ino[i] == st.st_ino)
			return err_set(0, "Backing file '%s' creates an infinite loop.",
			    name);
	if (c->n == IMG_MAX_CHAIN)
		return err_set(0, "Backing chain of '%s' is deeper than %d images",
		    name, IMG_MAX_CHAIN);
	c->dev[c->n] = st.st_dev;
	c->ino[c->n] = st.st_ino;
	c->n++;
	return 0;
}

static struct img *open_chain(const char *filename, const char *fmt, int flags,
    struct chain *c);

static char	*strip_file_protocol(const char *name);
static struct img *open_one(const char *filename, const char *fmt, int flags,
    struct chain *c, const struct opt_list *o);

/*
 * The backing file of an image opened with backing.encrypt.key-secret
 * (qemu's options for the backing node): opened with its key.
 */
static struct img *
open_backing_key(struct img *img, int flags, struct chain *c,
    const char *key)
{
	struct opt_list o = { 0, NULL };
	struct img *b;
	char *path;

	if (strncmp(img->backing_path, "json:", 5) == 0)
		return open_chain(img->backing_path, img->backing_fmt, flags, c);
	opt_list_set(&o, "encrypt.key-secret", key);
	path = strip_file_protocol(img->backing_path);
	b = open_one(path, img->backing_fmt, flags, c, &o);
	free(path);
	opt_list_free(&o);
	return b;
}

static int
open_backing(struct img *img, int flags, struct chain *c, const char *key)
{
	if (img->backing_file == NULL || img->backing_file[0] == '\0')
		return 0;
	if (img->no_dir)	/* no folder to find a relative name in */
		return flags & IMG_NO_BACKING ? 0 : err_set(0, QUORUM_NO_DIR);
	img->backing_path = img_backing_path(img->path ? img->path :
	    img->filename, img->backing_file);
	if (flags & IMG_NO_BACKING)
		return 0;
	flags = (flags & ~IMG_RDWR) | IMG_NO_PROBE_WARN;
	img->backing = key != NULL ? open_backing_key(img, flags, c, key) :
	    open_chain(img->backing_path, img->backing_fmt, flags, c);
	if (img->backing == NULL)
		return err_prefix("Could not open backing file");
	return 0;
}

/*
 * Flatten a parsed json: name into qemu's dotted keys (file.filename=...),
 * list elements numbered as qdict_flatten does (inject-error.0.event=...).
 */
static void
flatten(const struct jnode *n, const char *prefix, struct opt_list *o)
{
	const struct jnode *m;
	char *key, buf[32];
	unsigned i = 0;

	for (m = n->child; m; m = m->next, i++) {
		if (n->type == JN_ARR)
			key = xasprintf("%s.%u", prefix, i);
		else
			key = prefix ? xasprintf("%s.%s", prefix, m->key) :
			    xstrdup(m->key);
		switch (m->type) {
		case JN_OBJ:
		case JN_ARR:
			flatten(m, key, o);
			break;
		case JN_STR:
			opt_list_set(o, key, m->s);
			break;
		case JN_BOOL:
			opt_list_set(o, key, m->b ? "on" : "off");
			break;
		case JN_INT:
			snprintf(buf, sizeof(buf), "%lld", (long long)m->i);
			opt_list_set(o, key, buf);
			break;
		default:
			break;
		}
		free(key);
	}
}

/* Runtime options qemu's block layer takes on every node (BlockdevOptions). */
static const char *const node_keys[] = {
	"driver", "node-name", "read-only", "auto-read-only", "force-share",
	"discard", "detect-zeroes", "cache.direct", "cache.no-flush", NULL,
};
/* ... on format nodes (qcow2's, raw's and vpc's runtime options among them). */
static const char *const format_keys[] = {
	"backing", "lazy-refcounts", "pass-discard-request",
	"pass-discard-snapshot", "pass-discard-other", "overlap-check",
	"cache-size", "l2-cache-size", "l2-cache-entry-size",
	"refcount-cache-size", "cache-clean-interval", "data-file",
	"offset", "size", "read-zeroes", "latency-ns", "force_size_calc",
	"key-secret", NULL,
};
/* ... on the file protocol node. */
static const char *const file_keys[] = {
	"filename", "aio", "aio-max-batch", "locking", "pr-manager",
	"drop-cache", "x-check-cache-dropped", NULL,
};

static bool
in_list(const char *const *l, const char *key)
{
	for (; *l; l++)
		if (strcmp(*l, key) == 0)
			return true;
	return false;
}

/* Whether the options put a blkdebug node between the format and its file. */
static bool
blkdebug_file(const struct opt_list *o)
{
	const char *d = opt_list_get(o, "file.driver");

	return d != NULL && strcmp(d, "blkdebug") == 0;
}

/* Every key must be one qemu knows for its node, in qemu's words if not. */
static int
check_keys(const struct opt_list *o, const char *drv)
{
	const char *k;
	size_t i;

	for (i = 0; i < o->n; i++) {
		k = o->v[i].key;
		if (!strncmp(k, "file.", 5) && (blkdebug_file(o) ||
		    quorum_file(o) || blkverify_prefix(o) != NULL))
			continue;	/* their nodes check them */
		if (!strncmp(k, "file.", 5)) {
			if (in_list(node_keys, k + 5) || in_list(file_keys, k + 5))
				continue;
			return err_set(0, "Block protocol 'file' doesn't support the option '%s'",
			    k + 5);
		}
		if (!strncmp(k, "backing.", 8) || !strncmp(k, "encrypt.", 8) ||
		    !strncmp(k, "data-file.", 10) || in_list(node_keys, k) ||
		    !strcmp(k, "file") ||
		    (drv && in_list(format_keys, k)) ||
		    (drv && !strcmp(drv, "raw") && in_list(file_keys, k)))
			continue;
		return err_set(0, "Block format '%s' does not support the option '%s'",
		    drv ? drv : "file", k);
	}
	return 0;
}

/*
 * The file a set of options names and the format to read it with:
 * driver=FMT,file.filename=F, or driver=file,filename=F.  A plain
 * file=NAME names another block node, which img has none of.
 */
static int
opts_target(const struct opt_list *o, const char **file, const char **fmt)
{
	const char *drv = opt_list_get(o, "driver"), *fdrv, *node, *pre;

	*fmt = drv;
	*file = opt_list_get(o, "file.filename");
	if ((node = opt_list_get(o, "file")) != NULL)
		return err_set(0, "Cannot find device='%s' nor node-name='%s'",
		    node, node);
	if ((pre = blkverify_prefix(o)) != NULL) {
		if ((*file = blkverify_raw(o, pre)) == NULL)
			return -1;
		if (drv != NULL && fmt_find(drv) == NULL)
			return err_set(0, "Unknown driver '%s'", drv);
		return drv != NULL && *pre != '\0' ? check_keys(o, drv) : 0;
	}
	if (drv != NULL && strcmp(drv, "quorum") == 0)
		return 0;	/* open_quorum checks its options */
	if (quorum_file(o) || blkdebug_file(o) ||
	    (drv != NULL && !strcmp(drv, "blkdebug"))) {
		if (quorum_file(o) && (*file = quorum_check(o)) == NULL)
			return -1;
		/* error injection below the format, or above it (open_filter) */
		if (!quorum_file(o))
			*file = blkdbg_file(o, blkdebug_file(o) ? "file." : "");
		if (*file == NULL && (blkdebug_file(o) ||
		    opt_list_get(o, "image.driver") == NULL))
			return err_set(0, "A block device must be specified for \"image\"");
		return drv == NULL || !strcmp(drv, "blkdebug") ||
		    fmt_find(drv) != NULL ? 0 :
		    err_set(0, "Unknown driver '%s'", drv);
	}
	if ((fdrv = opt_list_get(o, "file.driver")) != NULL &&
	    strcmp(fdrv, "file") != 0)
		return err_set(0, "Unknown driver '%s'", fdrv);
	if (drv != NULL && (!strcmp(drv, "file") || !strcmp(drv, "host_device"))) {
		*fmt = "raw";
		*file = opt_list_get(o, "filename");
		drv = "raw";
	} else if (drv != NULL && fmt_find(drv) == NULL) {
		return err_set(0, "Unknown driver '%s'", drv);
	}
	/* the file opens before qemu looks at leftover keys */
	if (*file == NULL && (drv == NULL || !fmt_find(drv)->nofile))
		return err_set(0, "A block device must be specified for \"file\"");
	if (drv != NULL && check_keys(o, drv) < 0)
		return -1;	/* without a driver, after probing (open_one) */
	return 0;
}

static struct img *open_one(const char *filename, const char *fmt, int flags,
    struct chain *c, const struct opt_list *o);

/*
 * qemu's "json:{...}" file names: parse, flatten, open what they name.  A
 * format given apart (-f) is the driver, whatever the name says (qemu
 * joins the name's options below the ones it was given).
 */
static struct img *
open_json(const char *spec, const char *drv, int flags, struct chain *c)
{
	struct opt_list o = { 0, NULL };
	const struct jnode *prev;
	struct jnode *j;
	struct img *img = NULL;
	const char *file, *fmt;

	if ((j = json_parse(spec + 5)) == NULL) {
		err_prefix("Could not parse the JSON options");
		return NULL;
	}
	if (j->type != JN_OBJ) {
		err_set(0, "Could not parse the JSON options: Invalid JSON object given");
		goto out;
	}
	flatten(j, NULL, &o);
	if (drv != NULL)
		opt_list_set(&o, "driver", drv);
	if (opts_target(&o, &file, &fmt) < 0)
		goto out;
	prev = blkdbg_json;
	blkdbg_json = j;
	img = open_one(file, fmt, flags, c, &o);
	blkdbg_json = prev;
	if (img != NULL && img->ops->nofile) {
		/* nothing to name it by but its options, as qemu shows them */
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);

		fputs("json:", f);
		json_print(f, j, false);
		fclose(f);
		free(img->filename);
		img->filename = buf;
	}
out:
	jn_free(j);
	opt_list_free(&o);
	return img;
}

/*
 * "file:NAME" names the file NAME; qemu shows a name whose colon could read
 * as a protocol prefix as "./NAME".
 */
static char *
strip_file_protocol(const char *name)
{
	const char *colon, *slash;

	if (strncmp(name, "file:", 5) != 0)
		return xstrdup(name);
	name += 5;
	colon = strchr(name, ':');
	slash = strchr(name, '/');
	if (colon != NULL && (slash == NULL || slash > colon))
		return xasprintf("./%s", name);
	return xstrdup(name);
}

/* "blkdebug:CONFIG:FILE": FILE through a blkdebug node, format above it */
static struct img *
open_blkdebug_name(const char *name, const char *fmt, int flags,
    struct chain *c)
{
	struct opt_list o = { 0, NULL };
	struct img *img = NULL;

	if (blkdbg_parse_name(name, "file.", &o) == 0) {
		if (fmt != NULL)
			opt_list_set(&o, "driver", fmt);
		img = open_one(blkdbg_file(&o, "file."), fmt, flags, c, &o);
	}
	opt_list_free(&o);
	return img;
}

/* "blkverify:RAW:TEST": a blkverify node, a (probed) format above it */
static struct img *
open_blkverify_name(const char *name, const char *fmt, int flags,
    struct chain *c)
{
	struct opt_list o = { 0, NULL };
	struct img *img = NULL;

	if (blkverify_parse_name(name, &o) == 0) {
		if (fmt != NULL)
			opt_list_set(&o, "driver", fmt);
		img = open_one(blkverify_raw(&o, "file."), fmt, flags, c, &o);
	}
	opt_list_free(&o);
	return img;
}

/* driver=blkdebug: a filter over the image its "image." options name */
static struct img *
open_filter(const char *filename, int flags, struct chain *c,
    const struct opt_list *o)
{
	struct opt_list in = { 0, NULL }, one = { 0, NULL };
	struct img *child = NULL;
	struct blkdebug *b;
	const char *file, *fmt;
	size_t i;

	if (o == NULL) {	/* -f blkdebug FILE: FILE is the image */
		opt_list_set(&one, "x-image", filename);
		o = &one;
	}
	if ((b = blkdbg_new(o, "")) == NULL)
		goto out;
	for (i = 0; i < o->n; i++)
		if (!strncmp(o->v[i].key, "image.", 6))
			opt_list_set(&in, o->v[i].key + 6, o->v[i].val);
	if (in.n == 0)
		child = open_one(blkdbg_file(o, ""), "raw", flags, c, NULL);
	else if (opts_target(&in, &file, &fmt) == 0)
		child = open_one(file, fmt, flags, c, &in);
	if (child == NULL)
		blkdbg_free(b);
out:
	opt_list_free(&in);
	child = child ? blkdbg_filter(b, child, o, flags) : NULL;
	opt_list_free(&one);
	return child;
}

/* qemu's warning on a probed raw image opened for writing */
static void
probe_warning(const struct img *img, const char *name, int flags)
{
	if (img->probed && (flags & IMG_RDWR) && !(flags & IMG_NO_PROBE_WARN) &&
	    strcmp(img->ops->name, "raw") == 0)
		notice("WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
		    "         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n"
		    "         Specify the 'raw' format explicitly to remove the restrictions.",
		    name);
}

/* Child i of a quorum on top: the image its children.i options name. */
static struct img *
open_quorum_child(const struct opt_list *o, int i, int flags)
{
	struct opt_list in = { 0, NULL };
	char *pre = xasprintf("children.%d.", i);
	const char *ref;
	const struct jnode *prev;
	struct img *kid = NULL;
	size_t j, plen = strlen(pre);

	pre[plen - 1] = '\0';
	ref = opt_list_get(o, pre);
	pre[plen - 1] = '.';
	for (j = 0; j < o->n; j++)
		if (!strncmp(o->v[j].key, pre, plen))
			opt_list_set(&in, o->v[j].key + plen, o->v[j].val);
	if (ref != NULL) {
		err_set(0, "Cannot find device='%s' nor node-name='%s'", ref, ref);
	} else {
		/* the child's own json: member types its options */
		prev = blkdbg_json;
		pre[plen - 1] = '\0';
		blkdbg_json = prev != NULL ? blkdbg_json_member(pre) : NULL;
		kid = img_open_child(NULL, &in, flags);
		blkdbg_json = prev;
	}
	opt_list_free(&in);
	free(pre);
	return kid;
}

/* driver=quorum: a node over the images its children.N options name */
static struct img *
open_quorum(int flags, const struct opt_list *o)
{
	struct opt_list none = { 0, NULL };
	struct quorum_params p;
	struct img **kids;
	int i;

	if (quorum_params(o != NULL ? o : &none, "", &p) < 0)
		return NULL;
	kids = xcalloc((size_t)p.n, sizeof(*kids));
	for (i = 0; i < p.n; i++)
		if ((kids[i] = open_quorum_child(o, i, flags)) == NULL)
			break;
	if (i == p.n && quorum_check_keys(o, "") == 0)
		return quorum_top(kids, &p, o, flags);
	while (i-- > 0)
		img_close(kids[i]);
	free(kids);
	return NULL;
}

static struct img *
open_chain(const char *filename, const char *fmt, int flags, struct chain *c)
{
	struct img *img;
	char *path;

	if (strncmp(filename, "json:", 5) == 0)
		return open_json(filename, fmt, flags, c);
	if (strncmp(filename, "blkdebug:", 9) == 0)
		return open_blkdebug_name(filename, fmt, flags, c);
	if (strncmp(filename, "blkverify:", 10) == 0)
		return open_blkverify_name(filename, fmt, flags, c);
	path = strip_file_protocol(filename);
	img = open_one(path, fmt, flags, c, NULL);
	free(path);
	return img;
}

static struct img *
open_one(const char *filename, const char *fmt, int flags, struct chain *c,
    const struct opt_list *o)
{
	struct img *img;
	const char *bk;
	bool nolock;

	if (fmt != NULL && strcmp(fmt, "blkdebug") == 0)
		return open_filter(filename, flags, c, o);
	if (fmt != NULL && strcmp(fmt, "quorum") == 0)
		return open_quorum(flags, o);
	if (fmt != NULL && strcmp(fmt, "blkverify") == 0 &&
	    (o == NULL || blkverify_prefix(o) == NULL)) {
		/* -f blkverify FILE: FILE is the test image, no raw copy */
		err_set(0, "A block device must be specified for \"raw\"");
		return NULL;
	}
	img = xcalloc(1, sizeof(*img));
	if (o != NULL && blkdebug_file(o) &&
	    (img->blkdebug = blkdbg_new(o, "file.")) == NULL) {
		free(img);
		return NULL;
	}
	img->filename = xstrdup(filename ? filename : "");
	img->flags = flags;
	img->fd = -1;
	img->open_opts = o;
	if (o != NULL && (bk = opt_list_get(o, "backing")) != NULL &&
	    (!strcmp(bk, "null") || !*bk))
		flags |= IMG_NO_BACKING;
	if (o != NULL && (bk = opt_list_get(o, "cache.direct")) != NULL &&
	    opt_bool(bk) == 1)
		flags |= IMG_DIRECT;
	img->flags = flags;
	/* file.locking=off: no image locking, as file-posix */
	nolock = o != NULL && (bk = opt_list_get(o, "file.locking")) != NULL &&
	    opt_bool(bk) == 0;
	if (fmt != NULL && fmt_find(fmt) != NULL && fmt_find(fmt)->nofile) {
		img->ops = fmt_find(fmt);
		img->filename = (free(img->filename), xstrdup(""));
	} else if (*filename == '\0') {
		err_set(0, "The 'file' block driver requires a file name");
		goto fail;
	} else if (open_file(img, filename, flags) < 0 ||
	    (img->blkdebug != NULL && blkdbg_attach(img->blkdebug, img->fd)) ||
	    (o != NULL && blkverify_prefix(o) != NULL &&
	    (img->blkverify = blkverify_open(o, blkverify_prefix(o), img->fd,
	    flags)) == NULL) ||
	    in_chain(c, img->fd, filename) < 0 || choose_format(img, fmt) < 0 ||
	    (o != NULL && fmt == NULL && check_keys(o, img->ops->name) < 0) ||
	    (!nolock && lock_image(img->fd, filename, flags & IMG_RDWR,
	    flags & IMG_SHARE, strcmp(img->ops->name, "raw") != 0, 0) < 0)) {
		/* depth 0: open_backing prefixes each level's failure */
		goto fail;
	}
	if (img->blkdebug != NULL) {
		/* qemu names the image by its blkdebug node */
		img->path = img->filename;
		img->filename = blkdbg_name(o, "file.", img->ops->name);
		img->data_name = blkdbg_node_name(o, "file.");
	} else if (o != NULL && quorum_file(o)) {
		if ((img->quorum = quorum_open(o, img->fd, flags,
		    strcmp(img->ops->name, "raw") != 0)) == NULL)
			goto fail;
		free(img->filename);
		img->filename = quorum_name(o, img->ops->name);
		img->path = quorum_name(o, NULL);
		img->data_name = quorum_name(o, NULL);	/* map's File */
		img->no_dir = true;
		img->copies_size = quorum_copies_size(o);
	} else if (img->blkverify != NULL) {
		free(img->filename);
		img->filename = blkverify_name(img->blkverify);
		img->data_name = blkverify_raw_name(img->blkverify);
		blkverify_opened(img->blkverify, flags);
	}
	img->priv = xcalloc(1, img->ops->priv_size ? img->ops->priv_size : 1);
	if (img->ops->open(img) < 0) {
		if (img->ops->close)
			img->ops->close(img);
		free(img->priv);
		img->priv = NULL;
		goto fail;
	}
	img->open_opts = NULL;
	if (open_backing(img, flags, c, o == NULL ? NULL :
	    opt_list_get(o, "backing.encrypt.key-secret")) < 0)
		goto fail_open;
	return img;
fail_open:
	img_close(img);
	return NULL;
fail:
	lock_drop(img->fd);
	if (img->fd >= 0)
		close(img->fd);
	blkdbg_free(img->blkdebug);
	quorum_free(img->quorum);
	blkverify_free(img->blkverify);
	free(img->data_name);
	free(img->path);
	free(img->filename);
	free(img);
	return NULL;
}

struct img *
img_open(const char *filename, const char *fmt, int flags)
{
	struct chain c = { .n = 0 };
	struct img *img;

	if ((img = open_chain(filename, fmt, flags, &c)) == NULL) {
		err_prefix("Could not open '%s'", filename);
		return NULL;
	}
	probe_warning(img, filename, flags);
	return img;
}

struct img *
img_open_child(const char *name, const struct opt_list *o, int flags)
{
	struct chain c = { .n = 0 };
	const char *file, *fmt;
	struct img *img;

	if (o == NULL)
		img = open_chain(name, NULL, flags, &c);
	else
		img = opts_target(o, &file, &fmt) < 0 ? NULL :
		    open_one(file, fmt, flags, &c, o);
	if (img != NULL)
		probe_warning(img, name != NULL ? name : img->filename, flags);
	return img;
}

struct img *
img_open_image_opts(const char *spec, int flags)
{
	const char *spec_rest = spec;
	struct opt_list o = { 0, NULL };
	struct chain c = { .n = 0 };
	struct img *img = NULL;
	const char *file, *fmt;

	if (*spec == '\0') {
		err_set(0, "Could not open '': Must specify either driver or file");
		return NULL;
	}
	/* a bare first item is the implied "file" key, as in qemu's parser */
	if (*spec != '\0' && spec[strcspn(spec, "=,")] != '=') {
		char *first = xasprintf("%.*s", (int)strcspn(spec, ","), spec);

		opt_list_set(&o, "file", first);
		free(first);
		spec_rest = strchr(spec, ',') ? strchr(spec, ',') + 1 : "";
	}
	if (opt_list_parse(&o, spec_rest) < 0 || opts_target(&o, &file, &fmt) < 0 ||
	    (img = open_one(file, fmt, flags, &c, &o)) == NULL)
		err_prefix("Could not open '%s'", spec);
	opt_list_free(&o);
	return img;
}

struct img *
img_open_image_opts_share(const char *spec, int flags)
{
	struct opt_list l = { 0, NULL };
	const char *fs;
	bool conflict, share;

	(void)opt_list_parse(&l, spec);	/* its errors: img_open_image_opts' */
	fs = opt_list_get(&l, "force-share");
	conflict = (flags & IMG_SHARE) && fs != NULL && strcmp(fs, "on") != 0;
	share = (flags & IMG_SHARE) || (fs != NULL && opt_bool(fs) == 1);
	opt_list_free(&l);
	if (conflict) {
		err_set(0, "--force-share/-U conflicts with image options");
		return NULL;
	}
	if (share && (flags & IMG_RDWR)) {
		err_set(0, "Could not open '%s': force-share=on can only be used with read-only images",
		    spec);
		return NULL;
	}
	return img_open_image_opts(spec, flags);
}

void
img_close(struct img *img)
{
	if (img == NULL)
		return;
	img_close(img->backing);
	if (img->priv != NULL && img->ops->close)
		img->ops->close(img);
	free(img->priv);
	lock_drop(img->fd);
	if (img->fd >= 0)
		close(img->fd);
	blkdbg_free(img->blkdebug);
	quorum_free(img->quorum);
	blkverify_free(img->blkverify);
	free(img->data_name);
	free(img->path);
	free(img->filename);
	free(img->backing_file);
	free(img->backing_fmt);
	free(img->backing_path);
	free(img);
}

void
fmt_say(struct img *img, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (img->say == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	img->say(line, img->say_arg);
}

struct sink {
	void	(*say)(const char *, void *);
	void	*arg;
	int	 n;
};

static void
count_say(const char *line, void *arg)
{
	struct sink *k = arg;

	k->n++;
	if (k->say != NULL)
		k->say(line, k->arg);
}

int
img_close_report(struct img *img, void (*say)(const char *, void *),
    void *arg)
{
	struct sink k = { say, arg, 0 };
	struct img *i;

	if (img == NULL)
		return 0;
	for (i = img; i != NULL; i = i->backing) {
		i->say = count_say;
		i->say_arg = &k;
	}
	/* bdrv_close's flush, for drivers whose close does not make it */
	if ((img->flags & IMG_RDWR) && !img->ops->close_flushes &&
	    img->ops->filter == NULL) {
		if (img->blkdebug != NULL) {
			blkdbg_event(img->fd, BLKDBG_FLUSH_TO_OS);
			if (!(img->flags & IMG_NO_FLUSH))
				blkdbg_event(img->fd, BLKDBG_FLUSH_TO_DISK);
		}
		(void)img_flush(img);
	}
	img_close(img);
	return k.n;
}

const char *
img_format(const struct img *img)
{
	return img->ops->name;
}

static int
check_range(struct img *img, uint64_t off, uint64_t len)
{
	if (off > img->size || len > img->size - off)
		return err_set(0, "%s: request at %#llx+%#llx is past the end of the image",
		    img->filename, (unsigned long long)off,
		    (unsigned long long)len);
	return 0;
}

static int
layer_status(struct img *img, uint64_t off, uint64_t len, struct fmt_status *st)
{
	memset(st, 0, sizeof(*st));
	if (img->ops->block_status == NULL) {
		st->len = len;
		st->flags = ST_DATA | ST_ALLOC;
		return 0;
	}
	if (img->ops->block_status(img, off, len, st) < 0)
		return -1;
	if (st->len == 0 || st->len > len)
		return err_set(0, "%s: bad block status at %#llx", img->filename,
		    (unsigned long long)off);
	if ((st->flags & ST_QEMU_DATA) && !(img->flags & IMG_TRUE_STATUS)) {
		st->flags = ST_DATA;	/* qemu-img's view: all data, no offset */
		st->offset = 0;
	}
	if (st->flags & (ST_DATA | ST_ZERO))
		st->flags |= ST_ALLOC;
	return 0;
}

const char *
img_node_protocol(const char *filename)
{
	if (strncmp(filename, "blkverify:", 10) == 0)
		return "blkverify";
	if (strncmp(filename, "blkdebug:", 9) == 0)
		return "blkdebug";
	return NULL;
}

bool
img_reads_checked(const struct img *img)
{
	return img->ops->whole_reads && img->blkverify != NULL &&
	    !(img->flags & IMG_DATA_READS);
}

/*
 * A read of the whole range on a file whose reads a node compares
 * (blkverify), as qemu's raw passes it on; a probed raw image's requests
 * are whole sectors (raw_refresh_limits), so widened to them.
 */
static int
read_whole(struct img *img, uint64_t off, size_t len, void *buf)
{
	uint64_t a = img->probed ? IMG_SECTOR : 1, start, end;
	uint8_t *b;
	int r;

	start = ROUND_DOWN(off, a);
	end = ROUND_UP(off + len, a);
	if (start == off && end == off + len)
		return img->ops->read(img, off, len, buf);
	b = xmalloc(end - start);
	if ((r = img->ops->read(img, start, end - start, b)) == 0)
		memcpy(buf, b + (off - start), len);
	free(b);
	return r;
}

int
img_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	struct fmt_status st, next;
	uint8_t *p = buf;
	uint64_t n;
	bool have_next = false;

	if (check_range(img, off, len) < 0)
		return -1;
	if (img_reads_checked(img))
		return len ? read_whole(img, off, len, buf) : 0;
	if (img->ops->filter != NULL)
		return img->ops->filter(img, IO_READ, off, len) < 0 ? -1 :
		    img_read(img->backing, off, len, buf);
	while (len > 0) {
		if (have_next)
			st = next;
		else if (layer_status(img, off, len, &st) < 0)
			return -1;
		have_next = false;
		n = st.len;
		/*
		 * Data extents in a row are one read, as qemu's driver gets
		 * the whole request (compressed clusters, one extent each,
		 * then decompress side by side).  Injected errors keep the
		 * reads extent by extent, as their rules were written for.
		 */
		while ((st.flags & (ST_DATA | ST_ZERO)) == ST_DATA &&
		    blkdbg_list == NULL && n < len) {
			if (layer_status(img, off + n, len - n, &next) < 0)
				return -1;
			if ((next.flags & (ST_DATA | ST_ZERO)) != ST_DATA) {
				have_next = true;
				break;
			}
			n += next.len;
		}
		if (st.flags & ST_ZERO) {
			memset(p, 0, n);
		} else if (st.flags & ST_DATA) {
			if (img->ops->read(img, off, n, p) < 0)
				return -1;
		} else if (img->backing != NULL &&
		    img->ops->backing_read_ok != NULL &&
		    img->ops->backing_read_ok(img) < 0) {
			return -1;
		} else if (fmt_read_backing(img, off, n, p) < 0) {
			return -1;
		}
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * qemu's raw driver on a probed image ("write operations on block 0 will
 * be restricted"): the first 512 bytes, as the write would leave them,
 * must still probe as raw, else EPERM.
 */
static int
guard_block0(struct img *img, uint64_t off, size_t len, const void *buf)
{
	uint8_t b0[512];

	if (!img->probed || off >= sizeof(b0) || len == 0 ||
	    strcmp(img->ops->name, "raw") != 0)
		return 0;
	memset(b0, 0, sizeof(b0));
	if ((off > 0 || len < sizeof(b0)) &&
	    img->ops->read(img, 0, MIN(sizeof(b0), img->size), b0) < 0)
		return -1;
	memcpy(b0 + off, buf, MIN(len, sizeof(b0) - off));
	if (fmt_probe(b0, sizeof(b0), NULL) != img->ops)
		return err_set(EPERM, "%s: block 0 of a probed raw image may "
		    "not take another format's header", img->filename);
	return 0;
}

int
img_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	if (check_range(img, off, len) < 0)
		return -1;
	if (img->ops->write == NULL)
		return err_set(0, "%s: the %s format cannot be written",
		    img->filename, img->ops->name);
	if (guard_block0(img, off, len, buf) < 0)
		return -1;
	return len ? img->ops->write(img, off, len, buf) : 0;
}

int
img_write_host(struct img *img, uint64_t off, uint64_t len, int *fd,
    uint64_t *host, uint64_t *n)
{
	if (check_range(img, off, len) < 0)
		return -1;
	*n = len;
	/*
	 * O_DIRECT wants aligned buffers that splice does not promise;
	 * injected errors (blkdebug) and copies (quorum) need the writes to
	 * go through io_pwrite
	 */
	if (img->ops->write_host == NULL || (img->flags & IMG_DIRECT) || !len ||
	    io_fault != NULL || io_copies != NULL)
		return 0;
	return img->ops->write_host(img, off, len, fd, host, n);
}

int
img_write_zeroes(struct img *img, uint64_t off, uint64_t len, int flags)
{
	static const uint8_t zeroes[65536];
	uint64_t n;

	if (check_range(img, off, len) < 0)
		return -1;
	if (len == 0)
		return 0;
	if (img->ops->write_zeroes != NULL)
		return img->ops->write_zeroes(img, off, len, flags);
	for (; len > 0; off += n, len -= n) {
		n = MIN(len, sizeof(zeroes));
		if (img_write(img, off, n, zeroes) < 0)
			return -1;
	}
	return 0;
}

bool
img_can_compress(const struct img *img)
{
	return img->ops->write_compressed != NULL;
}

int
img_write_compressed(struct img *img, uint64_t off, size_t len, const void *buf)
{
	if (check_range(img, off, len) < 0)
		return -1;
	if (img->ops->write_compressed == NULL)
		return err_set(0, "Compression not supported for this file format");
	return img->ops->write_compressed(img, off, len, buf);
}

int
img_discard(struct img *img, uint64_t off, uint64_t len)
{
	if (check_range(img, off, len) < 0)
		return -1;
	if (img->ops->discard == NULL || len == 0)
		return 0;
	return img->ops->discard(img, off, len);
}

int
img_flush(struct img *img)
{
	if (img->ops->flush != NULL)
		return img->ops->flush(img);
	return img->fd < 0 ? 0 : fmt_sync(img);
}

static void
fill_ext(struct img *layer, uint64_t off, const struct fmt_status *st,
    unsigned flags, int64_t depth, struct map_ext *e)
{
	memset(e, 0, sizeof(*e));
	e->start = off;
	e->length = st->len;
	e->depth = depth;
	e->present = (flags & ST_ALLOC) != 0;
	e->zero = (flags & ST_ZERO) != 0;
	e->data = (flags & ST_DATA) != 0;
	e->has_offset = (flags & ST_OFFSET) != 0;
	if (e->has_offset) {
		e->offset = st->offset;
		e->filename = st->file ? st->file : layer->data_name ?
		    layer->data_name : layer->filename;
	}
}

/* A filter's say on block status, unless the caller skips filters. */
static int
ask_filter(struct img *img, int flags, uint64_t off, uint64_t len)
{
	if (flags & IMG_SKIP_FILTERS)
		return 0;
	return img->ops->filter(img, IO_BLOCK_STATUS, off, len);
}

int
img_status_layer(struct img *img, uint64_t off, uint64_t len, struct map_ext *e)
{
	struct fmt_status st;

	if (check_range(img, off, len) < 0)
		return -1;
	if (img->ops->filter != NULL)
		return ask_filter(img, img->flags, off, len) < 0 ? -1 :
		    img_status_layer(img->backing, off, len, e);
	if (layer_status(img, off, len, &st) < 0)
		return -1;
	fill_ext(img, off, &st, st.flags, 0, e);
	return 0;
}

int
img_status(struct img *img, uint64_t off, uint64_t len, struct map_ext *e)
{
	struct fmt_status st;
	struct img *cur = img;
	unsigned flags;
	int64_t depth = 0;

	if (check_range(img, off, len) < 0)
		return -1;
	for (;;) {
		/* a filter adds no depth (qemu-img map's bdrv_skip_filters) */
		for (; cur->ops->filter != NULL; cur = cur->backing)
			if (ask_filter(cur, img->flags, off, len) < 0)
				return -1;
		if (layer_status(cur, off, len, &st) < 0)
			return -1;
		len = st.len;
		flags = st.flags;
		if (flags & (ST_DATA | ST_ZERO))
			break;
		/* unallocated with nothing (or nothing this far) below reads as zeroes */
		if (cur->backing == NULL || off >= cur->backing->size) {
			flags |= ST_ZERO;
			break;
		}
		cur = cur->backing;
		len = MIN(len, cur->size - off);
		depth++;
	}
	fill_ext(cur, off, &st, flags, depth, e);
	return 0;
}

/*
 * img_status for qemu-img convert --salvage (convert_iteration_sectors): a
 * range whose status fails is asked again a quarter as long (in sectors),
 * down to one sector; when that fails too, it is taken as data.
 */
int
img_status_salvage(struct img *img, uint64_t off, uint64_t len,
    struct map_ext *e)
{
	uint64_t n = DIV_ROUND_UP(len, IMG_SECTOR);

	for (;;) {
		if (img_status(img, off, MIN(n * IMG_SECTOR, len), e) == 0)
			return 0;
		if (n == 1)
			break;
		n = DIV_ROUND_UP(n, 4);
	}
	memset(e, 0, sizeof(*e));
	e->start = off;
	e->length = MIN(IMG_SECTOR, len);
	e->present = e->data = true;
	return 1;
}

int
img_snapshot_load(struct img *img, const char *param)
{
	struct opt_list o = { 0, NULL };
	const char *id, *name;
	size_t i;
	int r;

	if (img->ops->snapshot_load == NULL)
		return err_set(0, "Block format '%s' used by device '' does not support temporarily loading internal snapshots",
		    img->ops->name);
	if (strncmp(param, "snapshot.", 9) != 0)
		return img->ops->snapshot_load(img, param, NULL, true);
	if (opt_list_parse(&o, param) < 0)
		return -1;
	for (i = 0; i < o.n; i++)
		if (strcmp(o.v[i].key, "snapshot.id") &&
		    strcmp(o.v[i].key, "snapshot.name")) {
			err_set(0, "Invalid parameter '%s'", o.v[i].key);
			opt_list_free(&o);
			return -1;
		}
	id = opt_list_get(&o, "snapshot.id");
	name = opt_list_get(&o, "snapshot.name");
	r = img->ops->snapshot_load(img, id, name, false);
	opt_list_free(&o);
	return r;
}

/*
 * Whether n bytes at host in fd lie inside the file: a run that reaches
 * past its end is read whole through the driver (the part past the end
 * reads as zeroes, as qemu pads a short read), never mapped or spliced.
 */
static int
verbatim_part(int fd, uint64_t host, uint64_t n)
{
	struct stat sb;

	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		return 1;
	return host < (uint64_t)sb.st_size &&
	    n <= (uint64_t)sb.st_size - host;
}

int
img_host_run(struct img *img, uint64_t off, uint64_t len, int *fd,
    uint64_t *host, uint64_t *n)
{
	struct fmt_status st;
	struct img *cur = img;

	if (check_range(img, off, len) < 0)
		return -1;
	if (io_fault != NULL || io_copies != NULL || img->ops->filter != NULL) {
		*n = len;	/* injected errors and votes need the reads */
		return 0;
	}
	for (;;) {
		if (layer_status(cur, off, len, &st) < 0)
			return -1;
		*n = st.len;
		if (st.flags & ST_ZERO)
			return 0;
		if (st.flags & ST_DATA) {
			if (!(st.flags & ST_OFFSET) || st.via_driver ||
			    (st.file != NULL && !st.has_fd) ||
			    (st.file == NULL && cur->fd < 0))
				return 0;
			*fd = st.file != NULL ? st.fd : cur->fd;
			*host = st.offset;
			return verbatim_part(*fd, *host, *n);
		}
		if (cur->backing == NULL || off >= cur->backing->size)
			return 0;
		/* as img_read: a backing file this layer cannot read through */
		if (cur->ops->backing_read_ok != NULL &&
		    cur->ops->backing_read_ok(cur) < 0)
			return -1;
		len = MIN(st.len, cur->backing->size - off);
		cur = cur->backing;
	}
}

int
img_get_info(struct img *img, struct img_info *info)
{
	memset(info, 0, sizeof(*info));
	if (img->ops->info != NULL && img->ops->info(img, info) < 0)
		return -1;
	/* a format without info of its own asks its file: a quorum can't say */
	if (img->ops->info == NULL && img->quorum != NULL)
		info->no_dirty_flag = true;
	/* the snapshot table, unless the driver's info already listed it */
	if (info->snapshots == NULL && img->ops->snapshot_list != NULL)
		return img->ops->snapshot_list(img, &info->snapshots,
		    &info->nb_snapshots);
	return 0;
}

int
img_cache_flags(const char *mode)
{
	int m = opt_cache_mode(mode);

	if (m < 0)
		return -1;
	return (m & OPT_CACHE_DIRECT ? IMG_DIRECT : 0) |
	    (m & OPT_CACHE_NO_FLUSH ? IMG_NO_FLUSH : 0);
}

int
img_cluster_size(struct img *img, uint64_t *cs)
{
	struct img_info info;

	memset(&info, 0, sizeof(info));
	if (img->ops->info != NULL && img->ops->info(img, &info) < 0)
		return -1;
	*cs = info.cluster_size;
	jn_free(info.specific);
	img_snapshots_free(info.snapshots, info.nb_snapshots);
	return 0;
}

int64_t
img_actual_size(struct img *img)
{
	struct stat st;

	if (img->ops->actual_size != NULL)
		return img->ops->actual_size(img);
	if (img->blkdebug != NULL || img->blkverify != NULL)
		return -1;	/* qemu's blkdebug and blkverify cannot say */
	if (img->fd < 0)
		return 0;
	if (fstat(img->fd, &st) < 0)
		return -1;
	return (int64_t)st.st_blocks * 512 + img->copies_size;
}

const struct opt_desc *
img_create_opts(const char *fmt)
{
	const struct fmt_ops *ops = fmt_find(fmt);

	return ops ? ops->create_opts : NULL;
}

bool
img_format_known(const char *fmt)
{
	/* quorum on top opens apart (open_quorum) and creates nothing */
	return fmt_find(fmt) != NULL || strcmp(fmt, "quorum") == 0;
}

/*
 * qemu 7.2's block drivers that are no image format img has (protocols and
 * filters), by format_name: Debian's qemu-img lists them under "Supported
 * formats", and bdrv_find_format() accepts them where a name is only
 * recorded (rebase -u -F host_device).
 */
static const char *const qemu_other_drivers[] = {
	"blkdebug", "blklogwrites", "blkverify", "compress",
	"copy-before-write", "copy-on-read", "file", "ftp", "ftps", "gluster",
	"host_cdrom", "host_device", "http", "https", "iscsi", "iser", "luks",
	"nbd", "nfs", "null-aio", "null-co", "nvme", "preallocate", "quorum",
	"rbd", "replication", "snapshot-access", "ssh", "throttle", "vvfat",
};

bool
img_driver_known(const char *name)
{
	size_t i;

	if (img_format_known(name))
		return true;
	for (i = 0; i < ARRAY_SIZE(qemu_other_drivers); i++)
		if (strcmp(qemu_other_drivers[i], name) == 0)
			return true;
	return false;
}

void
fmt_json_name(struct img *img, const char *key, const char *val)
{
	struct jnode *j = jn_new_obj(), *f;
	char *buf = NULL;
	size_t len = 0;
	FILE *m;

	jn_str(j, "driver", img->ops->name);
	f = jn_obj(j, "file");
	jn_str(f, "driver", "file");
	jn_str(f, "filename", img->filename);
	jn_str(j, key, val);
	if ((m = open_memstream(&buf, &len)) != NULL) {
		fputs("json:", m);
		json_print(m, j, false);
		fclose(m);
		free(img->filename);
		img->filename = buf;
	}
	jn_free(j);
}

bool
img_format_zero_init(const char *fmt)
{
	const struct fmt_ops *ops = fmt_find(fmt);

	return ops != NULL && !ops->no_zero_init;
}

const char *const *
img_format_names(void)
{
	static const char *names[64];
	size_t i;

	for (i = 0; fmt_list[i] != NULL && i < ARRAY_SIZE(names) - 1; i++)
		names[i] = fmt_list[i]->name;
	names[i] = NULL;
	return names;
}

static int
known_opt(const struct opt_desc *d, const char *key)
{
	for (; d && d->name; d++)
		if (strcmp(d->name, key) == 0)
			return 1;
	return 0;
}

int
img_create(const char *filename, const char *fmt, uint64_t size,
    const struct opt_list *o)
{
	const struct fmt_ops *ops = fmt_find(fmt);
	struct stat st;
	bool existed;
	char *path;
	size_t i;
	int r;

	if (ops == NULL)
		return err_set(0, "%s: Unknown file format '%s'", filename, fmt);
	if (ops->create == NULL)
		return err_set(0, "%s: Format driver '%s' does not support image creation",
		    filename, fmt);
	for (i = 0; i < o->n; i++)
		if (!known_opt(ops->create_opts, o->v[i].key))
			return err_set(0, "%s: Invalid parameter '%s'", filename,
			    o->v[i].key);
	path = strip_file_protocol(filename);
	existed = stat(path, &st) == 0;
	r = ops->create(path, size, o);
	if (r < 0 && !existed)
		unlink(path);
	free(path);
	return r;
}

static const struct opt_desc *
find_desc(const struct opt_desc *d, const char *key)
{
	for (; d && d->name; d++)
		if (strcmp(d->name, key) == 0)
			return d;
	return NULL;
}

int
img_opts_check(const char *fmt, const struct opt_list *o)
{
	const struct fmt_ops *ops = fmt_find(fmt);
	const struct opt_desc *d;
	uint64_t v;
	size_t i;

	if (ops == NULL)
		return err_set(0, "Unknown file format '%s'", fmt);
	for (i = 0; i < o->n; i++) {
		if ((d = find_desc(ops->create_opts, o->v[i].key)) == NULL)
			return err_set(0, "Invalid parameter '%s'", o->v[i].key);
		if (d->type == OPT_BOOL && opt_bool(o->v[i].val) < 0)
			return err_set(0, "Parameter '%s' expects 'on' or 'off'",
			    d->name);
		if ((d->type == OPT_SIZE || d->type == OPT_NUMBER) &&
		    (d->type == OPT_SIZE ? opt_size(o->v[i].val, &v) :
		    opt_size_unit(o->v[i].val, 1, &v)) < 0)
			return err_set(0, "Parameter '%s' expects a non-negative number below 2^64\n"
			    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
			    "and exabytes, respectively.", d->name);
	}
	return 0;
}

int
img_measure(const char *fmt, const struct opt_list *o, struct img *in,
    uint64_t size, struct img_measure *m)
{
	const struct fmt_ops *ops = fmt_find(fmt);

	memset(m, 0, sizeof(*m));
	if (ops == NULL)
		return err_set(0, "Unknown file format '%s'", fmt);
	if (ops->measure == NULL)
		return err_set(0, "Block driver '%s' does not support size measurement",
		    fmt);
	return ops->measure(o, in, size, m);
}

bool
img_bitmaps_size(struct img *img, uint64_t cluster_size, uint64_t *size)
{
	*size = 0;
	if (img->ops->bitmaps_size == NULL)
		return false;
	return img->ops->bitmaps_size(img, cluster_size, size);
}

int
img_check(struct img *img, int fix, struct img_check *res)
{
	void (*note)(const char *, void *) = res->note;
	void *arg = res->note_arg;
	int fd;

	memset(res, 0, sizeof(*res));
	res->note = note;
	res->note_arg = arg;
	if (img->ops->check == NULL)
		return err_set(0, IMG_CHECK_NOTSUP);
	if (fix && !(img->flags & IMG_RDWR)) {
		if (lock_image(img->fd, img->filename, true, img->flags & IMG_SHARE,
		    strcmp(img->ops->name, "raw") != 0, 0) < 0)
			return -1;
		if ((fd = open(img->filename, O_RDWR | O_CLOEXEC)) < 0)
			return err_set(errno, "Could not open '%s'", img->filename);
		if (dup3(fd, img->fd, O_CLOEXEC) < 0) {
			err_set(errno, "Could not open '%s'", img->filename);
			close(fd);
			return -1;
		}
		close(fd);
	}
	return img->ops->check(img, fix, res);
}

int
img_set_backing(struct img *img, const char *file, const char *fmt)
{
	if (img->ops->set_backing == NULL)
		return err_set(0, "Operation not supported");
	return img->ops->set_backing(img, file, fmt);
}

int
img_bitmap(struct img *img, const char *name, const struct img_bitmap_act *acts,
    size_t n, uint64_t granularity, struct img *src, size_t *failed)
{
	*failed = 0;
	if (img->ops->bitmap != NULL)
		return img->ops->bitmap(img, name, acts, n, granularity, src,
		    failed);
	if (n > 0 && acts[0].act == IMG_BM_ADD)
		return err_set(0, "Can't store persistent bitmaps to %s: "
		    "Operation not supported", img->filename);
	return err_set(0, "Dirty bitmap '%s' not found", name);
}

int
img_make_empty(struct img *img)
{
	if (img->ops->make_empty != NULL)
		return img->ops->make_empty(img);
	return img_discard(img, 0, img->size);
}

/* qemu's BDRV_MAX_LENGTH: INT64_MAX rounded down to a multiple of 1 GiB */
#define IMG_MAX_LENGTH	((uint64_t)INT64_MAX & ~((1ull << 30) - 1))

int
img_resize(struct img *img, uint64_t size, int prealloc)
{
	if (size > IMG_MAX_LENGTH)
		return err_set(0, "offset(%llu) exceeds maximum(%llu)",
		    (unsigned long long)size, (unsigned long long)IMG_MAX_LENGTH);
	if (img->ops->resize == NULL)
		return err_set(0, "Image format driver does not support resize");
	if (img->quorum != NULL && quorum_resize(img->ops->name, img->size,
	    size, prealloc) < 0)
		return -1;
	return img->ops->resize(img, size, prealloc);
}

int
img_snapshot_list(struct img *img, struct img_snapshot **sn, size_t *n)
{
	*sn = NULL;
	*n = 0;
	if (img->ops->snapshot_list == NULL)
		return 0;
	return img->ops->snapshot_list(img, sn, n);
}

void
img_snapshots_free(struct img_snapshot *sn, size_t n)
{
	size_t i;

	for (i = 0; sn != NULL && i < n; i++) {
		free(sn[i].id);
		free(sn[i].name);
	}
	free(sn);
}

int
img_snapshot_create(struct img *img, const struct img_snapshot *sn)
{
	if (img->ops->snapshot_create == NULL)
		return err_set(ENOTSUP, "%s: internal snapshots", img->filename);
	return img->ops->snapshot_create(img, sn);
}

int
img_snapshot_apply(struct img *img, const char *name)
{
	if (img->ops->snapshot_apply == NULL)
		return err_set(0, "Block driver does not support snapshots");
	return img->ops->snapshot_apply(img, name);
}

int
img_snapshot_delete(struct img *img, const char *name)
{
	/* qemu-img looks the name up first: a format without any has none */
	if (img->ops->snapshot_delete == NULL)
		return err_set(0, "snapshot not found");
	return img->ops->snapshot_delete(img, name);
}

const struct opt_desc *
img_amend_opts(const char *fmt)
{
	const struct fmt_ops *ops = fmt_find(fmt);

	return ops != NULL && ops->amend != NULL ? ops->amend_opts : NULL;
}

bool
img_can_amend(const struct img *img)
{
	return img->ops->amend != NULL;
}

int
img_amend(struct img *img, const struct opt_list *o, bool force)
{
	if (img->ops->amend == NULL)
		return err_set(0, "Format driver '%s' does not support option "
		    "amendment", img->ops->name);
	return img->ops->amend(img, o, force);
}
