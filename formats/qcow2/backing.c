/*
 * qcow2: changing the backing file recorded in the header cluster
 * (docs/interop/qcow2.txt, "Header" and "Header extensions").
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "../blkdebug.h"
#include "../fmt.h"
#include "qcow2.h"

#define EXT_BACKING_FMT	0xe2792acau
#define V2_HEADER	72


/* Copy the extensions other than the backing format; returns the new end or 0. */
static size_t
copy_exts(const uint8_t *old, size_t start, size_t end, uint8_t *out,
    size_t off, size_t cs)
{
	uint32_t magic, len;
	size_t n;

	while (start + 8 <= end) {
		magic = get_be32(old + start);
		len = get_be32(old + start + 4);
		if (magic == 0)
			break;
		n = 8 + ROUND_UP((size_t)len, 8);
		if (len > end - start - 8 || n > end - start)
			return 0;
		if (magic != EXT_BACKING_FMT) {
			if (off + n + 8 > cs)
				return 0;
			memcpy(out + off, old + start, n);
			off += n;
		}
		start += n;
	}
	return off;
}

int
qcow2_set_backing(struct img *img, const char *file, const char *fmt)
{
	struct qcow2 *s = img->priv;
	size_t cs = s->cluster_size, hlen, off, blen = file ? strlen(file) : 0;
	uint64_t boff;
	uint8_t *old = NULL, *hdr = NULL;
	int r = -1;

	if (img->ops->flush(img) < 0 || qcow2_prepare_write(img) < 0)
		return -1;
	old = xmalloc(cs);
	hdr = xcalloc(1, cs);
	if (io_pread(img->fd, old, cs, 0) != (ssize_t)cs) {
		err_set(errno ? errno : EIO, "%s: Could not read the qcow2 header",
		    img->filename);
		goto out;
	}
	hlen = s->version >= 3 ? get_be32(old + 100) : V2_HEADER;
	boff = get_be64(old + 8);
	if (hlen > cs || boff > cs) {
		err_set(EINVAL, "%s: bad header", img->filename);
		goto out;
	}
	memcpy(hdr, old, hlen);
	off = hlen;
	if (fmt != NULL && blen > 0) {
		put_be32(hdr + off, EXT_BACKING_FMT);
		put_be32(hdr + off + 4, (uint32_t)strlen(fmt));
		memcpy(hdr + off + 8, fmt, strlen(fmt));
		off += 8 + ROUND_UP(strlen(fmt), 8);
	}
	off = copy_exts(old, hlen, boff ? boff : cs, hdr, off, cs);
	if (off == 0 || off + 8 + blen > cs) {
		err_set(ENOSPC, "No space left in the file header");
		goto out;
	}
	off += 8;			/* end of extensions */
	put_be64(hdr + 8, blen ? off : 0);
	put_be32(hdr + 16, (uint32_t)blen);
	memcpy(hdr + off, file ? file : "", blen);
	if (io_pwrite(img->fd, hdr, cs, 0) < 0 ||
	    (io_fdatasync(img->fd) < 0 && errno != EINVAL)) {
		err_set(errno, "%s: Could not write the qcow2 header", img->filename);
		goto out;
	}
	free(img->backing_file);
	free(img->backing_fmt);
	img->backing_file = blen ? xstrdup(file) : NULL;
	img->backing_fmt = blen && fmt ? xstrdup(fmt) : NULL;
	r = 0;
out:
	free(old);
	free(hdr);
	return r;
}

#define L1E_OFFSET_MASK	0x00fffffffffffe00ull

/* bdrv_pwrite_zeroes on the image file */
static int
zero_file(struct img *img, uint64_t off, uint64_t len)
{
	uint8_t *z;
	int r;

	if (io_fault_check(img->fd, IO_WRITE_ZEROES, off, len) < 0)
		return err_set(errno, "%s: Could not write zeroes",
		    img->filename);
	if (io_fallocate(img->fd, FALLOC_FL_ZERO_RANGE, (off_t)off,
	    (off_t)len) == 0)
		return 0;
	z = xcalloc(1, len);
	r = io_pwrite(img->fd, z, len, off);
	free(z);
	return r < 0 ? err_set(errno, "%s: Could not write zeroes",
	    img->filename) : 0;
}

/* Drop every cached table: the file below them is about to change. */
static void
caches_reset(struct img *img)
{
	struct qcow2 *s = img->priv;
	size_t rbmax = s->rb_cache.max, l2max = s->l2_cache.max;

	qcow2_cache_free(&s->l2_cache);
	qcow2_cache_free(&s->rb_cache);
	qcow2_cache_init(&s->rb_cache, img, "refcount block", rbmax, NULL);
	qcow2_cache_init(&s->l2_cache, img, "L2 table", l2max, &s->rb_cache);
}

/* The new header fields and reftable entry of an emptied image, in order. */
static int
empty_tables(struct img *img, uint64_t l1c)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size;
	uint8_t b[20];

	blkdbg_event(img->fd, BLKDBG_L1_UPDATE);
	blkdbg_event(img->fd, BLKDBG_REFTABLE_UPDATE);
	put_be64(b, 3 * cs);
	put_be64(b + 8, cs);
	put_be32(b + 16, 1);
	if (qcow2_pwrite(img, b, 20, 40, "qcow2 header") < 0 ||
	    fmt_sync(img) < 0)
		return -1;
	s->l1_offset = 3 * cs;
	free(s->rt);
	s->rt = xcalloc(cs / 8, sizeof(*s->rt));
	s->rt_offset = cs;
	s->rt_clusters = 1;
	s->rt_size = cs / 8;
	s->rt_dirty = s->header_dirty = false;
	blkdbg_event(img->fd, BLKDBG_REFBLOCK_ALLOC);
	put_be64(b, 2 * cs);
	if (qcow2_pwrite(img, b, 8, cs, "refcount table") < 0 ||
	    fmt_sync(img) < 0)
		return -1;
	s->rt[0] = 2 * cs;
	s->free_index = 0;
	s->alloc_end = (3 + l1c) * cs;
	blkdbg_event(img->fd, BLKDBG_CLUSTER_ALLOC);	/* qcow2_alloc_clusters */
	return qcow2_refcount_update(img, 0, (3 + l1c) * cs, 1);
}

/*
 * qemu's make_completely_empty: header, refcount table, one refcount block
 * and an empty L1 table are all that stay.  The dirty bit covers the steps
 * between; a failure leaves the image for the repair on the next open.
 */
static int
make_completely_empty(struct img *img)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size;
	uint64_t l1c = DIV_ROUND_UP((uint64_t)s->l1_size * 8, cs);

	if (qcow2_flush(img) < 0)
		return -1;
	caches_reset(img);
	if (!(s->incompat & QCOW2_INCOMPAT_DIRTY) &&
	    qcow2_set_incompat(img, s->incompat | QCOW2_INCOMPAT_DIRTY) < 0)
		return -1;
	blkdbg_event(img->fd, BLKDBG_L1_UPDATE);
	if (zero_file(img, s->l1_offset, l1c * cs) < 0)
		goto broken;
	memset(s->l1, 0, (size_t)s->l1_size * 8);
	memset(s->l1_dirty, 0, s->l1_size);
	s->any_l1_dirty = false;
	blkdbg_event(img->fd, BLKDBG_EMPTY_IMAGE_PREPARE);
	if (zero_file(img, cs, (2 + l1c) * cs) < 0 || empty_tables(img, l1c) < 0 ||
	    qcow2_flush(img) < 0)
		goto broken;
	s->lazy_dirty = false;
	if (qcow2_set_incompat(img, s->incompat & ~QCOW2_INCOMPAT_DIRTY) < 0)
		return -1;
	if (io_ftruncate(img->fd, (off_t)((3 + l1c) * cs)) < 0)
		return err_set(errno, "%s: Could not truncate", img->filename);
	s->file_size = (3 + l1c) * cs;
	s->zc_valid = false;
	return 0;
broken:
	s->fatal = true;	/* qemu ejects the node: nothing more is written */
	return -1;
}

/*
 * Empty the image: every L2 entry becomes unallocated (reads fall through
 * to the backing file), the clusters they held are freed.  As qemu, a v3
 * image with nothing but the active layer is rebuilt from scratch instead;
 * otherwise the L2 tables stay.
 */
int
qcow2_make_empty(struct img *img)
{
	struct qcow2 *s = img->priv;
	uint64_t i, j, l2off, entry;
	uint64_t l1c = DIV_ROUND_UP((uint64_t)s->l1_size * 8, s->cluster_size);
	uint8_t *l2;

	if (qcow2_prepare_write(img) < 0)
		return -1;
	if (s->version >= 3 && s->nb_snapshots == 0 && s->nb_bitmaps == 0 &&
	    3 + l1c <= (1ull << s->rb_bits) && s->crypt_method != 2 &&
	    s->data_file == NULL)
		return make_completely_empty(img);
	for (i = 0; i < s->l1_size; i++) {
		if ((s->l1[i] & L1E_OFFSET_MASK) == 0)
			continue;
		if (qcow2_l2_for_write(img, i, &l2off) < 0 ||
		    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
			return -1;
		for (j = 0; j < qcow2_l2_entries(s); j++) {
			entry = qcow2_l2_entry(s, l2, j);
			if (entry == 0 && qcow2_l2_bitmap(s, l2, j) == 0)
				continue;
			if (qcow2_free_entry(img, entry) < 0)
				return -1;
			qcow2_l2_set(s, l2, j, 0);
			if (s->extl2)
				put_be64(l2 + (j << 4) + 8, 0);
		}
		qcow2_cache_dirty(&s->l2_cache, l2off);
	}
	s->zc_valid = false;
	return img->ops->flush(img);
}
