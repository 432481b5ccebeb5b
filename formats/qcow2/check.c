/*
 * qcow2 check and repair: count every reference the metadata makes
 * (docs/interop/qcow2.txt, "Host cluster management", "Snapshots",
 * "Bitmaps") and compare with the stored refcounts, as qemu-img check does.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "qcow2.h"

/*
 * The in-memory refcounts take the image's refcount width per cluster of
 * the file; a file of more clusters than qemu's INT_MAX is refused (as
 * qemu), and so is an array past 1 GiB (a sparse hostile file).
 */
#define CK_MAX_CLUSTERS		INT32_MAX
#define CK_MAX_LENGTH		((uint64_t)INT64_MAX & ~((1ull << 30) - 1))
#define CK_MAX_IMRT_BYTES	(1ull << 30)
#define CK_MAX_SN_EXTRA		1024		/* QCOW_MAX_SNAPSHOT_EXTRA_DATA */
#define CK_SN_EXTRA_KNOWN	24		/* vm_state_size, disk_size, icount */
#define CK_MAX_SN_TABLE		(1024ull * QCOW2_MAX_SNAPSHOTS)
#define CK_L1E_RESERVED		0x7f000000000001ffull
#define CK_L2E_RESERVED		0x3f000000000001feull
#define CK_RTE_RESERVED		0x1ffull
#define CK_BME_RESERVED		0xff000000000001feull
#define CK_BM_ENTRY		24		/* fixed part of a bitmap directory entry */
#define QCOW2_AUTOCLEAR_KNOWN	(QCOW2_AUTOCLEAR_BITMAPS | QCOW2_AUTOCLEAR_DATA_RAW)

enum { CK_FRAG_INFO = 1 };

struct ck_snap {
	uint64_t	 l1_off;
	uint32_t	 l1_size;
	uint32_t	 extra;
	uint8_t		 hdr[QCOW2_SNAPSHOT_ENTRY];
	uint8_t		*extra_data;	/* extra bytes, as read (at most 1024) */
	char		*id, *name;
};

struct ck {
	struct img		*img;
	const struct qcow2	*s;
	int			 fix;
	uint64_t		 cs;
	unsigned		 cb;
	uint64_t		 rc_max;
	uint64_t		 file_size;
	uint64_t		 l1_off;
	uint32_t		 l1_size;
	uint64_t		 rt_off;
	uint32_t		 rt_clusters;
	uint64_t		*rt;		/* refcount table, host order */
	uint64_t		*l1;		/* active L1 table as read at start */
	uint64_t		 rt_size;	/* entries */
	uint64_t		 sn_off, sn_size;
	uint32_t		 nb_sn;
	struct ck_snap		*sn;
	uint8_t			*imrt;		/* counted references, refblock layout */
	uint64_t		 nb;		/* clusters the array covers */
	uint8_t			*rb;		/* the last stored refblock read */
	uint64_t		 rb_off;
	uint8_t			*l2;		/* one table (check_l2, oflag check) */
	uint64_t		 l2_at;		/* where check_l2 read it from */
	bool			 l2_zero;	/* and it was all zeroes */
	bool			 rb_dirty;	/* repaired refcounts not yet written */
	uint64_t		 free_idx;	/* where qemu's allocator looks first */
	bool			 signaled;
	bool			 fatal;		/* qemu drops the driver: no more writes */
	uint64_t		 incompat, autoclear;
	struct img_check	*out;		/* for res->note */
};

static void PRINTF(2, 3)
note(struct ck *k, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (k->out->note == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	k->out->note(buf, k->out->note_arg);
}

/* Refcount entries of any width, in on-disk refblock layout. */
static uint64_t
rc_get(unsigned order, const uint8_t *b, uint64_t i)
{
	unsigned bits = 1u << order;
	uint64_t bit;

	switch (bits) {
	case 8:
		return b[i];
	case 16:
		return get_be16(b + 2 * i);
	case 32:
		return get_be32(b + 4 * i);
	case 64:
		return get_be64(b + 8 * i);
	}
	bit = i * bits;
	return (b[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
}

static void
rc_set(unsigned order, uint8_t *b, uint64_t i, uint64_t v)
{
	unsigned bits = 1u << order, mask;
	uint64_t bit;

	switch (bits) {
	case 8:
		b[i] = (uint8_t)v;
		return;
	case 16:
		put_be16(b + 2 * i, (uint16_t)v);
		return;
	case 32:
		put_be32(b + 4 * i, (uint32_t)v);
		return;
	case 64:
		put_be64(b + 8 * i, v);
		return;
	}
	bit = i * bits;
	mask = ((1u << bits) - 1) << (bit % 8);
	b[bit / 8] = (uint8_t)((b[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
}

static uint64_t
imrt_get(const struct ck *k, uint64_t c)
{
	return rc_get(k->s->refcount_order, k->imrt, c);
}

static void
imrt_set(struct ck *k, uint64_t c, uint64_t v)
{
	rc_set(k->s->refcount_order, k->imrt, c, v);
}

/* Bytes of the array for n clusters, whole clusters so refblocks are slices. */
static uint64_t
imrt_bytes(const struct ck *k, uint64_t n)
{
	uint64_t b = DIV_ROUND_UP(n << k->s->refcount_order, 8);

	return ROUND_UP(b, k->cs);
}

static int
imrt_resize(struct ck *k, struct img_check *res, uint64_t n)
{
	uint64_t old = k->imrt ? imrt_bytes(k, k->nb) : 0, new;
	uint8_t *p;

	if (n > ((uint64_t)1 << 55) ||
	    (new = imrt_bytes(k, n)) > CK_MAX_IMRT_BYTES) {
		res->check_errors++;
		note(k, "ERROR refcounts of %llu clusters exceed the %llu MiB "
		    "this check may use", (unsigned long long)n,
		    CK_MAX_IMRT_BYTES >> 20);
		return err_set(EFBIG, "%s: too many clusters", k->img->filename);
	}
	if (new != old || k->imrt == NULL) {
		if ((p = realloc(k->imrt, new ? new : 1)) == NULL) {
			res->check_errors++;
			return err_set(ENOMEM, "%s", k->img->filename);
		}
		if (new > old)
			memset(p + old, 0, new - old);
		k->imrt = p;
	}
	k->nb = n;
	return 0;
}

/* Read metadata; the part past the end of the file reads as zeroes (qemu). */
static int
read_meta(struct ck *k, void *buf, size_t len, uint64_t off)
{
	if (off > CK_MAX_LENGTH || len > CK_MAX_LENGTH - off) {
		errno = EIO;		/* qemu's block layer refuses the request */
		return -1;
	}
	if (off >= k->file_size) {
		memset(buf, 0, len);
		return 0;
	}
	return io_pread_zero(k->img->fd, buf, len, off);
}

static int
write_meta(struct ck *k, const void *buf, size_t len, uint64_t off)
{
	if (io_pwrite(k->img->fd, buf, len, off) < 0)
		return -1;
	if (off + len > k->file_size)
		k->file_size = off + len;
	if (k->rb != NULL && off < k->rb_off + k->cs && off + len > k->rb_off)
		k->rb_off = UINT64_MAX;		/* the cached refblock changed */
	if (off < k->l2_at + k->cs && off + len > k->l2_at)
		k->l2_zero = false;
	return 0;
}

/* qcow2_signal_corruption: tell the first event, mark the image if fatal. */
static void
corruption(struct ck *k, bool fatal, const char *msg)
{
	uint8_t b[8];

	fatal = fatal && k->fix;	/* a read-only image stays usable */
	if (k->signaled && (!fatal || (k->incompat & QCOW2_INCOMPAT_CORRUPT)))
		return;
	if (fatal)
		note(k, "qcow2: Marking image as corrupt: %s; further corruption "
		    "events will be suppressed", msg);
	else
		note(k, "qcow2: Image is corrupt: %s; further non-fatal "
		    "corruption events will be suppressed", msg);
	k->fatal |= fatal;
	if (fatal)
		k->incompat |= QCOW2_INCOMPAT_CORRUPT;
	if (fatal && k->fix && k->s->version >= 3) {
		put_be64(b, k->incompat);
		(void)write_meta(k, b, 8, 72);
	}
	k->signaled = true;
}

/* qemu's overlap-check groups ("cached" mode: all but inactive L2 tables) */
enum {
	OL_HEADER	= 1 << 0,
	OL_ACTIVE_L1	= 1 << 1,
	OL_ACTIVE_L2	= 1 << 2,
	OL_RT		= 1 << 3,
	OL_RB		= 1 << 4,
	OL_SNAPSHOTS	= 1 << 5,
	OL_INACTIVE_L1	= 1 << 6,
	OL_BITMAP_DIR	= 1 << 8,
};

static bool
ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen &&
	    b + blen > b && a + alen > a;
}

/* What metadata [off, off+len) would overwrite (ign: skip groups), or NULL. */
static const char *
overlaps(const struct ck *k, int ign, uint64_t off, uint64_t len)
{
	uint64_t i;

	if (len == 0)
		return NULL;
	if (!(ign & OL_HEADER) && off < k->cs)
		return "qcow2_header";
	len = ROUND_UP((off & (k->cs - 1)) + len, k->cs);
	off &= ~(k->cs - 1);
	if (!(ign & OL_ACTIVE_L1) &&
	    ranges_overlap(off, len, k->l1_off, (uint64_t)k->l1_size * 8))
		return "active L1 table";
	if (!(ign & OL_RT) && ranges_overlap(off, len, k->rt_off, k->rt_size * 8))
		return "refcount table";
	if (!(ign & OL_SNAPSHOTS) && ranges_overlap(off, len, k->sn_off, k->sn_size))
		return "snapshot table";
	for (i = 0; !(ign & OL_INACTIVE_L1) && k->sn && i < k->nb_sn; i++)
		if (ranges_overlap(off, len, k->sn[i].l1_off,
		    (uint64_t)k->sn[i].l1_size * 8))
			return "inactive L1 table";
	for (i = 0; !(ign & OL_ACTIVE_L2) && i < k->l1_size; i++)
		if (ranges_overlap(off, len, k->l1[i] & QCOW2_L1E_OFFSET,
		    (k->l1[i] & QCOW2_L1E_OFFSET) ? k->cs : 0))
			return "active L2 table";
	for (i = 0; !(ign & OL_RB) && i < k->rt_size; i++)
		if (ranges_overlap(off, len, k->rt[i] & QCOW2_RTE_OFFSET,
		    (k->rt[i] & QCOW2_RTE_OFFSET) ? k->cs : 0))
			return "refcount block";
	if (!(ign & OL_BITMAP_DIR) && k->s->nb_bitmaps &&
	    ranges_overlap(off, len, k->s->bm_dir_offset, k->s->bm_dir_size))
		return "bitmap directory";
	return NULL;
}

/* qcow2_pre_write_overlap_check: writing over metadata marks it corrupt. */
static int
overlap_check(struct ck *k, int ign, uint64_t off, uint64_t len)
{
	const char *what = overlaps(k, ign, off, len);
	char msg[128];

	if (what == NULL)
		return 0;
	snprintf(msg, sizeof(msg), "Preventing invalid write on metadata "
	    "(overlaps with %s)", what);
	corruption(k, true, msg);
	errno = EIO;
	return -1;
}

/*
 * Repaired refcounts reach the disk as qemu's refcount cache writes them:
 * when another block is needed, before a rebuild or a new allocation, and
 * at the end, unless a fatal corruption stopped the driver first.
 */
static int
flush_rb(struct ck *k)
{
	if (!k->rb_dirty)
		return 0;
	if (k->fatal)
		return err_set(EIO, "%s", k->img->filename);
	if (overlap_check(k, OL_RB, k->rb_off, k->cs) < 0 ||
	    io_pwrite(k->img->fd, k->rb, k->cs, k->rb_off) < 0)
		return -1;
	if (k->rb_off + k->cs > k->file_size)
		k->file_size = k->rb_off + k->cs;
	k->rb_dirty = false;
	return 0;
}

/* The stored refcount of cluster c (qcow2_get_refcount). */
static int
stored_refcount(struct ck *k, uint64_t c, uint64_t *rc)
{
	uint64_t ti = c >> k->s->rb_bits, off;
	char msg[128];

	*rc = 0;
	if (ti >= k->rt_size || (off = k->rt[ti] & QCOW2_RTE_OFFSET) == 0)
		return 0;
	if (off & (k->cs - 1)) {
		snprintf(msg, sizeof(msg), "Refblock offset %#llx unaligned "
		    "(reftable index: %#llx)", (unsigned long long)off,
		    (unsigned long long)ti);
		corruption(k, true, msg);
		errno = EIO;
		return -1;
	}
	if (k->rb_off != off) {
		if (flush_rb(k) < 0)
			return -1;
		if (read_meta(k, k->rb, k->cs, off) < 0)
			return -1;
		k->rb_off = off;
	}
	*rc = rc_get(k->s->refcount_order, k->rb,
	    c & (((uint64_t)1 << k->s->rb_bits) - 1));
	return 0;
}

/* Set the stored refcount of cluster c, whose refblock exists. */
static int
set_stored_refcount(struct ck *k, uint64_t c, uint64_t v)
{
	uint64_t rc, off;

	if (stored_refcount(k, c, &rc) < 0)
		return -1;
	off = k->rt[c >> k->s->rb_bits] & QCOW2_RTE_OFFSET;
	if (off == 0) {
		errno = EIO;
		return -1;
	}
	rc_set(k->s->refcount_order, k->rb,
	    c & (((uint64_t)1 << k->s->rb_bits) - 1), v);
	k->rb_dirty = true;
	return 0;
}

/* One reference to each cluster of [off, off+size) (inc_refcounts_imrt). */
static int
inc_refs(struct ck *k, struct img_check *res, uint64_t off, uint64_t size)
{
	uint64_t c, last, rc, end;

	if (size == 0)
		return 0;
	if (ck_add(off, size, &end) || end >= k->file_size + k->cs) {
		note(k, "ERROR: counting reference for region exceeding the end "
		    "of the file by one cluster or more: offset 0x%llx size "
		    "0x%llx", (unsigned long long)off, (unsigned long long)size);
		res->corruptions++;
		return 0;
	}
	last = (end - 1) >> k->cb;
	for (c = off >> k->cb; c <= last; c++) {
		if (c >= k->nb && imrt_resize(k, res, c + 1) < 0)
			return -1;
		rc = imrt_get(k, c);
		if (rc == k->rc_max) {
			note(k, "ERROR: overflow cluster offset=0x%llx",
			    (unsigned long long)(c << k->cb));
			note(k, "Use qemu-img amend to increase the refcount entry "
			    "width or qemu-img convert to create a clean copy if "
			    "the image cannot be opened for writing");
			res->corruptions++;
			continue;
		}
		imrt_set(k, c, rc + 1);
	}
	return 0;
}

/* A preallocated cluster at an unaligned offset: qemu makes it zero. */
static int
fix_entry_by_zero(struct ck *k, struct img_check *res, uint64_t l2off,
    uint64_t i, bool active, bool *overlap)
{
	const struct qcow2 *s = k->s;
	size_t esz = s->extl2 ? 16 : 8;
	uint8_t e[16];
	uint64_t bm = s->extl2 ? get_be64(k->l2 + i * esz + 8) : 0;

	/* as qemu: allocated subclusters become zero, the rest stays */
	put_be64(e, s->extl2 ? 0 : QCOW2_OFLAG_ZERO);
	put_be64(e + 8, (bm | bm << 32) & 0xffffffff00000000ull);
	memcpy(k->l2 + i * esz, e, esz);
	*overlap = overlap_check(k, active ? OL_ACTIVE_L2 : 0, l2off + i * esz,
	    esz) < 0;
	if (*overlap) {
		note(k, "ERROR: Overlap check failed");
		res->check_errors++;
		return err_set(EIO, "%s", k->img->filename);
	}
	if (write_meta(k, e, esz, l2off + i * esz) < 0) {
		res->check_errors++;
		note(k, "ERROR: Failed to overwrite L2 table entry: %s",
		    strerror(errno));
		return -1;
	}
	res->corruptions--;
	res->corruptions_fixed++;
	return 0;
}

static int
check_alloc_entry(struct ck *k, struct img_check *res, uint64_t l2off,
    uint64_t i, uint64_t entry, uint64_t bitmap, int flags, uint64_t *next)
{
	const struct qcow2 *s = k->s;
	uint64_t off = entry & QCOW2_L2E_OFFSET;
	bool data, overlap = false;

	if ((bitmap >> 32) & bitmap) {
		res->corruptions++;
		note(k, "ERROR offset=%llx: Allocated cluster has corrupted "
		    "subcluster allocation bitmap", (unsigned long long)off);
	}
	if (off & (k->cs - 1)) {
		res->corruptions++;
		data = s->extl2 ? (bitmap & 0xffffffffu) != 0 :
		    !(entry & QCOW2_OFLAG_ZERO);
		if (data) {
			note(k, "ERROR offset=%llx: Data cluster is not properly "
			    "aligned; L2 entry corrupted.", (unsigned long long)off);
		} else {
			note(k, "%s offset=%llx: Preallocated cluster is not "
			    "properly aligned; L2 entry corrupted.",
			    k->fix & IMG_FIX_ERRORS ? "Repairing" : "ERROR",
			    (unsigned long long)off);
			if ((k->fix & IMG_FIX_ERRORS) &&
			    fix_entry_by_zero(k, res, l2off, i,
			    flags & CK_FRAG_INFO, &overlap) == 0)
				return 0;
			if (overlap)
				return -1;
		}
	}
	if (flags & CK_FRAG_INFO) {
		res->allocated_clusters++;
		if (*next && off != *next)
			res->fragmented_clusters++;
		*next = off + k->cs;
	}
	if (s->has_data)	/* an external data file has no refcounts */
		return 0;
	return inc_refs(k, res, off, k->cs);
}

static int
check_compressed(struct ck *k, struct img_check *res, uint64_t i,
    uint64_t entry, uint64_t bitmap, int flags)
{
	uint64_t off, len;

	if (entry & QCOW2_OFLAG_COPIED) {
		note(k, "ERROR: coffset=0x%llx: copied flag must never be set "
		    "for compressed clusters",
		    (unsigned long long)(entry & k->s->coff_mask));
		entry &= ~QCOW2_OFLAG_COPIED;
		res->corruptions++;
	}
	if (bitmap) {
		note(k, "ERROR compressed cluster %d with non-zero subcluster "
		    "allocation bitmap, entry=0x%llx", (int)i,
		    (unsigned long long)entry);
		res->corruptions++;
		return 0;
	}
	qcow2_entry_range(k->s, entry, &off, &len);
	if (inc_refs(k, res, off, len) < 0)
		return -1;
	if (flags & CK_FRAG_INFO) {
		res->allocated_clusters++;
		res->compressed_clusters++;
		res->fragmented_clusters++;
	}
	return 0;
}

static int
check_l2(struct ck *k, struct img_check *res, uint64_t l2off, int flags)
{
	const struct qcow2 *s = k->s;
	uint64_t i, n = qcow2_l2_entries(s), entry, bitmap, next = 0;
	enum qcow2_type t;

	if (k->l2_at != l2off || !k->l2_zero) {
		if (read_meta(k, k->l2, k->cs, l2off) < 0) {
			note(k, "ERROR: I/O error in check_refcounts_l2");
			res->check_errors++;
			return err_set(errno, "%s", k->img->filename);
		}
		k->l2_at = l2off;
		k->l2_zero = is_zero(k->l2, k->cs);
	}
	/* nothing to count, and a table named a million times stays fast */
	if (k->l2_zero)
		return 0;
	for (i = 0; i < n; i++) {
		entry = qcow2_l2_entry(s, k->l2, i);
		bitmap = qcow2_l2_bitmap(s, k->l2, i);
		if (!(entry & QCOW2_OFLAG_COMPRESSED) && (entry & CK_L2E_RESERVED)) {
			note(k, "ERROR found l2 entry with reserved bits set: %llx",
			    (unsigned long long)entry);
			res->corruptions++;
		}
		if (entry & QCOW2_OFLAG_COMPRESSED) {
			if (check_compressed(k, res, i, entry, bitmap, flags) < 0)
				return -1;
			continue;
		}
		if (!s->extl2 && (entry & QCOW2_OFLAG_ZERO))
			t = entry & QCOW2_L2E_OFFSET ? QCOW2_ZERO_ALLOC : QCOW2_ZERO;
		else
			t = qcow2_entry_host(s, entry) ? QCOW2_NORMAL :
			    QCOW2_UNALLOC;
		if (t == QCOW2_NORMAL || t == QCOW2_ZERO_ALLOC) {
			if (check_alloc_entry(k, res, l2off, i, entry, bitmap,
			    flags, &next) < 0)
				return -1;
		} else if (t == QCOW2_UNALLOC && (bitmap & 0xffffffffu)) {
			res->corruptions++;
			note(k, "ERROR: Unallocated cluster has non-zero subcluster "
			    "allocation map");
		}
	}
	return 0;
}

static int
check_l1(struct ck *k, struct img_check *res, uint64_t l1off, uint32_t l1size,
    int flags)
{
	uint64_t *l1, i, l2off;
	uint8_t *buf;
	int r = 0;

	if (l1size == 0)
		return 0;
	if (inc_refs(k, res, l1off, (uint64_t)l1size * 8) < 0)
		return -1;
	buf = malloc((size_t)l1size * 8);
	l1 = malloc((size_t)l1size * 8);
	if (buf == NULL || l1 == NULL) {
		free(buf);
		free(l1);
		res->check_errors++;
		return err_set(ENOMEM, "%s", k->img->filename);
	}
	if (read_meta(k, buf, (size_t)l1size * 8, l1off) < 0) {
		note(k, "ERROR: I/O error in check_refcounts_l1");
		res->check_errors++;
		r = err_set(errno, "%s", k->img->filename);
		goto out;
	}
	for (i = 0; i < l1size; i++)
		l1[i] = get_be64(buf + 8 * i);
	for (i = 0; i < l1size && r == 0; i++) {
		if (l1[i] == 0)
			continue;
		if (l1[i] & CK_L1E_RESERVED) {
			note(k, "ERROR found L1 entry with reserved bits set: %llx",
			    (unsigned long long)l1[i]);
			res->corruptions++;
		}
		l2off = l1[i] & QCOW2_L1E_OFFSET;
		if (inc_refs(k, res, l2off, k->cs) < 0) {
			r = -1;
			break;
		}
		if (l2off & (k->cs - 1)) {
			note(k, "ERROR l2_offset=%llx: Table is not cluster "
			    "aligned; L1 entry corrupted", (unsigned long long)l2off);
			res->corruptions++;
		}
		r = check_l2(k, res, l2off, flags);
	}
out:
	free(buf);
	free(l1);
	return r;
}

static void
free_snaps(struct ck *k)
{
	uint32_t i;

	for (i = 0; k->sn != NULL && i < k->nb_sn; i++) {
		free(k->sn[i].id);
		free(k->sn[i].name);
		free(k->sn[i].extra_data);
	}
	free(k->sn);
	k->sn = NULL;
}

static char *
read_str(struct ck *k, uint64_t off, uint16_t len)
{
	char *p = xmalloc((size_t)len + 1);

	if (read_meta(k, p, len, off) < 0)
		memset(p, 0, len);
	p[len] = '\0';
	return p;
}

/*
 * One snapshot table entry at *off; 1 when the table must end before it;
 * -2 for a table too big to read (qemu's -EFBIG, its message without
 * strerror).
 */
static int
read_snap(struct ck *k, uint32_t i, uint64_t *off, uint64_t *len,
    int *dropped)
{
	struct ck_snap *sn = &k->sn[i];
	uint8_t h[QCOW2_SNAPSHOT_ENTRY];
	uint16_t idlen, namelen;
	uint64_t start = *off;

	*len = ROUND_UP(*len, 8);
	*off = ROUND_UP(*off, 8);
	if (read_meta(k, h, sizeof(h), *off) < 0)
		return err_set(errno, "Failed to read snapshot table");
	memcpy(sn->hdr, h, sizeof(h));
	sn->l1_off = get_be64(h);
	sn->l1_size = get_be32(h + 8);
	idlen = get_be16(h + 12);
	namelen = get_be16(h + 14);
	sn->extra = get_be32(h + 36);
	if (sn->extra > CK_MAX_SN_EXTRA) {
		if (!(k->fix & IMG_FIX_ERRORS)) {
			err_set(0, "Too much extra metadata in snapshot "
			    "table entry %u\nYou can force-remove this extra "
			    "metadata with qemu-img check -r all", i);
			return -2;
		}
		note(k, "Discarding too much extra metadata in snapshot table "
		    "entry %u (%u > %u)", i, sn->extra, CK_MAX_SN_EXTRA);
		(*dropped)++;
	}
	sn->extra_data = xcalloc(1, MIN(sn->extra, CK_MAX_SN_EXTRA) + 1);
	if (read_meta(k, sn->extra_data, MIN(sn->extra, CK_MAX_SN_EXTRA),
	    *off + sizeof(h)) < 0)
		return err_set(errno, "Failed to read snapshot table");
	*off += sizeof(h) + sn->extra;
	sn->extra = MIN(sn->extra, CK_MAX_SN_EXTRA);
	sn->id = read_str(k, *off, idlen);
	*off += idlen;
	sn->name = read_str(k, *off, namelen);
	*off += namelen;
	*len += QCOW2_SNAPSHOT_ENTRY + sn->extra + idlen + namelen;
	if (*len > CK_MAX_SN_TABLE || *off - k->sn_off > INT32_MAX) {
		if (!(k->fix & IMG_FIX_ERRORS)) {
			err_set(0, "Snapshot table is too big\nYou can "
			    "force-remove all %u overhanging snapshots with "
			    "qemu-img check -r all", k->nb_sn - i);
			return -2;
		}
		note(k, "Discarding %u overhanging snapshots (snapshot table is "
		    "too big)", k->nb_sn - i);
		*off = start;
		return 1;
	}
	return 0;
}

/* -r all: the snapshots from i on do not fit; the header keeps i (qemu). */
static int
drop_overhang(struct ck *k, struct img_check *res, uint32_t i)
{
	uint8_t b[4];

	res->corruptions += k->nb_sn - i;
	free(k->sn[i].id);
	free(k->sn[i].name);
	free(k->sn[i].extra_data);
	put_be32(b, i);
	if (write_meta(k, b, 4, 60) < 0) {
		res->check_errors++;
		note(k, "ERROR failed to update the snapshot count in the image "
		    "header: %s", strerror(errno));
		return err_set(errno, "%s", k->img->filename);
	}
	res->corruptions_fixed += k->nb_sn - i;
	res->corruptions -= k->nb_sn - i;
	k->nb_sn = i;
	return 0;
}

/* qcow2_check_read_snapshot_table: the header's pointer, then the entries. */
static int
read_snapshots(struct ck *k, struct img_check *res)
{
	uint64_t off, len = 0;
	int dropped = 0, r;
	uint32_t i;
	uint8_t b[4];
	bool big;

	if (k->nb_sn > QCOW2_MAX_SNAPSHOTS && (k->fix & IMG_FIX_ERRORS)) {
		note(k, "Discarding %u overhanging snapshots",
		    k->nb_sn - QCOW2_MAX_SNAPSHOTS);
		res->corruptions_fixed += k->nb_sn - QCOW2_MAX_SNAPSHOTS;
		k->nb_sn = QCOW2_MAX_SNAPSHOTS;
		put_be32(b, k->nb_sn);
		if (write_meta(k, b, 4, 60) < 0) {
			res->check_errors++;
			note(k, "ERROR failed to update the snapshot count in "
			    "the image header: %s", strerror(errno));
			return err_set(errno, "%s", k->img->filename);
		}
	}
	big = k->nb_sn > QCOW2_MAX_SNAPSHOTS;
	if (big || k->sn_off & (k->cs - 1) ||
	    INT64_MAX - (uint64_t)k->nb_sn * QCOW2_SNAPSHOT_ENTRY < k->sn_off) {
		res->check_errors++;
		note(k, "%s: ERROR snapshot table %s", prog_name(),
		    big ? "too large" : "offset invalid");
		if (big)
			note(k, "You can force-remove all %u overhanging "
			    "snapshots with qemu-img check -r all",
			    k->nb_sn - QCOW2_MAX_SNAPSHOTS);
		k->nb_sn = 0;
		return err_set(big ? EFBIG : EINVAL, "snapshot table");
	}
	k->sn = xcalloc(k->nb_sn ? k->nb_sn : 1, sizeof(*k->sn));
	off = k->sn_off;
	for (i = 0; i < k->nb_sn; i++) {
		if ((r = read_snap(k, i, &off, &len, &dropped)) < 0) {
			res->check_errors++;
			note(k, "%s: ERROR failed to read the snapshot table: %s",
			    prog_name(), err_msg());
			free_snaps(k);
			k->nb_sn = 0;
			k->sn_off = 0;
			return r == -2 ? err_set(EFBIG, "snapshot table") : -1;
		}
		if (r == 1)
			break;
	}
	k->sn_size = off - k->sn_off;
	res->corruptions += dropped;
	if (i < k->nb_sn && drop_overhang(k, res, i) < 0)
		return -1;
	if (k->s->version >= 3)
		for (i = 0; i < k->nb_sn; i++)
			if (k->sn[i].extra < 16) {
				res->corruptions++;
				note(k, "%s snapshot table entry %u is incomplete",
				    k->fix & IMG_FIX_ERRORS ? "Repairing" : "ERROR",
				    i);
			}
	return 0;
}

static int
check_snapshot_l1s(struct ck *k, struct img_check *res)
{
	struct ck_snap *sn;
	uint32_t i;

	for (i = 0; i < k->nb_sn; i++) {
		sn = &k->sn[i];
		if (sn->l1_off & (k->cs - 1)) {
			note(k, "ERROR snapshot %s (%s) l1_offset=%#llx: L1 table "
			    "is not cluster aligned; snapshot table entry "
			    "corrupted", sn->id, sn->name,
			    (unsigned long long)sn->l1_off);
			res->corruptions++;
			continue;
		}
		if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8) {
			note(k, "ERROR snapshot %s (%s) l1_size=%#x: L1 table is "
			    "too large; snapshot table entry corrupted", sn->id,
			    sn->name, sn->l1_size);
			res->corruptions++;
			continue;
		}
		if (check_l1(k, res, sn->l1_off, sn->l1_size, 0) < 0)
			return -1;
	}
	return inc_refs(k, res, k->sn_off, k->sn_size);
}

/* One bitmap's table: 0, 1 when it cannot be read, -1 on error. */
static int
check_bitmap_table(struct ck *k, struct img_check *res, uint64_t toff,
    uint32_t tsize)
{
	uint8_t *t = xmalloc(tsize ? (size_t)tsize * 8 : 1);
	uint64_t e, j;

	if (read_meta(k, t, (size_t)tsize * 8, toff) < 0) {
		free(t);
		return 1;
	}
	for (j = 0; j < tsize; j++) {
		e = get_be64(t + 8 * j);
		if ((e & CK_BME_RESERVED) || ((e & QCOW2_L2E_OFFSET) &&
		    ((e & 1) || (e & QCOW2_L2E_OFFSET & (k->cs - 1))))) {
			res->corruptions++;
			continue;
		}
		if ((e & QCOW2_L2E_OFFSET) != 0 &&
		    inc_refs(k, res, e & QCOW2_L2E_OFFSET, k->cs) < 0) {
			free(t);
			return -1;
		}
	}
	free(t);
	return 0;
}

/* The bitmap directory, each bitmap's table and the clusters it names. */
static int
check_bitmaps(struct ck *k, struct img_check *res)
{
	const struct qcow2 *s = k->s;
	uint64_t off = 0, toff, esize;
	uint32_t i, tsize, extra;
	uint16_t nlen;
	uint8_t *dir;
	int r;

	if (s->nb_bitmaps == 0)
		return 0;
	if (inc_refs(k, res, s->bm_dir_offset, s->bm_dir_size) < 0)
		return -1;
	dir = xmalloc(s->bm_dir_size ? s->bm_dir_size : 1);
	if (read_meta(k, dir, s->bm_dir_size, s->bm_dir_offset) < 0)
		goto bad;
	for (i = 0; i < s->nb_bitmaps; i++) {
		if (s->bm_dir_size - off < CK_BM_ENTRY)
			goto bad;
		toff = get_be64(dir + off);
		tsize = get_be32(dir + off + 8);
		nlen = get_be16(dir + off + 18);
		extra = get_be32(dir + off + 20);
		esize = ROUND_UP(CK_BM_ENTRY + (uint64_t)extra + nlen, 8);
		if (esize > s->bm_dir_size - off || (toff & (k->cs - 1)) ||
		    (uint64_t)tsize * 8 > QCOW2_MAX_L1_BYTES)
			goto bad;
		off += esize;
		if (inc_refs(k, res, toff, (uint64_t)tsize * 8) < 0) {
			free(dir);
			return -1;
		}
		if ((r = check_bitmap_table(k, res, toff, tsize)) != 0) {
			free(dir);
			if (r > 0)
				goto bad;
			return -1;
		}
	}
	free(dir);
	return 0;
bad:
	res->corruptions++;
	free(dir);
	return err_set(EINVAL, "%s: bitmap directory", k->img->filename);
}

/* A refcount block past the end: qemu grows the file to hold it. */
static int
refblock_outside(struct ck *k, struct img_check *res, uint64_t off,
    bool *rebuild)
{
	int e = EINVAL;

	if (off > INT64_MAX - k->cs ||
	    io_ftruncate(k->img->fd, (off_t)(off + k->cs)) < 0) {
		if (off <= INT64_MAX - k->cs) {
			e = errno;
			note(k, "%s: Could not resize file: %s", prog_name(),
			    strerror(e));
		}
		*rebuild = true;
		note(k, "ERROR could not resize image: %s", strerror(e));
		return 0;
	}
	k->file_size = off + k->cs;
	if (imrt_resize(k, res, DIV_ROUND_UP(k->file_size, k->cs)) < 0)
		return -1;
	res->corruptions--;
	res->corruptions_fixed++;
	return inc_refs(k, res, off, k->cs);
}

static int
check_refblocks(struct ck *k, struct img_check *res, bool *rebuild)
{
	uint64_t i, off, c;

	for (i = 0; i < k->rt_size; i++) {
		off = k->rt[i] & QCOW2_RTE_OFFSET;
		c = off >> k->cb;
		if (k->rt[i] & CK_RTE_RESERVED) {
			note(k, "ERROR refcount table entry %lld has reserved bits "
			    "set", (long long)i);
			res->corruptions++;
			*rebuild = true;
			continue;
		}
		if (off & (k->cs - 1)) {
			note(k, "ERROR refcount block %lld is not cluster aligned; "
			    "refcount table entry corrupted", (long long)i);
			res->corruptions++;
			*rebuild = true;
			continue;
		}
		if (c >= k->nb) {
			res->corruptions++;
			note(k, "%s refcount block %lld is outside image",
			    k->fix & IMG_FIX_ERRORS ? "Repairing" : "ERROR",
			    (long long)i);
			if ((k->fix & IMG_FIX_ERRORS) &&
			    refblock_outside(k, res, off, rebuild) < 0)
				return -1;
			continue;
		}
		if (off == 0)
			continue;
		if (inc_refs(k, res, off, k->cs) < 0)
			return -1;
		if (imrt_get(k, c) != 1) {
			note(k, "ERROR refcount block %lld refcount=%llu",
			    (long long)i, (unsigned long long)imrt_get(k, c));
			res->corruptions++;
			*rebuild = true;
		}
	}
	return 0;
}

/* Every reference the metadata makes, in qemu's order (calculate_refcounts). */
static int
calculate(struct ck *k, struct img_check *res, bool *rebuild)
{
	if (inc_refs(k, res, 0, k->cs) < 0 ||
	    check_l1(k, res, k->l1_off, k->l1_size, CK_FRAG_INFO) < 0 ||
	    check_snapshot_l1s(k, res) < 0 ||
	    inc_refs(k, res, k->rt_off, k->rt_size * 8) < 0 ||
	    (k->s->crypt_hdr_len != 0 && inc_refs(k, res, k->s->crypt_hdr_off,
	    k->s->crypt_hdr_len) < 0) ||
	    check_bitmaps(k, res) < 0)
		return -1;
	return check_refblocks(k, res, rebuild);
}

static int
update_refcount(struct ck *k, uint64_t c, uint64_t want)
{
	if (want == 0 && c < k->free_idx)
		k->free_idx = c;	/* qemu's free_cluster_index */
	return set_stored_refcount(k, c, want);
}

/*
 * Whether cluster c starts a refcount block's span that has neither a
 * stored block nor a counted reference: a sparse hostile file is skipped
 * a block at a time.
 */
static bool
block_empty(const struct ck *k, uint64_t c)
{
	uint64_t per = (uint64_t)1 << k->s->rb_bits, ti = c >> k->s->rb_bits;

	if ((c & (per - 1)) != 0 || c + per > k->nb)
		return false;
	if (ti < k->rt_size && (k->rt[ti] & QCOW2_RTE_OFFSET) != 0)
		return false;
	return is_zero(k->imrt + ti * k->cs, k->cs);
}

static void
compare(struct ck *k, struct img_check *res, int fix, bool *rebuild,
    uint64_t *highest)
{
	uint64_t i, rc1, rc2;
	int64_t *fixed;

	for (i = 0, *highest = 0; i < k->nb; i++) {
		if (block_empty(k, i)) {
			i += ((uint64_t)1 << k->s->rb_bits) - 1;
			continue;
		}
		if (stored_refcount(k, i, &rc1) < 0) {
			note(k, "Can't get refcount for cluster %lld: %s",
			    (long long)i, strerror(errno));
			res->check_errors++;
			continue;
		}
		rc2 = imrt_get(k, i);
		if (rc1 > 0 || rc2 > 0)
			*highest = i;
		if (rc1 == rc2)
			continue;
		fixed = NULL;
		if (rc1 == 0)
			*rebuild = true;
		else if (rc1 > rc2 && (fix & IMG_FIX_LEAKS))
			fixed = &res->leaks_fixed;
		else if (rc1 < rc2 && (fix & IMG_FIX_ERRORS))
			fixed = &res->corruptions_fixed;
		note(k, "%s cluster %lld refcount=%llu reference=%llu",
		    fixed ? "Repairing" : rc1 < rc2 ? "ERROR" : "Leaked",
		    (long long)i, (unsigned long long)rc1,
		    (unsigned long long)rc2);
		if (fixed != NULL && update_refcount(k, i, rc2) == 0) {
			(*fixed)++;
			continue;
		}
		if (rc1 < rc2)
			res->corruptions++;
		else
			res->leaks++;
	}
}

/* First fit of n free clusters in the in-memory refcounts, from *first. */
static int
alloc_imrt(struct ck *k, struct img_check *res, uint64_t n, uint64_t *first,
    uint64_t *off)
{
	uint64_t c = *first, run = 0, i;
	bool gap = true;

	for (; c < k->nb && run < n; c++) {
		if (imrt_get(k, c) == 0) {
			run++;
			if (gap) {
				*first = c;
				gap = false;
			}
		} else {
			run = 0;
		}
	}
	if (run < n && imrt_resize(k, res, c + n - run) < 0)
		return -1;
	c -= run;
	for (i = 0; i < n; i++)
		imrt_set(k, c + i, 1);
	*off = c << k->cb;
	return 0;
}

/* Write the refblocks that [first, end) needs; 1 when the table grew. */
static int
write_refblocks(struct ck *k, struct img_check *res, uint64_t first,
    uint64_t end, uint64_t **tab, uint64_t *ntab)
{
	uint64_t c, idx, start, rboff, free_c = 0, n, per = k->cs / 8;
	unsigned rbb = k->s->rb_bits;
	bool grown = false;

	for (c = first; c < end; c++) {
		if (imrt_get(k, c) == 0)
			continue;
		idx = c >> rbb;
		start = idx << rbb;
		if (idx < *ntab && (*tab)[idx] != 0) {
			rboff = (*tab)[idx];
		} else {
			free_c = MAX(free_c, start);
			if (alloc_imrt(k, res, 1, &free_c, &rboff) < 0)
				return -1;
			if ((rboff >> k->cb) >= end)
				end = (rboff >> k->cb) + 1;
			if (idx >= *ntab) {
				n = ROUND_UP(idx + 1, per);
				*tab = xrealloc(*tab, n * 8);
				memset(*tab + *ntab, 0, (n - *ntab) * 8);
				*ntab = n;
				grown = true;
			}
			(*tab)[idx] = rboff;
		}
		if (overlap_check(k, 0, rboff, k->cs) < 0 ||
		    write_meta(k, k->imrt + idx * k->cs, k->cs, rboff) < 0) {
			note(k, "%s: ERROR writing refblock: %s", prog_name(),
			    strerror(errno));
			return -1;
		}
		c = start + ((uint64_t)1 << rbb) - 1;
	}
	return grown;
}

/* New refcount blocks and table from the counted references (qemu's layout). */
static int
rebuild_structure(struct ck *k, struct img_check *res)
{
	uint64_t *tab = NULL, ntab = 0, off = 0, clusters = 0, first, i;
	uint8_t *buf, hb[12];
	int grown;

	if (flush_rb(k) < 0)
		goto fail;
	k->rb_off = UINT64_MAX;
	if ((grown = write_refblocks(k, res, 0, k->nb, &tab, &ntab)) < 0)
		goto fail;
	while (grown) {
		first = 0;
		clusters = DIV_ROUND_UP(ntab * 8, k->cs);
		if (alloc_imrt(k, res, clusters, &first, &off) < 0)
			goto fail;
		grown = write_refblocks(k, res, off >> k->cb,
		    (off >> k->cb) + clusters, &tab, &ntab);
		if (grown < 0)
			goto fail;
	}
	buf = xmalloc(ntab * 8);
	for (i = 0; i < ntab; i++)
		put_be64(buf + 8 * i, tab[i]);
	if (overlap_check(k, 0, off, ntab * 8) < 0 ||
	    write_meta(k, buf, ntab * 8, off) < 0) {
		free(buf);
		note(k, "%s: ERROR writing reftable: %s", prog_name(),
		    strerror(errno));
		goto fail;
	}
	free(buf);
	put_be64(hb, off);
	put_be32(hb + 8, (uint32_t)clusters);
	if (write_meta(k, hb, 12, 48) < 0 ||
	    (io_fdatasync(k->img->fd) < 0 && errno != EINVAL)) {
		note(k, "%s: ERROR setting reftable: %s", prog_name(),
		    strerror(errno));
		goto fail;
	}
	free(k->rt);
	k->rt = tab;
	k->rt_size = ntab;
	k->rt_off = off;
	k->rt_clusters = (uint32_t)clusters;
	k->rb_off = UINT64_MAX;
	return 0;
fail:
	res->check_errors++;
	free(tab);
	return err_set(errno ? errno : EIO, "%s", k->img->filename);
}

/* After a rebuild: count again, then drop the old structures' refcounts. */
static int
after_rebuild(struct ck *k, struct img_check *res, uint64_t *highest)
{
	struct img_check old = *res, fresh = { 0 };
	bool again = false;
	int fix = k->fix;

	res->corruptions = 0;
	res->leaks = 0;
	memset(k->imrt, 0, imrt_bytes(k, k->nb));
	k->fix = 0;
	if (calculate(k, res, &again) < 0) {
		k->fix = fix;
		return -1;
	}
	k->fix = fix;
	if (fix & IMG_FIX_LEAKS) {
		compare(k, &fresh, IMG_FIX_LEAKS, &again, highest);
		if (again)
			note(k, "ERROR rebuilt refcount structure is still broken");
	}
	if (res->corruptions < old.corruptions)
		res->corruptions_fixed += old.corruptions - res->corruptions;
	if (res->leaks < old.leaks)
		res->leaks_fixed += old.leaks - res->leaks;
	res->leaks += fresh.leaks;
	return 0;
}

/* OFLAG_COPIED must be set exactly where the refcount is 1. */
static int
oflag_l2(struct ck *k, struct img_check *res, uint64_t l2off, bool repair)
{
	const struct qcow2 *s = k->s;
	uint64_t j, e, rc, v;
	int dirty = 0;

	k->l2_zero = false;
	if (read_meta(k, k->l2, k->cs, l2off) < 0) {
		note(k, "ERROR: Could not read L2 table: %s", strerror(errno));
		res->check_errors++;
		return err_set(errno, "%s", k->img->filename);
	}
	for (j = 0; j < qcow2_l2_entries(s); j++) {
		e = qcow2_l2_entry(s, k->l2, j);
		if ((e & QCOW2_OFLAG_COMPRESSED) || !qcow2_entry_host(s, e))
			continue;
		if (s->has_data)
			rc = 1;		/* data file clusters: always 1 */
		else if (stored_refcount(k, (e & QCOW2_L2E_OFFSET) >> k->cb,
		    &rc) < 0)
			continue;
		if ((rc == 1) == ((e & QCOW2_OFLAG_COPIED) != 0))
			continue;
		res->corruptions++;
		note(k, "%s OFLAG_COPIED data cluster: l2_entry=%llx "
		    "refcount=%llu", repair ? "Repairing" : "ERROR",
		    (unsigned long long)e, (unsigned long long)rc);
		if (repair) {
			v = rc == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED;
			qcow2_l2_set(s, k->l2, j, v);
			dirty++;
		}
	}
	if (dirty == 0)
		return 0;
	if (overlap_check(k, OL_ACTIVE_L2, l2off, k->cs) < 0) {
		note(k, "ERROR: Could not write L2 table; metadata overlap check "
		    "failed: %s", strerror(EIO));
		res->check_errors++;
		return err_set(EIO, "%s", k->img->filename);
	}
	if (write_meta(k, k->l2, k->cs, l2off) < 0) {
		note(k, "ERROR: Could not write L2 table: %s", strerror(errno));
		res->check_errors++;
		return err_set(errno, "%s", k->img->filename);
	}
	res->corruptions -= dirty;
	res->corruptions_fixed += dirty;
	return 0;
}

static int
oflag_copied(struct ck *k, struct img_check *res, const uint64_t *l1)
{
	uint64_t i, l2off, rc, e;
	uint8_t b[8];
	bool repair;

	if (k->fix & IMG_FIX_ERRORS)
		repair = true;
	else if (k->fix & IMG_FIX_LEAKS)
		repair = !res->check_errors && !res->corruptions && !res->leaks;
	else
		repair = false;
	for (i = 0; i < k->l1_size; i++) {
		e = l1[i];
		if ((l2off = e & QCOW2_L1E_OFFSET) == 0)
			continue;
		if (stored_refcount(k, l2off >> k->cb, &rc) < 0)
			continue;
		if ((rc == 1) != ((e & QCOW2_OFLAG_COPIED) != 0)) {
			res->corruptions++;
			note(k, "%s OFLAG_COPIED L2 cluster: l1_index=%d "
			    "l1_entry=%llx refcount=%llu",
			    repair ? "Repairing" : "ERROR", (int)i,
			    (unsigned long long)e, (unsigned long long)rc);
			if (repair) {
				put_be64(b, rc == 1 ? e | QCOW2_OFLAG_COPIED :
				    e & ~QCOW2_OFLAG_COPIED);
				if (overlap_check(k, OL_ACTIVE_L1,
				    k->l1_off + 8 * i, 8) < 0 ||
				    write_meta(k, b, 8, k->l1_off + 8 * i) < 0) {
					res->check_errors++;
					return err_set(errno, "%s",
					    k->img->filename);
				}
				res->corruptions--;
				res->corruptions_fixed++;
			}
		}
		if (oflag_l2(k, res, l2off, repair) < 0)
			return -1;
	}
	return 0;
}

/* One snapshot table entry as qemu writes it back (extra data at least 24). */
static size_t
put_snap(const struct ck *k, const struct ck_snap *sn, uint8_t *p)
{
	uint64_t vmstate = get_be32(sn->hdr + 32);
	size_t idlen = strlen(sn->id), namelen = strlen(sn->name), n;
	uint32_t extra = MAX(CK_SN_EXTRA_KNOWN, sn->extra);

	if (sn->extra >= 8)
		vmstate = get_be64(sn->extra_data);
	memcpy(p, sn->hdr, QCOW2_SNAPSHOT_ENTRY);
	put_be16(p + 12, (uint16_t)idlen);
	put_be16(p + 14, (uint16_t)namelen);
	put_be32(p + 32, vmstate <= 0xffffffffu ? (uint32_t)vmstate : 0);
	put_be32(p + 36, extra);
	n = QCOW2_SNAPSHOT_ENTRY;
	put_be64(p + n, vmstate);
	put_be64(p + n + 8, sn->extra >= 16 ? get_be64(sn->extra_data + 8) :
	    k->img->size);
	put_be64(p + n + 16, sn->extra >= 24 ? get_be64(sn->extra_data + 16) :
	    UINT64_MAX);
	if (sn->extra > CK_SN_EXTRA_KNOWN)
		memcpy(p + n + 24, sn->extra_data + 24,
		    sn->extra - CK_SN_EXTRA_KNOWN);
	n += extra;
	memcpy(p + n, sn->id, idlen);
	memcpy(p + n + idlen, sn->name, namelen);
	return n + idlen + namelen;
}

/* Clusters for bytes, first fit by the stored refcounts (qemu's way). */
static int
alloc_stored(struct ck *k, uint64_t bytes, uint64_t *off)
{
	uint64_t n = DIV_ROUND_UP(bytes, k->cs), c, run = 0, rc, i;

	for (c = k->free_idx; run < n; c++) {
		if (stored_refcount(k, c, &rc) < 0)
			return err_set(errno, "%s", k->img->filename);
		run = rc ? 0 : run + 1;
	}
	k->free_idx = c;
	c -= n;
	for (i = 0; i < n; i++)
		if (set_stored_refcount(k, c + i, 1) < 0)
			return err_set(EIO, "%s", k->img->filename);
	*off = c << k->cb;
	return 0;
}

/*
 * qemu's alloc_refcount_block when it frees a cluster that has no refcount
 * block: a new block at the first free cluster, hooked into the table when
 * the table has room (then qemu retries: EAGAIN); a table that would have
 * to grow past its limit leaves the new cluster leaked (EFBIG).  The errno
 * qemu's free fails with.
 */
static int
new_refblock(struct ck *k, uint64_t ti)
{
	uint64_t c, rc;
	uint8_t *b, e[8];

	for (c = k->free_idx; stored_refcount(k, c, &rc) == 0 && rc != 0; c++)
		;
	k->free_idx = c + 1;
	if (ti >= k->rt_size && ti < QCOW2_MAX_RT_BYTES / 8)
		return EAGAIN;		/* qemu grows the table: not done here */
	if ((c >> k->s->rb_bits) != ti && (set_stored_refcount(k, c, 1) < 0 ||
	    flush_rb(k) < 0))
		return EIO;
	if (ti >= k->rt_size)
		return EFBIG;
	b = xcalloc(1, k->cs);
	if ((c >> k->s->rb_bits) == ti)
		rc_set(k->s->refcount_order, b,
		    c & (((uint64_t)1 << k->s->rb_bits) - 1), 1);
	put_be64(e, c << k->cb);
	if (write_meta(k, b, k->cs, c << k->cb) < 0 ||
	    write_meta(k, e, 8, k->rt_off + 8 * ti) < 0) {
		free(b);
		return EIO;
	}
	free(b);
	k->rt[ti] = c << k->cb;
	return EAGAIN;
}

/*
 * qcow2_free_clusters for the old snapshot table: all or nothing, and a
 * failure is only told (qemu goes on).  A cluster without a refcount block
 * would make qemu allocate one; that is told, not done.
 */
static void
free_old_table(struct ck *k)
{
	uint64_t c, first, last, rc, ti;
	int e = 0;

	if (k->sn_size == 0)
		return;
	first = k->sn_off >> k->cb;
	last = (k->sn_off + k->sn_size - 1) >> k->cb;
	for (c = first; c <= last && e == 0; c++) {
		ti = c >> k->s->rb_bits;
		if (ti >= k->rt_size || (k->rt[ti] & QCOW2_RTE_OFFSET) == 0)
			e = new_refblock(k, ti);
		else if (stored_refcount(k, c, &rc) < 0)
			e = errno;
		else if (rc == 0)
			e = EINVAL;
	}
	if (e != 0) {
		note(k, "qcow2_free_clusters failed: %s", strerror(e));
		return;
	}
	for (c = first; c <= last; c++)
		if (stored_refcount(k, c, &rc) == 0)
			(void)set_stored_refcount(k, c, rc - 1);
}

/* qcow2_write_snapshots: the table anew in new clusters, then free the old. */
static int
write_snapshots(struct ck *k)
{
	uint64_t size = 0, off = 0;
	uint8_t *buf, hb[12];
	uint32_t i;
	size_t n = 0;

	for (i = 0; i < k->nb_sn; i++)
		size = ROUND_UP(size, 8) + QCOW2_SNAPSHOT_ENTRY +
		    MAX(CK_SN_EXTRA_KNOWN, k->sn[i].extra) +
		    strlen(k->sn[i].id) + strlen(k->sn[i].name);
	if (size > CK_MAX_SN_TABLE)
		return err_set(EFBIG, "%s", k->img->filename);
	if (alloc_stored(k, size, &off) < 0 || flush_rb(k) < 0)
		return -1;
	if ((io_fdatasync(k->img->fd) < 0 && errno != EINVAL) ||
	    overlap_check(k, 0, off, size) < 0)
		return err_set(errno, "%s", k->img->filename);
	buf = xcalloc(1, size ? size : 1);
	for (i = 0; i < k->nb_sn; i++) {
		n = ROUND_UP(n, 8);
		n += put_snap(k, &k->sn[i], buf + n);
	}
	put_be32(hb, k->nb_sn);
	put_be64(hb + 4, off);
	if (write_meta(k, buf, size, off) < 0 ||
	    (io_fdatasync(k->img->fd) < 0 && errno != EINVAL) ||
	    write_meta(k, hb, 12, 60) < 0 ||
	    (io_fdatasync(k->img->fd) < 0 && errno != EINVAL)) {
		free(buf);
		return err_set(errno, "%s", k->img->filename);
	}
	free(buf);
	free_old_table(k);
	k->sn_off = off;
	k->sn_size = size;
	return 0;
}

/* qcow2_check_refcounts: count, compare, repair or rebuild, OFLAG_COPIED. */
static int
check_refcounts(struct ck *k, struct img_check *res)
{
	struct img_check pre;
	bool rebuild = false;
	uint64_t highest = 0, nb = DIV_ROUND_UP(k->file_size, k->cs);

	if (nb > CK_MAX_CLUSTERS) {
		res->check_errors++;
		return err_set(EFBIG, "%s", k->img->filename);
	}
	res->total_clusters = DIV_ROUND_UP(k->img->size, k->cs);
	if (imrt_resize(k, res, nb) < 0 || calculate(k, res, &rebuild) < 0)
		return -1;
	pre = *res;
	compare(k, res, 0, &rebuild, &highest);
	if (rebuild && (k->fix & IMG_FIX_ERRORS)) {
		note(k, "Rebuilding refcount structure");
		if (rebuild_structure(k, res) < 0 ||
		    after_rebuild(k, res, &highest) < 0)
			return -1;
	} else if (k->fix) {
		if (rebuild) {
			note(k, "ERROR need to rebuild refcount structures");
			res->check_errors++;
			return err_set(EIO, "%s", k->img->filename);
		}
		if (res->leaks || res->corruptions) {
			*res = pre;
			compare(k, res, k->fix, &rebuild, &highest);
		}
	}
	if (oflag_copied(k, res, k->l1) < 0)
		return -1;
	res->image_end_offset = (highest + 1) * k->cs;
	return 0;
}

static int
read_u64s(struct ck *k, uint64_t off, uint64_t n, uint64_t **out)
{
	uint8_t *buf = malloc(n ? n * 8 : 1);
	uint64_t *t = calloc(n ? n : 1, 8), i;

	if (buf == NULL || t == NULL) {
		free(buf);
		free(t);
		return err_set(ENOMEM, "%s", k->img->filename);
	}
	if (read_meta(k, buf, n * 8, off) < 0) {
		free(buf);
		free(t);
		return err_set(errno, "%s", k->img->filename);
	}
	for (i = 0; i < n; i++)
		t[i] = get_be64(buf + 8 * i);
	free(buf);
	*out = t;
	return 0;
}

/* The header as it is on disk now (an earlier repair may have moved tables). */
static int
ck_init(struct ck *k, struct img *img, int fix, struct img_check *out)
{
	const struct qcow2 *s = img->priv;
	uint8_t h[QCOW2_V3_HEADER];

	memset(k, 0, sizeof(*k));
	k->img = img;
	k->s = s;
	k->fix = fix;
	k->out = out;
	k->cs = s->cluster_size;
	k->cb = s->cluster_bits;
	k->rc_max = s->refcount_order == 6 ? UINT64_MAX :
	    (1ull << (1u << s->refcount_order)) - 1;
	k->rb = xmalloc(k->cs);
	k->rb_off = UINT64_MAX;
	k->l2 = xmalloc(k->cs);
	k->l2_at = UINT64_MAX;
	if (fmt_file_size(img, &k->file_size) < 0)
		return -1;
	memset(h, 0, sizeof(h));
	if (io_pread_zero(img->fd, h, sizeof(h), 0) < 0)
		return err_set(errno, "%s", img->filename);
	k->l1_size = get_be32(h + 36);
	k->l1_off = get_be64(h + 40);
	k->rt_off = get_be64(h + 48);
	k->rt_clusters = get_be32(h + 56);
	k->nb_sn = get_be32(h + 60);
	k->sn_off = get_be64(h + 64);
	k->incompat = s->version >= 3 ? get_be64(h + 72) : 0;
	k->autoclear = s->version >= 3 ? get_be64(h + 88) : 0;
	if ((uint64_t)k->rt_clusters * k->cs > QCOW2_MAX_RT_BYTES ||
	    (uint64_t)k->l1_size * 8 > QCOW2_MAX_L1_BYTES)
		return err_set(EFBIG, "%s: table too large", img->filename);
	k->rt_size = (uint64_t)k->rt_clusters << (k->cb - 3);
	if (read_u64s(k, k->rt_off, k->rt_size, &k->rt) < 0 ||
	    read_u64s(k, k->l1_off, k->l1_size, &k->l1) < 0)
		return -1;
	return 0;
}

static void
ck_free(struct ck *k)
{
	free_snaps(k);
	free(k->imrt);
	free(k->rb);
	free(k->l2);
	free(k->rt);
	free(k->l1);
}

static void
add_result(struct img_check *out, const struct img_check *r, bool alloc)
{
	out->corruptions += r->corruptions;
	out->leaks += r->leaks;
	out->check_errors += r->check_errors;
	out->corruptions_fixed += r->corruptions_fixed;
	out->leaks_fixed += r->leaks_fixed;
	if (alloc) {
		out->image_end_offset = r->image_end_offset;
		out->total_clusters = r->total_clusters;
		out->allocated_clusters = r->allocated_clusters;
		out->fragmented_clusters = r->fragmented_clusters;
		out->compressed_clusters = r->compressed_clusters;
	}
}

/*
 * A clean repaired image loses its dirty and corrupt bits; an image opened
 * for repair loses the dirty bit anyway when qemu closes it.
 */
static int
mark_clean(struct ck *k, uint64_t bits)
{
	uint64_t v = k->incompat & ~bits;
	uint8_t b[8];

	if (k->fatal)
		return 0;
	if (flush_rb(k) < 0)
		return -1;
	if (k->s->version < 3 || v == k->incompat)
		return 0;
	if (io_fdatasync(k->img->fd) < 0 && errno != EINVAL)
		return err_set(errno, "%s", k->img->filename);
	put_be64(b, v);
	if (write_meta(k, b, 8, 72) < 0 ||
	    (io_fdatasync(k->img->fd) < 0 && errno != EINVAL))
		return err_set(errno, "%s", k->img->filename);
	k->incompat = v;
	return 0;
}

/*
 * qemu opening an image for repair clears the autoclear bits it does not
 * know by rewriting the header, and in check mode it has not read the
 * snapshot table yet: the header it writes has none (the snapshots' clusters
 * then leak).  Done before the check, as qemu's open does.
 */
static int
drop_autoclear(struct ck *k)
{
	uint8_t b[8];

	if (k->s->version < 3 || !(k->autoclear & ~QCOW2_AUTOCLEAR_KNOWN))
		return 0;
	k->autoclear &= QCOW2_AUTOCLEAR_KNOWN;
	k->nb_sn = 0;
	k->sn_off = 0;
	memset(b, 0, sizeof(b));
	if (write_meta(k, b, 4, 60) < 0 || write_meta(k, b, 8, 64) < 0)
		return err_set(errno, "%s", k->img->filename);
	put_be64(b, k->autoclear);
	if (write_meta(k, b, 8, 88) < 0 ||
	    (io_fdatasync(k->img->fd) < 0 && errno != EINVAL))
		return err_set(errno, "%s", k->img->filename);
	return 0;
}

int
qcow2_check(struct img *img, int fix, struct img_check *out)
{
	struct img_check sres = { 0 }, rres = { 0 };
	struct ck k;
	int r;

	if ((r = ck_init(&k, img, fix, out)) < 0 ||
	    (fix && (r = drop_autoclear(&k)) < 0))
		goto done;
	if ((r = read_snapshots(&k, &sres)) < 0) {
		add_result(out, &sres, false);
		goto done;
	}
	r = check_refcounts(&k, &rres);
	add_result(out, &rres, true);
	if (r < 0) {
		add_result(out, &sres, false);
		goto done;
	}
	if (sres.corruptions && (fix & IMG_FIX_ERRORS)) {
		if ((r = write_snapshots(&k)) < 0) {
			sres.check_errors++;
			note(&k, "ERROR failed to update snapshot table: %s",
			    strerror(err_errno() ? err_errno() : EIO));
		} else {
			sres.corruptions_fixed += sres.corruptions;
			sres.corruptions = 0;
		}
	}
	add_result(out, &sres, false);
	if (r == 0 && fix && out->check_errors == 0 && out->corruptions == 0)
		r = mark_clean(&k, QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT);
	if (r == 0 && fix && io_fdatasync(img->fd) < 0 && errno != EINVAL)
		r = err_set(errno, "%s", img->filename);
done:
	if (fix && !k.fatal && mark_clean(&k, QCOW2_INCOMPAT_DIRTY) < 0 && r == 0)
		r = -1;
	ck_free(&k);
	return r;
}

/*
 * qemu repairs a dirty image (lazy refcounts) when it opens it for writing:
 * check -r all, each problem line through fn (may be NULL).  For the
 * driver's open, once the tables are read and img->fd is writable, before
 * its caches hold anything: the refcount table, L1 table and header bits
 * the repair may have changed are read back into the driver's state.  0, or
 * -1 with err_set ("Could not repair dirty image").
 */
int
qcow2_repair_dirty(struct img *img, void (*fn)(const char *, void *),
    void *arg)
{
	struct qcow2 *s = img->priv;
	struct img_check res = { .note = fn, .note_arg = arg };
	uint64_t *rt = NULL, *l1 = NULL, n;
	uint8_t h[QCOW2_V3_HEADER];
	struct ck k;
	int r;

	r = qcow2_check(img, IMG_FIX_LEAKS | IMG_FIX_ERRORS, &res);
	if (r < 0 || res.check_errors)
		return err_set(r < 0 && err_errno() ? err_errno() : EIO,
		    "Could not repair dirty image");
	memset(&k, 0, sizeof(k));
	k.img = img;
	k.s = s;
	if (fmt_file_size(img, &k.file_size) < 0 ||
	    io_pread_zero(img->fd, h, sizeof(h), 0) < 0)
		return err_set(errno, "Could not repair dirty image");
	n = (uint64_t)get_be32(h + 56) << (s->cluster_bits - 3);
	if (get_be32(h + 56) * s->cluster_size > QCOW2_MAX_RT_BYTES ||
	    read_u64s(&k, get_be64(h + 48), n, &rt) < 0 ||
	    read_u64s(&k, s->l1_offset, s->l1_size, &l1) < 0) {
		free(rt);
		return err_set(EIO, "Could not repair dirty image");
	}
	free(s->rt);
	s->rt = rt;
	s->rt_offset = get_be64(h + 48);
	s->rt_clusters = get_be32(h + 56);
	s->rt_size = n;
	free(s->l1);
	s->l1 = l1;
	s->incompat = get_be64(h + 72);
	s->file_size = k.file_size;
	s->alloc_end = MAX(s->alloc_end, ROUND_UP(k.file_size, s->cluster_size));
	return 0;
}
