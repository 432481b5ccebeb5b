/*
 * qcow2 refcounts and cluster allocation: docs/interop/qcow2.txt, "Host
 * cluster management".  New clusters are appended at the end of the file;
 * references dropped while writing are applied after the L2 tables that
 * dropped them reach the disk (a crash then leaks, never corrupts).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../blkdebug.h"
#include "qcow2.h"

static uint64_t
rb_get(const struct qcow2 *s, const uint8_t *rb, uint64_t i)
{
	unsigned bits = 1u << s->refcount_order;
	uint64_t bit;

	switch (bits) {
	case 8:
		return rb[i];
	case 16:
		return get_be16(rb + 2 * i);
	case 32:
		return get_be32(rb + 4 * i);
	case 64:
		return get_be64(rb + 8 * i);
	}
	/* sub-byte widths: bit 0 is the least significant bit of a byte */
	bit = i * bits;
	return (rb[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
}

void
qcow2_rb_set(uint8_t *rb, unsigned order, uint64_t i, uint64_t v)
{
	unsigned bits = 1u << order;
	uint64_t bit;
	unsigned mask;

	switch (bits) {
	case 8:
		rb[i] = (uint8_t)v;
		return;
	case 16:
		put_be16(rb + 2 * i, (uint16_t)v);
		return;
	case 32:
		put_be32(rb + 4 * i, (uint32_t)v);
		return;
	case 64:
		put_be64(rb + 8 * i, v);
		return;
	}
	bit = i * bits;
	mask = ((1u << bits) - 1) << (bit % 8);
	rb[bit / 8] = (uint8_t)((rb[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
}

static uint64_t
refcount_max(const struct qcow2 *s)
{
	unsigned bits = 1u << s->refcount_order;

	return bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
}

/* The refcount block at table index ti, or NULL (*none when it has none). */
static uint8_t *
refblock(struct img *img, uint64_t ti, bool *none)
{
	struct qcow2 *s = img->priv;
	uint64_t off;

	*none = false;
	if (ti >= s->rt_size || (off = s->rt[ti] & QCOW2_RTE_OFFSET) == 0) {
		*none = true;
		return NULL;
	}
	if (off & (s->cluster_size - 1)) {
		qcow2_corrupt(img, "refcount block offset %#llx unaligned "
		    "(reftable index: %#llx)",
		    (unsigned long long)off, (unsigned long long)ti);
		return NULL;
	}
	blkdbg_event(img->fd, BLKDBG_REFBLOCK_LOAD);
	return qcow2_cache_get(&s->rb_cache, off);
}

int
qcow2_refcount_get(struct img *img, uint64_t cluster, uint64_t *rc)
{
	struct qcow2 *s = img->priv;
	uint8_t *rb;
	bool none;

	rb = refblock(img, cluster >> s->rb_bits, &none);
	if (rb == NULL) {
		*rc = 0;
		return none ? 0 : -1;
	}
	*rc = rb_get(s, rb, cluster & (((uint64_t)1 << s->rb_bits) - 1));
	return 0;
}

static int
reserve(struct img *img, uint64_t n, uint64_t *off)
{
	struct qcow2 *s = img->priv;
	uint64_t end;

	*off = 0;
	if (ck_mul(n, s->cluster_size, &end) || ck_add(s->alloc_end, end, &end) ||
	    end > QCOW2_MAX_HOST)
		return err_set(EFBIG, "%s: cannot allocate clusters",
		    img->filename);
	*off = s->alloc_end;
	s->alloc_end = end;
	return 0;
}

static int set_refcount(struct img *img, uint64_t cluster, int delta);

/*
 * A larger refcount table, at the end of the file; the old one's clusters
 * are freed once the header points at the new one.
 */
static int
grow_table(struct img *img, uint64_t need)
{
	struct qcow2 *s = img->priv;
	uint64_t per = s->cluster_size / 8, entries, clusters, off, old;
	uint64_t old_clusters = s->rt_clusters, *rt, i;

	entries = MAX(need + need / 4 + 16, s->rt_size * 2);
	clusters = DIV_ROUND_UP(entries, per);
	if (clusters * s->cluster_size > QCOW2_MAX_RT_BYTES)
		return err_set(EFBIG, "%s: refcount table would exceed 8 MiB",
		    img->filename);
	/* qemu's qcow2_refcount_area, as alloc_refcount_block grows it */
	blkdbg_event(img->fd, BLKDBG_REFTABLE_GROW);
	blkdbg_event(img->fd, BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS);
	blkdbg_event(img->fd, BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE);
	blkdbg_event(img->fd, BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE);
	if (reserve(img, clusters, &off) < 0)
		return -1;
	rt = xcalloc(clusters * per, sizeof(*rt));
	memcpy(rt, s->rt, s->rt_size * sizeof(*rt));
	free(s->rt);
	s->rt = rt;
	s->rt_size = clusters * per;
	old = s->rt_offset;
	s->rt_offset = off;
	s->rt_clusters = (uint32_t)clusters;
	s->rt_dirty = s->header_dirty = true;
	for (i = 0; i < clusters; i++)
		if (set_refcount(img, (off >> s->cluster_bits) + i, 1) < 0)
			return -1;
	return qcow2_defer_free(img, old, old_clusters * s->cluster_size);
}

/* The refcount block for cluster, created (with its own refcount) if missing. */
static uint8_t *
refblock_create(struct img *img, uint64_t cluster)
{
	struct qcow2 *s = img->priv;
	uint64_t ti = cluster >> s->rb_bits, off;
	uint8_t *rb;
	bool none;

	/* qemu's alloc_refcount_block, on each refcount update */
	blkdbg_event(img->fd, BLKDBG_REFBLOCK_ALLOC);
	for (;;) {
		rb = refblock(img, ti, &none);
		if (rb != NULL || !none)
			return rb;
		blkdbg_event(img->fd, BLKDBG_REFBLOCK_ALLOC_WRITE);
		if (ti >= s->rt_size) {
			if (grow_table(img, ti + 1) < 0)
				return NULL;
			continue;
		}
		if (reserve(img, 1, &off) < 0)
			return NULL;
		blkdbg_event(img->fd, BLKDBG_REFBLOCK_ALLOC_HOOKUP);
		s->rt[ti] = off;
		s->rt_dirty = true;
		if (qcow2_cache_get_empty(&s->rb_cache, off) == NULL ||
		    set_refcount(img, off >> s->cluster_bits, 1) < 0)
			return NULL;
	}
}

static int
set_refcount(struct img *img, uint64_t cluster, int delta)
{
	struct qcow2 *s = img->priv;
	uint64_t i = cluster & (((uint64_t)1 << s->rb_bits) - 1), v, off;
	uint8_t *rb;

	if ((rb = refblock_create(img, cluster)) == NULL)
		return -1;
	v = rb_get(s, rb, i);
	if (delta > 0 && v == refcount_max(s))
		return err_set(ERANGE, "%s: refcount of cluster %#llx overflows",
		    img->filename, (unsigned long long)cluster);
	if (delta < 0 && v == 0)
		return err_set(0, "%s: refcount of cluster %#llx drops below 0",
		    img->filename, (unsigned long long)cluster);
	qcow2_rb_set(rb, s->refcount_order, i, delta > 0 ? v + 1 : v - 1);
	off = s->rt[cluster >> s->rb_bits] & QCOW2_RTE_OFFSET;
	qcow2_cache_dirty(&s->rb_cache, off);
	if (v == 1 && delta < 0) {
		/* a freed table must not be written back over reused space */
		qcow2_cache_drop(&s->l2_cache, cluster << s->cluster_bits);
		s->free_index = MIN(s->free_index, cluster);
		s->zc_valid = false;
		if (s->free_byte >> s->cluster_bits == cluster)
			s->free_byte = 0;
	}
	return 0;
}

int
qcow2_refcount_update(struct img *img, uint64_t off, uint64_t len, int delta)
{
	struct qcow2 *s = img->priv;
	uint64_t c, last;

	if (len == 0)
		return 0;
	last = (off + len - 1) >> s->cluster_bits;
	for (c = off >> s->cluster_bits; c <= last; c++)
		if (set_refcount(img, c, delta) < 0)
			return -1;
	return 0;
}

/*
 * The first run of n free clusters from s->free_index, as qemu's
 * alloc_clusters_noref: freed space is reused before the file grows.
 * Refcounts are not set; the end of the file moves past the run.
 */
static int
find_free(struct img *img, uint64_t n, uint64_t *off)
{
	struct qcow2 *s = img->priv;
	uint64_t per = (uint64_t)1 << s->rb_bits, c = s->free_index, start = c;
	uint64_t end, blk_end;
	uint8_t *rb;
	bool none;

	while (c - start < n) {
		if ((rb = refblock(img, c >> s->rb_bits, &none)) == NULL && !none)
			return -1;
		blk_end = (c | (per - 1)) + 1;
		if (rb == NULL) {		/* no block: all of its clusters free */
			c = blk_end;
			continue;
		}
		for (; c < blk_end && c - start < n; c++)
			if (rb_get(s, rb, c & (per - 1)) != 0)
				start = c + 1;
	}
	if (ck_mul(start, s->cluster_size, off) ||
	    ck_add(*off, n * s->cluster_size, &end) || end > QCOW2_MAX_HOST)
		return err_set(EFBIG, "%s: cannot allocate clusters",
		    img->filename);
	s->alloc_end = MAX(s->alloc_end, end);
	s->free_index = start + n;
	return 0;
}

uint64_t
qcow2_alloc_clusters(struct img *img, uint64_t n)
{
	struct qcow2 *s = img->priv;
	uint64_t off;

	blkdbg_event(img->fd, BLKDBG_CLUSTER_ALLOC);
	if (find_free(img, n, &off) < 0 ||
	    qcow2_refcount_update(img, off, n * s->cluster_size, 1) < 0)
		return 0;
	return off;
}

/*
 * Compressed clusters share host clusters: each host cluster's refcount
 * counts the compressed clusters that touch it.  Data goes right after the
 * previous compressed cluster, spilling into the next cluster only when
 * that one is the next allocation anyway.
 */
uint64_t
qcow2_alloc_bytes(struct img *img, uint64_t len)
{
	struct qcow2 *s = img->priv;
	uint64_t off = s->free_byte, rc, room, c;

	blkdbg_event(img->fd, BLKDBG_CLUSTER_ALLOC_BYTES);
	if (off != 0) {
		if (qcow2_refcount_get(img, off >> s->cluster_bits, &rc) < 0)
			return 0;
		if (rc == refcount_max(s) || rc == 0)
			off = 0;
	}
	room = off ? s->cluster_size - (off & (s->cluster_size - 1)) : 0;
	if (off == 0 || room < len) {
		if (find_free(img, 1, &c) < 0)
			return 0;
		if (off == 0 || ROUND_UP(off, s->cluster_size) != c)
			off = c;
	}
	if (qcow2_refcount_update(img, off, len, 1) < 0)
		return 0;
	s->free_byte = (off + len) & (s->cluster_size - 1) ? off + len : 0;
	return off;
}

/* Queue one reference drop for after the next metadata write-back. */
int
qcow2_defer_free(struct img *img, uint64_t off, uint64_t len)
{
	struct qcow2 *s = img->priv;

	if (len != 0)
		s->frees_reclaim = true;
	return qcow2_defer_unshare(img, off, len);
}

int
qcow2_defer_unshare(struct img *img, uint64_t off, uint64_t len)
{
	struct qcow2 *s = img->priv;

	if (len == 0)
		return 0;
	blkdbg_event(img->fd, BLKDBG_CLUSTER_FREE);	/* qcow2_free_clusters */
	if (s->nfree == s->free_cap) {
		s->free_cap = s->free_cap ? 2 * s->free_cap : 64;
		s->frees = xrealloc(s->frees, s->free_cap * sizeof(*s->frees));
	}
	s->frees[s->nfree].off = off;
	s->frees[s->nfree].len = len;
	s->nfree++;
	return 0;
}

/* The host range an allocated L2 entry holds: a cluster or compressed bytes. */
void
qcow2_entry_range(const struct qcow2 *s, uint64_t entry, uint64_t *off,
    uint64_t *len)
{
	uint64_t nsec;

	if (entry & QCOW2_OFLAG_COMPRESSED) {
		*off = entry & s->coff_mask;
		nsec = ((entry >> s->csize_shift) & s->csize_mask) + 1;
		*len = nsec * QCOW2_SECTOR - (*off & (QCOW2_SECTOR - 1));
		return;
	}
	*off = entry & QCOW2_L2E_OFFSET;
	*len = *off ? s->cluster_size : 0;
}

int
qcow2_free_entry(struct img *img, uint64_t entry)
{
	struct qcow2 *s = img->priv;
	uint64_t off, len;

	qcow2_entry_range(s, entry, &off, &len);
	/* clusters in an external data file have no refcounts */
	if (s->has_data && !(entry & QCOW2_OFLAG_COMPRESSED))
		return 0;
	/* without COPIED a snapshot shares the cluster (refcount above 1) */
	if (!(entry & (QCOW2_OFLAG_COPIED | QCOW2_OFLAG_COMPRESSED)))
		return qcow2_defer_unshare(img, off, len);
	return qcow2_defer_free(img, off, len);
}

int
qcow2_apply_frees(struct img *img)
{
	struct qcow2 *s = img->priv;
	size_t i;

	for (i = 0; i < s->nfree; i++)
		if (qcow2_refcount_update(img, s->frees[i].off, s->frees[i].len,
		    -1) < 0)
			return -1;
	s->nfree = 0;
	s->frees_reclaim = false;
	return 0;
}

/* Refcount blocks, then the refcount table if it changed. */
int
qcow2_refcount_flush(struct img *img)
{
	struct qcow2 *s = img->priv;
	uint8_t *buf;
	uint64_t i, n;
	int r;

	if (qcow2_cache_write(&s->rb_cache) < 0)
		return -1;
	if (!s->rt_dirty)
		return 0;
	n = (uint64_t)s->rt_clusters * s->cluster_size;
	buf = xcalloc(1, n);
	for (i = 0; i < s->rt_size; i++)
		put_be64(buf + 8 * i, s->rt[i]);
	r = qcow2_pwrite(img, buf, n, s->rt_offset, "refcount table");
	free(buf);
	if (r == 0)
		s->rt_dirty = false;
	return r;
}

/*
 * Metadata preallocation (qemu's qcow2_detect_metadata_preallocation):
 * more clusters carry a refcount than the file has blocks for.
 */
int
qcow2_detect_prealloc(struct img *img)
{
	struct qcow2 *s = img->priv;
	uint64_t real, threshold, end, i, count = 0, rc;
	struct stat st;

	/*
	 * qemu's blkdebug cannot say how much of its file is allocated
	 * (bdrv_get_allocated_file_size: -ENOTSUP), so the detection gives
	 * up before it loads a refcount block
	 */
	if (img->blkdebug != NULL) {
		s->prealloc = 0;
		return 0;
	}
	if (fstat(img->fd, &st) < 0)
		return err_set(errno, "%s", img->filename);
	real = (uint64_t)st.st_blocks * 512 / s->cluster_size;
	threshold = MAX(real * 10 / 9, real + 2);
	end = DIV_ROUND_UP((uint64_t)st.st_size, s->cluster_size);
	for (i = 0; i < end && count < threshold; i++) {
		if (qcow2_refcount_get(img, i, &rc) < 0)
			return -1;
		count += rc != 0;
	}
	s->prealloc = count >= threshold;
	return 0;
}

/*
 * qemu's qcow2_refcount_area: a new refcount table, sized exactly for the
 * clusters below start plus additional ones, at start after the refcount
 * blocks the range [start, end of the table) lacks; the new structures
 * count themselves, the old table is freed once the header points at the
 * new one.  *end: where the table ends (data may follow).
 */
int
qcow2_refcount_area(struct img *img, uint64_t start, uint64_t additional,
    uint64_t *end)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, per = (uint64_t)1 << s->rb_bits;
	uint64_t clusters = start / cs + additional, blocks = 0, table = 0;
	uint64_t n = 0, last, tsize, tclusters, need = 0, i, toff, boff;
	uint64_t old = s->rt_offset, oldlen = (uint64_t)s->rt_clusters * cs;
	uint64_t *nt;

	do {		/* qcow2_refcount_metadata_size, exact */
		last = n;
		blocks = DIV_ROUND_UP(clusters + table + blocks, per);
		table = DIV_ROUND_UP(blocks, cs / 8);
		n = clusters + blocks + table;
	} while (n != last);
	tsize = ROUND_UP(blocks, cs / 8);
	tclusters = tsize * 8 / cs;
	if (tsize * 8 > QCOW2_MAX_RT_BYTES)
		return err_set(EFBIG, "%s: refcount table would exceed 8 MiB",
		    img->filename);
	nt = xcalloc(tsize, 8);
	memcpy(nt, s->rt, MIN(tsize, s->rt_size) * 8);
	for (i = (start / cs) / per; i < blocks; i++)
		need += (nt[i] & QCOW2_RTE_OFFSET) == 0;
	toff = start + need * cs;
	*end = toff + tclusters * cs;
	boff = start;
	for (i = (start / cs) / per; i < blocks; i++) {
		if ((nt[i] & QCOW2_RTE_OFFSET) != 0)
			continue;
		if (qcow2_cache_get_empty(&s->rb_cache, boff) == NULL) {
			free(nt);
			return -1;
		}
		nt[i] = boff;
		boff += cs;
	}
	free(s->rt);
	s->rt = nt;
	s->rt_size = tsize;
	s->rt_offset = toff;
	s->rt_clusters = (uint32_t)tclusters;
	s->rt_dirty = s->header_dirty = true;
	s->alloc_end = MAX(s->alloc_end, *end);
	/* refblocks, table and header durable before the old table goes */
	if (qcow2_refcount_update(img, start, *end - start, 1) < 0 ||
	    qcow2_flush(img) < 0)
		return -1;
	return old && oldlen ? qcow2_refcount_update(img, old, oldlen, -1) : 0;
}
