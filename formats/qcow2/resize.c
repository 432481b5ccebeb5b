/*
 * qcow2 resize, as qemu's qcow2_co_truncate: the L1 table grows (moving to
 * new clusters), shrinking drops the clusters past the end, preallocation
 * of the new area.  docs/interop/qcow2.txt, "Header" and "Cluster mapping".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "qcow2.h"

/*
 * Point the header at an L1 table of n entries at off (bytes 36-47:
 * l1_size, l1_table_offset), after the table itself is on disk.
 */
static int
set_l1_header(struct img *img, uint64_t off, uint32_t n)
{
	uint8_t b[12];

	put_be32(b, n);
	put_be64(b + 4, off);
	if (qcow2_fsync(img) < 0 ||
	    qcow2_pwrite(img, b, sizeof(b), 36, "qcow2 header") < 0)
		return -1;
	return qcow2_fsync(img);
}

/*
 * Install table (n entries, host order, taken over) as the active L1 at
 * new clusters: qemu's qcow2_grow_l1_table writes the new table, then the
 * header, then frees the old table.  Pending metadata is flushed first.
 */
int
qcow2_replace_l1(struct img *img, uint64_t *table, uint32_t n)
{
	struct qcow2 *s = img->priv;
	uint64_t off = 0, old = s->l1_offset, i;
	uint64_t old_bytes = ROUND_UP((uint64_t)s->l1_size * 8, s->cluster_size);
	uint8_t *buf;
	int r;

	if (qcow2_prepare_write(img) < 0 || qcow2_flush(img) < 0)
		goto fail;
	if (n > 0 && ((off = qcow2_alloc_clusters(img,
	    DIV_ROUND_UP((uint64_t)n * 8, s->cluster_size))) == 0 ||
	    qcow2_refcount_flush(img) < 0))
		goto fail;
	buf = xcalloc(n ? n : 1, 8);
	for (i = 0; i < n; i++)
		put_be64(buf + 8 * i, table[i]);
	r = n ? qcow2_pwrite(img, buf, (size_t)n * 8, off, "L1 table") : 0;
	free(buf);
	if (r < 0 || set_l1_header(img, off, n) < 0)
		goto fail;
	free(s->l1);
	free(s->l1_dirty);
	s->l1 = table;
	s->l1_dirty = xcalloc(n ? n : 1, 1);
	s->l1_size = n;
	s->l1_offset = off;
	s->any_l1_dirty = false;
	if (old != 0 && old_bytes != 0)
		qcow2_defer_free(img, old, old_bytes);
	return 0;
fail:
	free(table);
	return -1;
}

/* The L1 table grows to exactly n entries (qemu: exact_size). */
static int
grow_l1(struct img *img, uint64_t n)
{
	struct qcow2 *s = img->priv;
	uint64_t *t;

	if (n <= s->l1_size)
		return 0;
	if (n > QCOW2_MAX_L1_BYTES / 8)
		return err_set(EFBIG, "Failed to grow the L1 table");
	t = xcalloc(n, 8);
	memcpy(t, s->l1, (size_t)s->l1_size * 8);
	if (qcow2_replace_l1(img, t, (uint32_t)n) < 0)
		return err_prefix("Failed to grow the L1 table");
	return 0;
}

/* Host ranges a shrink drops, to hand back to the file system afterwards. */
struct dropped {
	struct qcow2_free	*v;
	size_t			 n, cap;
};

static void
note_dropped(struct dropped *d, uint64_t off, uint64_t len)
{
	if (len == 0)
		return;
	if (d->n == d->cap) {
		d->cap = d->cap ? 2 * d->cap : 64;
		d->v = xrealloc(d->v, d->cap * sizeof(*d->v));
	}
	d->v[d->n].off = off;
	d->v[d->n].len = len;
	d->n++;
}

/* Forget an L2 entry (and its extended bitmap), dropping its reference. */
static int
clear_entry(struct img *img, uint8_t *l2, uint64_t i, struct dropped *d)
{
	struct qcow2 *s = img->priv;
	uint64_t e = qcow2_l2_entry(s, l2, i), off, len;

	qcow2_l2_set(s, l2, i, 0);
	if (s->extl2)
		put_be64(l2 + (i << 4) + 8, 0);
	qcow2_entry_range(s, e, &off, &len);
	note_dropped(d, off, len);
	return qcow2_free_entry(img, e);
}

/*
 * One more freed cluster in qemu's discard queue (update_refcount_discard):
 * it joins a region it touches, and regions that then touch merge.
 */
static void
queue_discard(struct dropped *q, uint64_t off, uint64_t len)
{
	struct qcow2_free *d = NULL;
	size_t i, j;

	for (i = 0; i < q->n && d == NULL; i++)
		if (q->v[i].off + q->v[i].len == off || off + len == q->v[i].off)
			d = &q->v[i];
	if (d == NULL) {
		note_dropped(q, off, len);
		return;
	}
	d->off = MIN(d->off, off);
	d->len += len;
	for (j = 0; j < q->n; j++) {
		if (&q->v[j] == d || (q->v[j].off != d->off + d->len &&
		    q->v[j].off + q->v[j].len != d->off))
			continue;
		d->off = MIN(d->off, q->v[j].off);
		d->len += q->v[j].len;
		q->v[j] = q->v[--q->n];
		if (d == &q->v[q->n])
			d = &q->v[j];
		break;
	}
}

/*
 * qemu discards what a shrink frees (QCOW2_DISCARD_ALWAYS): the clusters
 * left without a reference become holes in the file, one punch per merged
 * region as qemu's queue makes them (many small punches would split the
 * file's extents, and its extent tree would grow).
 */
static void
punch_dropped(struct img *img, struct dropped *d)
{
	struct qcow2 *s = img->priv;
	struct dropped q = { NULL, 0, 0 };
	uint64_t c, last, rc;
	size_t i;

	for (i = 0; i < d->n; i++) {
		last = (d->v[i].off + d->v[i].len - 1) >> s->cluster_bits;
		for (c = d->v[i].off >> s->cluster_bits; c <= last; c++)
			if (qcow2_refcount_get(img, c, &rc) == 0 && rc == 0)
				queue_discard(&q, c << s->cluster_bits,
				    s->cluster_size);
	}
	for (i = 0; i < q.n; i++)
		(void)io_discard(img->fd, q.v[i].off, q.v[i].len);
	free(q.v);
	free(d->v);
	memset(d, 0, sizeof(*d));
}

/*
 * Everything from the cluster-aligned guest offset from on goes (qemu's
 * full discard, then qcow2_shrink_l1_table): tables wholly past the new
 * end nl1 are freed with every reference they hold; the table holding the
 * new end is copied when shared and cleared past it.  The L1 table keeps
 * its size, as qemu's does.
 */
static int
drop_tail(struct img *img, uint64_t from, uint64_t nl1, struct dropped *d)
{
	struct qcow2 *s = img->priv;
	uint64_t span = qcow2_l2_span(s), i, j, l2off, start;
	uint8_t *l2;

	for (i = from / span; i < s->l1_size; i++) {
		if ((s->l1[i] & QCOW2_L1E_OFFSET) == 0)
			continue;
		start = i == from / span ? (from & (span - 1)) >> s->cluster_bits : 0;
		if (start == 0 && i >= nl1) {
			l2off = s->l1[i] & QCOW2_L1E_OFFSET;
			if (l2off & (s->cluster_size - 1))
				return err_set(0, "%s: L2 table offset %#llx "
				    "unaligned (L1 index: %#llx)", img->filename,
				    (unsigned long long)l2off,
				    (unsigned long long)i);
		} else if (qcow2_l2_for_write(img, i, &l2off) < 0) {
			return -1;
		}
		if ((l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
			return -1;
		for (j = start; j < qcow2_l2_entries(s); j++)
			if ((qcow2_l2_entry(s, l2, j) != 0 ||
			    qcow2_l2_bitmap(s, l2, j) != 0) &&
			    clear_entry(img, l2, j, d) < 0)
				return -1;
		if (start == 0 && i >= nl1) {
			s->l1[i] = 0;
			note_dropped(d, l2off, s->cluster_size);
			qcow2_defer_free(img, l2off, s->cluster_size);
		} else {
			qcow2_cache_dirty(&s->l2_cache, l2off);
		}
		s->l1_dirty[i] = 1;
		s->any_l1_dirty = true;
	}
	s->zc_valid = false;
	return 0;
}

/* After a shrink the file ends after its last cluster in use. */
static int
trim_file(struct img *img)
{
	struct qcow2 *s = img->priv;
	uint64_t size, c, rc;

	if (fmt_file_size(img, &size) < 0)
		return -1;
	for (c = DIV_ROUND_UP(size, s->cluster_size); c > 0; c--) {
		if (qcow2_refcount_get(img, c - 1, &rc) < 0)
			return -1;
		if (rc != 0)
			break;
	}
	if (c * s->cluster_size < size &&
	    io_ftruncate(img->fd, (off_t)(c * s->cluster_size)) == 0)
		s->file_size = c * s->cluster_size;
	return 0;
}

/* Back the host clusters [host, host+len) as falloc or full asks. */
static int
fill_area(struct img *img, uint64_t host, uint64_t len, int mode)
{
	uint8_t *z;
	uint64_t off, n;
	int r = 0;

	if (mode == IMG_PREALLOC_FALLOC) {
		if ((r = posix_fallocate(img->fd, (off_t)host, (off_t)len)) != 0)
			return err_set(r, "Could not preallocate new data");
		return 0;
	}
	if (mode != IMG_PREALLOC_FULL)
		return 0;
	z = xcalloc(1, 1u << 20);
	for (off = host; off < host + len && r == 0; off += n) {
		n = MIN(host + len - off, 1u << 20);
		r = qcow2_pwrite(img, z, n, off, "preallocated data");
	}
	free(z);
	return r;
}

/*
 * Where the copy into a new cluster for the old end starts: qemu's
 * calculate_l2_meta for a write there (metadata) or the whole head
 * (falloc, full).  With subclusters a metadata copy lands only in
 * subclusters that stay unallocated, but of one that had a cluster.
 */
static uint64_t
head_from(const struct qcow2 *s, uint64_t e, uint64_t bm, uint64_t in,
    int mode)
{
	unsigned sc = (unsigned)(in >> s->sc_bits);
	uint32_t alloc = (uint32_t)bm;

	if (mode != IMG_PREALLOC_METADATA || !s->extl2 ||
	    (e & QCOW2_OFLAG_COMPRESSED))
		return 0;
	if (qcow2_entry_host(s, e) && alloc)
		sc = MIN(sc, (unsigned)__builtin_ctz(alloc));
	return (uint64_t)sc << s->sc_bits;
}

/*
 * The cluster holding an unaligned old end: qemu allocates it anew
 * (falloc, full) or when a write there would (metadata), copying what
 * the disk held before the old end into it (perform_cow).  The entry's
 * subcluster bitmap stays as it was: qemu links preallocated clusters
 * without marking subclusters allocated.  *last: end of the host cluster.
 */
static int
prealloc_head(struct img *img, uint64_t old, int mode, uint64_t *last)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, span = qcow2_l2_span(s);
	uint64_t cstart = ROUND_DOWN(old, cs), l2off, idx, e, bm, from;
	uint64_t host = 0;
	uint8_t *l2, *buf;
	int r;

	if (cstart == old)
		return 0;
	if (qcow2_l2_for_write(img, cstart / span, &l2off) < 0 ||
	    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
		return -1;
	idx = (cstart >> s->cluster_bits) & (qcow2_l2_entries(s) - 1);
	e = qcow2_l2_entry(s, l2, idx);
	bm = qcow2_l2_bitmap(s, l2, idx);
	if (mode == IMG_PREALLOC_METADATA && !qcow2_needs_alloc(s, e))
		return 0;
	from = head_from(s, e, bm, old - cstart, mode);
	buf = xmalloc(old - cstart - from + 1);
	r = qcow2_read(img, cstart + from, old - cstart - from, buf);
	if (r == 0 && (host = qcow2_alloc_clusters(img, 1)) == 0)
		r = -1;
	if (r == 0)
		r = fill_area(img, host, cs, mode);
	if (r == 0 && old - cstart > from)
		r = qcow2_pwrite(img, buf, old - cstart - from, host + from,
		    "data");
	free(buf);
	if (r < 0 || (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
		return -1;
	/* without subclusters the cluster holds data now */
	qcow2_set_entry(s, l2, idx, host | QCOW2_OFLAG_COPIED, bm);
	qcow2_cache_dirty(&s->l2_cache, l2off);
	s->zc_valid = false;
	*last = host + cs;
	return qcow2_free_entry(img, e);
}

/*
 * Host clusters for every unallocated guest cluster of [from, to), one
 * contiguous run per L2 table, as qemu's preallocate_co (metadata) and
 * its falloc/full truncate; the file then covers them.
 */
static int
prealloc_area(struct img *img, uint64_t from, uint64_t to, int mode)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, span = qcow2_l2_span(s), pos, end;
	uint64_t l2off, idx, k, i, host, last = 0;
	uint8_t *l2;

	if (prealloc_head(img, from, mode, &last) < 0)
		return -1;
	for (pos = ROUND_UP(from, cs); pos < to; pos = end) {
		end = MIN(to, (pos | (span - 1)) + 1);
		if (qcow2_l2_for_write(img, pos / span, &l2off) < 0 ||
		    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
			return -1;
		idx = (pos >> s->cluster_bits) & (qcow2_l2_entries(s) - 1);
		k = DIV_ROUND_UP(end - pos, cs);
		while (k > 0 && (qcow2_l2_entry(s, l2, idx) != 0 ||
		    qcow2_l2_bitmap(s, l2, idx) != 0)) {
			idx++;
			k--;
		}
		if (k == 0)
			continue;
		if ((host = qcow2_alloc_clusters(img, k)) == 0 ||
		    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
			return -1;
		for (i = 0; i < k; i++)
			if (qcow2_l2_entry(s, l2, idx + i) == 0)
				qcow2_set_entry(s, l2, idx + i,
				    (host + i * cs) | QCOW2_OFLAG_COPIED, 0);
		qcow2_cache_dirty(&s->l2_cache, l2off);
		if (fill_area(img, host, k * cs, mode) < 0)
			return -1;
		last = MAX(last, host + k * cs);
	}
	if (last > s->file_size) {
		if (io_ftruncate(img->fd, (off_t)last) < 0)
			return err_set(errno, "Could not resize file");
		s->file_size = last;
	}
	return 0;
}

/* The file's end after its last cluster in use (qemu's get_last_cluster). */
static int
used_end(struct img *img, uint64_t *end)
{
	struct qcow2 *s = img->priv;
	uint64_t size, c, rc;

	if (fmt_file_size(img, &size) < 0)
		return -1;
	for (c = DIV_ROUND_UP(size, s->cluster_size); c > 0; c--) {
		if (qcow2_refcount_get(img, c - 1, &rc) < 0)
			return -1;
		if (rc != 0)
			break;
	}
	*end = c ? c * s->cluster_size : ROUND_UP(size, s->cluster_size);
	return 0;
}

/* Point the n L2 entries from guest at the clusters from host. */
static int
link_run(struct img *img, uint64_t guest, uint64_t host, uint64_t n,
    bool alloc)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, span = qcow2_l2_span(s);
	uint64_t l2off, idx, k, i, e, bm;
	uint8_t *l2;

	for (; n > 0; n -= k, guest += k * cs, host += k * cs) {
		if (qcow2_l2_for_write(img, guest / span, &l2off) < 0 ||
		    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
			return -1;
		idx = (guest >> s->cluster_bits) & (qcow2_l2_entries(s) - 1);
		k = MIN(n, qcow2_l2_entries(s) - idx);
		for (i = 0; i < k; i++) {
			e = qcow2_l2_entry(s, l2, idx + i);
			bm = qcow2_l2_bitmap(s, l2, idx + i);
			if (alloc)
				bm = 0xffffffffull;
			qcow2_set_entry(s, l2, idx + i, (host + i * cs) |
			    QCOW2_OFLAG_COPIED, bm);
			if (qcow2_free_entry(img, e) < 0)
				return -1;
		}
		qcow2_cache_dirty(&s->l2_cache, l2off);
	}
	s->zc_valid = false;
	return 0;
}

/*
 * qemu's falloc/full truncate: the refcount structures move past the last
 * cluster in use to cover what comes (qcow2_refcount_area), the data
 * clusters from the old last one on follow in one run, the file grows over
 * them with blocks (falloc) or zeroes (full) and the L2 entries point at
 * them, the old last cluster's head copied over.  alloc: a backing file
 * would show through the new area, and qemu's file driver extends with
 * zeroes: the subclusters become allocated.
 */
int
qcow2_prealloc_run(struct img *img, uint64_t old, uint64_t size, int mode,
    bool alloc)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, cstart = ROUND_DOWN(old, cs);
	uint64_t n = (ROUND_UP(size, cs) - cstart) / cs, from, start, cur;
	uint8_t *head = xmalloc(old - cstart + 1);
	int r;

	r = qcow2_read(img, cstart, old - cstart, head);
	if (r == 0)
		r = used_end(img, &from);
	/* qemu's steps, each failure named as qemu names it */
	if (r == 0 && qcow2_refcount_area(img, from, n + DIV_ROUND_UP(n,
	    qcow2_l2_entries(s)) + 1, &start) < 0)
		r = err_wrap("Failed to resize refcount structures");
	if (r == 0 && n && qcow2_refcount_update(img, start, n * cs, 1) < 0)
		r = err_wrap("Failed to allocate data clusters");
	s->alloc_end = MAX(s->alloc_end, start + n * cs);
	if (r == 0)
		r = fmt_file_size(img, &cur);
	if (r == 0 && start + n * cs > cur)
		r = fill_area(img, cur, start + n * cs - cur, mode);
	if (r == 0 && old > cstart)
		r = qcow2_pwrite(img, head, old - cstart, start, "data");
	free(head);
	if (r < 0)
		return -1;
	if (start + n * cs > s->file_size) {
		if (io_ftruncate(img->fd, (off_t)(start + n * cs)) < 0)
			return err_set(errno, "Could not resize file");
		s->file_size = start + n * cs;
	}
	if (link_run(img, cstart, start, n, alloc) < 0)
		return err_wrap("Failed to update L2 tables");
	return 0;
}

/*
 * Extended L2: the subclusters from *start to the end of its cluster (or
 * to size) get their zero bits, as qemu's zero_l2_subclusters; *start
 * moves to the next cluster.
 */
static int
zero_subclusters(struct img *img, uint64_t *start, uint64_t size)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, cend = ROUND_DOWN(*start, cs) + cs;
	uint64_t l2off, idx, bm, mask;
	unsigned a, b;
	uint8_t *l2;

	if (!s->extl2 || (*start & (cs - 1)) == 0)
		return 0;
	cend = MIN(cend, size);
	a = (unsigned)((*start & (cs - 1)) >> s->sc_bits);
	b = (unsigned)(DIV_ROUND_UP(cend - ROUND_DOWN(*start, cs),
	    (uint64_t)1 << s->sc_bits));
	if (qcow2_l2_for_write(img, *start / qcow2_l2_span(s), &l2off) < 0 ||
	    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
		return -1;
	idx = (*start >> s->cluster_bits) & (qcow2_l2_entries(s) - 1);
	mask = (b >= 32 ? 0xffffffffull : (1ull << b) - 1) & ~((1ull << a) - 1);
	bm = (qcow2_l2_bitmap(s, l2, idx) | mask << 32) & ~mask;
	qcow2_set_entry(s, l2, idx, qcow2_l2_entry(s, l2, idx), bm);
	qcow2_cache_dirty(&s->l2_cache, l2off);
	s->zc_valid = false;
	*start = ROUND_DOWN(*start, cs) + cs;
	return 0;
}

/*
 * bdrv_co_truncate: a backing file that reaches past the old end would
 * show through the new area, so it is zeroed: zero (sub)clusters where
 * whole, zero bytes in the old last one.  v2 has no zero clusters: it
 * fails unless the zero bytes suffice.
 */
static int
zero_new_area(struct img *img, uint64_t old, uint64_t size)
{
	struct qcow2 *s = img->priv;
	uint64_t start = ROUND_UP(old, (uint64_t)1 << s->sc_bits), head, len;
	uint8_t *z;
	int r = 0;

	if (img->backing == NULL || img->backing->size <= old || size <= old)
		return 0;
	if (s->version < 3 && size > start)
		return err_set(ENOTSUP, "Failed to zero out new clusters");
	img->size = size;
	head = start;
	if (size > start && zero_subclusters(img, &start, size) < 0)
		r = err_prefix("Failed to zero out new clusters");
	if (r == 0 && size > start &&
	    qcow2_write_zeroes(img, start, size - start, 0) < 0)
		r = err_prefix("Failed to zero out new clusters");
	if (r == 0 && head > old) {
		len = MIN(head, size) - old;
		z = xcalloc(1, len);
		if (qcow2_write(img, old, len, z) < 0)
			r = err_prefix("Failed to zero out the new area");
		free(z);
	}
	img->size = old;
	return r;
}

int
qcow2_resize(struct img *img, uint64_t size, int prealloc)
{
	struct qcow2 *s = img->priv;
	uint64_t old = img->size, nl1 = DIV_ROUND_UP(size, qcow2_l2_span(s));
	struct dropped d = { NULL, 0, 0 };
	uint8_t b[8];
	bool run, zero;

	if (size & 511)
		return err_set(0, "The new size must be a multiple of 512");
	if (s->nb_snapshots && s->version < 3)
		return err_set(0, "Can't resize a v2 image which has "
		    "snapshots");
	if (qcow2_bitmaps_resize_ok(img) < 0 || qcow2_prepare_write(img) < 0)
		return -1;
	if (size < old) {
		if (prealloc != IMG_PREALLOC_OFF)
			return err_set(0, "Preallocation can't be used for "
			    "shrinking an image");
		if (drop_tail(img, ROUND_UP(size, s->cluster_size), nl1, &d) < 0) {
			free(d.v);
			return err_prefix("Failed to discard cropped clusters");
		}
	} else if (grow_l1(img, nl1) < 0) {
		return -1;
	}
	/* falloc and full: the file's zeroes hide a backing file themselves */
	run = size > old && !s->has_data && (prealloc == IMG_PREALLOC_FALLOC ||
	    prealloc == IMG_PREALLOC_FULL);
	zero = img->backing != NULL && img->backing->size > old;
	if (run && qcow2_prealloc_run(img, old, size, prealloc, zero) < 0)
		return -1;
	if (!run && prealloc != IMG_PREALLOC_OFF && size > old &&
	    prealloc_area(img, old, size, prealloc) < 0)
		return -1;
	if ((!run && zero_new_area(img, old, size) < 0) ||
	    qcow2_flush(img) < 0) {
		free(d.v);
		return run && err_errno() != 0 ?
		    err_wrap("Failed to flush the preallocated area to disk") :
		    -1;
	}
	punch_dropped(img, &d);
	put_be64(b, size);
	if (qcow2_pwrite(img, b, 8, 24, "qcow2 header") < 0 ||
	    qcow2_fsync(img) < 0)
		return err_wrap("Failed to update the image size");
	img->size = size;
	qcow2_bitmaps_resized(img);
	return size < old ? trim_file(img) : 0;
}
