/*
 * qcow2: probe, open (header, extensions, tables), info, flush, the ops
 * table.  docs/interop/qcow2.txt, "Header" and "Header extensions".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "../blkdebug.h"
#include "qcow2.h"

#define L2_CACHE_BYTES	(32u << 20)	/* qemu's DEFAULT_L2_CACHE_MAX_SIZE */
#define RB_CACHE_BYTES	(4u << 20)
#define FEATURE_ENTRY	48		/* feature name table entry */
#define FEATURE_NAME	46

/* The header fields as read; v2 images get v3's defaults. */
struct qcow2_hdr {
	uint32_t	 magic, version;
	uint64_t	 backing_offset;
	uint32_t	 backing_size, cluster_bits;
	uint64_t	 size;
	uint32_t	 crypt_method, l1_size;
	uint64_t	 l1_offset, rt_offset;
	uint32_t	 rt_clusters, nb_snapshots;
	uint64_t	 snapshots_offset;
	uint64_t	 incompat, compat, autoclear;
	uint32_t	 refcount_order, header_length;
	uint8_t		 compression;
};

static int
qcow2_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	if (len >= 8 && get_be32(buf) == QCOW2_MAGIC && get_be32(buf + 4) >= 2)
		return 100;
	return 0;
}

int
qcow2_fsync(struct img *img)
{
	/* qemu's bdrv_pwrite_sync: the file's flush, unless cache=unsafe */
	if (!(img->flags & IMG_NO_FLUSH) &&
	    io_fault_check(img->fd, IO_FLUSH, 0, 0) < 0)
		return err_set(errno, "%s: fsync", img->filename);
	if (io_fdatasync(img->fd) < 0 && errno != EINVAL)
		return err_set(errno, "%s: fsync", img->filename);
	return 0;
}

/*
 * Metadata past the end of the file reads as zeroes, as qemu's file
 * driver pads a short read, for reading.  An image open for writing
 * must have it: qemu would go on and allocate clusters over its own
 * metadata (which its overlap checks then catch); we refuse instead.
 * Messages name the file once opened.
 */
int
qcow2_pread_meta(struct img *img, void *buf, size_t len, uint64_t off,
    const char *what)
{
	struct qcow2 *s = img->priv;
	const char *name = s->opened ? img->filename : "";
	const char *sep = s->opened ? ": " : "";
	ssize_t n = -2;

	if (off <= INT64_MAX && len <= INT64_MAX - off &&
	    (n = io_pread(img->fd, buf, len, off)) < 0)
		return err_set(errno, "%s%sCould not read %s", name, sep, what);
	if (n >= 0 && (size_t)n < len && !(img->flags & IMG_RDWR)) {
		memset((uint8_t *)buf + n, 0, len - (size_t)n);
		return 0;
	}
	if (n < 0 || (size_t)n < len)
		return err_set(0, "%s%s%s at %#llx is past the end of the file",
		    name, sep, what, (unsigned long long)off);
	return 0;
}

int
qcow2_pwrite(struct img *img, const void *buf, size_t len, uint64_t off,
    const char *what)
{
	struct qcow2 *s = img->priv;

	if (io_pwrite(img->fd, buf, len, off) < 0)
		return err_set(errno, "%s: Could not write %s", img->filename,
		    what);
	if (off + len > s->file_size)
		s->file_size = off + len;
	return 0;
}

static void
decode_header(const uint8_t *b, struct qcow2_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = get_be32(b);
	h->version = get_be32(b + 4);
	h->backing_offset = get_be64(b + 8);
	h->backing_size = get_be32(b + 16);
	h->cluster_bits = get_be32(b + 20);
	h->size = get_be64(b + 24);
	h->crypt_method = get_be32(b + 32);
	h->l1_size = get_be32(b + 36);
	h->l1_offset = get_be64(b + 40);
	h->rt_offset = get_be64(b + 48);
	h->rt_clusters = get_be32(b + 56);
	h->nb_snapshots = get_be32(b + 60);
	h->snapshots_offset = get_be64(b + 64);
	if (h->version == 2) {
		h->refcount_order = 4;
		h->header_length = QCOW2_V2_HEADER;
		return;
	}
	h->incompat = get_be64(b + 72);
	h->compat = get_be64(b + 80);
	h->autoclear = get_be64(b + 88);
	h->refcount_order = get_be32(b + 96);
	h->header_length = get_be32(b + 100);
	if (h->header_length > 104)
		h->compression = b[104];
}

/* "Unsupported qcow2 feature(s): ..." naming bits from the image's own table. */
static int
unsupported(struct img *img, const uint8_t *table, size_t tlen, uint64_t mask)
{
	char list[2048] = "";
	uint8_t e[FEATURE_ENTRY];
	size_t i, n;

	/* a short last entry reads as zero-padded, as qemu reads it */
	for (i = 0; i < tlen; i += FEATURE_ENTRY) {
		memset(e, 0, sizeof(e));
		memcpy(e, table + i, MIN(tlen - i, sizeof(e)));
		if (e[2] == '\0')
			break;
		if (e[0] != 0 || e[1] > 63 || !(mask & (1ull << e[1])))
			continue;
		n = strlen(list);
		snprintf(list + n, sizeof(list) - n, "%s%.*s", n ? ", " : "",
		    (int)strnlen((const char *)e + 2, FEATURE_NAME), e + 2);
		mask &= ~(1ull << e[1]);
	}
	if (mask) {
		n = strlen(list);
		snprintf(list + n, sizeof(list) - n,
		    "%sUnknown incompatible feature: %llx", n ? ", " : "",
		    (unsigned long long)mask);
	}
	(void)img;
	return err_set(0, "Unsupported qcow2 feature(s): %s", list);
}

static int
ext_bitmaps(struct img *img, const uint8_t *d, uint32_t len)
{
	struct qcow2 *s = img->priv;
	uint32_t nb;
	uint64_t size, off;

	if (len != 24)
		return err_set(0, "bitmaps_ext: Invalid extension length");
	/* without the autoclear bit the bitmaps are stale: ignore them, as qemu */
	if (!(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS))
		return 0;
	nb = get_be32(d);
	size = get_be64(d + 8);
	off = get_be64(d + 16);
	if (get_be32(d + 4) != 0)
		return err_set(0, "bitmaps_ext: Reserved field is not zero");
	if (nb > QCOW2_MAX_BITMAPS)
		return err_set(0, "bitmaps_ext: Image has %u bitmaps, exceeding "
		    "the QEMU supported maximum of %d", nb, QCOW2_MAX_BITMAPS);
	if (nb == 0)
		return err_set(0, "found bitmaps extension with zero bitmaps");
	if (off & (s->cluster_size - 1))
		return err_set(0, "bitmaps_ext: invalid bitmap directory offset");
	if (size > QCOW2_MAX_BITMAP_DIR)
		return err_set(0, "bitmaps_ext: bitmap directory size (%llu) "
		    "exceeds the maximum supported size (%u)",
		    (unsigned long long)size, QCOW2_MAX_BITMAP_DIR);
	s->nb_bitmaps = nb;
	s->bm_dir_size = size;
	s->bm_dir_offset = off;
	return 0;
}

static int
ext_one(struct img *img, uint32_t magic, const uint8_t *d, uint32_t len)
{
	struct qcow2 *s = img->priv;

	switch (magic) {
	case QCOW2_EXT_BACKING_FMT:
		if (len > QCOW2_MAX_FMT_NAME)
			return err_set(0, "ERROR: ext_backing_format: len=%u too "
			    "large (>=%d)", len, QCOW2_MAX_FMT_NAME + 1);
		free(img->backing_fmt);
		img->backing_fmt = xasprintf("%.*s", (int)len, (const char *)d);
		return 0;
	case QCOW2_EXT_CRYPTO:
		if (s->crypt_method != 2)
			return err_set(0, "CRYPTO header extension only expected "
			    "with LUKS encryption method");
		if (len != 16)
			return err_set(0, "CRYPTO header extension size %u, but "
			    "expected size 16", len);
		if (get_be64(d) & (s->cluster_size - 1))
			return err_set(0, "Encryption header offset '%llu' is not "
			    "a multiple of cluster size '%llu'",
			    (unsigned long long)get_be64(d),
			    (unsigned long long)s->cluster_size);
		s->crypt_hdr_off = get_be64(d);
		s->crypt_hdr_len = get_be64(d + 8);
		return 0;
	case QCOW2_EXT_BITMAPS:
		return ext_bitmaps(img, d, len);
	case QCOW2_EXT_DATA_FILE:
		free(s->data_file);
		s->data_file = xasprintf("%.*s", (int)len, (const char *)d);
		return 0;
	}
	return 0;	/* the feature table and unknown ones: nothing to do */
}

/*
 * Walk the header extensions in hdr[start, end) (the header cluster, or up
 * to the backing file name).  With ftab set, only find the feature name
 * table and ignore errors (for the unsupported-feature message).
 */
static int
read_extensions(struct img *img, const uint8_t *hdr, uint64_t start,
    uint64_t end, const uint8_t **ftab, size_t *flen)
{
	uint64_t off = start;
	uint32_t magic, len;

	while (off < end) {
		if (end - off < 8)
			return ftab ? 0 : err_set(0, "Header extension too large");
		magic = get_be32(hdr + off);
		len = get_be32(hdr + off + 4);
		off += 8;
		if (len > end - off)
			return ftab ? 0 : err_set(0, "Header extension too large");
		if (magic == QCOW2_EXT_END)
			return 0;
		if (ftab != NULL) {
			if (magic == QCOW2_EXT_FEATURES) {
				*ftab = hdr + off;
				*flen = len;
			}
		} else if (ext_one(img, magic, hdr + off, len) < 0) {
			return -1;
		}
		off += ROUND_UP((uint64_t)len, 8);
	}
	return 0;
}

static int
check_compression(struct qcow2 *s, const struct qcow2_hdr *h)
{
	s->compression = h->compression;
	if (h->compression > QCOW2_COMPRESS_ZSTD)
		return err_set(0, "qcow2: unknown compression type: %u",
		    h->compression);
	if (h->compression == QCOW2_COMPRESS_ZLIB &&
	    (h->incompat & QCOW2_INCOMPAT_COMPRESSION))
		return err_set(0, "qcow2: Compression type incompatible feature "
		    "bit must not be set");
	if (h->compression != QCOW2_COMPRESS_ZLIB &&
	    !(h->incompat & QCOW2_INCOMPAT_COMPRESSION))
		return err_set(0, "qcow2: Compression type incompatible feature "
		    "bit must be set");
	return 0;
}

/* qemu's validate_table: a size limit, then an aligned offset in int64 range */
static int
check_table(struct qcow2 *s, uint64_t off, uint64_t n, uint64_t entsize,
    uint64_t max_bytes, const char *what)
{
	if (n > max_bytes / entsize)
		return err_set(0, "%s too large", what);
	if (INT64_MAX - n * entsize < off || (off & (s->cluster_size - 1)))
		return err_set(0, "%s offset invalid", what);
	return 0;
}

/* The header checks, in qemu's order and words. */
static int
check_header(struct img *img, const struct qcow2_hdr *h, const uint8_t *hdr)
{
	struct qcow2 *s = img->priv;
	const uint8_t *ftab = NULL;
	size_t flen = 0;
	uint64_t ext_end;

	if (h->magic != QCOW2_MAGIC)
		return err_set(0, "Image is not in qcow2 format");
	if (h->version < 2 || h->version > 3)
		return err_set(0, "Unsupported qcow2 version %u", h->version);
	if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
	    h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return err_set(0, "Unsupported cluster size: 2^%u",
		    h->cluster_bits);
	s->cluster_bits = h->cluster_bits;
	s->cluster_size = (uint64_t)1 << h->cluster_bits;
	if (h->version == 3 && h->header_length < QCOW2_V3_HEADER)
		return err_set(0, "qcow2 header too short");
	if (h->header_length > s->cluster_size)
		return err_set(0, "qcow2 header exceeds cluster size");
	if (h->backing_offset > s->cluster_size)
		return err_set(0, "Invalid backing file offset");
	if (check_compression(s, h) < 0)
		return -1;
	if (h->incompat & ~QCOW2_INCOMPAT_KNOWN) {
		ext_end = h->backing_offset ? h->backing_offset : s->cluster_size;
		read_extensions(img, hdr, h->header_length, ext_end, &ftab, &flen);
		return unsupported(img, ftab, flen, h->incompat & ~QCOW2_INCOMPAT_KNOWN);
	}
	if ((h->incompat & QCOW2_INCOMPAT_CORRUPT) && (img->flags & IMG_RDWR))
		return err_set(0, "qcow2: Image is corrupt; cannot be opened "
		    "read/write");
	if ((h->incompat & QCOW2_INCOMPAT_EXTL2) && h->cluster_bits < 14)
		return err_set(0, "Unsupported subcluster size: %llu",
		    (unsigned long long)(s->cluster_size / 32));
	if (h->refcount_order > 6)
		return err_set(0, "Reference count entry width too large; may "
		    "not exceed 64 bits");
	if (h->crypt_method > 2)
		return err_set(0, "Unsupported encryption method %u",
		    h->crypt_method);
	return 0;
}

static void
set_geometry(struct qcow2 *s, const struct qcow2_hdr *h)
{
	s->version = (int)h->version;
	s->incompat = h->incompat;
	s->compat = h->compat;
	s->autoclear = h->autoclear;
	s->header_length = h->header_length;
	s->crypt_method = h->crypt_method;
	s->extl2 = (h->incompat & QCOW2_INCOMPAT_EXTL2) != 0;
	s->l2_bits = s->cluster_bits - (s->extl2 ? 4 : 3);
	s->sc_bits = s->cluster_bits - (s->extl2 ? 5 : 0);
	s->refcount_order = h->refcount_order;
	s->rb_bits = s->cluster_bits + 3 - h->refcount_order;
	s->csize_shift = 62 - (s->cluster_bits - 8);
	s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
	s->coff_mask = (1ull << s->csize_shift) - 1;
	s->rt_offset = h->rt_offset;
	s->rt_clusters = h->rt_clusters;
	s->l1_offset = h->l1_offset;
	s->l1_size = h->l1_size;
	s->snapshots_offset = h->snapshots_offset;
	s->nb_snapshots = h->nb_snapshots;
}

static int
check_tables(struct img *img, const struct qcow2_hdr *h)
{
	struct qcow2 *s = img->priv;
	uint64_t need;

	if (h->rt_clusters == 0)
		return err_set(0, "Image does not contain a reference count table");
	/* a check (qemu's BDRV_O_CHECK) reads a broken snapshot table itself */
	if (check_table(s, h->rt_offset, h->rt_clusters, s->cluster_size,
	    QCOW2_MAX_RT_BYTES, "Reference count table") < 0 ||
	    (!(img->flags & IMG_NO_REPAIR) &&
	    check_table(s, h->snapshots_offset, h->nb_snapshots,
	    QCOW2_SNAPSHOT_ENTRY, QCOW2_SNAPSHOT_ENTRY * QCOW2_MAX_SNAPSHOTS,
	    "Snapshot table") < 0) ||
	    check_table(s, h->l1_offset, h->l1_size, 8, QCOW2_MAX_L1_BYTES,
	    "Active L1 table") < 0)
		return -1;
	/* L1 entries needed for the disk; qemu's l1_vm_state_index */
	need = DIV_ROUND_UP(h->size, qcow2_l2_span(s));
	if (h->size > INT64_MAX || need > INT32_MAX)
		return err_set(0, "Image is too big");
	if (h->l1_size < need)
		return err_set(0, "L1 table is too small");
	return 0;
}

/* Read a table of n big-endian 64-bit entries into host order. */
static int
read_table(struct img *img, uint64_t off, uint64_t n, uint64_t **out,
    const char *what)
{
	uint8_t *buf;
	uint64_t *t, i;

	t = calloc(n ? n : 1, sizeof(*t));
	buf = malloc(n ? n * 8 : 1);
	if (t == NULL || buf == NULL) {
		free(t);
		free(buf);
		return err_set(ENOMEM, "Could not allocate %s", what);
	}
	if (n && qcow2_pread_meta(img, buf, n * 8, off, what) < 0) {
		free(t);
		free(buf);
		return -1;
	}
	for (i = 0; i < n; i++)
		t[i] = get_be64(buf + 8 * i);
	free(buf);
	*out = t;
	return 0;
}

static int
read_backing_name(struct img *img, const struct qcow2_hdr *h,
    const uint8_t *hdr)
{
	struct qcow2 *s = img->priv;

	if (h->backing_offset == 0)
		return 0;
	if (h->backing_size > MIN(QCOW2_MAX_BACKING_NAME,
	    s->cluster_size - h->backing_offset))
		return err_set(0, "Backing file name too long");
	img->backing_file = xasprintf("%.*s", (int)h->backing_size,
	    (const char *)hdr + h->backing_offset);
	return 0;
}

/* What we refuse rather than guess at. */
static int
check_supported(struct img *img)
{
	struct qcow2 *s = img->priv;

	if ((s->incompat & QCOW2_INCOMPAT_DIRTY) && (img->flags & IMG_RDWR) &&
	    (img->flags & IMG_NO_REPAIR))
		return err_set(0, "Image is dirty (lazy refcounts); repair it "
		    "with 'qemu-img check -r all' before writing");
	return 0;
}

static void
init_caches(struct img *img, uint64_t size)
{
	struct qcow2 *s = img->priv;
	uint64_t tables = DIV_ROUND_UP(size, qcow2_l2_span(s));
	size_t l2max = (size_t)MAX(4, MIN(tables, L2_CACHE_BYTES / s->cluster_size));
	size_t rbmax = (size_t)MAX(4, RB_CACHE_BYTES / s->cluster_size);

	qcow2_cache_init(&s->rb_cache, img, "refcount block", rbmax, NULL);
	qcow2_cache_init(&s->l2_cache, img, "L2 table", l2max, &s->rb_cache);
}

/* The header cluster (header, extensions, backing name); past EOF reads 0. */
static uint8_t *
read_header_cluster(struct img *img)
{
	uint8_t first[QCOW2_OUR_HEADER], *hdr;
	uint32_t bits;
	size_t len = sizeof(first);

	if (io_pread_zero(img->fd, first, sizeof(first), 0) < 0) {
		err_set(errno, "Could not read qcow2 header");
		return NULL;
	}
	bits = get_be32(first + 20);
	if (bits >= QCOW2_MIN_CLUSTER_BITS && bits <= QCOW2_MAX_CLUSTER_BITS)
		len = (size_t)1 << bits;
	hdr = xcalloc(1, MAX(len, sizeof(first)));
	if (io_pread_zero(img->fd, hdr, len, 0) < 0) {
		err_set(errno, "Could not read qcow2 header");
		free(hdr);
		return NULL;
	}
	return hdr;
}

static void	free_state(struct img *);

/* qemu-img info's open (no backing chain, read-only) needs no data file. */
static bool
info_only(const struct img *img)
{
	return (img->flags & IMG_NO_BACKING) && !(img->flags & IMG_RDWR);
}

/*
 * The external data file the header names (or data-file.filename of
 * --image-opts), opened as the image is.  As qemu 7.2 does, a relative
 * name is relative to the working directory, not to the image.  qemu-img
 * info (IMG_NO_BACKING, read-only) goes on without it.
 */
static int
open_data_file(struct img *img)
{
	struct qcow2 *s = img->priv;
	const char *name = s->data_file;
	struct stat st;
	int e;

	s->data_fd = -1;
	if (!(s->incompat & QCOW2_INCOMPAT_DATA_FILE))
		return 0;
	if (img->open_opts != NULL &&
	    opt_list_get(img->open_opts, "data-file.filename") != NULL)
		name = opt_list_get(img->open_opts, "data-file.filename");
	if (name == NULL && !info_only(img))
		return err_set(0, "'data-file' is required for this image");
	if (name == NULL) {
		s->data_missing = true;
		return 0;
	}
	s->data_path = xstrdup(name);
	s->data_fd = open(s->data_path, ((img->flags & IMG_RDWR) ? O_RDWR :
	    O_RDONLY) | O_CLOEXEC);
	if (s->data_fd < 0) {
		e = errno;
		if (info_only(img)) {
			s->data_missing = true;
			return 0;
		}
		err_set(e, "Could not open '%s'", s->data_path);
		free(s->data_path);
		s->data_path = NULL;
		return -1;
	}
	s->has_data = true;
	if (fstat(s->data_fd, &st) < 0)
		return err_set(errno, "Could not open '%s'", s->data_path);
	s->data_size = (uint64_t)st.st_size;
	return 0;
}

/* The header's incompatible feature bits, durable before we go on. */
int
qcow2_set_incompat(struct img *img, uint64_t bits)
{
	struct qcow2 *s = img->priv;
	uint8_t b[8];

	put_be64(b, bits);
	if (qcow2_pwrite(img, b, 8, 72, "qcow2 header") < 0 ||
	    fmt_sync(img) < 0)
		return -1;
	s->incompat = bits;
	return 0;
}

/*
 * qemu opening a dirty image (lazy refcounts) for writing repairs it as
 * check -r all does, printing what the check finds, unless it opens for a
 * check (IMG_NO_REPAIR: check_supported refused it).
 */
static int
repair_dirty(struct img *img)
{
	struct qcow2 *s = img->priv;

	if (!(s->incompat & QCOW2_INCOMPAT_DIRTY) || !(img->flags & IMG_RDWR))
		return 0;
	fflush(stdout);
	return qcow2_repair_dirty(img, notice_line, NULL);
}

static int
qcow2_open(struct img *img)
{
	struct qcow2 *s = img->priv;
	struct qcow2_hdr h;
	uint8_t *hdr = NULL;
	uint64_t ext_end;

	s->prealloc = -1;
	if (fmt_file_size(img, &s->file_size) < 0)
		return -1;
	if ((hdr = read_header_cluster(img)) == NULL)
		return -1;
	decode_header(hdr, &h);
	if (check_header(img, &h, hdr) < 0)
		goto fail;
	set_geometry(s, &h);
	if (check_tables(img, &h) < 0)
		goto fail;
	img->size = ROUND_DOWN(h.size, 512);	/* qemu counts whole sectors */
	ext_end = h.backing_offset ? h.backing_offset : s->cluster_size;
	if (read_extensions(img, hdr, h.header_length, ext_end, NULL, NULL) < 0)
		goto fail;
	if (read_backing_name(img, &h, hdr) < 0 || check_supported(img) < 0 ||
	    qcow2_crypt_open(img) < 0 || open_data_file(img) < 0)
		goto fail;
	s->rt_size = (uint64_t)s->rt_clusters << (s->cluster_bits - 3);
	if (read_table(img, s->l1_offset, s->l1_size, &s->l1, "L1 table") < 0)
		goto fail;
	blkdbg_event(img->fd, BLKDBG_REFTABLE_LOAD);
	if (read_table(img, s->rt_offset, s->rt_size, &s->rt,
	    "reference count table") < 0) {
		/* qemu's words when qcow2_refcount_init cannot read it */
		if (err_errno() != 0)
			err_set(err_errno(), "Could not initialize refcount handling");
		goto fail;
	}
	s->l1_dirty = xcalloc(s->l1_size ? s->l1_size : 1, 1);
	s->alloc_end = ROUND_UP(s->file_size, s->cluster_size);
	init_caches(img, h.size);
	s->opened = true;
	free(hdr);
	hdr = NULL;
	if (repair_dirty(img) < 0) {
		free_state(img);
		goto fail;
	}
	return 0;
fail:
	/* the generic layer frees only what a successful open set */
	qcow2_crypt_close(img);
	if (s->data_fd > 0)
		close(s->data_fd);
	s->data_fd = -1;
	free(s->data_path);
	free(img->backing_file);
	free(img->backing_fmt);
	img->backing_file = img->backing_fmt = NULL;
	free(hdr);
	return -1;
}

static void
free_state(struct img *img)
{
	struct qcow2 *s = img->priv;

	qcow2_bitmaps_drop(img);
	qcow2_crypt_close(img);
	qcow2_cache_free(&s->l2_cache);
	qcow2_cache_free(&s->rb_cache);
	free(s->l1);
	free(s->l1_dirty);
	free(s->rt);
	free(s->data_file);
	free(s->data_path);
	if (s->has_data)
		close(s->data_fd);
	s->has_data = false;
	s->data_fd = -1;
	s->data_path = NULL;
	free(s->frees);
	free(s->zc_buf);
	s->l1 = s->rt = NULL;
	s->l1_dirty = NULL;
	s->data_file = NULL;
	s->frees = NULL;
	s->zc_buf = NULL;
}

/*
 * qemu's qcow2_inactivate: the bitmaps stored, each cache flushed (saying
 * so when it cannot be), then ours: L1, header and deferred frees.
 */
static int
inactivate(struct img *img)
{
	struct qcow2 *s = img->priv;
	int r;

	/* the flush before wrote everything: no fsyncs for nothing */
	if (img->blkdebug == NULL && s->bm_track == NULL &&
	    s->l2_cache.ndirty == 0 && s->rb_cache.ndirty == 0 &&
	    !s->rt_dirty && !s->any_l1_dirty && !s->header_dirty &&
	    s->nfree == 0)
		return 0;
	r = qcow2_bitmaps_store(img);
	if (qcow2_cache_write(&s->l2_cache) < 0 || fmt_sync(img) < 0) {
		fmt_say(img, "Failed to flush the L2 table cache: %s",
		    strerror(err_errno() ? err_errno() : EIO));
		r = -1;
	}
	if (qcow2_refcount_flush(img) < 0 || fmt_sync(img) < 0) {
		fmt_say(img, "Failed to flush the refcount block cache: %s",
		    strerror(err_errno() ? err_errno() : EIO));
		r = -1;
	}
	return r < 0 ? -1 : qcow2_flush(img);
}

/* bdrv_close: a flush whose failure nobody hears, then inactivation. */
static void
qcow2_close(struct img *img)
{
	struct qcow2 *s = img->priv;

	if (s->l2_cache.ents != NULL && (img->flags & IMG_RDWR) &&
	    !s->fatal) {
		(void)qcow2_flush_node(img);
		if (inactivate(img) == 0 && s->lazy_dirty && !s->fatal)
			(void)qcow2_set_incompat(img,
			    s->incompat & ~QCOW2_INCOMPAT_DIRTY);
	}
	free_state(img);
}

/*
 * The first write: qemu clears the autoclear bits it does not maintain
 * when it opens an image read-write; we keep only the bitmaps bit, whose
 * bitmaps we mark in use (bitmap.c).
 */
int
qcow2_prepare_write(struct img *img)
{
	struct qcow2 *s = img->priv;
	uint8_t b[8];

	if (s->fatal)
		return err_set(EIO, "%s: Could not write", img->filename);
	if (s->write_ready)
		return 0;
	if (!(img->flags & IMG_RDWR))
		return err_set(EBADF, "%s: image is open read-only",
		    img->filename);
	if (s->version >= 3 && (s->autoclear & ~(QCOW2_AUTOCLEAR_BITMAPS |
	    QCOW2_AUTOCLEAR_DATA_RAW))) {
		s->autoclear &= QCOW2_AUTOCLEAR_BITMAPS |
		    QCOW2_AUTOCLEAR_DATA_RAW;
		put_be64(b, s->autoclear);
		if (qcow2_pwrite(img, b, 8, 88, "qcow2 header") < 0 ||
		    (io_fdatasync(img->fd) < 0 && errno != EINVAL))
			return err_set(errno, "%s: Could not update qcow2 header",
			    img->filename);
	}
	/* qemu's qcow2_mark_dirty: refcounts may lag until a clean close */
	if ((s->compat & QCOW2_COMPAT_LAZY) && s->version >= 3 &&
	    !(s->incompat & QCOW2_INCOMPAT_DIRTY)) {
		if (qcow2_set_incompat(img, s->incompat | QCOW2_INCOMPAT_DIRTY) < 0)
			return -1;
		s->lazy_dirty = true;
	}
	s->write_ready = true;
	if (qcow2_bitmaps_track(img) < 0) {
		s->write_ready = false;
		return -1;
	}
	return 0;
}

/*
 * Dirty L1 entries, in runs of contiguous dirty entries, widened as qemu's
 * qcow2_write_l1_entry to the file's request alignment (blkdebug's align,
 * at most a cluster: the L1 table's clusters are ours, zeroes past it).
 */
int
qcow2_write_l1(struct img *img)
{
	struct qcow2 *s = img->priv;
	uint32_t i, j, per;
	uint64_t a;
	uint8_t *buf;
	int r = 0;

	if (!s->any_l1_dirty)
		return 0;
	a = MAX(8, MIN(blkdbg_align(img->fd), s->cluster_size));
	per = (uint32_t)(a / 8);
	buf = xcalloc(ROUND_UP((size_t)s->l1_size, per), 8);
	for (i = 0; i < s->l1_size; i++)
		put_be64(buf + 8 * (size_t)i, s->l1[i]);
	for (i = 0; i < s->l1_size && r == 0; i = j) {
		if (!s->l1_dirty[i]) {
			j = i + 1;
			continue;
		}
		for (j = i; j < s->l1_size && s->l1_dirty[j]; j++)
			continue;
		i = ROUND_DOWN(i, per);
		j = (uint32_t)MIN(ROUND_UP((uint64_t)j, per), s->l1_size);
		memset(s->l1_dirty + i, 0, j - i);
		r = qcow2_pwrite(img, buf + 8 * (size_t)i,
		    (size_t)ROUND_UP(j - i, per) * 8,
		    s->l1_offset + 8 * (uint64_t)i, "L1 table");
	}
	free(buf);
	if (r == 0)
		s->any_l1_dirty = false;
	return r;
}

static int
write_header_tables(struct img *img)
{
	struct qcow2 *s = img->priv;
	uint8_t b[12];

	if (!s->header_dirty)
		return 0;
	put_be64(b, s->rt_offset);
	put_be32(b + 8, s->rt_clusters);
	if (qcow2_pwrite(img, b, 12, 48, "qcow2 header") < 0)
		return -1;
	s->header_dirty = false;
	return 0;
}

static int
sync_file(struct img *img)
{
	return fmt_sync(img);
}

/*
 * Crash-safety order: data and refcounts, then L2 tables, then L1 and
 * header, each durable before the next; references dropped on the way are
 * released last, so a crash leaks clusters but never corrupts.
 *
 * As qemu's bdrv_co_flush of the qcow2 node (node), it fires flush_to_os
 * on the file first and, when guest writes came since the last such flush
 * and flushes reach the disk, flush_to_disk before the file's own flush.
 */
static int
do_flush(struct img *img, bool node)
{
	struct qcow2 *s = img->priv;

	if (node && (img->flags & IMG_RDWR))
		blkdbg_event(img->fd, BLKDBG_FLUSH_TO_OS);
	if (!s->write_ready)
		return sync_file(img);
	if (qcow2_refcount_flush(img) < 0 || sync_file(img) < 0 ||
	    qcow2_cache_write(&s->l2_cache) < 0 || sync_file(img) < 0 ||
	    qcow2_write_l1(img) < 0 || write_header_tables(img) < 0)
		return -1;
	if (node && s->guest_written && !(img->flags & IMG_NO_FLUSH))
		blkdbg_event(img->fd, BLKDBG_FLUSH_TO_DISK);
	if (sync_file(img) < 0)
		return -1;
	if (node)
		s->guest_written = false;
	if (s->nfree == 0)
		return 0;
	if (qcow2_apply_frees(img) < 0 || qcow2_refcount_flush(img) < 0)
		return -1;
	return sync_file(img);
}

/*
 * Ours, and the programs' img_flush, which qemu-img never makes (its flush
 * comes at close): no blkdebug event fires.
 */
int
qcow2_flush(struct img *img)
{
	return do_flush(img, false);
}

/* Where qemu's qcow2 flushes its own node (bdrv_flush(bs)), and at close. */
int
qcow2_flush_node(struct img *img)
{
	return do_flush(img, true);
}

static int
qcow2_info(struct img *img, struct img_info *info)
{
	struct qcow2 *s = img->priv;
	struct jnode *d = jn_new_obj();

	info->cluster_size = s->cluster_size;
	info->dirty = (s->incompat & QCOW2_INCOMPAT_DIRTY) != 0;
	info->encrypted = s->crypt_method != 0;
	info->specific = d;
	qcow2_crypt_info(img, d);
	if (s->version == 2) {
		jn_str(d, "compat", "0.10");
		jn_int(d, "refcount-bits", 1 << s->refcount_order);
		jn_str(d, "compression-type", "zlib");
		return 0;
	}
	jn_str(d, "compat", "1.1");
	if (s->data_file != NULL)
		jn_str(d, "data-file", s->data_file);
	if (s->incompat & QCOW2_INCOMPAT_DATA_FILE)
		jn_bool(d, "data-file-raw",
		    (s->autoclear & QCOW2_AUTOCLEAR_DATA_RAW) != 0);
	jn_bool(d, "extended-l2", s->extl2);
	jn_bool(d, "lazy-refcounts", (s->compat & QCOW2_COMPAT_LAZY) != 0);
	jn_bool(d, "corrupt", (s->incompat & QCOW2_INCOMPAT_CORRUPT) != 0);
	jn_int(d, "refcount-bits", 1 << s->refcount_order);
	if (qcow2_bitmap_info(img, d) < 0) {
		jn_free(d);
		info->specific = NULL;
		return -1;
	}
	jn_str(d, "compression-type",
	    s->compression == QCOW2_COMPRESS_ZSTD ? "zstd" : "zlib");
	return 0;
}

/* The create options in qemu's order (its "Formatting" line), with its help. */
static const struct opt_desc qcow2_create_opts[] = {
	{ "encryption", OPT_BOOL, "Encrypt the image with format 'aes'. "
	    "(Deprecated in favor of encrypt.format=aes)", NULL },
	{ "encrypt.format", OPT_STRING,
	    "Encrypt the image, format choices: 'aes', 'luks'", NULL },
	{ "encrypt.key-secret", OPT_STRING,
	    "ID of secret providing qcow AES key or LUKS passphrase", NULL },
	{ "encrypt.cipher-alg", OPT_STRING,
	    "Name of encryption cipher algorithm", NULL },
	{ "encrypt.cipher-mode", OPT_STRING,
	    "Name of encryption cipher mode", NULL },
	{ "encrypt.ivgen-alg", OPT_STRING, "Name of IV generator algorithm",
	    NULL },
	{ "encrypt.ivgen-hash-alg", OPT_STRING,
	    "Name of IV generator hash algorithm", NULL },
	{ "encrypt.hash-alg", OPT_STRING, "Name of encryption hash algorithm",
	    NULL },
	{ "encrypt.iter-time", OPT_NUMBER,
	    "Time to spend in PBKDF in milliseconds", NULL },
	{ "cluster_size", OPT_SIZE, "qcow2 cluster size", "65536" },
	{ "extended_l2", OPT_BOOL, "Extended L2 tables", "off" },
	{ "preallocation", OPT_STRING, "Preallocation mode (allowed values: "
	    "off, metadata, falloc, full)", NULL },
	{ "compression_type", OPT_STRING,
	    "Compression method used for image cluster compression", "zlib" },
	{ "size", OPT_SIZE, "Virtual disk size", NULL },
	{ "compat", OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])",
	    NULL },
	{ "backing_file", OPT_STRING, "File name of a base image", NULL },
	{ "backing_fmt", OPT_STRING, "Image format of the base image", NULL },
	{ "data_file", OPT_STRING, "File name of an external data file", NULL },
	{ "data_file_raw", OPT_BOOL,
	    "The external data file must stay valid as a raw image", NULL },
	{ "lazy_refcounts", OPT_BOOL, "Postpone refcount updates", "off" },
	{ "refcount_bits", OPT_NUMBER,
	    "Width of a reference count entry in bits", "16" },
	{ NULL, 0, NULL, NULL },
};

/* The -o options create understands, validated (qemu's checks and words). */
struct copts {
	int		 version;
	unsigned	 cluster_bits;
	bool		 extl2, lazy;
	int		 prealloc;	/* index in prealloc_modes */
	unsigned	 compression;
	unsigned	 refcount_order;
	const char	*backing, *backing_fmt;
	const char	*data_file;
	bool		 data_raw;
	uint32_t	 crypt;		/* crypt_method: 1 aes, 2 luks */
	const struct opt_list *opts;	/* encrypt.* for crypt.c */
	uint64_t	 crypt_off, crypt_len;	/* the LUKS header's clusters */
};

static const char *const prealloc_modes[] = {
	"off", "metadata", "falloc", "full", NULL
};

/* qemu-opts' type errors, before anything else is looked at */
static int
check_types(const struct opt_list *o)
{
	const struct opt_desc *d;
	const char *v;
	uint64_t n;
	char *end;

	for (d = qcow2_create_opts; d->name; d++) {
		if ((v = opt_list_get(o, d->name)) == NULL)
			continue;
		if (d->type == OPT_SIZE && opt_size(v, &n) < 0)
			return err_set(0, "Parameter '%s' expects a non-negative "
			    "number below 2^64\nOptional suffix k, M, G, T, P or "
			    "E means kilo-, mega-, giga-, tera-, peta-\nand "
			    "exabytes, respectively.", d->name);
		if (d->type == OPT_BOOL && strcmp(v, "on") && strcmp(v, "off"))
			return err_set(0, "Parameter '%s' expects 'on' or 'off'",
			    d->name);
		if (d->type == OPT_NUMBER && (errno = 0, strtoull(v, &end, 0),
		    *v == '\0' || *end != '\0' || errno || *v == '-'))
			return err_set(0, "Parameter '%s' expects a number",
			    d->name);
	}
	return 0;
}

static bool
opt_on(const struct opt_list *o, const char *key)
{
	const char *v = opt_list_get(o, key);

	return v != NULL && strcmp(v, "on") == 0;
}

/* compat, preallocation and compression type, as QAPI enums */
static int
parse_enums(const struct opt_list *o, struct copts *c)
{
	const char *v;

	c->version = 3;
	if ((v = opt_list_get(o, "compat")) != NULL) {
		if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
			c->version = 2;
		else if (strcmp(v, "1.1") && strcmp(v, "v3"))
			return err_set(0, "Parameter 'version' does not accept "
			    "value '%s'", v);
	}
	c->prealloc = 0;
	if ((v = opt_list_get(o, "preallocation")) != NULL) {
		for (c->prealloc = 0; prealloc_modes[c->prealloc]; c->prealloc++)
			if (!strcmp(v, prealloc_modes[c->prealloc]))
				break;
		if (prealloc_modes[c->prealloc] == NULL)
			return err_set(0, "Parameter 'preallocation' does not "
			    "accept value '%s'", v);
	}
	c->compression = QCOW2_COMPRESS_ZLIB;
	if ((v = opt_list_get(o, "compression_type")) != NULL) {
		if (!strcmp(v, "zstd"))
			c->compression = QCOW2_COMPRESS_ZSTD;
		else if (strcmp(v, "zlib"))
			return err_set(0, "Parameter 'compression-type' does not "
			    "accept value '%s'", v);
	}
	return 0;
}

static int
parse_sizes(const struct opt_list *o, struct copts *c)
{
	const char *v;
	uint64_t cs = 65536, rb = 16;

	if ((v = opt_list_get(o, "cluster_size")) != NULL)
		opt_size(v, &cs);
	if (c->extl2 && c->version < 3)
		return err_set(0, "Extended L2 entries are only supported with "
		    "compatibility level 1.1 and above (use version=v3 or "
		    "greater)");
	if (!is_pow2(cs) || cs < 512 || cs > (2u << 20))
		return err_set(0, "Cluster size must be a power of two between "
		    "512 and 2048k");
	if (c->extl2 && cs < 16384)
		return err_set(0, "Extended L2 entries are only supported with "
		    "cluster sizes of at least 16384 bytes");
	c->cluster_bits = (unsigned)log2_u64(cs);
	if ((v = opt_list_get(o, "refcount_bits")) != NULL)
		rb = strtoull(v, NULL, 0);
	c->refcount_order = is_pow2(rb) ? (unsigned)log2_u64(rb) : 99;
	return 0;
}

static int
parse_create(const struct opt_list *o, struct copts *c)
{
	memset(c, 0, sizeof(*c));
	if (check_types(o) < 0)
		return -1;
	if (opt_list_get(o, "encryption") && opt_list_get(o, "encrypt.format"))
		return err_set(0, "'encrypt.format' and its alias 'encryption' "
		    "can't be used at the same time");
	c->extl2 = opt_on(o, "extended_l2");
	c->lazy = opt_on(o, "lazy_refcounts");
	c->backing = opt_list_get(o, "backing_file");
	c->backing_fmt = opt_list_get(o, "backing_fmt");
	if (parse_enums(o, c) < 0 || parse_sizes(o, c) < 0)
		return -1;
	if (c->backing && c->prealloc != 0 && !c->extl2)
		return err_set(0, "Backing file and preallocation can only be "
		    "used at the same time if extended_l2 is on");
	if (c->backing_fmt && !c->backing)
		return err_set(0, "Backing format cannot be used without "
		    "backing file");
	if (c->version < 3 && c->lazy)
		return err_set(0, "Lazy refcounts only supported with "
		    "compatibility level 1.1 and above (use version=v3 or "
		    "greater)");
	if (c->refcount_order > 6)
		return err_set(0, "Refcount width must be a power of two and "
		    "may not exceed 64 bits");
	if (c->version < 3 && c->refcount_order != 4)
		return err_set(0, "Different refcount widths than 16 bits "
		    "require compatibility level 1.1 or above (use version=v3 "
		    "or greater)");
	if (opt_on(o, "data_file_raw") && !opt_list_get(o, "data_file"))
		return err_set(0, "data-file-raw requires data-file");
	if (opt_on(o, "data_file_raw") && c->backing)
		return err_set(0, "Backing file and data-file-raw cannot be used "
		    "at the same time");
	if (opt_list_get(o, "data_file") && c->version < 3)
		return err_set(0, "External data files are only supported with "
		    "compatibility level 1.1 and above (use version=v3 or "
		    "greater)");
	if (c->compression != QCOW2_COMPRESS_ZLIB && c->version < 3)
		return err_set(0, "Non-zlib compression type is only supported "
		    "with compatibility level 1.1 and above (use version=v3 or "
		    "greater)");
	c->data_file = opt_list_get(o, "data_file");
	c->data_raw = opt_on(o, "data_file_raw");
	/* a raw data file maps every cluster 1:1: qemu preallocates metadata */
	if (c->data_raw && c->prealloc == 0)
		c->prealloc = 1;
	c->opts = o;
	return qcow2_crypt_create_check(o, &c->crypt);
}

static const char *const feature_names[][2] = {
	{ "\0\0", "dirty bit" }, { "\0\1", "corrupt bit" },
	{ "\0\2", "external data file" }, { "\0\3", "compression type" },
	{ "\0\4", "extended L2 entries" }, { "\1\0", "lazy refcounts" },
	{ "\2\0", "bitmaps" }, { "\2\1", "raw external data" },
};

size_t
qcow2_put_ext(uint8_t *p, uint32_t magic, const void *data, uint32_t len)
{
	put_be32(p, magic);
	put_be32(p + 4, len);
	memcpy(p + 8, data, len);
	return 8 + ROUND_UP((size_t)len, 8);
}

size_t
qcow2_put_features(uint8_t *p)
{
	uint8_t ft[ARRAY_SIZE(feature_names) * FEATURE_ENTRY];
	size_t i;

	_Static_assert(8 + sizeof(ft) == QCOW2_FEATURES_EXT, "feature table");
	memset(ft, 0, sizeof(ft));
	for (i = 0; i < ARRAY_SIZE(feature_names); i++) {
		memcpy(ft + i * FEATURE_ENTRY, feature_names[i][0], 2);
		memcpy(ft + i * FEATURE_ENTRY + 2, feature_names[i][1],
		    strlen(feature_names[i][1]));
	}
	return qcow2_put_ext(p, QCOW2_EXT_FEATURES, ft, sizeof(ft));
}

/* The header cluster of an empty image: no L1 yet, three clusters in use. */
static size_t
build_header(uint8_t *h, const struct copts *c)
{
	uint64_t cs = (uint64_t)1 << c->cluster_bits;
	size_t off, blen;
	uint8_t ext[16];

	put_be32(h, QCOW2_MAGIC);
	put_be32(h + 4, (uint32_t)c->version);
	put_be32(h + 20, c->cluster_bits);
	put_be64(h + 48, cs);			/* refcount table: cluster 1 */
	put_be32(h + 56, 1);
	off = QCOW2_V2_HEADER;
	if (c->version >= 3) {
		put_be64(h + 72, (c->extl2 ? QCOW2_INCOMPAT_EXTL2 : 0) |
		    (c->compression ? QCOW2_INCOMPAT_COMPRESSION : 0) |
		    (c->data_file ? QCOW2_INCOMPAT_DATA_FILE : 0));
		put_be64(h + 80, c->lazy ? QCOW2_COMPAT_LAZY : 0);
		put_be64(h + 88, c->data_raw ? QCOW2_AUTOCLEAR_DATA_RAW : 0);
		put_be32(h + 96, c->refcount_order);
		put_be32(h + 100, QCOW2_OUR_HEADER);
		h[104] = (uint8_t)c->compression;
		off = QCOW2_OUR_HEADER;
	}
	if (c->backing_fmt != NULL)
		off += qcow2_put_ext(h + off, QCOW2_EXT_BACKING_FMT,
		    c->backing_fmt, (uint32_t)strlen(c->backing_fmt));
	if (c->data_file != NULL)
		off += qcow2_put_ext(h + off, QCOW2_EXT_DATA_FILE, c->data_file,
		    (uint32_t)strlen(c->data_file));
	if (c->crypt_off != 0) {
		put_be64(ext, c->crypt_off);
		put_be64(ext + 8, c->crypt_len);
		off += qcow2_put_ext(h + off, QCOW2_EXT_CRYPTO, ext, 16);
	}
	/* qemu leaves the table out where it would crowd the backing name */
	if (c->version >= 3 && cs > 4096)
		off += qcow2_put_features(h + off);
	off += 8;				/* end of extensions */
	if (c->backing != NULL) {
		blen = strlen(c->backing);
		put_be64(h + 8, off);
		put_be32(h + 16, (uint32_t)blen);
		memcpy(h + off, c->backing, blen);
		off += blen;
	}
	return off;
}

/* Clusters 0-2 (header, refcount table and block) have refcount 1. */
static void
set_initial_refcounts(uint8_t *rb, unsigned order)
{
	unsigned bits = 1u << order, i, bit;

	for (i = 0; i < 3; i++) {
		bit = i * bits;
		if (bits >= 8)
			rb[(bit + bits) / 8 - 1] = 1;
		else
			rb[bit / 8] |= (uint8_t)(1u << (bit % 8));
	}
}

static int
write_skeleton(const char *filename, const struct copts *c)
{
	uint64_t cs = (uint64_t)1 << c->cluster_bits;
	uint8_t *buf = xcalloc(3, cs);
	int fd, r = -1;

	if ((c->backing && strlen(c->backing) > QCOW2_MAX_BACKING_NAME) ||
	    (c->backing_fmt && strlen(c->backing_fmt) > QCOW2_MAX_FMT_NAME)) {
		free(buf);
		return err_set(EINVAL, "Could not assign backing file '%s'",
		    c->backing);
	}
	if (c->data_file && strlen(c->data_file) > cs / 2) {
		free(buf);
		return err_set(EINVAL, "Data file name too long");
	}
	build_header(buf, c);
	put_be64(buf + cs, 2 * cs);		/* refcount block: cluster 2 */
	set_initial_refcounts(buf + 2 * cs, c->refcount_order);
	fd = open(filename, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		free(buf);
		return err_set(errno, "Could not create '%s'", filename);
	}
	if (io_pwrite(fd, buf, 3 * cs, 0) < 0)
		err_set(errno, "Could not write qcow2 header");
	else
		r = 0;
	if (close(fd) < 0 && r == 0)
		r = err_set(errno, "Could not write qcow2 header");
	free(buf);
	return r;
}

/* The L1 table for a size-byte disk, right after the skeleton (cluster 3). */
static int
make_l1(struct img *img, uint64_t size)
{
	struct qcow2 *s = img->priv;
	uint64_t n = DIV_ROUND_UP(size, qcow2_l2_span(s)), off = 0;
	uint8_t b[24], *z;

	if (n * 8 > QCOW2_MAX_L1_BYTES)
		return err_set(EFBIG, "The image size is too large for file "
		    "format 'qcow2' (try using a larger cluster size)");
	if (n > 0) {
		if ((off = qcow2_alloc_clusters(img, DIV_ROUND_UP(n * 8,
		    s->cluster_size))) == 0)
			return -1;
		z = xcalloc(n, 8);
		if (qcow2_pwrite(img, z, n * 8, off, "L1 table") < 0) {
			free(z);
			return -1;
		}
		free(z);
	}
	free(s->l1);
	free(s->l1_dirty);
	s->l1 = xcalloc(n ? n : 1, 8);
	s->l1_dirty = xcalloc(n ? n : 1, 1);
	s->l1_size = (uint32_t)n;
	s->l1_offset = off;
	img->size = size;
	/* header bytes 24-47: size, crypt_method, l1_size, l1_table_offset */
	put_be64(b, size);
	put_be32(b + 8, s->crypt_method);
	put_be32(b + 12, (uint32_t)n);
	put_be64(b + 16, off);
	return qcow2_pwrite(img, b, 24, 24, "qcow2 header");
}

/*
 * Metadata preallocation: every L2 table and data cluster, in qemu's order;
 * in an external data file the data clusters sit at their guest offsets.
 */
static int
prealloc_metadata(struct img *img)
{
	struct qcow2 *s = img->priv;
	uint64_t span = qcow2_l2_span(s), off, k, host, i, l2off;
	uint8_t *l2;

	for (off = 0; off < img->size; off += span) {
		k = DIV_ROUND_UP(MIN(span, img->size - off), s->cluster_size);
		if (qcow2_l2_for_write(img, off / span, &l2off) < 0)
			return -1;
		host = s->has_data ? off : qcow2_alloc_clusters(img, k);
		if ((host == 0 && !s->has_data) ||
		    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
			return -1;
		for (i = 0; i < k; i++)
			qcow2_l2_set(s, l2, i, (host + i * s->cluster_size) |
			    QCOW2_OFLAG_COPIED);
		qcow2_cache_dirty(&s->l2_cache, l2off);
	}
	return 0;
}

/* falloc and full preallocate an external data file's disk as well. */
static int
prealloc_data(struct img *img, int mode)
{
	struct qcow2 *s = img->priv;
	uint64_t off, n;
	uint8_t *z;
	int r = 0;

	if (mode == 2 && (r = posix_fallocate(s->data_fd, 0,
	    (off_t)img->size)) != 0)
		return err_set(r, "Could not preallocate data for the new file");
	if (mode != 3)
		return 0;
	z = xcalloc(1, 1u << 20);
	for (off = 0; off < img->size && r == 0; off += n) {
		n = MIN(img->size - off, 1u << 20);
		if (io_pwrite(s->data_fd, z, n, off) < 0)
			r = err_set(errno, "Could not preallocate data for the "
			    "new file");
	}
	free(z);
	return r;
}

/*
 * Metadata preallocation: the file covers every allocated cluster.  With
 * an external data file, falloc and full preallocate that file's disk;
 * qemu leaves the qcow2 file alone then.
 */
static int
prealloc_file(struct img *img, int mode)
{
	struct qcow2 *s = img->priv;
	uint64_t end = s->alloc_end;

	if (s->has_data && prealloc_data(img, mode) < 0)
		return -1;
	if (end > s->file_size && io_ftruncate(img->fd, (off_t)end) < 0)
		return err_set(errno, "Could not resize file");
	s->file_size = MAX(s->file_size, end);
	return 0;
}

/* A new, empty external data file of the disk's size, as qemu's file driver. */
static int
create_data_file(const struct copts *c, uint64_t size)
{
	int fd;

	if (c->data_file == NULL)
		return 0;
	fd = open(c->data_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "Could not create '%s'", c->data_file);
	if (ftruncate(fd, (off_t)ROUND_UP(size, 512)) < 0) {
		err_set(errno, "Could not resize file");
		close(fd);
		return -1;
	}
	if (close(fd) < 0)
		return err_set(errno, "Could not create '%s'", c->data_file);
	return 0;
}

/*
 * Encryption after the L1 table, as qcow2_set_up_encryption: crypt_method,
 * and for LUKS its header in new clusters named by the CRYPTO extension
 * (the header cluster rebuilt with the current table fields).
 */
static int
set_up_encryption(struct img *img, struct copts *c)
{
	struct qcow2 *s = img->priv;
	uint8_t *h;
	int r;

	if (c->crypt == 0)
		return 0;
	if (qcow2_crypt_create(img, c->opts, c->crypt, &c->crypt_off,
	    &c->crypt_len) < 0)
		return -1;
	h = xcalloc(1, s->cluster_size);
	build_header(h, c);
	put_be64(h + 24, img->size);
	put_be32(h + 32, c->crypt);
	put_be32(h + 36, s->l1_size);
	put_be64(h + 40, s->l1_offset);
	put_be64(h + 48, s->rt_offset);
	put_be32(h + 56, s->rt_clusters);
	r = qcow2_pwrite(img, h, s->cluster_size, 0, "qcow2 header");
	free(h);
	s->crypt_method = c->crypt;
	s->crypt_hdr_off = c->crypt_off;
	s->crypt_hdr_len = c->crypt_len;
	return r;
}

static int
qcow2_create(const char *filename, uint64_t size, const struct opt_list *o)
{
	struct copts c;
	struct img *img;
	int r;

	if (parse_create(o, &c) < 0 || create_data_file(&c, size) < 0 ||
	    write_skeleton(filename, &c) < 0)
		return err_prefix("%s", filename);
	if ((img = img_open(filename, "qcow2", IMG_RDWR | IMG_NO_BACKING)) == NULL)
		return -1;
	size = ROUND_UP(size, 512);
	r = qcow2_prepare_write(img);
	if (r == 0)
		r = make_l1(img, size);
	/* qemu creates the image empty, then grows it with preallocation */
	if (r == 0 && c.prealloc >= IMG_PREALLOC_FALLOC && c.data_file == NULL) {
		r = qcow2_prealloc_run(img, 0, size, c.prealloc, false);
		if (r == 0)
			r = set_up_encryption(img, &c);
	} else {
		if (r == 0 && c.prealloc != 0)
			r = prealloc_metadata(img);
		if (r == 0)
			r = set_up_encryption(img, &c);
		if (r == 0 && c.prealloc != 0)
			r = prealloc_file(img, c.prealloc);
	}
	if (r == 0)
		r = qcow2_flush(img);
	img_close(img);
	return r < 0 ? err_prefix("%s", filename) : 0;
}


int	qcow2_measure(const struct opt_list *o, struct img *in, uint64_t size,
	    struct img_measure *m);
bool	qcow2_bitmaps_size(struct img *img, uint64_t cs, uint64_t *size);
int	qcow2_set_backing(struct img *img, const char *file, const char *fmt);
int	qcow2_make_empty(struct img *img);

const struct fmt_ops qcow2_ops = {
	.name			= "qcow2",
	.priv_size		= sizeof(struct qcow2),
	.close_flushes		= true,
	.probe			= qcow2_probe,
	.open			= qcow2_open,
	.close			= qcow2_close,
	.create			= qcow2_create,
	.create_opts		= qcow2_create_opts,
	.read			= qcow2_read,
	.write			= qcow2_write,
	.write_host		= qcow2_write_host,
	.write_zeroes		= qcow2_write_zeroes,
	.write_compressed	= qcow2_write_compressed,
	.discard		= qcow2_discard,
	.flush			= qcow2_flush,
	.block_status		= qcow2_block_status,
	.backing_read_ok	= qcow2_backing_read,
	.info			= qcow2_info,
	.measure		= qcow2_measure,
	.bitmaps_size		= qcow2_bitmaps_size,
	.check			= qcow2_check,
	.set_backing		= qcow2_set_backing,
	.resize			= qcow2_resize,
	.snapshot_list		= qcow2_snapshot_list,
	.snapshot_create	= qcow2_snapshot_create,
	.snapshot_apply		= qcow2_snapshot_apply,
	.snapshot_delete	= qcow2_snapshot_delete,
	.snapshot_load		= qcow2_snapshot_load,
	.amend			= qcow2_amend,
	.amend_opts		= qcow2_amend_opts,
	.make_empty		= qcow2_make_empty,
	.bitmap			= qcow2_bitmap,
};
