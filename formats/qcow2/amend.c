/*
 * qcow2 amend, as qemu's qcow2_amend_options: compat 0.10 <-> 1.1, lazy
 * refcounts, refcount width (new refcount structures), size, the external
 * data file's name and its raw bit.
 * docs/interop/qcow2.txt, "Header", "Header extensions", "Host cluster
 * management".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "../../lib/progress.h"
#include "qcow2.h"

/*
 * Progress as qemu's qcow2_amend_helper_cb reports it through qemu-img's
 * amend_status_cb: each operation's work, the ones still to come
 * projected from those done.  Printed only when the program turned
 * progress on (lib/progress).
 */
enum { OP_NONE, OP_UPGRADE, OP_REFCOUNT, OP_DOWNGRADE };

static struct {
	int	 total, done, cur, last;
	int64_t	 off_done, last_work;
} pg;

static void
pg_status(int64_t off, int64_t work)
{
	int64_t cur, proj;

	if (pg.total == 0 || work <= 0)
		return;
	if (pg.cur != pg.last) {
		if (pg.last != OP_NONE) {
			pg.off_done += pg.last_work;
			pg.done++;
		}
		pg.last = pg.cur;
	}
	pg.last_work = work;
	cur = pg.off_done + work;
	proj = cur * (pg.total - pg.done - 1) / (pg.done + 1);
	progress_print(100.f * (float)(pg.off_done + off) / (float)(cur + proj), 0);
}

/* What amend may change, in the order qemu's parse loop visits them. */
const struct opt_desc qcow2_amend_opts[] = {
	{ "encrypt.state", OPT_STRING,
	    "Select new state of affected keyslots (active/inactive)", NULL },
	{ "encrypt.keyslot", OPT_NUMBER,
	    "Select a single keyslot to modify explicitly", NULL },
	{ "encrypt.old-secret", OPT_STRING,
	    "Select all keyslots that match this password", NULL },
	{ "encrypt.new-secret", OPT_STRING,
	    "New secret to set in the matching keyslots. Empty string to erase",
	    NULL },
	{ "encrypt.iter-time", OPT_NUMBER,
	    "Time to spend in PBKDF in milliseconds", NULL },
	{ "size", OPT_SIZE, "Virtual disk size", NULL },
	{ "compat", OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])",
	    NULL },
	{ "backing_file", OPT_STRING, "File name of a base image", NULL },
	{ "backing_fmt", OPT_STRING, "Image format of the base image", NULL },
	{ "data_file", OPT_STRING, "File name of an external data file", NULL },
	{ "data_file_raw", OPT_BOOL,
	    "The external data file must stay valid as a raw image", NULL },
	{ "lazy_refcounts", OPT_BOOL, "Postpone refcount updates", NULL },
	{ "refcount_bits", OPT_NUMBER,
	    "Width of a reference count entry in bits", NULL },
	{ NULL, 0, NULL, NULL },
};

/* What the -o list asks for, parsed. */
struct amend {
	int		 version;
	uint64_t	 size;		/* 0: unchanged */
	const char	*backing_file, *backing_fmt;
	int		 lazy;		/* -1: unchanged */
	unsigned	 refcount_order;
	const char	*data_file;	/* NULL: unchanged, "": none */
	bool		 data_raw;
	bool		 encrypt;	/* LUKS keyslot options */
};

static const struct opt_desc *
find_desc(const struct opt_desc *d, const char *key)
{
	for (; d != NULL && d->name != NULL; d++)
		if (strcmp(d->name, key) == 0)
			return d;
	return NULL;
}

/* qemu's bool: on/yes/true/y, off/no/false/n */
static int
parse_bool(const char *v)
{
	static const char *const on[] = { "on", "yes", "true", "y" };
	static const char *const off[] = { "off", "no", "false", "n" };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(on); i++) {
		if (strcmp(v, on[i]) == 0)
			return 1;
		if (strcmp(v, off[i]) == 0)
			return 0;
	}
	return -1;
}

static int
parse_number(const char *v, uint64_t *n)
{
	char *end;

	errno = 0;
	*n = strtoull(v, &end, 0);
	return *v == '\0' || *v == '-' || *end != '\0' || errno ? -1 : 0;
}

/* qemu_opts_do_parse against one or two tables: the first error, as qemu. */
static int
typecheck(const struct opt_list *o, const struct opt_desc *a,
    const struct opt_desc *b)
{
	const struct opt_desc *d;
	uint64_t n;
	size_t i;

	for (i = 0; i < o->n; i++) {
		if ((d = find_desc(a, o->v[i].key)) == NULL &&
		    (d = find_desc(b, o->v[i].key)) == NULL)
			return err_set(0, "Invalid parameter '%s'", o->v[i].key);
		if (d->type == OPT_BOOL && parse_bool(o->v[i].val) < 0)
			return err_set(0, "Parameter '%s' expects 'on' or 'off'",
			    d->name);
		if (d->type == OPT_NUMBER && parse_number(o->v[i].val, &n) < 0)
			return err_set(0, "Parameter '%s' expects a number", d->name);
		if (d->type == OPT_SIZE && opt_size(o->v[i].val, &n) < 0)
			return err_set(0, "Parameter '%s' expects a non-negative "
			    "number below 2^64\nOptional suffix k, M, G, T, P or "
			    "E means kilo-, mega-, giga-, tera-, peta-\nand "
			    "exabytes, respectively.", d->name);
	}
	return 0;
}

static int
check_opts(struct img *img, const struct opt_list *o)
{
	char msg[1024];

	if (typecheck(o, qcow2_amend_opts, NULL) == 0)
		return 0;
	/* an option only create has earns qemu's hint */
	snprintf(msg, sizeof(msg), "%s", err_msg());
	if (typecheck(o, qcow2_amend_opts, img->ops->create_opts) == 0)
		return err_set(0, "%s\nThis option is only supported for image "
		    "creation", msg);
	return err_set(0, "%s", msg);
}

/* The parse loop of qcow2_amend_options, in its order and words. */
static int
parse_amend(struct img *img, const struct opt_list *o, struct amend *a)
{
	struct qcow2 *s = img->priv;
	const struct opt_desc *d;
	const char *v;
	uint64_t n;

	memset(a, 0, sizeof(*a));
	a->version = s->version;
	a->lazy = -1;
	a->refcount_order = s->refcount_order;
	a->data_raw = (s->autoclear & QCOW2_AUTOCLEAR_DATA_RAW) != 0;
	for (d = qcow2_amend_opts; d->name != NULL; d++) {
		if ((v = opt_list_get(o, d->name)) == NULL)
			continue;
		if (strncmp(d->name, "encrypt.", 8) == 0) {
			if (s->crypt_method == 0)
				return err_set(0, "Can't amend encryption "
				    "options - encryption not present");
			if (s->crypt_method != 2)
				return err_set(0, "Only LUKS encryption "
				    "options can be amended");
			a->encrypt = true;
			continue;
		}
		if (strcmp(d->name, "compat") == 0) {
			if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
				a->version = 2;
			else if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
				a->version = 3;
			else
				return err_set(0, "Unknown compatibility "
				    "level %s", v);
		} else if (strcmp(d->name, "size") == 0) {
			opt_size(v, &a->size);
		} else if (strcmp(d->name, "backing_file") == 0) {
			a->backing_file = v;
		} else if (strcmp(d->name, "backing_fmt") == 0) {
			a->backing_fmt = v;
		} else if (strcmp(d->name, "data_file") == 0) {
			if (!(s->incompat & QCOW2_INCOMPAT_DATA_FILE))
				return err_set(0, "data-file can only be set "
				    "for images that use an external data "
				    "file");
			a->data_file = v;
		} else if (strcmp(d->name, "data_file_raw") == 0) {
			a->data_raw = parse_bool(v) == 1;
			if (a->data_raw &&
			    !(s->autoclear & QCOW2_AUTOCLEAR_DATA_RAW))
				return err_set(0, "data-file-raw cannot be set "
				    "on existing images");
		} else if (strcmp(d->name, "lazy_refcounts") == 0) {
			a->lazy = parse_bool(v);
		} else if (strcmp(d->name, "refcount_bits") == 0) {
			parse_number(v, &n);
			n = (uint64_t)(int)n;	/* qemu keeps it in an int */
			if (n == 0 || n > 64 || !is_pow2(n))
				return err_set(0, "Refcount width must be a "
				    "power of two and may not exceed 64 bits");
			a->refcount_order = (unsigned)log2_u64(n);
		}
	}
	return 0;
}

/*
 * The old header's extensions in [start, end) of type only, appended to
 * out at *off; only 0: all but the feature table and the ones qemu writes
 * first (backing format, data file, crypto).
 */
static int
copy_exts(const uint8_t *old, size_t start, size_t end, uint8_t *out,
    size_t *off, size_t cs, uint32_t only)
{
	uint32_t magic, len;
	size_t n;
	bool first, want;

	while (start + 8 <= end) {
		magic = get_be32(old + start);
		len = get_be32(old + start + 4);
		if (magic == QCOW2_EXT_END)
			break;
		n = 8 + ROUND_UP((size_t)len, 8);
		if (len > end - start - 8)
			return -1;
		first = magic == QCOW2_EXT_BACKING_FMT ||
		    magic == QCOW2_EXT_DATA_FILE || magic == QCOW2_EXT_CRYPTO;
		want = only ? magic == only :
		    !first && magic != QCOW2_EXT_FEATURES;
		/* qemu keeps the bitmaps extension in a v2 header too */
		if (want) {
			if (*off + n + 8 > cs)
				return -1;
			*off += qcow2_put_ext(out + *off, magic,
			    old + start + 8, len);
		}
		start += MIN(n, end - start);
	}
	return 0;
}

/*
 * qcow2_update_header for a new version and feature bits: the whole
 * header cluster is rewritten (extensions kept, the feature name table
 * for v3, the backing file name last).
 */
static int
write_header(struct img *img, int version, uint64_t compat, uint64_t autoclear,
    unsigned refcount_order)
{
	struct qcow2 *s = img->priv;
	size_t cs = s->cluster_size, off, blen;
	uint64_t boff, ext_end;
	uint32_t hlen;
	uint8_t *old, *h;
	int r = -1;

	old = xmalloc(cs);
	h = xcalloc(1, cs);
	if (qcow2_pread_meta(img, old, cs, 0, "qcow2 header") < 0)
		goto out;
	hlen = s->version >= 3 ? get_be32(old + 100) : QCOW2_V2_HEADER;
	boff = get_be64(old + 8);
	blen = boff ? get_be32(old + 16) : 0;
	ext_end = boff ? boff : cs;
	if (hlen > cs || boff > cs || blen > cs - boff) {
		err_set(0, "%s: bad qcow2 header", img->filename);
		goto out;
	}
	memcpy(h, old, QCOW2_V2_HEADER);
	put_be32(h + 4, (uint32_t)version);
	put_be64(h + 48, s->rt_offset);
	put_be32(h + 56, s->rt_clusters);
	off = QCOW2_V2_HEADER;
	if (version >= 3) {
		put_be64(h + 72, s->incompat);
		put_be64(h + 80, compat);
		put_be64(h + 88, autoclear);
		put_be32(h + 96, refcount_order);
		put_be32(h + 100, QCOW2_OUR_HEADER);
		h[104] = (uint8_t)s->compression;
		off = QCOW2_OUR_HEADER;
	}
	/* the data file's name is ours: amend may change or drop it */
	if (copy_exts(old, hlen, ext_end, h, &off, cs,
	    QCOW2_EXT_BACKING_FMT) < 0 || (s->data_file != NULL &&
	    off + 8 + ROUND_UP(strlen(s->data_file), 8) + 8 > cs))
		goto nospace;
	if (s->data_file != NULL)
		off += qcow2_put_ext(h + off, QCOW2_EXT_DATA_FILE,
		    (const uint8_t *)s->data_file,
		    (uint32_t)strlen(s->data_file));
	if (copy_exts(old, hlen, ext_end, h, &off, cs, QCOW2_EXT_CRYPTO) < 0)
		goto nospace;
	if (version >= 3 && off + QCOW2_FEATURES_EXT + 8 + blen <= cs)
		off += qcow2_put_features(h + off);
	if (copy_exts(old, hlen, ext_end, h, &off, cs, 0) < 0 ||
	    off + 8 + blen > cs)
		goto nospace;
	off += 8;			/* the end of the extensions */
	put_be64(h + 8, blen ? off : 0);
	put_be32(h + 16, (uint32_t)blen);
	memcpy(h + off, old + boff, blen);
	if (qcow2_fsync(img) < 0 ||
	    qcow2_pwrite(img, h, cs, 0, "qcow2 header") < 0 ||
	    qcow2_fsync(img) < 0)
		goto out;
	s->version = version;
	s->compat = compat;
	s->autoclear = autoclear;
	s->header_length = version >= 3 ? QCOW2_OUR_HEADER : QCOW2_V2_HEADER;
	r = 0;
	goto out;
nospace:
	err_set(0, "Failed to update the image header");
out:
	free(old);
	free(h);
	return r;
}

static int
update_header(struct img *img)
{
	struct qcow2 *s = img->priv;

	return write_header(img, s->version, s->compat, s->autoclear,
	    s->refcount_order);
}

/* qcow2_upgrade: snapshots get v3's extra data, then the v3 header. */
static int
upgrade(struct img *img)
{
	struct qcow2 *s = img->priv;

	pg.cur = OP_UPGRADE;
	pg_status(0, 2);
	if (qcow2_snapshot_upgrade(img) < 0)
		return err_prefix("Failed to update the snapshot table");
	pg_status(1, 2);
	if (write_header(img, 3, 0, 0, s->refcount_order) < 0)
		return -1;
	pg_status(2, 2);
	return 0;
}

/* A zero cluster of table l2off becomes a data cluster of zeroes (v2 has none). */
static int
expand_entry(struct img *img, uint64_t l2off, uint64_t j, uint64_t l2rc)
{
	struct qcow2 *s = img->priv;
	uint64_t e, off, k;
	uint8_t *l2, *z;
	int r;

	if ((l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
		return -1;
	e = qcow2_l2_entry(s, l2, j);
	off = e & QCOW2_L2E_OFFSET;
	if (off == 0 && (img->backing_file == NULL || !*img->backing_file)) {
		qcow2_l2_set(s, l2, j, 0);	/* unallocated reads zeroes too */
		qcow2_cache_dirty(&s->l2_cache, l2off);
		return 0;
	}
	if (off == 0) {
		if ((off = qcow2_alloc_clusters(img, 1)) == 0)
			return -1;
		for (k = 1; k < l2rc; k++)	/* a shared table: one per sharer */
			if (qcow2_refcount_update(img, off, s->cluster_size, 1) < 0)
				return -1;
	}
	if (off & (s->cluster_size - 1))
		return err_set(0, "%s: Cluster allocation offset %#llx unaligned "
		    "(L2 offset: %#llx, L2 index: %#llx)", img->filename,
		    (unsigned long long)off, (unsigned long long)l2off,
		    (unsigned long long)j);
	z = xcalloc(1, s->cluster_size);
	r = qcow2_pwrite(img, z, s->cluster_size, off, "zero cluster");
	free(z);
	if (r < 0 || (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
		return -1;
	qcow2_l2_set(s, l2, j, off | (l2rc == 1 ? QCOW2_OFLAG_COPIED : 0));
	qcow2_cache_dirty(&s->l2_cache, l2off);
	return 0;
}

/* qcow2_expand_zero_clusters for one L1 table; *seen of total entries done. */
static int
expand_l1(struct img *img, const uint64_t *l1, uint32_t n, int64_t *seen,
    int64_t total)
{
	struct qcow2 *s = img->priv;
	uint64_t l2off, l2rc, j, e;
	uint32_t i;
	uint8_t *l2;

	for (i = 0; i < n; i++) {
		if ((l2off = l1[i] & QCOW2_L1E_OFFSET) == 0) {
			pg_status(++*seen, total);
			continue;
		}
		if (l2off & (s->cluster_size - 1))
			return err_set(0, "%s: L2 table offset %#llx unaligned "
			    "(L1 index: %#x)", img->filename,
			    (unsigned long long)l2off, i);
		if (qcow2_refcount_get(img, l2off >> s->cluster_bits, &l2rc) < 0)
			return -1;
		for (j = 0; j < qcow2_l2_entries(s); j++) {
			if ((l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
				return -1;
			e = qcow2_l2_entry(s, l2, j);
			if ((e & QCOW2_OFLAG_COMPRESSED) || !(e & QCOW2_OFLAG_ZERO))
				continue;
			if (expand_entry(img, l2off, j, l2rc) < 0)
				return -1;
		}
		pg_status(++*seen, total);
	}
	return 0;
}

static int
expand_zero_clusters(struct img *img)
{
	struct qcow2 *s = img->priv;
	uint64_t *offs = NULL, *l1;
	uint32_t *sizes = NULL, n = 0, i;
	int64_t seen = 0, total;
	char why[512];
	int r;

	if (qcow2_snapshot_l1s(img, &offs, &sizes, &n) < 0)
		return err_wrap("Failed to turn zero into data clusters");
	for (total = s->l1_size, i = 0; i < n; i++)
		total += sizes[i];
	pg.cur = OP_DOWNGRADE;
	if (expand_l1(img, s->l1, s->l1_size, &seen, total) < 0) {
		free(offs);
		free(sizes);
		return err_wrap("Failed to turn zero into data clusters");
	}
	for (i = 0, r = 0; i < n && r == 0; i++) {
		if ((l1 = qcow2_read_l1(img, offs[i], sizes[i])) == NULL) {
			/* qemu reports the table on a line of its own */
			snprintf(why, sizeof(why), "%s", err_msg());
			err_set(0, "%s\n%s: Failed to turn zero into data "
			    "clusters: %s", why, prog_name(),
			    strerror(qcow2_l1_errno(why)));
			free(offs);
			free(sizes);
			return -1;
		}
		r = expand_l1(img, l1, sizes[i], &seen, total);
		free(l1);
	}
	free(offs);
	free(sizes);
	if (r < 0 || qcow2_flush(img) < 0)
		return err_wrap("Failed to turn zero into data clusters");
	return 0;
}

/* qcow2_downgrade: what v2 cannot hold is refused, zero clusters expanded. */
static int
downgrade(struct img *img)
{
	struct qcow2 *s = img->priv;

	if (s->refcount_order != 4)
		return err_set(0, "compat=0.10 requires refcount_bits=16");
	if (s->incompat & QCOW2_INCOMPAT_DATA_FILE)
		return err_set(0, "Cannot downgrade an image with a data file");
	if (qcow2_snapshot_downgrade_ok(img) < 0)
		return -1;
	if (s->incompat & ~(QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_DIRTY))
		return err_set(0, "Cannot downgrade an image with "
		    "incompatible features %#llx set", (unsigned long long)
		    (s->incompat & ~QCOW2_INCOMPAT_COMPRESSION));
	if (expand_zero_clusters(img) < 0)
		return -1;
	s->incompat = 0;
	return write_header(img, 2, 0, 0, 4);
}

/* The refcount of every cluster of the file, for rewriting them. */
static uint64_t *
all_refcounts(struct img *img, uint64_t *n)
{
	struct qcow2 *s = img->priv;
	uint64_t i, *rc;

	*n = DIV_ROUND_UP(MAX(s->alloc_end, s->file_size), s->cluster_size);
	if ((rc = calloc(*n ? *n : 1, sizeof(*rc))) == NULL) {
		err_set(0, "Could not allocate refcounts");
		return NULL;
	}
	for (i = 0; i < *n; i++)
		if (qcow2_refcount_get(img, i, &rc[i]) < 0) {
			free(rc);
			return NULL;
		}
	return rc;
}

/*
 * qemu's qcow2_change_refcount_order allocates the new refblocks and table
 * one walk over the refcounts at a time, until a walk allocates nothing;
 * its progress counts those walks.  A model of its allocator (first fit
 * from a moving free index, as alloc_clusters_noref) on a copy of the
 * refcounts says how many allocating walks it makes.
 */
struct sim {
	uint64_t	*rc, n, cap, free_index;
};

static uint64_t
sim_get(const struct sim *m, uint64_t i)
{
	return i < m->n ? m->rc[i] : 0;
}

static void
sim_set(struct sim *m, uint64_t i, uint64_t v)
{
	if (i >= m->cap) {
		m->cap = MAX(i + 1, 2 * m->cap);
		m->rc = xrealloc(m->rc, m->cap * sizeof(*m->rc));
	}
	for (; m->n <= i; m->n++)
		m->rc[m->n] = 0;
	m->rc[i] = v;
}

static uint64_t
sim_alloc(struct sim *m, uint64_t nb)
{
	uint64_t i, k;

	for (k = 0; k < nb;)
		k = sim_get(m, m->free_index++) ? 0 : k + 1;
	for (i = m->free_index - nb; i < m->free_index; i++)
		sim_set(m, i, 1);
	return m->free_index - nb;
}

static void
sim_free(struct sim *m, uint64_t start, uint64_t nb)
{
	uint64_t i;

	for (i = start; i < start + nb; i++)
		sim_set(m, i, 0);
	m->free_index = MIN(m->free_index, start);
}

/* One allocating walk (walk_over_reftable with alloc_refblock). */
static bool
sim_walk(struct sim *m, uint64_t per, uint64_t **rt, uint64_t *rtn,
    uint64_t cs)
{
	uint64_t g, i, grow;
	bool allocated = false, empty;

	for (g = 0; g * per < m->n; g++) {
		for (empty = true, i = g * per; i < (g + 1) * per && empty; i++)
			empty = sim_get(m, i) == 0;
		if (empty)
			continue;
		if (g >= *rtn) {
			grow = ROUND_UP(g + 1, cs / 8);
			*rt = xrealloc(*rt, grow * sizeof(**rt));
			memset(*rt + *rtn, 0, (grow - *rtn) * sizeof(**rt));
			*rtn = grow;
		}
		if ((*rt)[g] == 0) {
			/* + 1: a table entry of 0 means none */
			(*rt)[g] = sim_alloc(m, 1) + 1;
			allocated = true;
		}
	}
	return allocated;
}

static int64_t
qemu_walks(const uint64_t *rc, uint64_t n, uint64_t cs, unsigned order)
{
	struct sim m = { .n = n, .cap = n ? n : 1 };
	uint64_t per = cs * 8 >> order, *rt = NULL, rtn = 0, tab = 0, tabn = 0;
	int64_t walks = 0;

	m.rc = xmalloc(m.cap * sizeof(*m.rc));
	memcpy(m.rc, rc, n * sizeof(*rc));
	while (sim_walk(&m, per, &rt, &rtn, cs)) {
		walks++;
		if (tabn)
			sim_free(&m, tab, tabn);
		tabn = DIV_ROUND_UP(rtn * 8, cs);
		tab = sim_alloc(&m, tabn);
	}
	free(rt);
	free(m.rc);
	return walks + 1;
}

/*
 * New refcount structures of 2^order-bit entries (qemu's
 * qcow2_change_refcount_order): the new table and blocks go past the end
 * of the file and count themselves, the old ones are free once the header
 * points at the new table.
 */
static int
change_order(struct img *img, unsigned order)
{
	struct qcow2 *s = img->priv;
	uint64_t n, *rc, i, max, cs = s->cluster_size, per, start, nb, nt, tot;
	uint64_t old_rt = s->rt_offset, old_rtc = s->rt_clusters, *rt;
	int64_t walks, w;
	uint8_t *buf;
	int r = -1;

	if (qcow2_flush(img) < 0 || (rc = all_refcounts(img, &n)) == NULL)
		return -1;
	/* qemu's walks: at least 3 of them planned, then the writing one */
	pg.cur = OP_REFCOUNT;
	walks = qemu_walks(rc, n, cs, order);
	for (i = 0; i <= (uint64_t)walks; i++) {
		w = i < (uint64_t)walks ? MAX((int64_t)i + 2, 3) : walks + 1;
		for (max = 0; max < s->rt_size; max++)
			pg_status((int64_t)(i * s->rt_size + max),
			    w * (int64_t)s->rt_size);
		pg_status((int64_t)((i + 1) * s->rt_size),
		    w * (int64_t)s->rt_size);
	}
	max = order == 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
	for (i = 0; i < n; i++)
		if (rc[i] > max) {
			err_set(0, "Cannot decrease refcount entry width to "
			    "%u bits: Cluster at offset %#llx has a refcount of "
			    "%llu", 1u << order, (unsigned long long)(i * cs),
			    (unsigned long long)rc[i]);
			goto out;
		}
	/* the old table and blocks go */
	for (i = 0; i < old_rtc; i++)
		rc[(old_rt / cs) + i] = 0;
	for (i = 0; i < s->rt_size; i++)
		if ((s->rt[i] & QCOW2_RTE_OFFSET) != 0 &&
		    (s->rt[i] & QCOW2_RTE_OFFSET) / cs < n)
			rc[(s->rt[i] & QCOW2_RTE_OFFSET) / cs] = 0;
	/* the new ones at the end: blocks then table, covering themselves */
	per = cs * 8 >> order;
	start = n;
	for (nb = 0, nt = 0;;) {
		tot = start + nb + nt;
		if (DIV_ROUND_UP(tot, per) <= nb &&
		    DIV_ROUND_UP(nb * 8, cs) <= nt)
			break;
		nb = DIV_ROUND_UP(tot, per);
		nt = DIV_ROUND_UP(nb * 8, cs);
	}
	if (nt * cs > QCOW2_MAX_RT_BYTES) {
		err_set(0, "%s: refcount table would exceed 8 MiB",
		    img->filename);
		goto out;
	}
	buf = xcalloc(nb + nt, cs);
	rt = xcalloc(nt * cs / 8, sizeof(*rt));
	for (i = 0; i < nb; i++) {
		rt[i] = (start + i) * cs;
		put_be64(buf + nb * cs + 8 * i, rt[i]);
	}
	for (i = 0; i < start + nb + nt; i++)
		qcow2_rb_set(buf + (i / per) * cs, order, i % per,
		    i < n ? rc[i] : (i >= start ? 1 : 0));
	if (qcow2_pwrite(img, buf, (nb + nt) * cs, start * cs,
	    "refcount structures") < 0 || qcow2_fsync(img) < 0) {
		free(buf);
		free(rt);
		goto out;
	}
	free(buf);
	/* one header write switches table, blocks and width together */
	s->rt_offset = (start + nb) * cs;
	s->rt_clusters = (uint32_t)nt;
	if (write_header(img, s->version, s->compat, s->autoclear, order) < 0) {
		s->rt_offset = old_rt;
		s->rt_clusters = (uint32_t)old_rtc;
		free(rt);
		goto out;
	}
	free(s->rt);
	s->rt = rt;
	s->rt_size = nt * cs / 8;
	s->rt_dirty = s->header_dirty = false;
	s->refcount_order = order;
	s->rb_bits = s->cluster_bits + 3 - order;
	i = s->rb_cache.max;
	qcow2_cache_free(&s->rb_cache);
	qcow2_cache_init(&s->rb_cache, img, "refcount block", (size_t)i, NULL);
	s->free_index = 0;
	s->alloc_end = (start + nb + nt) * cs;
	r = 0;
out:
	free(rc);
	return r;
}

int
qcow2_amend(struct img *img, const struct opt_list *o, bool force)
{
	struct qcow2 *s = img->priv;
	struct amend a;
	int old;

	if (check_opts(img, o) < 0 || parse_amend(img, o, &a) < 0)
		return -1;
	memset(&pg, 0, sizeof(pg));
	pg.total = (a.version != s->version) +
	    (a.refcount_order != s->refcount_order);
	if (qcow2_prepare_write(img) < 0)
		return -1;
	old = s->version;
	if (a.version > old && upgrade(img) < 0)
		return -1;
	if (a.refcount_order != s->refcount_order) {
		if (a.version < 3 && a.refcount_order != 4)
			return err_set(0, "Refcount widths other than 16 bits "
			    "require compatibility level 1.1 or above (use "
			    "compat=1.1 or greater)");
		if (change_order(img, a.refcount_order) < 0)
			return -1;
	}
	/* qemu clears data-file-raw first: it blocks backing files */
	if (a.data_raw)
		s->autoclear |= QCOW2_AUTOCLEAR_DATA_RAW;
	else
		s->autoclear &= ~QCOW2_AUTOCLEAR_DATA_RAW;
	if (a.data_file != NULL) {
		free(s->data_file);
		s->data_file = *a.data_file ? xstrdup(a.data_file) : NULL;
	}
	if (update_header(img) < 0)
		return err_wrap("Failed to update the image header");
	if ((a.backing_file || a.backing_fmt) &&
	    ((a.backing_file == NULL) != (img->backing_file == NULL) ||
	    (a.backing_file && strcmp(a.backing_file, img->backing_file)) ||
	    (a.backing_fmt == NULL) != (img->backing_fmt == NULL) ||
	    (a.backing_fmt && strcmp(a.backing_fmt, img->backing_fmt))))
		return err_set(0, "Cannot amend the backing file\nYou can "
		    "use 'qemu-img rebase' instead.");
	if (a.encrypt && qcow2_crypt_amend(img, o, force) < 0)
		return -1;
	if (a.lazy == 1 && !(s->compat & QCOW2_COMPAT_LAZY)) {
		if (a.version < 3)
			return err_set(0, "Lazy refcounts only supported with "
			    "compatibility level 1.1 and above (use compat=1.1 or "
			    "greater)");
		s->compat |= QCOW2_COMPAT_LAZY;
		if (update_header(img) < 0)
			return err_wrap("Failed to update the image header");
	} else if (a.lazy == 0 && (s->compat & QCOW2_COMPAT_LAZY)) {
		s->compat &= ~QCOW2_COMPAT_LAZY;
		if (update_header(img) < 0)
			return err_wrap("Failed to update the image header");
	}
	if (a.size != 0 && qcow2_resize(img, a.size, IMG_PREALLOC_OFF) < 0)
		return -1;
	if (a.version < s->version && downgrade(img) < 0)
		return -1;
	return qcow2_flush(img);
}
