/*
 * qed: QEMU Enhanced Disk images (docs/interop/qed_spec.txt): a 64-byte
 * little-endian header, a two-level table (L1 -> L2 -> data cluster),
 * where an L2 entry of 1 is a zero cluster, as qemu's qed driver.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "blkdebug.h"
#include "fmt.h"

#define QED_MAGIC		0x00444551u	/* "QED\0" */
#define QED_HEADER_SIZE		64
#define QED_F_BACKING_FILE	0x01u
#define QED_F_NEED_CHECK	0x02u
#define QED_F_BACKING_FORMAT_NO_PROBE 0x04u
#define QED_FEATURE_MASK	0x07u
#define QED_MIN_CLUSTER_SIZE	(4u << 10)
#define QED_MAX_CLUSTER_SIZE	(64u << 20)
#define QED_DEFAULT_CLUSTER_SIZE (64u << 10)
#define QED_MIN_TABLE_SIZE	1u
#define QED_MAX_TABLE_SIZE	16u
#define QED_DEFAULT_TABLE_SIZE	4u
#define QED_ZERO_CLUSTER	1u
#define QED_PATH_MAX		4096	/* qemu's bs->auto_backing_file */

/* header field offsets */
enum {
	QED_H_MAGIC = 0, QED_H_CLUSTER_SIZE = 4, QED_H_TABLE_SIZE = 8,
	QED_H_HEADER_SIZE = 12, QED_H_FEATURES = 16, QED_H_COMPAT = 24,
	QED_H_AUTOCLEAR = 32, QED_H_L1 = 40, QED_H_IMAGE_SIZE = 48,
	QED_H_BF_OFFSET = 56, QED_H_BF_SIZE = 60,
};

struct qed {
	uint32_t	 cluster_size;
	uint32_t	 table_size;
	uint32_t	 header_size;
	uint64_t	 features, compat, autoclear;
	uint64_t	 l1_offset;
	uint64_t	 image_size;
	uint32_t	 bf_offset, bf_size;

	uint64_t	 nelems;	/* entries per table */
	uint64_t	 file_size;	/* where the next cluster goes */
	uint64_t	*l1;		/* host order */
	uint64_t	*l2;		/* the cached L2 table, host order */
	uint64_t	 l2_offset;	/* its offset, 0: none cached */
	uint8_t		*tbuf;		/* one table's bytes */
};

/* What a run of clusters is */
enum { QED_UNALLOC, QED_ZERO, QED_DATA };

static int
qed_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	/* qemu probes a zero-padded buffer: the magic is enough */
	if (len < 4)
		return 0;
	return get_le32(buf) == QED_MAGIC ? 100 : 0;
}

static bool
qed_cluster_size_ok(uint64_t cs)
{
	return is_pow2(cs) && cs >= QED_MIN_CLUSTER_SIZE &&
	    cs <= QED_MAX_CLUSTER_SIZE;
}

static bool
qed_table_size_ok(uint64_t ts)
{
	return is_pow2(ts) && ts >= QED_MIN_TABLE_SIZE &&
	    ts <= QED_MAX_TABLE_SIZE;
}

static uint64_t
qed_max_size(uint64_t cs, uint64_t ts)
{
	uint64_t entries = ts * cs / 8;

	return entries * cs * entries;
}

static bool
qed_size_ok(uint64_t size, uint64_t cs, uint64_t ts)
{
	return size % 512 == 0 && size <= qed_max_size(cs, ts);
}

static bool
qed_cluster_ok(const struct qed *s, uint64_t off)
{
	if (off & (s->cluster_size - 1))
		return false;
	return off >= (uint64_t)s->header_size * s->cluster_size &&
	    off < s->file_size;
}

static bool
qed_table_ok(const struct qed *s, uint64_t off)
{
	uint64_t end = off + (uint64_t)(s->table_size - 1) * s->cluster_size;

	if (end <= off)
		return false;
	return qed_cluster_ok(s, off) && qed_cluster_ok(s, end);
}

static void
qed_header_bytes(const struct qed *s, uint8_t *h)
{
	memset(h, 0, QED_HEADER_SIZE);
	put_le32(h + QED_H_MAGIC, QED_MAGIC);
	put_le32(h + QED_H_CLUSTER_SIZE, s->cluster_size);
	put_le32(h + QED_H_TABLE_SIZE, s->table_size);
	put_le32(h + QED_H_HEADER_SIZE, s->header_size);
	put_le64(h + QED_H_FEATURES, s->features);
	put_le64(h + QED_H_COMPAT, s->compat);
	put_le64(h + QED_H_AUTOCLEAR, s->autoclear);
	put_le64(h + QED_H_L1, s->l1_offset);
	put_le64(h + QED_H_IMAGE_SIZE, s->image_size);
	put_le32(h + QED_H_BF_OFFSET, s->bf_offset);
	put_le32(h + QED_H_BF_SIZE, s->bf_size);
}

static int
qed_write_header(struct img *img)
{
	struct qed *s = img->priv;
	uint8_t h[QED_HEADER_SIZE];

	qed_header_bytes(s, h);
	if (io_pwrite(img->fd, h, sizeof(h), 0) < 0)
		return err_set(errno, "%s: could not write the QED header",
		    img->filename);
	return 0;
}

static void
qed_header_parse(struct qed *s, const uint8_t *h)
{
	s->cluster_size = get_le32(h + QED_H_CLUSTER_SIZE);
	s->table_size = get_le32(h + QED_H_TABLE_SIZE);
	s->header_size = get_le32(h + QED_H_HEADER_SIZE);
	s->features = get_le64(h + QED_H_FEATURES);
	s->compat = get_le64(h + QED_H_COMPAT);
	s->autoclear = get_le64(h + QED_H_AUTOCLEAR);
	s->l1_offset = get_le64(h + QED_H_L1);
	s->image_size = get_le64(h + QED_H_IMAGE_SIZE);
	s->bf_offset = get_le32(h + QED_H_BF_OFFSET);
	s->bf_size = get_le32(h + QED_H_BF_SIZE);
}

/*
 * Refuse what qemu's bdrv_qed_do_open refuses, in its words and order.
 */
static int
qed_check_header(struct img *img, const uint8_t *h)
{
	struct qed *s = img->priv;
	uint64_t fsize;

	if (get_le32(h + QED_H_MAGIC) != QED_MAGIC)
		return err_set(0, "Image not in QED format");
	qed_header_parse(s, h);
	if (s->features & ~(uint64_t)QED_FEATURE_MASK)
		return err_set(0, "Unsupported QED features: %" PRIx64,
		    s->features & ~(uint64_t)QED_FEATURE_MASK);
	if (!qed_cluster_size_ok(s->cluster_size))
		return err_set(0, "QED cluster size is invalid");
	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	s->file_size = fsize & ~(uint64_t)(s->cluster_size - 1);
	if (!qed_table_size_ok(s->table_size))
		return err_set(0, "QED table size is invalid");
	if (!qed_size_ok(s->image_size, s->cluster_size, s->table_size))
		return err_set(0, "QED image size is invalid");
	if (!qed_table_ok(s, s->l1_offset))
		return err_set(0, "QED table offset is invalid");
	if (s->header_size > UINT32_MAX / s->cluster_size)
		return err_set(0, "QED header size is too large");
	return 0;
}

static int
qed_read_backing_name(struct img *img)
{
	struct qed *s = img->priv;

	if (!(s->features & QED_F_BACKING_FILE))
		return 0;
	if ((uint64_t)s->bf_offset + s->bf_size >
	    (uint64_t)s->header_size * s->cluster_size)
		return err_set(0, "QED backing filename offset is invalid");
	if (s->bf_size >= QED_PATH_MAX)
		return err_set(0, "Failed to read backing filename");
	img->backing_file = xcalloc(1, s->bf_size + 1);
	if (io_pread_zero(img->fd, img->backing_file, s->bf_size,
	    s->bf_offset) < 0)
		return err_set(0, "Failed to read backing filename");
	if (s->features & QED_F_BACKING_FORMAT_NO_PROBE)
		img->backing_fmt = xstrdup("raw");
	return 0;
}

static int
qed_read_table(struct img *img, uint64_t off, uint64_t *t)
{
	struct qed *s = img->priv;
	uint64_t i;

	if (io_pread_zero(img->fd, s->tbuf, s->nelems * 8, off) < 0)
		return err_set(errno, "%s: could not read the QED table at %#"
		    PRIx64, img->filename, off);
	for (i = 0; i < s->nelems; i++)
		t[i] = get_le64(s->tbuf + 8 * i);
	return 0;
}

/* Write entries [first, last) of table t at off, in whole sectors. */
static int
qed_write_table(struct img *img, uint64_t off, const uint64_t *t,
    uint64_t first, uint64_t last)
{
	struct qed *s = img->priv;
	uint64_t i;

	first = ROUND_DOWN(first, 64);
	last = MIN(ROUND_UP(last, 64), s->nelems);
	for (i = first; i < last; i++)
		put_le64(s->tbuf + 8 * i, t[i]);
	if (io_pwrite(img->fd, s->tbuf + 8 * first, (last - first) * 8,
	    off + 8 * first) < 0)
		return err_set(errno, "%s: could not write the QED table at %#"
		    PRIx64, img->filename, off);
	return 0;
}

static int qed_check_fix(struct img *, int, struct img_check *);

static int
qed_open(struct img *img)
{
	struct qed *s = img->priv;
	uint8_t h[QED_HEADER_SIZE];
	struct img_check res;

	if (io_pread_zero(img->fd, h, sizeof(h), 0) < 0)
		return err_set(errno, "Failed to read QED header");
	if (qed_check_header(img, h) < 0 || qed_read_backing_name(img) < 0)
		return -1;
	s->nelems = (uint64_t)s->table_size * s->cluster_size / 8;
	s->l1 = xmalloc(s->nelems * 8);
	s->l2 = xmalloc(s->nelems * 8);
	s->tbuf = xmalloc(s->nelems * 8);
	if (qed_read_table(img, s->l1_offset, s->l1) < 0)
		return -1;
	img->size = s->image_size;
	if (!(img->flags & IMG_RDWR))
		return 0;
	if (s->autoclear) {
		s->autoclear = 0;
		if (qed_write_header(img) < 0)
			return -1;
	}
	/* not closed cleanly: qemu checks and repairs before it writes */
	if (s->features & QED_F_NEED_CHECK) {
		memset(&res, 0, sizeof(res));
		if (qed_check_fix(img, 1, &res) < 0)
			return -1;
	}
	return 0;
}

static void
qed_close(struct img *img)
{
	struct qed *s = img->priv;

	if (s->l1 != NULL && (img->flags & IMG_RDWR) &&
	    (s->features & QED_F_NEED_CHECK)) {
		/* a clean shutdown: no check needed on the next open */
		if (fmt_sync(img) == 0) {
			s->features &= ~(uint64_t)QED_F_NEED_CHECK;
			qed_write_header(img);
		}
	}
	free(s->l1);
	free(s->l2);
	free(s->tbuf);
}

static uint64_t *
qed_load_l2(struct img *img, uint64_t off)
{
	struct qed *s = img->priv;

	if (s->l2_offset == off)
		return s->l2;
	s->l2_offset = 0;
	if (qed_read_table(img, off, s->l2) < 0)
		return NULL;
	s->l2_offset = off;
	return s->l2;
}

static int
qed_entry_type(const struct qed *s, uint64_t e)
{
	(void)s;
	if (e == 0)
		return QED_UNALLOC;
	if (e == QED_ZERO_CLUSTER)
		return QED_ZERO;
	return QED_DATA;
}

struct qed_run {
	int		 type;
	uint64_t	 len;	/* bytes from the position asked */
	uint64_t	 host;	/* QED_DATA: host offset of the position */
	uint64_t	 l1i;	/* the L1 index, and the first L2 index */
	uint64_t	 l2i;
	uint64_t	 nclusters;
};

/* The clusters alike from off on (at most len bytes, one L2 table). */
static int
qed_find(struct img *img, uint64_t off, uint64_t len, struct qed_run *r)
{
	struct qed *s = img->priv;
	uint64_t cs = s->cluster_size, l2o, *l2, in = off & (cs - 1);
	uint64_t i, n, max, first;

	r->l1i = off / cs / s->nelems;
	r->l2i = off / cs % s->nelems;
	max = MIN(s->nelems - r->l2i, DIV_ROUND_UP(in + len, cs));
	l2o = s->l1[r->l1i];
	if (l2o == 0) {
		r->type = QED_UNALLOC;
		n = max;
	} else {
		/* a bad L1 or L2 entry: qemu's bare -EINVAL */
		if (!qed_table_ok(s, l2o))
			return err_bare(EINVAL);
		if ((l2 = qed_load_l2(img, l2o)) == NULL)
			return -1;
		first = l2[r->l2i];
		r->type = qed_entry_type(s, first);
		/* as qemu's qed_find_cluster: the run's first cluster is
		 * checked, the others need only follow it */
		if (r->type == QED_DATA && !qed_cluster_ok(s, first))
			return err_bare(EINVAL);
		for (n = 1; n < max; n++) {
			i = l2[r->l2i + n];
			if (r->type == QED_DATA ? i != first + n * cs :
			    i != first)
				break;
		}
		r->host = first + in;
	}
	r->nclusters = n;
	r->len = MIN(len, n * cs - in);
	return 0;
}

static int
qed_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	uint8_t *p = buf;
	struct qed_run r;

	for (; len > 0; off += r.len, p += r.len, len -= r.len) {
		if (qed_find(img, off, len, &r) < 0)
			return -1;
		if (r.type == QED_ZERO) {
			memset(p, 0, r.len);
		} else if (r.type == QED_UNALLOC) {
			if (fmt_read_backing(img, off, r.len, p) < 0)
				return -1;
		} else {
			blkdbg_event(img->fd, BLKDBG_READ_AIO);
			if (io_pread_zero(img->fd, p, r.len, r.host) < 0)
				return err_set(errno, "%s: read at %#" PRIx64,
				    img->filename, r.host);
		}
	}
	return 0;
}

static int
qed_block_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	struct qed_run r;

	if (qed_find(img, off, len, &r) < 0)
		return -1;
	st->len = r.len;
	if (r.type == QED_ZERO) {
		st->flags = ST_ZERO;
	} else if (r.type == QED_DATA) {
		st->flags = ST_DATA | ST_OFFSET;
		st->offset = r.host;
	} else {
		st->flags = 0;
	}
	return 0;
}

/* Before the first allocation of a session: the image needs a check if we crash. */
static int
qed_set_need_check(struct img *img)
{
	struct qed *s = img->priv;

	/* with a backing file the data is flushed before the L2 update */
	if (img->backing_file != NULL || (s->features & QED_F_NEED_CHECK))
		return 0;
	s->features |= QED_F_NEED_CHECK;
	if (qed_write_header(img) < 0)
		return -1;
	return 0;
}

/* Point r's clusters at host (QED_ZERO_CLUSTER: zero clusters), new L2 if need be. */
static int
qed_update_l2(struct img *img, const struct qed_run *r, uint64_t host)
{
	struct qed *s = img->priv;
	uint64_t l2o = s->l1[r->l1i], *l2, i, cs = s->cluster_size;
	bool fresh = l2o == 0;

	if (img->backing_file != NULL && fmt_sync(img) < 0)
		return -1;
	if (fresh) {
		l2o = s->file_size;
		s->file_size += (uint64_t)s->table_size * cs;
		memset(s->l2, 0, s->nelems * 8);
		s->l2_offset = l2o;
		l2 = s->l2;
	} else if ((l2 = qed_load_l2(img, l2o)) == NULL) {
		return -1;
	}
	for (i = 0; i < r->nclusters; i++)
		l2[r->l2i + i] = host == QED_ZERO_CLUSTER ? host : host + i * cs;
	if (fresh) {
		if (qed_write_table(img, l2o, l2, 0, s->nelems) < 0)
			return -1;
		s->l1[r->l1i] = l2o;
		return qed_write_table(img, s->l1_offset, s->l1, r->l1i,
		    r->l1i + 1);
	}
	return qed_write_table(img, l2o, l2, r->l2i, r->l2i + r->nclusters);
}

/* New clusters for run r at the end of the file: COW around p's n bytes at off. */
static int
qed_alloc_write(struct img *img, const struct qed_run *r, uint64_t off,
    const uint8_t *p, uint64_t n)
{
	struct qed *s = img->priv;
	uint64_t cs = s->cluster_size, start = ROUND_DOWN(off, cs);
	uint64_t total = r->nclusters * cs, host = s->file_size, tail;
	uint8_t *buf;
	int rc = 0;

	if (qed_set_need_check(img) < 0)
		return -1;
	s->file_size += total;
	buf = xmalloc(total);
	tail = MIN(start + total, img->size);
	if (r->type == QED_ZERO) {
		memset(buf, 0, total);
	} else {
		if (off > start)
			rc = fmt_read_backing(img, start, off - start, buf);
		if (rc == 0 && tail > off + n)
			rc = fmt_read_backing(img, off + n, tail - off - n,
			    buf + (off + n - start));
		memset(buf + (tail - start), 0, start + total - tail);
	}
	memcpy(buf + (off - start), p, n);
	blkdbg_event(img->fd, BLKDBG_WRITE_AIO);
	if (rc == 0 && io_pwrite(img->fd, buf, total, host) < 0)
		rc = err_set(errno, "%s: write at %#" PRIx64, img->filename, host);
	free(buf);
	if (rc < 0)
		return -1;
	return qed_update_l2(img, r, host);
}

static int
qed_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	const uint8_t *p = buf;
	struct qed_run r;

	for (; len > 0; off += r.len, p += r.len, len -= r.len) {
		if (qed_find(img, off, len, &r) < 0)
			return -1;
		if (r.type != QED_DATA) {
			if (qed_alloc_write(img, &r, off, p, r.len) < 0)
				return -1;
			continue;
		}
		blkdbg_event(img->fd, BLKDBG_WRITE_AIO);
		if (io_pwrite(img->fd, p, r.len, r.host) < 0)
			return err_set(errno, "%s: write at %#" PRIx64,
			    img->filename, r.host);
	}
	return 0;
}

static int
qed_write_zero_buf(struct img *img, uint64_t off, uint64_t len)
{
	static const uint8_t zeroes[65536];
	uint64_t n;

	for (; len > 0; off += n, len -= n) {
		n = MIN(len, sizeof(zeroes));
		if (qed_write(img, off, n, zeroes) < 0)
			return -1;
	}
	return 0;
}

/* Whole clusters become zero clusters; qemu writes anything else as data. */
static int
qed_write_zeroes(struct img *img, uint64_t off, uint64_t len, int flags)
{
	struct qed *s = img->priv;
	uint64_t cs = s->cluster_size;
	struct qed_run r;

	(void)flags;
	if ((off & (cs - 1)) || (len & (cs - 1)))
		return qed_write_zero_buf(img, off, len);
	for (; len > 0; off += r.len, len -= r.len) {
		if (qed_find(img, off, len, &r) < 0)
			return -1;
		if (r.type == QED_DATA) {
			if (qed_write_zero_buf(img, off, r.len) < 0)
				return -1;
		} else if (r.type == QED_UNALLOC) {
			if (qed_set_need_check(img) < 0 ||
			    qed_update_l2(img, &r, QED_ZERO_CLUSTER) < 0)
				return -1;
		}
	}
	return 0;
}

static int
qed_flush(struct img *img)
{
	return fmt_sync(img);
}

static int
qed_info(struct img *img, struct img_info *info)
{
	struct qed *s = img->priv;

	info->cluster_size = s->cluster_size;
	/* qemu 7.2 shows "dirty-flag": false even with the need-check bit */
	info->dirty = false;
	return 0;
}

struct qed_chk {
	struct img_check *res;
	uint8_t		*used;		/* a bit per cluster of the file */
	uint64_t	 nclusters;
	int		 fix;
};

/* Mark n clusters from off used; false when one was already. */
static bool
qed_use(struct qed_chk *c, uint64_t cs, uint64_t off, uint64_t n)
{
	uint64_t i = off / cs, bad = 0;

	for (; n-- > 0; i++) {
		if (i >= c->nclusters) {
			bad++;
			continue;
		}
		if (c->used[i / 8] & (1u << (i % 8)))
			bad++;
		c->used[i / 8] |= (uint8_t)(1u << (i % 8));
	}
	c->res->corruptions += (int64_t)bad;
	return bad == 0;
}

static uint64_t
qed_check_l2(struct img *img, struct qed_chk *c, uint64_t *l2)
{
	struct qed *s = img->priv;
	uint64_t i, e, last = 0, bad = 0;

	for (i = 0; i < s->nelems; i++) {
		e = l2[i];
		if (e == 0 || e == QED_ZERO_CLUSTER)
			continue;
		c->res->allocated_clusters++;
		if (last && last + s->cluster_size != e)
			c->res->fragmented_clusters++;
		last = e;
		if (!qed_cluster_ok(s, e)) {
			if (c->fix) {
				l2[i] = 0;
				c->res->corruptions_fixed++;
			} else {
				c->res->corruptions++;
			}
			bad++;
			continue;
		}
		qed_use(c, s->cluster_size, e, 1);
	}
	return bad;
}

static int
qed_check_l1(struct img *img, struct qed_chk *c)
{
	struct qed *s = img->priv;
	uint64_t i, e, bad_l1 = 0;
	int err = 0;

	qed_use(c, s->cluster_size, s->l1_offset, s->table_size);
	for (i = 0; i < s->nelems; i++) {
		e = s->l1[i];
		if (e == 0)
			continue;
		if (!qed_table_ok(s, e)) {
			if (c->fix) {
				s->l1[i] = 0;
				c->res->corruptions_fixed++;
			} else {
				c->res->corruptions++;
			}
			bad_l1++;
			continue;
		}
		if (!qed_use(c, s->cluster_size, e, s->table_size)) {
			bad_l1++;
			continue;
		}
		s->l2_offset = 0;
		if (qed_read_table(img, e, s->l2) < 0) {
			c->res->check_errors++;
			err = err_errno() ? err_errno() : EIO;
			continue;
		}
		if (qed_check_l2(img, c, s->l2) > 0 && c->fix &&
		    qed_write_table(img, e, s->l2, 0, s->nelems) < 0) {
			c->res->check_errors++;
			err = err_errno() ? err_errno() : EIO;
		}
	}
	s->l2_offset = 0;
	if (bad_l1 > 0 && c->fix &&
	    qed_write_table(img, s->l1_offset, s->l1, 0, s->nelems) < 0) {
		c->res->check_errors++;
		err = err_errno() ? err_errno() : EIO;
	}
	return err;
}

/* qemu's qed_check: tables in range and referenced once, then leaks. */
static int
qed_check_fix(struct img *img, int fix, struct img_check *res)
{
	struct qed *s = img->priv;
	struct qed_chk c = { res, NULL, s->file_size / s->cluster_size, fix };
	uint64_t i;
	int err;

	c.used = xcalloc(1, c.nclusters / 8 + 1);
	res->total_clusters = DIV_ROUND_UP(s->image_size, s->cluster_size);
	if ((err = qed_check_l1(img, &c)) != 0) {
		free(c.used);
		return err_set(err, "%s: could not check the QED tables",
		    img->filename);
	}
	for (i = s->header_size; i < c.nclusters; i++)
		if (!(c.used[i / 8] & (1u << (i % 8))))
			res->leaks++;
	free(c.used);
	if (fix && res->corruptions == 0 && res->check_errors == 0 &&
	    (s->features & QED_F_NEED_CHECK)) {
		if (fmt_sync(img) < 0)
			return -1;
		s->features &= ~(uint64_t)QED_F_NEED_CHECK;
		return qed_write_header(img);
	}
	return 0;
}

static int
qed_check(struct img *img, int fix, struct img_check *res)
{
	return qed_check_fix(img, fix != 0, res);
}

static int
qed_set_backing(struct img *img, const char *file, const char *fmt)
{
	struct qed *s = img->priv;
	uint64_t features = s->features;
	size_t flen = file ? strlen(file) : 0;
	uint8_t *buf;
	int r;

	if (file != NULL && s->compat != 0)
		return err_set(0, "Operation not supported");
	if (QED_HEADER_SIZE + flen > (uint64_t)s->header_size * s->cluster_size)
		return err_set(0, "No space left on device");
	s->features &= ~(uint64_t)(QED_F_BACKING_FILE |
	    QED_F_BACKING_FORMAT_NO_PROBE);
	if (file != NULL) {
		s->features |= QED_F_BACKING_FILE;
		if (fmt != NULL && strcmp(fmt, "raw") == 0)
			s->features |= QED_F_BACKING_FORMAT_NO_PROBE;
	}
	s->bf_offset = QED_HEADER_SIZE;
	s->bf_size = (uint32_t)flen;
	buf = xmalloc(QED_HEADER_SIZE + flen);
	qed_header_bytes(s, buf);
	memcpy(buf + QED_HEADER_SIZE, file ? file : "", flen);
	r = io_pwrite(img->fd, buf, QED_HEADER_SIZE + flen, 0);
	free(buf);
	if (r < 0 || fmt_sync(img) < 0) {
		s->features = features;
		return err_set(errno, "Could not write the QED header");
	}
	return 0;
}

static int
qed_resize(struct img *img, uint64_t size, int prealloc)
{
	struct qed *s = img->priv;
	static const char *const modes[] = { "off", "metadata", "falloc",
	    "full" };

	if (prealloc != IMG_PREALLOC_OFF)
		return err_set(0, "Unsupported preallocation mode '%s'",
		    modes[prealloc]);
	if (!qed_size_ok(size, s->cluster_size, s->table_size))
		return err_set(0, "Invalid image size specified");
	if (size < s->image_size)
		return err_set(0, "Shrinking images is currently not supported");
	s->image_size = size;
	if (qed_write_header(img) < 0)
		return -1;
	img->size = size;
	return 0;
}

static int
qed_create_file(int fd, const struct qed *s, const char *backing)
{
	uint8_t h[QED_HEADER_SIZE];
	uint64_t l1len = (uint64_t)s->table_size * s->cluster_size;

	if (ftruncate(fd, 0) < 0)
		return err_set(errno, "Could not resize file");
	qed_header_bytes(s, h);
	if (io_pwrite(fd, h, sizeof(h), 0) < 0 ||
	    (backing != NULL && io_pwrite(fd, backing, s->bf_size,
	    s->bf_offset) < 0))
		return err_set(errno, "Could not write the QED header");
	if (ftruncate(fd, (off_t)(s->l1_offset + l1len)) < 0)
		return err_set(errno, "Could not write the QED L1 table");
	return 0;
}

static int
qed_create_size(const struct opt_list *o, const char *key, uint64_t def,
    uint64_t *v)
{
	const char *s = opt_list_get(o, key);

	*v = def;
	if (s != NULL && opt_size(s, v) < 0)
		return -1;
	return 0;
}

static int
qed_create(const char *filename, uint64_t size, const struct opt_list *o)
{
	struct qed s = { 0 };
	const char *backing = opt_list_get(o, "backing_file");
	const char *bfmt = opt_list_get(o, "backing_fmt");
	uint64_t cs, ts;
	int fd, r;

	if (qed_create_size(o, "cluster_size", QED_DEFAULT_CLUSTER_SIZE,
	    &cs) < 0 || qed_create_size(o, "table_size",
	    QED_DEFAULT_TABLE_SIZE, &ts) < 0)
		return err_set(0, "%s: Invalid size", filename);
	if (!qed_cluster_size_ok(cs))
		return err_set(0, "%s: QED cluster size must be within range "
		    "[%u, %u] and power of 2", filename, QED_MIN_CLUSTER_SIZE,
		    QED_MAX_CLUSTER_SIZE);
	if (!qed_table_size_ok(ts))
		return err_set(0, "%s: QED table size must be within range "
		    "[%u, %u] and power of 2", filename, QED_MIN_TABLE_SIZE,
		    QED_MAX_TABLE_SIZE);
	size = ROUND_UP(size, 512);
	if (!qed_size_ok(size, cs, ts))
		return err_set(0, "%s: QED image size must be a non-zero "
		    "multiple of cluster size and less than %" PRIu64 " bytes",
		    filename, qed_max_size(cs, ts));
	s.cluster_size = (uint32_t)cs;
	s.table_size = (uint32_t)ts;
	s.header_size = 1;
	s.l1_offset = cs;
	s.image_size = size;
	if (backing != NULL) {
		s.features |= QED_F_BACKING_FILE;
		s.bf_offset = QED_HEADER_SIZE;
		s.bf_size = (uint32_t)strlen(backing);
		if (bfmt != NULL && strcmp(bfmt, "raw") == 0)
			s.features |= QED_F_BACKING_FORMAT_NO_PROBE;
	}
	fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "%s: Could not create '%s'", filename,
		    filename);
	if ((r = qed_create_file(fd, &s, backing)) < 0)
		err_prefix("%s", filename);
	if (close(fd) < 0 && r == 0)
		r = err_set(errno, "%s", filename);
	return r;
}

static const struct opt_desc qed_create_opts[] = {
	{ "size", OPT_SIZE, "Virtual disk size", NULL },
	{ "backing_file", OPT_STRING, "File name of a base image", NULL },
	{ "backing_fmt", OPT_STRING, "Image format of the base image", NULL },
	{ "cluster_size", OPT_SIZE, "Cluster size (in bytes)", "65536" },
	{ "table_size", OPT_SIZE, "L1/L2 table size (in clusters)", NULL },
	{ NULL, 0, NULL, NULL },
};

const struct fmt_ops qed_ops = {
	.name		= "qed",
	.priv_size	= sizeof(struct qed),
	.probe		= qed_probe,
	.open		= qed_open,
	.close		= qed_close,
	.create		= qed_create,
	.create_opts	= qed_create_opts,
	.read		= qed_read,
	.write		= qed_write,
	.write_zeroes	= qed_write_zeroes,
	.flush		= qed_flush,
	.block_status	= qed_block_status,
	.info		= qed_info,
	.check		= qed_check,
	.set_backing	= qed_set_backing,
	.resize		= qed_resize,
};
