/*
 * qcow2 cluster mapping: L1/L2 lookup, block status, reads, allocating
 * writes, zero clusters and discard.
 * docs/interop/qcow2.txt, "Cluster mapping" and "Extended L2 Entries".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "../blkdebug.h"
#include "qcow2.h"

#define QCOW2_INVALID	(-1)
#define ZERO_CHUNK	(1u << 20)

/* A stretch of guest space of one type, as qemu's qcow2_get_host_offset. */
struct run {
	int		 type;		/* enum qcow2_type or QCOW2_INVALID */
	uint64_t	 len;
	uint64_t	 host;		/* host offset of the first byte, if any */
};

static bool
has_host(int type)
{
	return type == QCOW2_NORMAL || type == QCOW2_ZERO_ALLOC ||
	    type == QCOW2_UNALLOC_ALLOC;
}

static bool
has_backing(const struct img *img)
{
	return img->backing_file != NULL && img->backing_file[0] != '\0';
}

enum qcow2_type
qcow2_entry_type(const struct qcow2 *s, uint64_t entry, uint64_t bitmap,
    unsigned sc)
{
	bool host = qcow2_entry_host(s, entry);

	if (entry & QCOW2_OFLAG_COMPRESSED)
		return QCOW2_COMPRESSED;
	if (!s->extl2) {
		if (entry & QCOW2_OFLAG_ZERO)
			return entry & QCOW2_L2E_OFFSET ? QCOW2_ZERO_ALLOC :
			    QCOW2_ZERO;
		return host ? QCOW2_NORMAL : QCOW2_UNALLOC;
	}
	if (bitmap & (1ull << (sc + 32)))
		return host ? QCOW2_ZERO_ALLOC : QCOW2_ZERO;
	if (host)
		return bitmap & (1ull << sc) ? QCOW2_NORMAL : QCOW2_UNALLOC_ALLOC;
	return QCOW2_UNALLOC;
}

/* The entry's type, or QCOW2_INVALID with err_set for what qemu calls corrupt. */
static int
classify(struct img *img, uint64_t l2off, uint64_t idx, uint64_t entry,
    uint64_t bitmap, unsigned sc)
{
	struct qcow2 *s = img->priv;
	int t;

	if (s->extl2 && !(entry & QCOW2_OFLAG_COMPRESSED) &&
	    (((bitmap >> 32) & bitmap) ||
	    (!(entry & QCOW2_L2E_OFFSET) && (bitmap & 0xffffffffu))))
		goto invalid;
	t = (int)qcow2_entry_type(s, entry, bitmap, sc);
	if (s->version < 3 && (t == QCOW2_ZERO || t == QCOW2_ZERO_ALLOC)) {
		qcow2_corrupt(img, "Zero cluster entry found in pre-v3 image "
		    "(L2 offset: %#llx, L2 index: %#llx)",
		    (unsigned long long)l2off, (unsigned long long)idx);
		return QCOW2_INVALID;
	}
	if (has_host(t) && (entry & QCOW2_L2E_OFFSET & (s->cluster_size - 1))) {
		qcow2_corrupt(img, "Cluster allocation offset %#llx unaligned "
		    "(L2 offset: %#llx, L2 index: %#llx)",
		    (unsigned long long)(entry & QCOW2_L2E_OFFSET),
		    (unsigned long long)l2off, (unsigned long long)idx);
		return QCOW2_INVALID;
	}
	return t;
invalid:
	qcow2_corrupt(img, "Invalid cluster entry found (L2 offset: %#llx, "
	    "L2 index: %#llx)", (unsigned long long)l2off,
	    (unsigned long long)idx);
	return QCOW2_INVALID;
}

/* The L2 table for L1 index l1i: *l2off 0 when there is none. */
int
qcow2_l2_lookup(struct img *img, uint64_t l1i, uint64_t *l2off, uint8_t **l2)
{
	struct qcow2 *s = img->priv;

	*l2 = NULL;
	*l2off = l1i < s->l1_size ? s->l1[l1i] & QCOW2_L1E_OFFSET : 0;
	if (*l2off == 0)
		return 0;
	if (*l2off & (s->cluster_size - 1))
		return qcow2_corrupt(img, "L2 table offset %#llx unaligned "
		    "(L1 index: %#llx)",
		    (unsigned long long)*l2off, (unsigned long long)l1i);
	*l2 = qcow2_cache_get(&s->l2_cache, *l2off);
	return *l2 ? 0 : -1;
}

/* End of the same-typed subclusters from pos inside its cluster. */
static uint64_t
piece_end(const struct qcow2 *s, uint64_t pos, uint64_t entry,
    uint64_t bitmap, int type)
{
	uint64_t cstart = pos & ~(s->cluster_size - 1);
	unsigned k;

	if (!s->extl2 || type == QCOW2_COMPRESSED)
		return cstart + s->cluster_size;
	k = (unsigned)((pos >> s->sc_bits) & 31) + 1;
	while (k < 32 && (int)qcow2_entry_type(s, entry, bitmap, k) == type)
		k++;
	return cstart + ((uint64_t)k << s->sc_bits);
}

/* Extend r over the pieces of one L2 table; false when the run ends. */
static int
scan_table(struct img *img, uint64_t l2off, const uint8_t *l2, uint64_t *pos,
    uint64_t start, uint64_t end, struct run *r)
{
	struct qcow2 *s = img->priv;
	uint64_t tend = (*pos | (qcow2_l2_span(s) - 1)) + 1, idx, e, bm, host;
	unsigned sc;
	int t;

	while (*pos < end && *pos < tend) {
		idx = (*pos >> s->cluster_bits) & (qcow2_l2_entries(s) - 1);
		e = qcow2_l2_entry(s, l2, idx);
		bm = qcow2_l2_bitmap(s, l2, idx);
		sc = s->extl2 ? (unsigned)((*pos >> s->sc_bits) & 31) : 0;
		if ((t = classify(img, l2off, idx, e, bm, sc)) == QCOW2_INVALID)
			return -1;
		host = has_host(t) ? (e & QCOW2_L2E_OFFSET) +
		    (*pos & (s->cluster_size - 1)) : 0;
		if (*pos == start) {
			r->type = t;
			r->host = host;
		} else if (t != r->type ||
		    (has_host(t) && host != r->host + (*pos - start))) {
			return 0;
		}
		*pos = piece_end(s, *pos, e, bm, t);
	}
	return 1;
}

/* The longest run of one type from off, at most len bytes. */
static int
get_run(struct img *img, uint64_t off, uint64_t len, struct run *r)
{
	struct qcow2 *s = img->priv;
	uint64_t pos = off, end = off + len, span = qcow2_l2_span(s), l2off;
	uint8_t *l2;
	int more = 1;

	memset(r, 0, sizeof(*r));
	while (more && pos < end) {
		if (qcow2_l2_lookup(img, pos / span, &l2off, &l2) < 0)
			return -1;
		if (l2 == NULL) {
			if (pos != off && r->type != QCOW2_UNALLOC)
				break;
			r->type = QCOW2_UNALLOC;
			pos = (pos | (span - 1)) + 1;
			continue;
		}
		if ((more = scan_table(img, l2off, l2, &pos, off, end, r)) < 0)
			return -1;
	}
	r->len = MIN(pos, end) - off;
	return 0;
}

/*
 * qemu asks the file about metadata-preallocated data clusters
 * (BDRV_BLOCK_RECURSE): holes in the file read as zeroes.
 */
static void
file_zero(struct img *img, struct fmt_status *st)
{
	struct stat sb;
	off_t d, h;
	uint64_t fsize, n;
	bool zero;

	/* on a quorum, zero where every child is (fmt_file_status) */
	if (img->quorum != NULL && qcow2_dfd(img) == img->fd) {
		if (fmt_file_status(img, st->offset, st->len, &n, &zero) == 0) {
			st->len = MIN(st->len, n);
			st->flags |= zero ? ST_ZERO : 0;
		}
		return;
	}
	if (fstat(qcow2_dfd(img), &sb) < 0)
		return;
	fsize = (uint64_t)sb.st_size;
	if (st->offset >= fsize) {
		st->flags |= ST_ZERO;
		return;
	}
	d = lseek(qcow2_dfd(img), (off_t)st->offset, SEEK_DATA);
	if (d < 0) {
		if (errno == ENXIO)
			st->flags |= ST_ZERO;
		return;
	}
	if ((uint64_t)d > st->offset) {
		st->flags |= ST_ZERO;
		st->len = MIN(st->len, (uint64_t)d - st->offset);
		return;
	}
	h = lseek(qcow2_dfd(img), (off_t)st->offset, SEEK_HOLE);
	if (h > d)
		st->len = MIN(st->len, (uint64_t)h - st->offset);
}

/* An image opened for info only, without its external data file. */
static int
data_missing(struct img *img)
{
	struct qcow2 *s = img->priv;

	if (s->data_file == NULL)
		return err_set(0, "'data-file' is required for this image");
	return err_set(ENOENT, "Could not open '%s'", s->data_file);
}

int
qcow2_block_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	struct qcow2 *s = img->priv;
	struct run r;

	if (s->data_missing)
		return data_missing(img);
	/* as qemu's, one answer never crosses an L2 table: compare -p and -s
	 * step by them */
	len = MIN(len, qcow2_l2_span(s) - (off & (qcow2_l2_span(s) - 1)));
	if (get_run(img, off, len, &r) < 0)
		return -1;
	st->len = r.len;
	st->offset = r.host;
	if (s->has_data)
		st->file = s->data_path;
	switch (r.type) {
	case QCOW2_NORMAL:
		/* ciphertext: qemu gives encrypted data no offset */
		st->flags = s->crypt != NULL ? ST_DATA : ST_DATA | ST_OFFSET;
		/* as qemu, a refcount error only means "not preallocated" */
		if (s->prealloc < 0 && qcow2_detect_prealloc(img) < 0)
			s->prealloc = 0;
		if (s->prealloc)
			file_zero(img, st);
		break;
	case QCOW2_ZERO_ALLOC:
		st->flags = ST_ZERO | ST_OFFSET;
		break;
	case QCOW2_UNALLOC_ALLOC:
		st->flags = ST_OFFSET;
		break;
	case QCOW2_ZERO:
		st->flags = ST_ZERO;
		break;
	case QCOW2_COMPRESSED:
		/* qemu answers for one compressed cluster at a time */
		st->len = MIN(st->len, s->cluster_size -
		    (off & (s->cluster_size - 1)));
		st->flags = ST_DATA;
		break;
	default:
		st->flags = 0;
	}
	return 0;
}

/* A read falls through to the backing file (img_read asks it too). */
int
qcow2_backing_read(struct img *img)
{
	blkdbg_event(img->fd, BLKDBG_READ_BACKING_AIO);
	return 0;
}

static int	read_runs(struct img *, uint64_t, size_t, uint8_t *,
		    struct qcow2_zbatch *);

int
qcow2_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	struct qcow2 *s = img->priv;
	struct qcow2_zbatch zb = { 0 };
	uint8_t *p = buf;
	int ret;

	if (s->data_missing)
		return data_missing(img);
	ret = read_runs(img, off, len, p, &zb);
	/* the request's compressed clusters side by side, after the rest */
	if (ret == 0 && qcow2_zbatch_run(img, &zb) < 0)
		ret = -1;
	qcow2_zbatch_free(&zb);
	return ret;
}

static int
read_runs(struct img *img, uint64_t off, size_t len, uint8_t *p,
    struct qcow2_zbatch *zb)
{
	struct qcow2 *s = img->priv;
	struct run r;

	while (len > 0) {
		if (get_run(img, off, len, &r) < 0)
			return -1;
		switch (r.type) {
		case QCOW2_NORMAL:
			blkdbg_event(img->fd, BLKDBG_READ_AIO);
			if (s->crypt != NULL) {
				if (qcow2_crypt_read(img, r.host, off, p, r.len) < 0)
					return -1;
				break;
			}
			if (io_pread_zero(qcow2_dfd(img), p, r.len, r.host) < 0)
				return err_set(errno, "%s: Could not read data "
				    "at %#llx", img->filename,
				    (unsigned long long)r.host);
			break;
		case QCOW2_COMPRESSED:
			blkdbg_event(img->fd, BLKDBG_READ_COMPRESSED);
			if (qcow2_read_compressed(img, off, r.len, p, zb) < 0)
				return -1;
			/* injected errors: each read in its turn */
			if (blkdbg_list != NULL && qcow2_zbatch_run(img, zb) < 0)
				return -1;
			break;
		case QCOW2_ZERO:
		case QCOW2_ZERO_ALLOC:
			memset(p, 0, r.len);
			break;
		default:
			if ((img->backing != NULL && qcow2_backing_read(img) < 0) ||
			    fmt_read_backing(img, off, r.len, p) < 0)
				return -1;
		}
		p += r.len;
		off += r.len;
		len -= r.len;
	}
	return 0;
}

/*
 * qemu's l2_allocate writes the refcounts, the new L2 table and its L1
 * entry at once, each flushed, and on failure frees the table again.  We
 * leave them to the next flush, but under error injection, where when
 * metadata is written shows in which request fails, as qemu does.
 */
static int
l2_write_now(struct img *img, uint64_t l1i, uint64_t e, uint64_t nw,
    bool refcounts)
{
	struct qcow2 *s = img->priv;

	if (img->blkdebug == NULL)
		return 0;
	if (refcounts)
		return qcow2_refcount_flush(img) < 0 || fmt_sync(img) < 0 ?
		    -1 : 0;
	blkdbg_event(img->fd, BLKDBG_L2_ALLOC_WRITE);
	if (qcow2_cache_write(&s->l2_cache) < 0 || fmt_sync(img) < 0)
		return -1;
	blkdbg_event(img->fd, BLKDBG_L1_UPDATE);
	s->l1[l1i] = nw | QCOW2_OFLAG_COPIED;
	s->l1_dirty[l1i] = 1;
	s->any_l1_dirty = true;
	if (qcow2_write_l1(img) == 0 && fmt_sync(img) == 0)
		return 0;
	s->l1[l1i] = e;
	s->l1_dirty[l1i] = 1;
	return -1;
}

/*
 * The L2 table that writes under L1 index l1i go to: allocated when
 * missing, copied when a snapshot shares it (no COPIED flag).
 */
int
qcow2_l2_for_write(struct img *img, uint64_t l1i, uint64_t *l2off)
{
	struct qcow2 *s = img->priv;
	uint64_t e = s->l1[l1i], old = e & QCOW2_L1E_OFFSET, nw;
	uint8_t *t, *copy = NULL;

	if (old & (s->cluster_size - 1))
		return qcow2_corrupt(img, "L2 table offset %#llx unaligned "
		    "(L1 index: %#llx)",
		    (unsigned long long)old, (unsigned long long)l1i);
	if (old != 0 && (e & QCOW2_OFLAG_COPIED)) {
		*l2off = old;
		return 0;
	}
	if (old != 0) {
		if ((t = qcow2_cache_get(&s->l2_cache, old)) == NULL)
			return -1;
		copy = xmalloc(s->cluster_size);
		memcpy(copy, t, s->cluster_size);
	}
	if ((nw = qcow2_alloc_clusters(img, 1)) == 0) {
		free(copy);
		return -1;
	}
	if (l2_write_now(img, l1i, e, nw, true) < 0 ||
	    (t = qcow2_cache_get_empty(&s->l2_cache, nw)) == NULL)
		goto fail;
	if (copy != NULL) {
		blkdbg_event(img->fd, BLKDBG_L2_ALLOC_COW_READ);
		memcpy(t, copy, s->cluster_size);
	}
	if (l2_write_now(img, l1i, e, nw, false) < 0)
		goto fail;
	free(copy);
	if (old != 0)	/* the snapshot's table: it stays */
		qcow2_defer_unshare(img, old, s->cluster_size);
	s->l1[l1i] = nw | QCOW2_OFLAG_COPIED;
	s->l1_dirty[l1i] = 1;
	s->any_l1_dirty = true;
	*l2off = nw;
	return 0;
fail:
	/* qemu's qcow2_free_clusters: the table leaves the cache too */
	free(copy);
	(void)qcow2_refcount_update(img, nw, s->cluster_size, -1);
	return -1;
}

#define ALL_ALLOC	0x00000000ffffffffull	/* extended L2: every subcluster */
#define ALL_ZEROES	0xffffffff00000000ull

/* The subcluster index of a guest offset inside its cluster. */
static unsigned
sc_index(const struct qcow2 *s, uint64_t off)
{
	return (unsigned)((off & (s->cluster_size - 1)) >> s->sc_bits);
}

/* Bits a..b-1 of a 32-bit subcluster mask. */
static uint64_t
sc_mask(unsigned a, unsigned b)
{
	return (((uint64_t)1 << (b - a)) - 1) << a;
}

/* Set an entry (and, with extended L2, its subcluster bitmap). */
void
qcow2_set_entry(const struct qcow2 *s, uint8_t *l2, uint64_t i, uint64_t e,
    uint64_t bm)
{
	qcow2_l2_set(s, l2, i, e);
	if (s->extl2)
		put_be64(l2 + (i << 4) + 8, bm);
}

/* The entry holds a host cluster or compressed data (qemu's is_allocated). */
static bool
holds_data(const struct qcow2 *s, uint64_t e)
{
	return (e & QCOW2_OFLAG_COMPRESSED) || qcow2_entry_host(s, e);
}

/* The size of the file data clusters go to, as far as we grew it. */
static uint64_t *
data_size(struct img *img)
{
	struct qcow2 *s = img->priv;

	return s->has_data ? &s->data_size : &s->file_size;
}

static int
data_pwrite(struct img *img, const void *buf, size_t len, uint64_t off)
{
	if (io_pwrite(qcow2_dfd(img), buf, len, off) < 0)
		return err_set(errno, "%s: Could not write data",
		    img->filename);
	if (off + len > *data_size(img))
		*data_size(img) = off + len;
	return 0;
}

/* qemu's overlap check for data; an external data file holds no metadata */
static int
data_check(struct img *img, uint64_t off, uint64_t len)
{
	struct qcow2 *s = img->priv;

	return s->has_data ? 0 : qcow2_pre_write(img, off, len, 0);
}

static int
write_vec(struct img *img, struct iovec *iov, int cnt, uint64_t off)
{
	size_t len = 0;
	int i;

	for (i = 0; i < cnt; i++)
		len += iov[i].iov_len;
	/* io_pwritev asks io_fault, and mirrors to a quorum's copies */
	if (io_pwritev(qcow2_dfd(img), iov, cnt, off) < 0)
		return err_set(errno, "%s: Could not write data at %#llx",
		    img->filename, (unsigned long long)off);
	if (off + len > *data_size(img))
		*data_size(img) = off + len;
	return 0;
}

/*
 * Encrypted images: the iovec's bytes as one buffer (*tmp, to free),
 * encrypted for host at guest offset goff.
 */
static int
crypt_iov(struct img *img, struct iovec *iov, int *cnt, uint64_t host,
    uint64_t goff, uint8_t **tmp)
{
	struct qcow2 *s = img->priv;
	size_t len = 0;
	int i;

	*tmp = NULL;
	if (s->crypt == NULL)
		return 0;
	for (i = 0; i < *cnt; i++)
		len += iov[i].iov_len;
	*tmp = xmalloc(len);
	for (len = 0, i = 0; i < *cnt; len += iov[i++].iov_len)
		memcpy(*tmp + len, iov[i].iov_base, iov[i].iov_len);
	iov[0] = (struct iovec){ *tmp, len };
	*cnt = 1;
	return qcow2_crypt_encrypt(img, host, goff, *tmp, len);
}

/* The file covers [0, end): skipped zero regions read as holes. */
static int
extend_file(struct img *img, uint64_t end)
{
	if (end <= *data_size(img))
		return 0;
	if (io_extend(qcow2_dfd(img), end) < 0)
		return err_set(errno, "%s: Could not resize file", img->filename);
	*data_size(img) = end;
	return 0;
}

/* The current content of [off, off+n) (COW source), zeroes past the disk. */
static int
cow_read(struct img *img, uint64_t off, uint64_t n, uint8_t *buf)
{
	uint64_t m = off < img->size ? MIN(n, img->size - off) : 0;

	memset(buf + m, 0, n - m);
	return m ? qcow2_read(img, off, m, buf) : 0;
}

/* The chain reads zeroes over [off, off+len) (qemu's is_zero). */
static int
reads_zero(struct img *img, uint64_t off, uint64_t len, bool *zero)
{
	struct map_ext e;

	*zero = true;
	if (off >= img->size)
		return 0;
	len = MIN(len, img->size - off);
	while (len > 0) {
		if (img_status(img, off, len, &e) < 0)
			return -1;
		if (!e.zero) {
			*zero = false;
			return 0;
		}
		off += e.length;
		len -= e.length;
	}
	return 0;
}

/*
 * The COW region [off, off+len) reads as zeroes by one block status answer
 * (qemu's bdrv_co_is_zero_fast in is_zero_cow): a region past the end of
 * the disk does not, as qemu's answer stops at the end.
 */
static int
cow_zero(struct img *img, uint64_t off, uint64_t len, bool *zero)
{
	struct map_ext e;

	*zero = len == 0;
	if (len == 0 || off + len > img->size)
		return 0;
	if (img_status(img, off, len, &e) < 0)
		return -1;
	*zero = e.zero && e.length >= len;
	return 0;
}

/*
 * Zeroes in the file at [off, off+len), as qemu's file driver makes them
 * (handle_aiocb_write_zeroes): a zeroed range, allocated and growing the
 * file; else a hole then an allocation; else bytes.  1 when the request
 * fails with ENOTSUP or EAGAIN (injected): the caller copies instead, as
 * handle_alloc_space falls back.
 */
static int
zero_file(struct img *img, uint64_t off, uint64_t len)
{
	int fd = qcow2_dfd(img);
	uint8_t *z;
	int r;

	if (len == 0)
		return 0;
	blkdbg_event(img->fd, BLKDBG_CLUSTER_ALLOC_SPACE);
	if (io_fault_check(fd, IO_WRITE_ZEROES, off, len) < 0)
		return errno == ENOTSUP || errno == EAGAIN ? 1 :
		    err_set(errno, "%s: Could not write zeroes at %#llx",
		    img->filename, (unsigned long long)off);
	if (io_fallocate(fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0 ||
	    (io_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
	    off, len) == 0 && io_fallocate(fd, 0, off, len) == 0)) {
		if (off + len > *data_size(img))
			*data_size(img) = off + len;
		return 0;
	}
	z = xcalloc(1, len);
	r = data_pwrite(img, z, len, off);
	free(z);
	return r;
}

/*
 * The clusters for the guest clusters from goff: in an external data
 * file at the same offsets, as qemu puts them.
 */
static int
alloc_data(struct img *img, uint64_t goff, uint64_t k, uint64_t *host)
{
	struct qcow2 *s = img->priv;

	*host = s->has_data ? goff : qcow2_alloc_clusters(img, k);
	return s->has_data || *host != 0 ? 0 : -1;
}

/* Every subcluster [off, off+bytes) touches in the k clusters holds data. */
static bool
all_data(const struct qcow2 *s, const uint8_t *l2, uint64_t idx, uint64_t k,
    uint64_t off, uint64_t bytes)
{
	uint64_t cs = s->cluster_size, from = off & (cs - 1), to = from + bytes;
	uint64_t i, e, bm, a, b;
	unsigned sc;

	for (i = 0; i < k; i++) {
		e = qcow2_l2_entry(s, l2, idx + i);
		bm = qcow2_l2_bitmap(s, l2, idx + i);
		a = MAX(from, i * cs);
		b = MIN(to, (i + 1) * cs);
		for (sc = sc_index(s, a); sc <= sc_index(s, b - 1); sc++)
			if (qcow2_entry_type(s, e, bm, sc) != QCOW2_NORMAL)
				return false;
	}
	return true;
}

/*
 * qemu's calculate_l2_meta: the bytes [*from, *to) of the k clusters from
 * idx that a write of [off, off+bytes) puts on disk, its copy-on-write
 * included; relative to the first cluster.  keep: the clusters are ours
 * (COPIED) and written in place.  With subclusters only the touched ones
 * are copied, and of a cluster shared with a snapshot the allocated ones.
 */
static void
write_span(const struct qcow2 *s, const uint8_t *l2, uint64_t idx, uint64_t k,
    uint64_t off, uint64_t bytes, bool keep, uint64_t *from, uint64_t *to)
{
	uint64_t cs = s->cluster_size, scs = (uint64_t)1 << s->sc_bits;
	uint64_t sto = off & (cs - 1), efrom = sto + bytes, e, bm;
	unsigned sc = sc_index(s, off);
	uint32_t alloc;
	enum qcow2_type t;

	e = qcow2_l2_entry(s, l2, idx);
	bm = qcow2_l2_bitmap(s, l2, idx);
	alloc = (uint32_t)bm;
	t = qcow2_entry_type(s, e, bm, sc);
	if (keep)
		*from = t == QCOW2_NORMAL ? sto : (uint64_t)sc << s->sc_bits;
	else if (t == QCOW2_COMPRESSED || (has_host(t) && !s->extl2))
		*from = 0;
	else if (has_host(t))
		*from = (uint64_t)MIN(sc, alloc ? (unsigned)__builtin_ctz(alloc) :
		    32u) << s->sc_bits;
	else
		*from = (uint64_t)sc << s->sc_bits;

	e = qcow2_l2_entry(s, l2, idx + k - 1);
	bm = qcow2_l2_bitmap(s, l2, idx + k - 1);
	alloc = (uint32_t)bm;
	sc = sc_index(s, off + bytes - 1);
	t = qcow2_entry_type(s, e, bm, sc);
	if (keep)
		*to = t == QCOW2_NORMAL ? efrom : ROUND_UP(efrom, scs);
	else if (t == QCOW2_COMPRESSED || (has_host(t) && !s->extl2))
		*to = ROUND_UP(efrom, cs);
	else if (has_host(t))
		*to = ROUND_UP(efrom, cs) - ((uint64_t)MIN(31 - sc, alloc ?
		    (unsigned)__builtin_clz(alloc) : 32u) << s->sc_bits);
	else
		*to = ROUND_UP(efrom, scs);
}

/*
 * Put [from, to) of the guest clusters from cstart at host: the write's
 * bytes with the copy-on-write around them.  When the copied bytes read
 * as zeroes the file range is zeroed instead, as qemu's handle_alloc_space.
 */
static int
write_cow(struct img *img, uint64_t host, uint64_t cstart, uint64_t from,
    uint64_t to, uint64_t off, uint64_t bytes, const uint8_t *p)
{
	uint64_t head = off - cstart - from, tail = cstart + to - (off + bytes);
	uint8_t *hbuf = NULL, *tbuf = NULL, *cbuf = NULL;
	struct qcow2 *s = img->priv;
	struct iovec iov[3];
	bool z1 = true, z2 = true;
	int cnt = 0, r = -1;

	if (data_check(img, host + from, to - from) < 0)
		return -1;
	if ((head || tail) && (cow_zero(img, off - head, head, &z1) < 0 ||
	    cow_zero(img, off + bytes, tail, &z2) < 0))
		return -1;
	/* encrypted zeroes are no zeroes in the file: written as data */
	if ((head || tail) && z1 && z2 && s->crypt == NULL) {
		if ((r = zero_file(img, host + from, to - from)) < 0)
			return -1;
		if (r == 0)
			head = tail = 0;
		r = -1;
	}
	/*
	 * qemu's perform_cow reads the copied bytes, then writes them with
	 * the data (merge_cow): write_aio, then cow_write, one request
	 */
	if (head || tail)
		blkdbg_event(img->fd, BLKDBG_COW_READ);
	if ((head && cow_read(img, off - head, head, hbuf = xmalloc(head)) < 0) ||
	    (tail && cow_read(img, off + bytes, tail, tbuf = xmalloc(tail)) < 0))
		goto out;
	if (head)
		iov[cnt++] = (struct iovec){ hbuf, head };
	iov[cnt++] = (struct iovec){ (void *)p, bytes };
	if (tail)
		iov[cnt++] = (struct iovec){ tbuf, tail };
	blkdbg_event(img->fd, BLKDBG_WRITE_AIO);
	if (head || tail)
		blkdbg_event(img->fd, BLKDBG_COW_WRITE);
	if (crypt_iov(img, iov, &cnt, host + (off - cstart) - head, off - head,
	    &cbuf) < 0 ||
	    write_vec(img, iov, cnt, host + (off - cstart) - head) < 0 ||
	    extend_file(img, host + to) < 0)
		goto out;
	r = 0;
out:
	free(hbuf);
	free(tbuf);
	free(cbuf);
	return r;
}

/* Overwrite data at host (guest offset off), encrypted if the image is. */
static int
write_in_place(struct img *img, uint64_t host, uint64_t off, uint64_t n,
    const uint8_t *p)
{
	struct iovec iov = { (void *)p, n };
	uint8_t *tmp;
	int cnt = 1, r;

	if ((r = crypt_iov(img, &iov, &cnt, host, off, &tmp)) == 0)
		r = data_pwrite(img, iov.iov_base, n, host);
	free(tmp);
	return r;
}

/*
 * Write [off, off+bytes) into the k clusters from idx: in place at host
 * (keep) or into new clusters, then point the entries there and mark the
 * subclusters [from, to) allocated, as qemu's qcow2_alloc_cluster_link_l2.
 * The L2 table reaches the disk after the data (qcow2_flush).
 */
static int
write_clusters(struct img *img, uint64_t l2off, uint64_t idx, uint64_t k,
    bool keep, uint64_t host, uint64_t off, uint64_t bytes, const uint8_t *p)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, cstart = off & ~(cs - 1);
	uint64_t from, to, i, a, b, old, bm;
	uint8_t *l2;

	if ((l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
		return -1;
	if (keep && all_data(s, l2, idx, k, off, bytes)) {
		if (data_check(img, host + (off - cstart), bytes) < 0)
			return -1;
		blkdbg_event(img->fd, BLKDBG_WRITE_AIO);
		return write_in_place(img, host + (off - cstart), off, bytes, p);
	}
	write_span(s, l2, idx, k, off, bytes, keep, &from, &to);
	if ((!keep && alloc_data(img, cstart, k, &host) < 0) ||
	    write_cow(img, host, cstart, from, to, off, bytes, p) < 0 ||
	    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
		return -1;
	for (i = 0; i < k; i++) {
		old = qcow2_l2_entry(s, l2, idx + i);
		bm = qcow2_l2_bitmap(s, l2, idx + i);
		a = MAX(from, i * cs);
		b = MIN(to, (i + 1) * cs);
		bm |= sc_mask(sc_index(s, a), sc_index(s, b - 1) + 1);
		bm &= ~(sc_mask(sc_index(s, a), sc_index(s, b - 1) + 1) << 32);
		qcow2_set_entry(s, l2, idx + i, (host + i * cs) |
		    QCOW2_OFLAG_COPIED, bm);
		if (!keep && qcow2_free_entry(img, old) < 0)
			return -1;
	}
	qcow2_cache_dirty(&s->l2_cache, l2off);
	s->zc_valid = false;
	return 0;
}

/*
 * Write [off, off+n) inside one L2 table; *done: bytes handled.  As
 * qemu's handle_copied and handle_alloc, one call covers clusters that
 * are all ours and contiguous, or all in need of new ones.
 */
static int
write_run(struct img *img, uint64_t l2off, uint64_t off, uint64_t n,
    const uint8_t *p, uint64_t *done)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, idx, e0, e, bm, k, nclusters, host;
	uint8_t *l2;
	bool keep;

	if ((l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
		return -1;
	idx = (off >> s->cluster_bits) & (qcow2_l2_entries(s) - 1);
	nclusters = ((off + n - 1) >> s->cluster_bits) - (off >> s->cluster_bits) + 1;
	e0 = qcow2_l2_entry(s, l2, idx);
	keep = !qcow2_needs_alloc(s, e0);
	host = e0 & QCOW2_L2E_OFFSET;
	for (k = 0; k < nclusters; k++) {
		e = qcow2_l2_entry(s, l2, idx + k);
		bm = qcow2_l2_bitmap(s, l2, idx + k);
		if (k > 0 && (qcow2_needs_alloc(s, e) == keep ||
		    (keep && (e & QCOW2_L2E_OFFSET) != host + k * cs)))
			break;
		if (classify(img, l2off, idx + k, e, bm, 0) == QCOW2_INVALID)
			return -1;
	}
	*done = MIN(off + n, ((off >> s->cluster_bits) + k) << s->cluster_bits) - off;
	return write_clusters(img, l2off, idx, k, keep, host, off, *done, p);
}

/*
 * Clusters freed so far are reused before a write allocates, as qemu's
 * refcount cache frees them at once (writing the L2 tables that dropped
 * them first): when [off, off+len) needs a new L2 table or cluster, the
 * metadata goes to disk and the frees apply.  In-place writes skip that,
 * and so do drops that only unshare a snapshot's clusters (nothing to
 * reuse: qemu writes nothing then either).
 */
static int
reuse_freed(struct img *img, uint64_t off, uint64_t len)
{
	struct qcow2 *s = img->priv;
	uint64_t span = qcow2_l2_span(s), end = off + len, l1i, l2off;
	uint8_t *l2;

	if (!s->frees_reclaim || len == 0)
		return 0;
	for (off &= ~(s->cluster_size - 1); off < end; off += s->cluster_size) {
		l1i = off / span;
		if (l1i >= s->l1_size || !(s->l1[l1i] & QCOW2_OFLAG_COPIED) ||
		    qcow2_l2_lookup(img, l1i, &l2off, &l2) < 0 || l2 == NULL ||
		    qcow2_needs_alloc(s, qcow2_l2_entry(s, l2,
		    (off >> s->cluster_bits) & (qcow2_l2_entries(s) - 1))))
			return qcow2_flush(img);
	}
	return 0;
}

/*
 * Encrypted images take whole sectors (qemu's request_alignment 512): the
 * sectors around [off, off+len) are read, merged and written.
 */
static int
write_sectors(struct img *img, uint64_t off, size_t len, const void *buf)
{
	uint64_t a = ROUND_DOWN(off, 512), n = ROUND_UP(off + len, 512) - a;
	uint8_t *b = xmalloc(n);
	int r;

	if ((r = cow_read(img, a, 512, b)) == 0 && n > 512)
		r = cow_read(img, a + n - 512, 512, b + n - 512);
	memcpy(b + (off - a), buf, len);
	if (r == 0)
		r = qcow2_write(img, a, n, b);
	free(b);
	return r;
}

int
qcow2_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	struct qcow2 *s = img->priv;
	const uint8_t *p = buf;
	uint64_t span = qcow2_l2_span(s), l2off, n, done;

	if (s->crypt != NULL && ((off | len) & 511))
		return write_sectors(img, off, len, buf);
	if (qcow2_prepare_write(img) < 0 || reuse_freed(img, off, len) < 0)
		return -1;
	s->guest_written = true;
	qcow2_bitmaps_dirty(img, off, len);
	while (len > 0) {
		if (qcow2_l2_for_write(img, off / span, &l2off) < 0)
			return -1;
		n = MIN(len, span - (off & (span - 1)));
		for (; n > 0; n -= done, off += done, p += done, len -= done)
			if (write_run(img, l2off, off, n, p, &done) < 0)
				return -1;
	}
	return 0;
}

/*
 * Where [off, off+len) can be written verbatim (img_write_host): clusters
 * only this image references, in place, or whole new clusters for the
 * unallocated ones, allocated and linked here (the caller's bytes then
 * land before the L2 tables reach the disk, as with qcow2_write).
 * Partial, zero-flagged, shared and compressed clusters: 0, with *n up to
 * the next cluster boundary, for qcow2_write.
 */
int
qcow2_write_host(struct img *img, uint64_t off, uint64_t len, int *fd,
    uint64_t *host, uint64_t *n)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, span = qcow2_l2_span(s), l2off, idx;
	uint64_t end = MIN(off + len, (off | (span - 1)) + 1), e0, e, k, i;
	uint8_t *l2;
	bool keep;

	*n = MIN(len, cs - (off & (cs - 1)));
	if (s->extl2 || s->crypt != NULL)	/* encrypted: not verbatim */
		return 0;
	if (qcow2_prepare_write(img) < 0 || reuse_freed(img, off, len) < 0 ||
	    qcow2_l2_for_write(img, off / span, &l2off) < 0 ||
	    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
		return -1;
	idx = (off >> s->cluster_bits) & (qcow2_l2_entries(s) - 1);
	e0 = qcow2_l2_entry(s, l2, idx);
	keep = !qcow2_needs_alloc(s, e0);
	if ((keep && (e0 & QCOW2_OFLAG_ZERO)) || (!keep && (off & (cs - 1))))
		return 0;
	for (k = 0; off + k * cs < end; k++) {
		e = qcow2_l2_entry(s, l2, idx + k);
		if (classify(img, l2off, idx + k, e, 0, 0) == QCOW2_INVALID)
			return -1;
		if (qcow2_needs_alloc(s, e) == keep || (keep &&
		    ((e & QCOW2_OFLAG_ZERO) || (e & QCOW2_L2E_OFFSET) !=
		    (e0 & QCOW2_L2E_OFFSET) + k * cs)) ||
		    (!keep && off + (k + 1) * cs > end))
			break;
	}
	if (k == 0)
		return 0;
	*n = MIN(end, ((off >> s->cluster_bits) + k) << s->cluster_bits) - off;
	if (keep) {
		*host = (e0 & QCOW2_L2E_OFFSET) + (off & (cs - 1));
	} else if (alloc_data(img, off, k, host) < 0 ||
	    data_check(img, *host, k * cs) < 0 ||
	    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL) {
		return -1;
	} else {
		for (i = 0; i < k; i++) {
			e = qcow2_l2_entry(s, l2, idx + i);
			qcow2_set_entry(s, l2, idx + i,
			    (*host + i * cs) | QCOW2_OFLAG_COPIED, ALL_ALLOC);
			if (qcow2_free_entry(img, e) < 0)
				return -1;
		}
		qcow2_cache_dirty(&s->l2_cache, l2off);
		s->zc_valid = false;
	}
	if ((keep && data_check(img, *host, *n) < 0) ||
	    extend_file(img, *host + *n) < 0)
		return -1;
	qcow2_bitmaps_dirty(img, off, *n);
	*fd = qcow2_dfd(img);
	return 1;
}

/* One entry of update_clusters. */
static int
update_one(struct img *img, uint8_t *l2, uint64_t i, int mode, int flags)
{
	struct qcow2 *s = img->priv;
	uint64_t old = qcow2_l2_entry(s, l2, i), nw = old;
	uint64_t obm = qcow2_l2_bitmap(s, l2, i), nbm = obm;
	bool unmap;

	if (mode == 'z') {
		unmap = (old & QCOW2_OFLAG_COMPRESSED) ||
		    ((flags & IMG_ZERO_UNMAP) && holds_data(s, old));
		nw = unmap ? 0 : old;
		if (s->extl2)
			nbm = ALL_ZEROES;
		else
			nw |= QCOW2_OFLAG_ZERO;
	} else {
		unmap = holds_data(s, old);
		if (has_backing(img) || unmap) {
			nw = !s->extl2 && s->version >= 3 ? QCOW2_OFLAG_ZERO : 0;
			nbm = ALL_ZEROES;
		}
	}
	if (nw == old && (!s->extl2 || nbm == obm))
		return 0;
	qcow2_set_entry(s, l2, i, nw, nbm);
	return unmap ? qcow2_free_entry(img, old) : 0;
}

/*
 * Set new entries for whole clusters [off, off+len): mode 'z' makes zero
 * clusters (qemu's zero_in_l2_slice), 'd' discards (discard_in_l2_slice).
 */
static int
update_clusters(struct img *img, uint64_t off, uint64_t len, int mode,
    int flags)
{
	struct qcow2 *s = img->priv;
	uint64_t span = qcow2_l2_span(s), l2off, idx, n, i;
	uint8_t *l2;

	while (len > 0) {
		n = MIN(len, span - (off & (span - 1)));
		if (qcow2_l2_for_write(img, off / span, &l2off) < 0 ||
		    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
			return -1;
		idx = (off >> s->cluster_bits) & (qcow2_l2_entries(s) - 1);
		for (i = 0; i < DIV_ROUND_UP(n, s->cluster_size); i++)
			if (update_one(img, l2, idx + i, mode, flags) < 0)
				return -1;
		qcow2_cache_dirty(&s->l2_cache, l2off);
		off += n;
		len -= n;
	}
	s->zc_valid = false;
	return 0;
}

static int
write_zero_bytes(struct img *img, uint64_t off, uint64_t len)
{
	uint8_t *z = xcalloc(1, MIN(len, ZERO_CHUNK));
	uint64_t n;
	int r = 0;

	for (; len > 0 && r == 0; off += n, len -= n) {
		n = MIN(len, ZERO_CHUNK);
		r = qcow2_write(img, off, n, z);
	}
	free(z);
	return r;
}

/*
 * Subclusters [sc, sc+n) of the cluster at off read as zeroes (qemu's
 * zero_l2_subclusters); 1: a compressed cluster, which cannot be split.
 */
static int
zero_subclusters(struct img *img, uint64_t off, unsigned n)
{
	struct qcow2 *s = img->priv;
	uint64_t span = qcow2_l2_span(s), l2off, idx, e, bm, nbm;
	unsigned sc = sc_index(s, off);
	uint8_t *l2;

	if (qcow2_l2_for_write(img, off / span, &l2off) < 0 ||
	    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
		return -1;
	idx = (off >> s->cluster_bits) & (qcow2_l2_entries(s) - 1);
	e = qcow2_l2_entry(s, l2, idx);
	if (e & QCOW2_OFLAG_COMPRESSED)
		return 1;
	bm = qcow2_l2_bitmap(s, l2, idx);
	nbm = (bm | sc_mask(sc, sc + n) << 32) & ~sc_mask(sc, sc + n);
	if (nbm != bm) {
		qcow2_set_entry(s, l2, idx, e, nbm);
		qcow2_cache_dirty(&s->l2_cache, l2off);
		s->zc_valid = false;
	}
	return 0;
}

/*
 * qemu's qcow2_subcluster_zeroize of subcluster-aligned [off, off+len):
 * subclusters of partly covered clusters, whole clusters for the rest
 * (and the disk's last one).  Version 2 has no zero flag: discard, when
 * no backing file shows through.  1: not supported, write zero bytes.
 */
static int
zeroize(struct img *img, uint64_t off, uint64_t len, int flags)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, scs = (uint64_t)1 << s->sc_bits;
	uint64_t end = off + len, head, tail;
	int r;

	if (s->version < 3)
		return has_backing(img) ? 1 : update_clusters(img, off, len,
		    'd', 0);
	head = MIN(end, ROUND_UP(off, cs)) - off;
	off += head;
	tail = end >= img->size ? 0 : end - MAX(off, ROUND_DOWN(end, cs));
	end -= tail;
	if (head && (r = zero_subclusters(img, off - head,
	    (unsigned)DIV_ROUND_UP(head, scs))) != 0)
		return r;
	if (off < end && update_clusters(img, off, end - off, 'z', flags) < 0)
		return -1;
	return tail ? zero_subclusters(img, end,
	    (unsigned)DIV_ROUND_UP(tail, scs)) : 0;
}

/*
 * qemu's qcow2_co_pwrite_zeroes for one piece from the block layer: a
 * piece that covers a subcluster partly zeroes it whole when the rest
 * reads as zeroes already and it holds no data.  1: not supported.
 */
static int
zero_piece(struct img *img, uint64_t off, uint64_t len, int flags)
{
	struct qcow2 *s = img->priv;
	uint64_t scs = (uint64_t)1 << s->sc_bits;
	uint64_t head = off & (scs - 1);
	uint64_t tail = ROUND_UP(off + len, scs) - (off + len);
	struct run r;
	bool z1, z2;

	if (off + len == img->size)
		tail = 0;
	if (head || tail) {
		if (reads_zero(img, off - head, head, &z1) < 0 ||
		    reads_zero(img, off + len, tail, &z2) < 0)
			return -1;
		if (!z1 || !z2)
			return 1;
		off -= head;
		len = scs;
		if (get_run(img, off, MIN(scs, img->size - off), &r) < 0)
			return -1;
		if (r.type != QCOW2_UNALLOC && r.type != QCOW2_UNALLOC_ALLOC &&
		    r.type != QCOW2_ZERO && r.type != QCOW2_ZERO_ALLOC)
			return 1;
	}
	return zeroize(img, off, len, flags);
}

/* qemu's bounce buffer for a write_zeroes it cannot do (MAX_BOUNCE_BUFFER) */
#define ZERO_FALLBACK	(16u << 20)

/*
 * As qemu's block layer (bdrv_co_do_pwrite_zeroes), the request is cut at
 * subcluster boundaries: an unaligned head, the aligned bulk, the tail;
 * a piece the driver cannot zero is written as zero bytes.
 */
int
qcow2_write_zeroes(struct img *img, uint64_t off, uint64_t len, int flags)
{
	struct qcow2 *s = img->priv;
	uint64_t scs = (uint64_t)1 << s->sc_bits, head, tail, num;
	int r;

	if (qcow2_prepare_write(img) < 0)
		return -1;
	s->guest_written = true;
	qcow2_bitmaps_dirty(img, off, len);
	/* a raw data file stays valid: its bytes become zeroes */
	if (s->has_data && (s->autoclear & QCOW2_AUTOCLEAR_DATA_RAW))
		return write_zero_bytes(img, off, len);
	head = off & (scs - 1);
	tail = (off + len) & (scs - 1);
	for (; len > 0; off += num, len -= num) {
		num = len;
		if (head) {
			num = MIN(len, scs - head);
			head = (head + num) & (scs - 1);
		} else if (tail && num > scs) {
			num -= tail;
		}
		if ((r = zero_piece(img, off, num, flags)) < 0)
			return -1;
		if (r == 0)
			continue;
		num = MIN(num, ZERO_FALLBACK);
		if (write_zero_bytes(img, off, num) < 0)
			return -1;
	}
	return 0;
}

int
qcow2_discard(struct img *img, uint64_t off, uint64_t len)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, a, b, end = off + len;

	if (s->version < 3 && has_backing(img))
		return 0;	/* stale backing data would show through */
	if (s->has_data && (s->autoclear & QCOW2_AUTOCLEAR_DATA_RAW))
		return 0;	/* the raw data file keeps its data */
	if (qcow2_prepare_write(img) < 0)
		return -1;
	s->guest_written = true;
	qcow2_bitmaps_dirty(img, off, len);
	/* partial clusters are ignored, but for the disk's last one */
	a = ROUND_UP(off, cs);
	b = end == img->size ? end : ROUND_DOWN(end, cs);
	return a < b ? update_clusters(img, a, b - a, 'd', 0) : 0;
}
