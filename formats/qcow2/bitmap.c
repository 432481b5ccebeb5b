/*
 * qcow2 persistent dirty bitmaps: the directory as qemu-img info lists it,
 * and the in-use flag of a writer that does not track.  docs/interop/
 * qcow2.txt, "Bitmaps extension" and "Bitmap directory".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "qcow2.h"

#define BME_IN_USE	(1u << 0)
#define BME_AUTO	(1u << 1)
#define BME_FIXED	24	/* directory entry without extra data and name */

struct bm_entry {
	uint64_t	 at;		/* offset of the entry in the directory */
	uint32_t	 flags;
	unsigned	 gbits;		/* granularity bits */
	const char	*name;
	uint16_t	 nlen;
};

static int
read_dir(struct img *img, uint8_t **dir)
{
	struct qcow2 *s = img->priv;

	*dir = xmalloc(s->bm_dir_size ? s->bm_dir_size : 1);
	if (qcow2_pread_meta(img, *dir, s->bm_dir_size, s->bm_dir_offset,
	    "bitmap directory") < 0) {
		free(*dir);
		return -1;
	}
	return 0;
}

/* Entry number i of the directory at *pos; -1 with err_set when it overruns. */
static int
next_entry(struct img *img, const uint8_t *dir, uint64_t *pos,
    struct bm_entry *e)
{
	struct qcow2 *s = img->priv;
	uint64_t left = s->bm_dir_size - *pos, need;
	uint32_t extra;

	if (left < BME_FIXED)
		goto bad;
	e->at = *pos;
	e->flags = get_be32(dir + *pos + 12);
	e->gbits = dir[*pos + 17];
	e->nlen = get_be16(dir + *pos + 18);
	extra = get_be32(dir + *pos + 20);
	need = BME_FIXED + (uint64_t)extra + e->nlen;
	if (need > left || e->gbits > 63)
		goto bad;
	e->name = (const char *)dir + *pos + BME_FIXED + extra;
	*pos += MIN(ROUND_UP(need, 8), left);
	return 0;
bad:
	return err_set(0, "%s: bitmap directory at %#llx is corrupt",
	    img->filename, (unsigned long long)s->bm_dir_offset);
}

/* The "bitmaps" list of qemu-img info's format-specific data. */
int
qcow2_bitmap_info(struct img *img, struct jnode *data)
{
	struct qcow2 *s = img->priv;
	struct jnode *arr, *bm, *flags;
	struct bm_entry e;
	uint64_t pos = 0;
	uint8_t *dir;
	uint32_t i;
	char *name;

	if (s->nb_bitmaps == 0)
		return 0;
	if (read_dir(img, &dir) < 0)
		return -1;
	arr = jn_arr(data, "bitmaps");
	for (i = 0; i < s->nb_bitmaps; i++) {
		if (next_entry(img, dir, &pos, &e) < 0) {
			free(dir);
			return -1;
		}
		bm = jn_obj(arr, NULL);
		flags = jn_arr(bm, "flags");
		if (e.flags & BME_IN_USE)
			jn_str(flags, NULL, "in-use");
		if (e.flags & BME_AUTO)
			jn_str(flags, NULL, "auto");
		name = xasprintf("%.*s", (int)e.nlen, e.name);
		jn_str(bm, "name", name);
		free(name);
		jn_uint(bm, "granularity", 1ull << e.gbits);
	}
	free(dir);
	return 0;
}

/*
 * Before the first write: we do not track writes in bitmaps, so every
 * enabled ("auto") bitmap is marked in use, which tells qemu it is no
 * longer consistent.  Disabled bitmaps stay valid; the bitmaps stay
 * referenced, so qemu-img check finds no leaks.
 */
int
qcow2_bitmaps_in_use(struct img *img)
{
	struct qcow2 *s = img->priv;
	struct bm_entry e;
	uint64_t pos = 0;
	uint8_t *dir;
	uint32_t i;
	bool dirty = false;
	int r = 0;

	if (s->nb_bitmaps == 0)
		return 0;
	if (read_dir(img, &dir) < 0)
		return -1;
	for (i = 0; i < s->nb_bitmaps && r == 0; i++) {
		if ((r = next_entry(img, dir, &pos, &e)) < 0)
			break;
		if ((e.flags & BME_AUTO) && !(e.flags & BME_IN_USE)) {
			put_be32(dir + e.at + 12, e.flags | BME_IN_USE);
			dirty = true;
		}
	}
	if (r == 0 && dirty)
		r = qcow2_pwrite(img, dir, s->bm_dir_size, s->bm_dir_offset,
		    "bitmap directory");
	if (r == 0 && dirty && io_fdatasync(img->fd) < 0 && errno != EINVAL)
		r = err_set(errno, "%s: fsync", img->filename);
	free(dir);
	return r;
}

/*
 * img-bitmap: every bitmap is loaded into memory, the actions applied, and
 * all of them stored anew (data, tables, directory, then the header), the
 * old clusters freed last, as qemu's qcow2_store_persistent_dirty_bitmaps.
 */
#define BME_TYPE_DIRTY		1
#define BME_MAX_NAME		1023
#define BME_MIN_GBITS		9
#define BME_MAX_GBITS		31
#define BME_MAX_TABLE		0x8000000u	/* entries, qemu's cap */
#define BME_MAX_BYTES		(1u << 30)	/* in-memory bitmap cap */
#define BME_TE_OFFSET		0x00fffffffffffe00ull
#define BME_TE_ALL_ONES		1ull

struct bm {
	char		*name;
	uint32_t	 flags;
	unsigned	 gbits;
	bool		 removed;
	uint8_t		*bits;		/* NULL: inconsistent (in use) */
	uint64_t	 nbytes;
	uint64_t	*otable;	/* the table on disk, host order */
	uint64_t	 otoff;
	uint32_t	 otsize;
	uint64_t	 ntoff;		/* the new table */
	uint32_t	 ntsize;
};

struct bmset {
	struct bm	*v;
	size_t		 n;
	uint64_t	 size;		/* the image's virtual size (merges) */
};

static void
bmset_free(struct bmset *set)
{
	size_t i;

	for (i = 0; i < set->n; i++) {
		free(set->v[i].name);
		free(set->v[i].bits);
		free(set->v[i].otable);
	}
	free(set->v);
	set->v = NULL;
	set->n = 0;
}

static uint64_t
bm_nbytes(const struct img *img, unsigned gbits)
{
	uint64_t nbits = DIV_ROUND_UP(img->size, (uint64_t)1 << gbits);

	return DIV_ROUND_UP(nbits, 8);
}

/* The bitmap's bits from its table (qcow2.txt "Bitmap table"). */
static int
load_data(struct img *img, struct bm *b)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, i, n, off;
	uint8_t *t;

	if (b->otsize > BME_MAX_TABLE || b->nbytes > BME_MAX_BYTES ||
	    b->otsize != DIV_ROUND_UP(b->nbytes, cs) || (b->otoff & (cs - 1)))
		return err_set(0, "Bitmap '%s' has an invalid table", b->name);
	t = xmalloc((size_t)b->otsize * 8 + 1);
	if (qcow2_pread_meta(img, t, (size_t)b->otsize * 8, b->otoff,
	    "bitmap table") < 0) {
		free(t);
		return -1;
	}
	b->otable = xcalloc(b->otsize + 1, 8);
	for (i = 0; i < b->otsize; i++)
		b->otable[i] = get_be64(t + 8 * i);
	free(t);
	if (b->flags & BME_IN_USE)
		return 0;		/* inconsistent: its data is not read */
	b->bits = xcalloc(1, b->nbytes + 1);
	for (i = 0; i < b->otsize; i++) {
		n = MIN(cs, b->nbytes - i * cs);
		off = b->otable[i] & BME_TE_OFFSET;
		if (off == 0) {
			if (b->otable[i] & BME_TE_ALL_ONES)
				memset(b->bits + i * cs, 0xff, n);
			continue;
		}
		if ((off & (cs - 1)) || qcow2_pread_meta(img, b->bits + i * cs,
		    n, off, "bitmap data") < 0)
			return err_set(0, "Bitmap '%s' has invalid data",
			    b->name);
	}
	return 0;
}

static int
load_all(struct img *img, struct bmset *set)
{
	struct qcow2 *s = img->priv;
	struct bm_entry e;
	struct bm *b;
	uint64_t pos = 0;
	uint8_t *dir;
	uint32_t i;

	memset(set, 0, sizeof(*set));
	if (s->nb_bitmaps == 0)
		return 0;
	if (read_dir(img, &dir) < 0)
		return -1;
	set->v = xcalloc(s->nb_bitmaps, sizeof(*set->v));
	for (i = 0; i < s->nb_bitmaps; i++) {
		if (next_entry(img, dir, &pos, &e) < 0)
			goto fail;
		b = &set->v[set->n++];
		b->name = xasprintf("%.*s", (int)e.nlen, e.name);
		b->flags = e.flags;
		b->gbits = e.gbits;
		b->otoff = get_be64(dir + e.at);
		b->otsize = get_be32(dir + e.at + 8);
		if (dir[e.at + 16] != BME_TYPE_DIRTY ||
		    get_be32(dir + e.at + 20) != 0 ||
		    e.gbits < BME_MIN_GBITS || e.gbits > BME_MAX_GBITS) {
			err_set(0, "Bitmap '%s' is not supported", b->name);
			goto fail;
		}
		b->nbytes = bm_nbytes(img, e.gbits);
		if (load_data(img, b) < 0)
			goto fail;
	}
	free(dir);
	return 0;
fail:
	free(dir);
	bmset_free(set);
	return -1;
}

static struct bm *
bm_find(struct bmset *set, const char *name)
{
	size_t i;

	for (i = 0; i < set->n; i++)
		if (!set->v[i].removed && strcmp(set->v[i].name, name) == 0)
			return &set->v[i];
	return NULL;
}

static size_t
bm_live(const struct bmset *set)
{
	size_t i, n = 0;

	for (i = 0; i < set->n; i++)
		n += !set->v[i].removed;
	return n;
}

static int
act_add(struct img *img, struct bmset *set, const char *name, uint64_t g)
{
	struct qcow2 *s = img->priv;
	struct bm *b;

	if (g == 0)
		g = MAX(4096, s->cluster_size);
	if (g < 512 || !is_pow2(g))
		return err_set(0, "Granularity must be power of 2 and at least "
		    "512");
	if (*name == '\0')
		return err_set(0, "Bitmap name cannot be empty");
	if (strlen(name) > BME_MAX_NAME)
		return err_set(0, "Bitmap name is too long");
	if (bm_find(set, name) != NULL)
		return err_set(0, "Bitmap already exists: %s", name);
	if (s->version < 3)
		return err_set(0, "Can't make bitmap '%s' persistent in '%s': "
		    "Cannot store dirty bitmaps in qcow2 v2 files", name,
		    img->filename);
	if (log2_u64(g) > BME_MAX_GBITS)
		return err_set(0, "Can't make bitmap '%s' persistent in '%s': "
		    "Granularity exceeds maximum (%llu bytes)", name,
		    img->filename, 1ull << BME_MAX_GBITS);
	if (bm_live(set) >= QCOW2_MAX_BITMAPS)
		return err_set(0, "Can't make bitmap '%s' persistent in '%s': "
		    "Maximum number of persistent bitmaps is already reached",
		    name, img->filename);
	set->v = xrealloc(set->v, (set->n + 1) * sizeof(*set->v));
	b = &set->v[set->n++];
	memset(b, 0, sizeof(*b));
	b->name = xstrdup(name);
	b->flags = BME_AUTO;
	b->gbits = (unsigned)log2_u64(g);
	b->nbytes = bm_nbytes(img, b->gbits);
	if (b->nbytes > BME_MAX_BYTES)
		return err_set(ENOMEM, "Could not allocate bitmap");
	b->bits = xcalloc(1, b->nbytes + 1);
	return 0;
}

/* A bitmap the action may use: found and consistent. */
static struct bm *
usable(struct bmset *set, const char *name)
{
	struct bm *b = bm_find(set, name);

	if (b == NULL)
		err_set(0, "Dirty bitmap '%s' not found", name);
	else if (b->bits == NULL)
		err_set(0, "Bitmap '%s' is inconsistent and cannot be used\n"
		    "Try block-dirty-bitmap-remove to delete this bitmap from "
		    "disk", name);
	else
		return b;
	return NULL;
}

static bool
bit_get(const uint8_t *bits, uint64_t i)
{
	return (bits[i / 8] >> (i % 8)) & 1;
}

/* Every byte range dirty in src is made dirty in dst (granularities differ). */
static void
merge_bits(struct img *img, struct bm *dst, const struct bm *src)
{
	uint64_t nsrc = DIV_ROUND_UP(img->size, (uint64_t)1 << src->gbits);
	uint64_t i, a, z, j;

	for (i = 0; i < nsrc; i++) {
		if (!bit_get(src->bits, i))
			continue;
		a = (i << src->gbits) >> dst->gbits;
		z = (MIN(img->size, (i + 1) << src->gbits) - 1) >> dst->gbits;
		for (j = a; j <= z && j / 8 < dst->nbytes; j++)
			dst->bits[j / 8] |= (uint8_t)(1u << (j % 8));
	}
}

static int
act_one(struct img *img, struct bmset *set, struct bmset *srcset,
    const char *name, const struct img_bitmap_act *a, uint64_t g)
{
	struct bm *b, *sb;

	if (a->act == IMG_BM_ADD)
		return act_add(img, set, name, g);
	if (a->act == IMG_BM_REMOVE) {
		if ((b = bm_find(set, name)) == NULL)
			return err_set(0, "Dirty bitmap '%s' not found", name);
		b->removed = true;
		return 0;
	}
	if ((b = usable(set, name)) == NULL)
		return -1;
	switch (a->act) {
	case IMG_BM_CLEAR:
		memset(b->bits, 0, b->nbytes);
		break;
	case IMG_BM_ENABLE:
		b->flags |= BME_AUTO;
		break;
	case IMG_BM_DISABLE:
		b->flags &= ~BME_AUTO;
		break;
	case IMG_BM_MERGE:
		if ((sb = usable(srcset, a->src)) == NULL)
			return -1;
		/* qemu's hbitmap_can_merge; merge_bits reads src by our size */
		if (srcset->size != img->size)
			return err_set(0, "Bitmaps are of different sizes "
			    "(destination size is %llu, source size is %llu) and "
			    "can't be merged", (unsigned long long)img->size,
			    (unsigned long long)srcset->size);
		merge_bits(img, b, sb);
		break;
	}
	return 0;
}

/*
 * New clusters holding len bytes of p; data clusters are written whole
 * (zero-padded), tables and the directory to their last byte, as qemu
 * writes them.  0 on error.
 */
static uint64_t
store(struct img *img, const uint8_t *p, uint64_t len, const char *what,
    bool whole)
{
	struct qcow2 *s = img->priv;
	uint64_t n = DIV_ROUND_UP(len, s->cluster_size), off;
	uint8_t *buf;
	int r;

	if ((off = qcow2_alloc_clusters(img, n)) == 0)
		return 0;
	buf = xcalloc(n, s->cluster_size);
	memcpy(buf, p, len);
	r = qcow2_pre_write(img, off, n * s->cluster_size, 0);
	if (r == 0)
		r = qcow2_pwrite(img, buf, whole ? n * s->cluster_size : len,
		    off, what);
	free(buf);
	return r < 0 ? 0 : off;
}

static bool
all_zero(const uint8_t *p, uint64_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* The bitmap's data clusters and table; an inconsistent one keeps its own. */
static int
store_bitmap(struct img *img, struct bm *b)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, i, n, off;
	uint32_t ts = (uint32_t)DIV_ROUND_UP(b->nbytes, cs);
	uint8_t *t;

	if (b->bits == NULL) {
		b->ntoff = b->otoff;
		b->ntsize = b->otsize;
		return 0;
	}
	t = xcalloc(ts ? ts : 1, 8);
	for (i = 0; i < ts; i++) {
		n = MIN(cs, b->nbytes - i * cs);
		if (all_zero(b->bits + i * cs, n))
			continue;
		off = store(img, b->bits + i * cs, n, "bitmap data", true);
		if (off == 0) {
			free(t);
			return -1;
		}
		put_be64(t + 8 * i, off);
	}
	b->ntsize = ts;
	b->ntoff = ts ? store(img, t, (uint64_t)ts * 8, "bitmap table",
	    false) : 0;
	free(t);
	return ts && b->ntoff == 0 ? -1 : 0;
}

static void
free_range(struct img *img, uint64_t off, uint64_t len)
{
	struct qcow2 *s = img->priv;

	if (off != 0 && len != 0)
		(void)qcow2_refcount_update(img, ROUND_DOWN(off,
		    s->cluster_size), ROUND_UP(len, s->cluster_size), -1);
}

/* What the old bitmaps held, once the new ones are in place. */
static void
free_old(struct img *img, const struct bmset *set, uint64_t dir_off,
    uint64_t dir_size)
{
	struct qcow2 *s = img->priv;
	const struct bm *b;
	size_t i;
	uint32_t j;

	for (i = 0; i < set->n; i++) {
		b = &set->v[i];
		if (b->otable == NULL || (!b->removed && b->bits == NULL))
			continue;
		for (j = 0; j < b->otsize; j++)
			free_range(img, b->otable[j] & BME_TE_OFFSET,
			    s->cluster_size);
		free_range(img, b->otoff, (uint64_t)b->otsize * 8);
	}
	free_range(img, dir_off, dir_size);
}

static uint8_t *
build_dir(const struct bmset *set, uint64_t *size, uint32_t *nb)
{
	const struct bm *b;
	uint64_t len = 0, at = 0;
	uint8_t *dir;
	size_t i, nl;

	*nb = 0;
	for (i = 0; i < set->n; i++)
		if (!set->v[i].removed)
			len += ROUND_UP(BME_FIXED + strlen(set->v[i].name), 8);
	dir = xcalloc(1, len ? len : 1);
	for (i = 0; i < set->n; i++) {
		b = &set->v[i];
		if (b->removed)
			continue;
		nl = strlen(b->name);
		put_be64(dir + at, b->ntoff);
		put_be32(dir + at + 8, b->ntsize);
		put_be32(dir + at + 12, b->bits ? b->flags & ~BME_IN_USE :
		    b->flags);
		dir[at + 16] = BME_TYPE_DIRTY;
		dir[at + 17] = (uint8_t)b->gbits;
		put_be16(dir + at + 18, (uint16_t)nl);
		memcpy(dir + at + BME_FIXED, b->name, nl);
		at += ROUND_UP(BME_FIXED + nl, 8);
		(*nb)++;
	}
	*size = len;
	return dir;
}

/*
 * The header extensions again, the bitmaps one replaced (after the feature
 * table, as qemu orders them) or dropped, the backing name moved behind.
 */
static int
write_ext(struct img *img, uint32_t nb, uint64_t dsize, uint64_t doff)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, pos, boff, end, out;
	uint32_t magic, len, blen;
	uint8_t *h, *n, e[24];
	bool put = nb == 0;
	int r;

	h = xcalloc(1, cs);
	n = xcalloc(1, cs);
	if (qcow2_pread_meta(img, h, cs, 0, "qcow2 header") < 0)
		goto fail;
	boff = get_be64(h + 8);
	blen = get_be32(h + 16);
	end = boff ? boff : cs;
	memset(e, 0, sizeof(e));
	put_be32(e, nb);
	put_be64(e + 8, dsize);
	put_be64(e + 16, doff);
	memcpy(n, h, s->header_length);
	for (pos = out = s->header_length; pos + 8 <= end; ) {
		magic = get_be32(h + pos);
		len = get_be32(h + pos + 4);
		if (magic == QCOW2_EXT_END || len > end - pos - 8)
			break;
		if (magic != QCOW2_EXT_BITMAPS) {
			if (!put && magic != QCOW2_EXT_BACKING_FMT &&
			    magic != QCOW2_EXT_DATA_FILE &&
			    magic != QCOW2_EXT_CRYPTO &&
			    magic != QCOW2_EXT_FEATURES) {
				out += qcow2_put_ext(n + out, QCOW2_EXT_BITMAPS,
				    e, 24);
				put = true;
			}
			if (out + 8 + ROUND_UP(len, 8) > cs)
				goto big;
			memcpy(n + out, h + pos, 8 + (size_t)len);
			out += 8 + ROUND_UP((uint64_t)len, 8);
		}
		pos += 8 + ROUND_UP((uint64_t)len, 8);
	}
	if (!put) {
		if (out + 32 > cs)
			goto big;
		out += qcow2_put_ext(n + out, QCOW2_EXT_BITMAPS, e, 24);
	}
	out += 8;			/* end of extensions */
	if (boff) {
		if (out + blen > cs || boff + blen > cs)
			goto big;
		memcpy(n + out, h + boff, blen);
		put_be64(n + 8, out);
		out += blen;
	}
	s->autoclear = nb ? s->autoclear | QCOW2_AUTOCLEAR_BITMAPS :
	    s->autoclear & ~QCOW2_AUTOCLEAR_BITMAPS;
	put_be64(n + 88, s->autoclear);
	/* the header cluster holds nothing else: write it whole */
	r = qcow2_pwrite(img, n, cs, 0, "qcow2 header");
	free(h);
	free(n);
	return r;
big:
	err_set(EFBIG, "%s: Header extensions too large", img->filename);
fail:
	free(h);
	free(n);
	return -1;
}

static int
save_all(struct img *img, struct bmset *set)
{
	struct qcow2 *s = img->priv;
	uint64_t dsize, doff = 0, odoff = s->bm_dir_offset;
	uint64_t odsize = s->bm_dir_size;
	uint32_t nb;
	uint8_t *dir;
	size_t i;

	if (qcow2_prepare_write(img) < 0)
		return -1;
	for (i = 0; i < set->n; i++)
		if (!set->v[i].removed && store_bitmap(img, &set->v[i]) < 0)
			return -1;
	dir = build_dir(set, &dsize, &nb);
	if (nb > 0 && (doff = store(img, dir, dsize, "bitmap directory",
	    false)) == 0) {
		free(dir);
		return -1;
	}
	free(dir);
	if (qcow2_flush(img) < 0 || write_ext(img, nb, dsize, doff) < 0 ||
	    fmt_sync(img) < 0)
		return -1;
	s->nb_bitmaps = nb;
	s->bm_dir_offset = doff;
	s->bm_dir_size = dsize;
	free_old(img, set, odoff, odsize);
	return qcow2_flush(img);
}

/*
 * Before the first write, as qemu opening an image read-write: the bitmaps
 * are loaded to record writes in, and the enabled ones marked in use on
 * disk until qcow2_bitmaps_store writes them back at a clean close.
 */
int
qcow2_bitmaps_track(struct img *img)
{
	struct qcow2 *s = img->priv;
	struct bmset *set;

	if (s->nb_bitmaps == 0 || s->bm_track != NULL)
		return 0;
	set = xcalloc(1, sizeof(*set));
	if (load_all(img, set) < 0) {
		free(set);
		return -1;
	}
	s->bm_track = set;
	return qcow2_bitmaps_in_use(img);
}

/* qemu's bdrv_set_dirty: the enabled bitmaps record [off, off+len). */
void
qcow2_bitmaps_dirty(struct img *img, uint64_t off, uint64_t len)
{
	struct qcow2 *s = img->priv;
	struct bmset *set = s->bm_track;
	struct bm *b;
	uint64_t j, a, z;
	size_t i;

	if (set == NULL || len == 0 || off >= img->size)
		return;
	len = MIN(len, img->size - off);
	for (i = 0; i < set->n; i++) {
		b = &set->v[i];
		if (b->removed || b->bits == NULL || !(b->flags & BME_AUTO))
			continue;
		a = off >> b->gbits;
		z = (off + len - 1) >> b->gbits;
		for (j = a; j <= z && j / 8 < b->nbytes; j++)
			b->bits[j / 8] |= (uint8_t)(1u << (j % 8));
	}
}

/* At a clean close: the tracked bitmaps written back, no longer in use. */
int
qcow2_bitmaps_store(struct img *img)
{
	struct qcow2 *s = img->priv;
	struct bmset *set = s->bm_track;
	int r;

	if (set == NULL)
		return 0;
	s->bm_track = NULL;
	r = s->fatal ? 0 : save_all(img, set);
	bmset_free(set);
	free(set);
	return r;
}

/* Forget the tracked bitmaps (an image that is not closed cleanly). */
void
qcow2_bitmaps_drop(struct img *img)
{
	struct qcow2 *s = img->priv;

	if (s->bm_track != NULL)
		bmset_free(s->bm_track);
	free(s->bm_track);
	s->bm_track = NULL;
}

int
qcow2_bitmap(struct img *img, const char *name,
    const struct img_bitmap_act *acts, size_t n, uint64_t granularity,
    struct img *src, size_t *failed)
{
	struct qcow2 *s = img->priv;
	struct bmset set, sset, *srcset = &set;
	char *msg;
	size_t i;
	int r = 0;

	/* the tracking load is ours: the in-use marks it made are not real */
	if (qcow2_prepare_write(img) < 0)
		return -1;
	memset(&set, 0, sizeof(set));
	if (s->bm_track != NULL) {
		set = *(struct bmset *)s->bm_track;
		free(s->bm_track);
		s->bm_track = NULL;
	}
	memset(&sset, 0, sizeof(sset));
	if (src != NULL && src != img) {
		srcset = &sset;
		if (src->ops == img->ops && load_all(src, &sset) < 0) {
			bmset_free(&set);
			return -1;
		}
	}
	set.size = img->size;
	sset.size = src != NULL ? src->size : img->size;
	for (i = 0; i < n && r == 0; i++)
		if ((r = act_one(img, &set, srcset, name, &acts[i],
		    granularity)) < 0)
			*failed = i;
	/* what succeeded is stored, as qemu stores it at close */
	if (r == 0) {
		r = save_all(img, &set);
		*failed = n;
	} else {
		msg = xstrdup(err_msg());
		(void)save_all(img, &set);
		err_set(0, "%s", msg);
		free(msg);
	}
	bmset_free(&set);
	bmset_free(&sset);
	return r;
}

static int
inconsistent(const char *name, size_t n)
{
	return err_set(0, "Bitmap '%.*s' is inconsistent and cannot be used\n"
	    "Try block-dirty-bitmap-remove to delete this bitmap from disk",
	    (int)n, name);
}

/*
 * Before a resize, as qemu's qcow2_truncate_bitmaps_check: every bitmap
 * must be consistent (not in use on disk), so it can follow the new size.
 * Called before the first write marks our own bitmaps in use.
 */
int
qcow2_bitmaps_resize_ok(struct img *img)
{
	struct qcow2 *s = img->priv;
	struct bmset *set = s->bm_track;
	struct bm_entry e;
	uint64_t pos = 0;
	uint8_t *dir;
	uint32_t i;
	int r = 0;

	for (i = 0; set != NULL && i < set->n; i++)
		if (!set->v[i].removed && set->v[i].bits == NULL)
			return inconsistent(set->v[i].name,
			    strlen(set->v[i].name));
	if (set != NULL || s->nb_bitmaps == 0)
		return 0;
	if (read_dir(img, &dir) < 0)
		return -1;
	for (i = 0; i < s->nb_bitmaps && r == 0; i++)
		if ((r = next_entry(img, dir, &pos, &e)) == 0 &&
		    (e.flags & BME_IN_USE))
			r = inconsistent(e.name, e.nlen);
	free(dir);
	return r;
}

/*
 * After a resize, as qemu's bdrv_dirty_bitmap_truncate: the bitmaps cover
 * the new size, bits past it cleared, new ones clear; they are stored
 * with their new tables at close.
 */
void
qcow2_bitmaps_resized(struct img *img)
{
	struct qcow2 *s = img->priv;
	struct bmset *set = s->bm_track;
	uint64_t n, nbits, j;
	struct bm *b;
	size_t i;

	for (i = 0; set != NULL && i < set->n; i++) {
		b = &set->v[i];
		if (b->removed || b->bits == NULL)
			continue;
		n = bm_nbytes(img, b->gbits);
		b->bits = xrealloc(b->bits, n + 1);
		if (n > b->nbytes)
			memset(b->bits + b->nbytes, 0, n + 1 - b->nbytes);
		b->nbytes = n;
		nbits = DIV_ROUND_UP(img->size, (uint64_t)1 << b->gbits);
		for (j = nbits; j < n * 8; j++)
			b->bits[j / 8] &= (uint8_t)~(1u << (j % 8));
	}
}
