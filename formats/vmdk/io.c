/*
 * vmdk grains: grain directory and tables, reads (compressed grains too),
 * allocating writes, zeroed grains, block status and check.  VMware
 * "Virtual Disk Format 1.1", "Grain Directories and Grain Tables".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <zlib.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "../blkdebug.h"
#include "vmdk.h"

#define MARKER_SIZE	12	/* lba (8) + size (4) before compressed data */

enum { G_ERROR = -1, G_OK, G_UNALLOC, G_ZEROED };

/* Where a guest offset's grain lives. */
struct vmdk_loc {
	uint64_t	 sector;	/* grain's sector in the extent, when G_OK */
	uint32_t	 l1_index, l2_index;
	uint64_t	*entry;		/* the cached GTE */
};

struct vmdk_extent *
vmdk_find_extent(struct vmdk *s, uint64_t sector)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (sector < s->ext[i].end_sector)
			return &s->ext[i];
	return NULL;
}

void
vmdk_gt_free(struct vmdk_extent *e)
{
	size_t i;

	for (i = 0; i < VMDK_GT_CACHE; i++)
		free(e->gt[i].e);
	memset(e->gt, 0, sizeof(e->gt));
}

/* The grain table at byte offset off, cached; past EOF reads as zeroes. */
static uint64_t *
vmdk_gt(struct vmdk_extent *e, uint64_t off)
{
	struct vmdk_gt *g = &e->gt[(off / VMDK_SECTOR) % VMDK_GT_CACHE];
	size_t esize = e->sesparse ? 8 : 4;
	uint8_t *raw;
	uint32_t i;

	if (g->off == off && g->e != NULL)
		return g->e;
	if (g->e == NULL)
		g->e = xmalloc(VMDK3_GTES * sizeof(uint64_t));
	g->off = 0;
	/* decoded in place from the end, so raw entries are read before */
	raw = (uint8_t *)g->e;
	if (io_pread_zero(e->fd, raw, e->l2_size * esize, off) < 0) {
		err_set(errno, "%s: grain table at %#" PRIx64, e->path, off);
		return NULL;
	}
	for (i = e->l2_size; i-- > 0;)
		g->e[i] = esize == 8 ? get_le64(raw + 8 * i) : get_le32(raw + 4 * i);
	g->off = off;
	return g->e;
}

/*
 * The sector of grain directory entry i's table (0: none).  A seSparse
 * entry is 0x1 in its top nibble and a table number in its low 32 bits.
 */
static int
vmdk_gd_entry(struct vmdk_extent *e, uint32_t i, uint64_t *sector)
{
	uint64_t v;

	if (!e->sesparse) {
		*sector = e->l1[i];
		return 0;
	}
	v = e->se_l1[i];
	*sector = 0;
	if (v == 0)
		return 0;
	if ((v & 0xffffffff00000000ull) != 0x1000000000000000ull)
		return err_set(EIO, "%s: bad grain directory entry %" PRIu32,
		    e->path, i);
	/* tables of 4096 8-byte entries: 64 sectors each */
	*sector = e->se_gt_off + (v & 0xffffffffull) * 64;
	if (*sector > UINT32_MAX)
		return err_set(EIO, "%s: bad grain directory entry %" PRIu32,
		    e->path, i);
	return 0;
}

/* A seSparse grain table entry: kind in the top nibble. */
static int
vmdk_se_gte(struct vmdk_extent *e, uint64_t v, struct vmdk_loc *l)
{
	switch (v >> 60) {
	case 0:
		if (v != 0)
			break;
		return G_UNALLOC;
	case 1:		/* unmapped reads as zeroes too */
	case 2:
		return G_ZEROED;
	case 3:
		v = ((v & 0x0fff000000000000ull) >> 48) |
		    ((v & 0x0000ffffffffffffull) << 12);
		l->sector = e->se_grain_off + v * e->cluster_sectors;
		return G_OK;
	}
	err_set(EIO, "%s: bad grain table entry %#" PRIx64, e->path, v);
	return G_ERROR;
}

/* Extent-relative byte offset of a guest offset. */
static uint64_t
vmdk_ext_off(struct vmdk_extent *e, uint64_t off)
{
	return off - (e->end_sector - e->sectors) * VMDK_SECTOR;
}

static int
vmdk_locate(struct vmdk_extent *e, uint64_t off, struct vmdk_loc *l)
{
	uint64_t sec = vmdk_ext_off(e, off) / VMDK_SECTOR, gts, *gt, v;

	memset(l, 0, sizeof(*l));
	if (e->flat) {
		l->sector = e->flat_start / VMDK_SECTOR;
		return G_OK;
	}
	l->l1_index = (uint32_t)(sec / e->l1_entry_sectors);
	if (l->l1_index >= e->l1_size) {
		err_set(0, "%s: grain directory index %" PRIu32 " out of range",
		    e->path, l->l1_index);
		return G_ERROR;
	}
	if (vmdk_gd_entry(e, l->l1_index, &gts) < 0)
		return G_ERROR;
	if (gts == 0)
		return G_UNALLOC;
	if ((gt = vmdk_gt(e, gts * VMDK_SECTOR)) == NULL)
		return G_ERROR;
	l->l2_index = (uint32_t)(sec / e->cluster_sectors % e->l2_size);
	l->entry = &gt[l->l2_index];
	v = *l->entry;
	if (e->sesparse)
		return vmdk_se_gte(e, v, l);
	if (e->zero_grain && v == VMDK_GTE_ZEROED)
		return G_ZEROED;
	if (v == 0)
		return G_UNALLOC;
	l->sector = v;
	return G_OK;
}

static uint64_t
vmdk_cluster_bytes(const struct vmdk_extent *e)
{
	return e->cluster_sectors * VMDK_SECTOR;
}

/* A flat extent's status follows its file's holes, as qemu's RECURSE. */
static void
vmdk_flat_status(struct vmdk_extent *e, uint64_t hoff, uint64_t len,
    struct fmt_status *st)
{
	off_t end = lseek(e->fd, 0, SEEK_END), data, hole;

	st->flags = ST_DATA | ST_OFFSET;
	if (end < 0)
		return;
	if (hoff >= (uint64_t)end) {
		st->flags |= ST_ZERO;
		return;
	}
	data = lseek(e->fd, (off_t)hoff, SEEK_DATA);
	if (data < 0) {
		if (errno == ENXIO)
			st->flags |= ST_ZERO;
		return;
	}
	if ((uint64_t)data > hoff) {
		st->flags |= ST_ZERO;
		st->len = MIN(len, (uint64_t)data - hoff);
		return;
	}
	if ((hole = lseek(e->fd, (off_t)hoff, SEEK_HOLE)) < 0)
		hole = end;
	st->len = MIN(len, (uint64_t)hole - hoff);
}

/*
 * Status at off and the bytes it holds for: to the grain's end, or to the
 * end of a grain directory entry that has no table (a whole empty span).
 */
static int
vmdk_grain_status(struct vmdk_extent *e, uint64_t off, uint64_t *host,
    unsigned *flags, uint64_t *span)
{
	uint64_t cb = vmdk_cluster_bytes(e), l1b;
	struct vmdk_loc l;
	int r;

	*span = cb - vmdk_ext_off(e, off) % cb;
	*flags = 0;
	if (e->pend != NULL && e->pend_off == off - vmdk_ext_off(e, off) % cb) {
		*flags = ST_DATA;
		return 0;
	}
	switch ((r = vmdk_locate(e, off, &l))) {
	case G_ERROR:
		return -1;
	case G_UNALLOC:
		if (l.entry == NULL) {
			l1b = e->l1_entry_sectors * VMDK_SECTOR;
			*span = l1b - vmdk_ext_off(e, off) % l1b;
		}
		break;
	case G_ZEROED:
		*flags = ST_ZERO;
		break;
	case G_OK:
		*flags = ST_DATA;
		if (!e->compressed) {
			*flags |= ST_OFFSET;
			*host = l.sector * VMDK_SECTOR + vmdk_ext_off(e, off) % cb;
		}
		break;
	}
	return 0;
}

/* One run of grains of the same kind (data runs contiguous in the file). */
static int
vmdk_sparse_status(struct vmdk_extent *e, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	uint64_t n = 0, host = 0, span;
	unsigned f;

	while (n < len) {
		if (vmdk_grain_status(e, off + n, &host, &f, &span) < 0)
			return -1;
		if (n == 0) {
			st->flags = f;
			st->offset = host;
		} else if (f != st->flags ||
		    ((f & ST_OFFSET) && host != st->offset + n)) {
			break;
		}
		n += MIN(span, len - n);
	}
	st->len = n;
	return 0;
}

int
vmdk_block_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	struct vmdk *s = img->priv;
	struct vmdk_extent *e = vmdk_find_extent(s, off / VMDK_SECTOR);

	if (e == NULL)
		return err_set(EIO, "%s: no extent at %#" PRIx64, img->filename, off);
	len = MIN(len, e->end_sector * VMDK_SECTOR - off);
	st->file = e->path;
	st->has_fd = e->fd >= 0;
	st->fd = e->fd;
	if (e->flat) {
		st->offset = e->flat_start + vmdk_ext_off(e, off);
		st->len = len;
		vmdk_flat_status(e, st->offset, len, st);
		return 0;
	}
	return vmdk_sparse_status(e, off, len, st);
}

static int
vmdk_read_compressed(struct vmdk_extent *e, uint64_t sector, uint64_t in_off,
    size_t len, uint8_t *buf)
{
	uint64_t cb = vmdk_cluster_bytes(e);
	uint8_t *raw = malloc(2 * cb), *out = calloc(1, cb);
	const uint8_t *data = raw;
	uLongf outlen = cb;
	uint64_t dlen = cb;
	int r = -1;

	/* grains reach 1 GiB (qemu's cap): an allocation may fail */
	if (raw == NULL || out == NULL) {
		err_set(ENOMEM, "%s: grain of %" PRIu64 " bytes", e->path, cb);
		goto out;
	}
	if (io_pread_zero(e->fd, raw, 2 * cb, sector * VMDK_SECTOR) < 0) {
		err_set(errno, "%s: read at %#" PRIx64, e->path, sector * VMDK_SECTOR);
		goto out;
	}
	if (e->marker) {
		dlen = get_le32(raw + 8);
		data = raw + MARKER_SIZE;
	}
	if (dlen == 0 || dlen > 2 * cb - (e->marker ? MARKER_SIZE : 0) ||
	    uncompress(out, &outlen, data, (uLong)dlen) != Z_OK ||
	    in_off + len > outlen) {
		err_set(EINVAL, "%s: compressed grain at sector %" PRIu64
		    " is corrupt", e->path, sector);
		goto out;
	}
	memcpy(buf, out + in_off, len);
	r = 0;
out:
	free(raw);
	free(out);
	return r;
}

/* Bytes from off (n known) whose grains follow each other from host on. */
static uint64_t
vmdk_contiguous(struct vmdk_extent *e, uint64_t off, uint64_t len, uint64_t n,
    uint64_t host)
{
	uint64_t cb = vmdk_cluster_bytes(e);
	uint64_t end = MIN(len, e->end_sector * VMDK_SECTOR - off);
	struct vmdk_loc l;

	while (n < end && !e->flat && (e->pend == NULL || e->pend_off !=
	    off + n) && vmdk_locate(e, off + n, &l) == G_OK &&
	    l.sector * VMDK_SECTOR == host + n)
		n += MIN(cb, end - n);
	return n;
}

int
vmdk_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	struct vmdk *s = img->priv;
	struct vmdk_extent *e;
	struct vmdk_loc l;
	uint8_t *p = buf;
	uint64_t n, in, cb;
	int r;

	while (len > 0) {
		if ((e = vmdk_find_extent(s, off / VMDK_SECTOR)) == NULL)
			return err_set(EIO, "%s: no extent at %#" PRIx64,
			    img->filename, off);
		cb = vmdk_cluster_bytes(e);
		in = vmdk_ext_off(e, off) % cb;
		n = MIN(len, cb - in);
		if (e->pend != NULL && e->pend_off == off - in) {
			memcpy(p, e->pend + in, n);
		} else if ((r = vmdk_locate(e, off, &l)) == G_ERROR) {
			return -1;
		} else if (r != G_OK) {
			memset(p, 0, n);
		} else if (e->compressed) {
			if (vmdk_read_compressed(e, l.sector, in, n, p) < 0)
				return -1;
		} else {
			n = vmdk_contiguous(e, off, len, n, l.sector * VMDK_SECTOR + in);
			blkdbg_event(e->fd, BLKDBG_READ_AIO);
			if (io_pread_zero(e->fd, p, n, l.sector * VMDK_SECTOR + in) < 0)
				return err_set(errno, "%s: read at %#" PRIx64,
				    e->path, l.sector * VMDK_SECTOR + in);
		}
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* A new CID on the first write after opening, as qemu does. */
static int
vmdk_write_cid(struct img *img)
{
	struct vmdk *s = img->priv;
	char desc[VMDK_DESC_SIZE], tail[VMDK_DESC_SIZE], *p;
	uint64_t wlen;
	uint32_t cid;
	off_t end;
	int n;

	if (io_pread_zero(img->fd, desc, sizeof(desc), s->desc_offset) < 0)
		return err_set(errno, "%s: descriptor", img->filename);
	desc[sizeof(desc) - 1] = '\0';
	if ((p = strstr(desc, "parentCID")) == NULL)
		return err_set(EINVAL, "%s: descriptor has no parentCID",
		    img->filename);
	snprintf(tail, sizeof(tail), "%s", p);
	if ((p = strstr(desc, "CID")) != NULL) {
		if (getrandom(&cid, sizeof(cid), 0) != sizeof(cid))
			cid = (uint32_t)getpid() * 2654435761u;
		p += 4;
		n = snprintf(p, sizeof(desc) - (size_t)(p - desc), "%" PRIx32 "\n",
		    cid);
		if (n > 0 && (size_t)(p - desc) + (size_t)n < sizeof(desc))
			snprintf(p + n, sizeof(desc) - (size_t)(p - desc) - (size_t)n,
			    "%s", tail);
		s->cid = cid;
	}
	/* qemu rewrites the descriptor's sectors, at most 20 of them */
	if ((end = lseek(img->fd, 0, SEEK_END)) < 0)
		return err_set(errno, "%s: descriptor", img->filename);
	wlen = (uint64_t)end > s->desc_offset ?
	    MIN(sizeof(desc), ROUND_UP((uint64_t)end - s->desc_offset,
	    VMDK_SECTOR)) : sizeof(desc);
	if (io_pwrite(img->fd, desc, wlen, s->desc_offset) < 0 ||
	    fmt_sync(img) < 0)
		return err_set(errno, "%s: descriptor", img->filename);
	s->cid_updated = true;
	return 0;
}

/* Point the grain's entry in both grain tables at sector v. */
static int
vmdk_gte_update(struct vmdk_extent *e, struct vmdk_loc *l, uint32_t v)
{
	uint8_t b[4];
	uint64_t gt;

	put_le32(b, v);
	gt = (uint64_t)e->l1[l->l1_index] * VMDK_SECTOR;
	if (io_pwrite(e->fd, b, 4, gt + l->l2_index * 4u) < 0)
		return err_set(errno, "%s: grain table at %#" PRIx64, e->path, gt);
	if (e->l1_backup != NULL && e->l1_backup[l->l1_index] != 0) {
		gt = (uint64_t)e->l1_backup[l->l1_index] * VMDK_SECTOR;
		if (io_pwrite(e->fd, b, 4, gt + l->l2_index * 4u) < 0)
			return err_set(errno, "%s: grain table at %#" PRIx64,
			    e->path, gt);
		/* the backup table may be cached too */
		if (e->gt[(gt / VMDK_SECTOR) % VMDK_GT_CACHE].off == gt)
			e->gt[(gt / VMDK_SECTOR) % VMDK_GT_CACHE].e[l->l2_index] = v;
	}
	*l->entry = v;
	return 0;
}

/*
 * Copying from a backing file needs the parent the image was made from:
 * a vmdk whose CID is our parentCID (a backing file of another format
 * has none, so qemu refuses it too).
 */
static bool
vmdk_cid_valid(struct img *img)
{
	struct vmdk *s = img->priv, *p;

	if (strcmp(img_format(img->backing), "vmdk") != 0)
		return false;
	p = img->backing->priv;
	return p->cid == s->parent_cid;
}

/* Reads that fall through to the backing file need the same parent. */
int
vmdk_backing_read_ok(struct img *img)
{
	if (!vmdk_cid_valid(img))
		return err_set(EINVAL, "%s: the backing file's CID is not the "
		    "parentCID", img->filename);
	return 0;
}

/* Bytes of the grain around [in, in+n) that a new grain copies from below. */
static int
vmdk_fill_grain(struct img *img, struct vmdk_extent *e, uint64_t goff,
    bool zeroed, uint8_t *g)
{
	uint64_t cb = vmdk_cluster_bytes(e), bn;

	memset(g, 0, cb);
	if (img->backing != NULL && vmdk_backing_read_ok(img) < 0)
		return -1;
	if (img->backing == NULL || zeroed || goff >= img->backing->size)
		return 0;
	bn = MIN(cb, img->backing->size - goff);
	return img_read(img->backing, goff, bn, g);
}

/* A compressed grain behind its marker, as qemu writes it. */
static int
vmdk_put_compressed(struct vmdk_extent *e, uint64_t sec, uint64_t goff,
    const uint8_t *g, uint64_t *end)
{
	uint64_t cb = vmdk_cluster_bytes(e);
	/* the last grain holds only what lies before the extent's end */
	uint64_t clen = MIN(cb, e->end_sector * VMDK_SECTOR - goff);
	uLongf zlen = (uLongf)(2 * cb);
	uint8_t *mk;
	int r;

	if (!e->marker)
		return err_set(EINVAL, "%s: compressed grains need markers",
		    e->path);
	/* zeroed beyond the data: qemu zero-fills the grain first */
	if ((mk = calloc(1, MARKER_SIZE + 2 * cb + VMDK_SECTOR)) == NULL)
		return err_set(ENOMEM, "%s: grain of %" PRIu64 " bytes", e->path,
		    cb);
	if (compress2(mk + MARKER_SIZE, &zlen, g, (uLong)clen,
	    Z_DEFAULT_COMPRESSION) != Z_OK || zlen == 0) {
		free(mk);
		return err_set(EINVAL, "%s: cannot compress grain at %#" PRIx64,
		    e->path, goff);
	}
	put_le64(mk, goff / VMDK_SECTOR);
	put_le32(mk + 8, (uint32_t)zlen);
	/*
	 * Up to the sector's end: qemu-img convert ends a stream by
	 * rounding the file up to whole sectors.
	 */
	r = io_pwrite(e->fd, mk, MAX(cb, ROUND_UP(MARKER_SIZE + zlen,
	    VMDK_SECTOR)), sec * VMDK_SECTOR);
	free(mk);
	if (r < 0)
		return err_set(errno, "%s: write at %#" PRIx64, e->path,
		    sec * VMDK_SECTOR);
	/* the next compressed grain follows in the next sector */
	*end = DIV_ROUND_UP(sec * VMDK_SECTOR + MARKER_SIZE + zlen, VMDK_SECTOR);
	return 0;
}

/* Write grain g (whole) at the end of the extent, then point l's GTEs at it. */
static int
vmdk_alloc_grain(struct vmdk_extent *e, struct vmdk_loc *l, uint64_t goff,
    const uint8_t *g)
{
	uint64_t sec = e->next_cluster_sector, end = 0;

	if (l->entry == NULL)
		return err_set(EIO, "%s: no grain table for grain directory "
		    "entry %" PRIu32, e->path, l->l1_index);
	if (sec > UINT32_MAX)
		return err_set(EFBIG, "%s: extent is full", e->path);
	if (e->compressed) {
		if (vmdk_put_compressed(e, sec, goff, g, &end) < 0)
			return -1;
	} else {
		blkdbg_event(e->fd, BLKDBG_WRITE_AIO);
		if (io_pwrite(e->fd, g, vmdk_cluster_bytes(e), sec * VMDK_SECTOR) < 0)
			return err_set(errno, "%s: write at %#" PRIx64, e->path,
			    sec * VMDK_SECTOR);
		end = sec + e->cluster_sectors;
	}
	/* grain first, then the tables that point at it */
	e->next_cluster_sector = end;
	return vmdk_gte_update(e, l, (uint32_t)sec);
}

/*
 * A stream-optimized extent takes whole grains once each, but img-write
 * lays down only the data extents of its source: a grain written in
 * pieces is assembled here and compressed when another grain is written,
 * or at flush.
 */
int
vmdk_pend_flush(struct vmdk_extent *e)
{
	struct vmdk_loc l;
	int r;

	if (e->pend == NULL)
		return 0;
	if ((r = vmdk_locate(e, e->pend_off, &l)) != G_ERROR)
		r = r == G_OK ? err_set(EIO, "Could not write to allocated "
		    "cluster for streamOptimized") :
		    vmdk_alloc_grain(e, &l, e->pend_off, e->pend);
	free(e->pend);
	e->pend = NULL;
	return r;
}

static int
vmdk_write_grain(struct img *img, struct vmdk_extent *e, uint64_t off,
    uint64_t in, uint64_t n, const uint8_t *p)
{
	uint64_t cb = vmdk_cluster_bytes(e), goff = off - in;
	struct vmdk_loc l;
	uint8_t *g;
	int r;

	if (e->pend != NULL && e->pend_off == goff) {
		memcpy(e->pend + in, p, n);
		return 0;
	}
	if ((r = vmdk_locate(e, off, &l)) == G_ERROR)
		return -1;
	if (r == G_OK && e->compressed)
		return err_set(EIO, "Could not write to allocated cluster for "
		    "streamOptimized");
	if (r == G_OK) {
		blkdbg_event(e->fd, BLKDBG_WRITE_AIO);
		if (io_pwrite(e->fd, p, n, l.sector * VMDK_SECTOR + in) < 0)
			return err_set(errno, "%s: write", e->path);
		return 0;
	}
	if (vmdk_pend_flush(e) < 0 || (r = vmdk_locate(e, off, &l)) == G_ERROR)
		return -1;
	if ((g = malloc(cb)) == NULL)
		return err_set(ENOMEM, "%s: grain of %" PRIu64 " bytes", e->path,
		    cb);
	if (vmdk_fill_grain(img, e, goff, r == G_ZEROED, g) < 0) {
		free(g);
		return -1;
	}
	memcpy(g + in, p, n);
	if (e->compressed && (in != 0 || n < cb)) {
		e->pend = g;
		e->pend_off = goff;
		return 0;
	}
	r = vmdk_alloc_grain(e, &l, goff, g);
	free(g);
	return r;
}

int
vmdk_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	struct vmdk *s = img->priv;
	struct vmdk_extent *e;
	const uint8_t *p = buf;
	uint64_t n, in, cb;

	while (len > 0) {
		if ((e = vmdk_find_extent(s, off / VMDK_SECTOR)) == NULL)
			return err_set(EIO, "%s: no extent at %#" PRIx64,
			    img->filename, off);
		cb = vmdk_cluster_bytes(e);
		in = vmdk_ext_off(e, off) % cb;
		n = MIN(len, cb - in);
		if (e->flat) {
			n = MIN(len, e->end_sector * VMDK_SECTOR - off);
			blkdbg_event(e->fd, BLKDBG_WRITE_AIO);
			if (io_pwrite(e->fd, p, n, e->flat_start +
			    vmdk_ext_off(e, off)) < 0)
				return err_set(errno, "%s: write", e->path);
		} else if (vmdk_write_grain(img, e, off, in, n, p) < 0) {
			return -1;
		}
		p += n;
		off += n;
		len -= n;
	}
	return s->cid_updated ? 0 : vmdk_write_cid(img);
}

/* Zeroed grains where every extent has them and the range is whole grains. */
static bool
vmdk_can_zero(struct vmdk *s, uint64_t off, uint64_t len)
{
	struct vmdk_extent *e;
	uint64_t n, in, cb;

	for (; len > 0; off += n, len -= n) {
		if ((e = vmdk_find_extent(s, off / VMDK_SECTOR)) == NULL ||
		    e->flat || !e->zero_grain)
			return false;
		cb = vmdk_cluster_bytes(e);
		in = vmdk_ext_off(e, off) % cb;
		n = MIN(len, cb - in);
		if (in != 0 || n < cb)
			return false;
	}
	return true;
}

int
vmdk_write_zeroes(struct img *img, uint64_t off, uint64_t len, int flags)
{
	static const uint8_t zeroes[65536];
	struct vmdk *s = img->priv;
	struct vmdk_extent *e;
	struct vmdk_loc l;
	uint64_t n;
	int r;

	(void)flags;
	if (!vmdk_can_zero(s, off, len)) {
		for (; len > 0; off += n, len -= n) {
			n = MIN(len, sizeof(zeroes));
			if (vmdk_write(img, off, n, zeroes) < 0)
				return -1;
		}
		return 0;
	}
	for (; len > 0; off += n, len -= n) {
		e = vmdk_find_extent(s, off / VMDK_SECTOR);
		n = vmdk_cluster_bytes(e);
		if (e->pend != NULL && e->pend_off == off) {
			/* a stream grain still assembling is zeroed whole */
			free(e->pend);
			e->pend = NULL;
		}
		if ((r = vmdk_locate(e, off, &l)) == G_ERROR)
			return -1;
		if (l.entry == NULL)
			return err_set(EIO, "%s: no grain table for grain "
			    "directory entry %" PRIu32, e->path, l.l1_index);
		if (r != G_ZEROED && vmdk_gte_update(e, &l, VMDK_GTE_ZEROED) < 0)
			return -1;
	}
	return s->cid_updated ? 0 : vmdk_write_cid(img);
}

int
vmdk_flush(struct img *img)
{
	struct vmdk *s = img->priv;
	size_t i;

	for (i = 0; i < s->n; i++)
		if (vmdk_pend_flush(&s->ext[i]) < 0)
			return -1;
	for (i = 0; i < s->n; i++)
		if (s->ext[i].own_fd && !(img->flags & IMG_NO_FLUSH) &&
		    io_fdatasync(s->ext[i].fd) < 0 && errno != EINVAL)
			return err_set(errno, "%s: fsync", s->ext[i].path);
	return fmt_sync(img);
}

static void
vmdk_note(struct img_check *res, const char *before, uint64_t sector,
    const char *after)
{
	char line[128];

	snprintf(line, sizeof(line), "ERROR: %s %" PRIu64 "%s", before, sector,
	    after);
	if (res->note != NULL)
		res->note(line, res->note_arg);
}

/*
 * qemu's vmdk check: every grain must lie inside its extent file.  The
 * first bad one stops it, and qemu-img then says "Check failed".
 */
int
vmdk_check(struct img *img, int fix, struct img_check *res)
{
	struct vmdk *s = img->priv;
	struct vmdk_extent *e;
	struct vmdk_loc l;
	uint64_t sec, rem, total = img->size / VMDK_SECTOR;
	off_t end;
	int r;

	/* qemu's vmdk check cannot repair: qemu-img says checks are unsupported */
	if (fix)
		return err_set(0, IMG_CHECK_NOTSUP);
	for (sec = 0; sec < total; sec += e->cluster_sectors) {
		if ((e = vmdk_find_extent(s, sec)) == NULL) {
			vmdk_note(res, "could not find extent for sector", sec, "");
			res->corruptions++;
			return err_set(EINVAL, "no extent");
		}
		if ((r = vmdk_locate(e, sec * VMDK_SECTOR, &l)) == G_ERROR) {
			vmdk_note(res, "could not get cluster_offset for sector",
			    sec, "");
			res->corruptions++;
			return err_set(EINVAL, "bad grain table");
		}
		if (r == G_UNALLOC && l.entry == NULL) {
			/* no table: the rest of its span is empty too */
			rem = e->l1_entry_sectors - (sec - (e->end_sector -
			    e->sectors)) % e->l1_entry_sectors;
			sec += (rem - 1) / e->cluster_sectors * e->cluster_sectors;
		}
		if (r != G_OK)
			continue;
		if ((end = lseek(e->fd, 0, SEEK_END)) < 0)
			return err_set(errno, "%s", e->path);
		if (l.sector * VMDK_SECTOR >= (uint64_t)end) {
			vmdk_note(res, "cluster offset for sector", sec,
			    " points after EOF");
			res->corruptions++;
			return err_set(EINVAL, "grain past EOF");
		}
	}
	return 0;
}
