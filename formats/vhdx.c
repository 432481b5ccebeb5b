/*
 * vhdx: Hyper-V virtual hard disks ("VHDX Format Specification" 1.0: the
 * "vhdxfile" identifier, two headers and region tables with CRC-32C, the
 * metadata region, the block allocation table), dynamic and fixed, as
 * qemu's vhdx driver.  A log left to replay is refused, not replayed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "fmt.h"

#define KIB			1024ull
#define MIB			(1024 * KIB)
#define TIB			(1024 * 1024 * MIB)
#define VHDX_HEADER1		(64 * KIB)
#define VHDX_HEADER2		(128 * KIB)
#define VHDX_HEADER_SIZE	(4 * KIB)	/* what the checksum covers */
#define VHDX_REGION1		(192 * KIB)
#define VHDX_REGION2		(256 * KIB)
#define VHDX_TABLE_SIZE		(64 * KIB)	/* region and metadata tables */
#define VHDX_SECTION_END	MIB		/* of the header section */
#define VHDX_BLOCK_MIN		MIB
#define VHDX_BLOCK_MAX		(256 * MIB)
#define VHDX_MAX_SIZE		(64 * TIB)
#define VHDX_MAX_ENTRIES	2047
/* a chunk: the blocks one sector bitmap block covers */
#define VHDX_CHUNK_SECTORS	(1ull << 23)

/* BAT entry states (low three bits) */
enum {
	VHDX_NOT_PRESENT = 0, VHDX_UNDEFINED = 1, VHDX_ZERO = 2,
	VHDX_UNMAPPED = 3, VHDX_UNMAPPED_V095 = 5, VHDX_FULLY_PRESENT = 6,
	VHDX_PARTIALLY_PRESENT = 7,
};
#define VHDX_STATE_MASK		7ull
#define VHDX_OFFSET_MASK	0xfffffffffff00000ull

/* header fields */
enum {
	VHDX_H_SIG = 0, VHDX_H_CSUM = 4, VHDX_H_SEQ = 8, VHDX_H_FILE_GUID = 16,
	VHDX_H_DATA_GUID = 32, VHDX_H_LOG_GUID = 48, VHDX_H_LOG_VERSION = 64,
	VHDX_H_VERSION = 66, VHDX_H_LOG_LEN = 68, VHDX_H_LOG_OFF = 72,
};

/* metadata item flags */
#define VHDX_META_VIRTUAL	2u
#define VHDX_META_REQUIRED	4u
#define VHDX_PARAM_LEAVE_ALLOC	1u
#define VHDX_PARAM_HAS_PARENT	2u

/* GUIDs as stored (Microsoft's mixed-endian layout) */
static const uint8_t bat_guid[16] = {
	0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
	0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08 };
static const uint8_t meta_guid[16] = {
	0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
	0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e };
static const uint8_t params_guid[16] = {
	0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d,
	0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b };
static const uint8_t vsize_guid[16] = {
	0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48,
	0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8 };
static const uint8_t page83_guid[16] = {
	0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45,
	0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46 };
static const uint8_t lsec_guid[16] = {
	0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47,
	0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f };
static const uint8_t psec_guid[16] = {
	0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44,
	0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56 };
static const uint8_t parent_guid[16] = {
	0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
	0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c };

enum { META_PARAMS, META_VSIZE, META_PAGE83, META_LSEC, META_PSEC,
	META_PARENT, META_N };

struct vhdx_region {
	uint64_t	 start, end;
};

struct vhdx {
	uint8_t		 hdr[VHDX_HEADER_SIZE];	/* the current header */
	uint64_t	 bat_off;
	uint32_t	 bat_len;
	uint64_t	 meta_off;
	uint32_t	 meta_len;
	uint32_t	 block_size;
	uint32_t	 params;
	uint32_t	 lsec;
	uint64_t	 chunk_ratio;		/* payload blocks per bitmap */
	uint64_t	 entries;
	uint64_t	*bat;			/* host order */
	struct vhdx_region regions[3];		/* log, BAT, metadata */
	size_t		 nregions;
	bool		 written;		/* headers updated to write */
	bool		 replayed;		/* log replayed on open */
	int		 cur;			/* the current header: 0 or 1 */
};

static uint32_t	crc32c_table[256];

static uint32_t
vhdx_crc32c(const uint8_t *p, size_t len)
{
	uint32_t c = 0xffffffffu, k;
	size_t i;
	int j;

	if (crc32c_table[1] == 0) {
		for (i = 0; i < 256; i++) {
			k = (uint32_t)i;
			for (j = 0; j < 8; j++)
				k = k & 1 ? k >> 1 ^ 0x82f63b78u : k >> 1;
			crc32c_table[i] = k;
		}
	}
	for (i = 0; i < len; i++)
		c = crc32c_table[(c ^ p[i]) & 0xff] ^ c >> 8;
	return ~c;
}

/* Whether p's CRC-32C (its checksum field at 4 zeroed) is the stored one. */
static bool
vhdx_csum_ok(uint8_t *p, size_t len)
{
	uint32_t want = get_le32(p + 4), got;

	memset(p + 4, 0, 4);
	got = vhdx_crc32c(p, len);
	put_le32(p + 4, want);
	return got == want;
}

static void
vhdx_csum_set(uint8_t *p, size_t len)
{
	memset(p + 4, 0, 4);
	put_le32(p + 4, vhdx_crc32c(p, len));
}

static void
vhdx_guid(uint8_t *g)
{
	if (getrandom(g, 16, 0) != 16)
		memset(g, 0x5a, 16);
	g[7] = (g[7] & 0x0f) | 0x40;
	g[8] = (g[8] & 0x3f) | 0x80;
}

static bool
vhdx_guid_null(const uint8_t *g)
{
	static const uint8_t zero[16];

	return memcmp(g, zero, 16) == 0;
}

static int
vhdx_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	return len >= 8 && memcmp(buf, "vhdxfile", 8) == 0 ? 100 : 0;
}

/* the file name of the image being opened, for qemu's doubled words */
static const char *vhdx_name = "";

/* qemu's bare errno: "Could not open 'x': Could not open 'x': EINVAL" */
static int
vhdx_errno(int e)
{
	return err_set(0, "Could not open '%s': %s", vhdx_name, strerror(e));
}

static int
vhdx_einval(void)
{
	return vhdx_errno(EINVAL);
}

static bool
vhdx_header_valid(uint8_t *h)
{
	return vhdx_csum_ok(h, VHDX_HEADER_SIZE) &&
	    memcmp(h + VHDX_H_SIG, "head", 4) == 0 &&
	    get_le16(h + VHDX_H_VERSION) == 1;
}

/* The current header: the valid one with the higher sequence number. */
static int
vhdx_open_headers(struct img *img, struct vhdx *s)
{
	static uint8_t h1[VHDX_HEADER_SIZE], h2[VHDX_HEADER_SIZE];
	bool v1, v2;
	uint64_t q1, q2;

	if (io_pread_zero(img->fd, h1, sizeof(h1), VHDX_HEADER1) < 0 ||
	    io_pread_zero(img->fd, h2, sizeof(h2), VHDX_HEADER2) < 0)
		return err_set(errno, "No valid VHDX header found");
	v1 = vhdx_header_valid(h1);
	v2 = vhdx_header_valid(h2);
	q1 = get_le64(h1 + VHDX_H_SEQ);
	q2 = get_le64(h2 + VHDX_H_SEQ);
	if (v1 && v2 && q1 == q2 && memcmp(h1 + 8, h2 + 8, 72) != 0)
		v1 = v2 = false;
	if (!v1 && !v2)
		return err_set(0, "No valid VHDX header found");
	s->cur = v1 && (!v2 || q1 >= q2) ? 0 : 1;
	memcpy(s->hdr, s->cur == 0 ? h1 : h2, VHDX_HEADER_SIZE);
	s->regions[0].start = get_le64(s->hdr + VHDX_H_LOG_OFF);
	s->regions[0].end = s->regions[0].start +
	    get_le32(s->hdr + VHDX_H_LOG_LEN);
	s->nregions = 1;
	return 0;
}

/* Whether start+len overlaps a region: the message names the last one. */
static bool
vhdx_overlaps(const struct vhdx *s, uint64_t start, uint64_t len)
{
	const struct vhdx_region *r;
	size_t i;

	for (i = s->nregions; i-- > 0;) {
		r = &s->regions[i];
		if (start >= r->end || start + len <= r->start)
			continue;
		err_set(0, "VHDX region %" PRIu64 "-%" PRIu64 " overlaps with "
		    "region %" PRIu64 "-%" PRIu64, start, start + len, r->start,
		    r->end);
		return true;
	}
	return false;
}

/* The circular log: where it lies in the file, and its current GUID. */
struct vhdx_log {
	uint64_t	 off;
	uint64_t	 len;
	const uint8_t	*guid;
};

/* log entry header fields */
enum {
	VHDX_L_CSUM = 4, VHDX_L_LEN = 8, VHDX_L_SEQ = 16, VHDX_L_NDESC = 24,
	VHDX_L_GUID = 32, VHDX_L_FLUSHED = 48, VHDX_L_LAST = 56,
};
#define VHDX_LOG_SECTOR		(4 * KIB)

/* Read n log sectors from pos on, wrapping at the log's end. */
static int
vhdx_log_read(struct img *img, const struct vhdx_log *l, uint64_t pos,
    uint8_t *buf, uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++) {
		pos %= l->len;
		if (io_pread_zero(img->fd, buf + i * VHDX_LOG_SECTOR,
		    VHDX_LOG_SECTOR, l->off + pos) < 0)
			return err_set(errno, "Could not read the VHDX log");
		pos += VHDX_LOG_SECTOR;
	}
	return 0;
}

static uint64_t
vhdx_desc_sectors(uint32_t ndesc)
{
	return DIV_ROUND_UP((uint64_t)ndesc + 2, 128);
}

/*
 * The whole entry at pos (malloc'd into *e) when it is valid: its
 * header, descriptors and checksum, and seq following prev (0: any).
 * 1 valid, 0 not, -1 on error.
 */
static int
vhdx_log_entry(struct img *img, const struct vhdx_log *l, uint64_t pos,
    uint64_t prev, uint8_t **e)
{
	uint8_t h[VHDX_LOG_SECTOR], *d;
	uint64_t len, seq, nd, i;

	*e = NULL;
	if (vhdx_log_read(img, l, pos, h, 1) < 0)
		return -1;
	len = get_le32(h + VHDX_L_LEN);
	seq = get_le64(h + VHDX_L_SEQ);
	nd = get_le32(h + VHDX_L_NDESC);
	if (memcmp(h, "loge", 4) != 0 || len == 0 || len > l->len ||
	    len % VHDX_LOG_SECTOR || seq == 0 ||
	    memcmp(h + VHDX_L_GUID, l->guid, 16) != 0 || nd * 32 > len ||
	    vhdx_desc_sectors((uint32_t)nd) * VHDX_LOG_SECTOR > len ||
	    (prev != 0 && seq != prev + 1))
		return 0;
	*e = xmalloc(len);
	if (vhdx_log_read(img, l, pos, *e, len / VHDX_LOG_SECTOR) < 0) {
		free(*e);
		*e = NULL;
		return -1;
	}
	for (i = 0; i < nd; i++) {
		d = *e + 64 + 32 * i;
		if (get_le64(d + 24) != seq ||
		    get_le64(d + 16) % VHDX_LOG_SECTOR ||
		    (memcmp(d, "zero", 4) != 0 && memcmp(d, "desc", 4) != 0) ||
		    (memcmp(d, "zero", 4) == 0 &&
		    get_le64(d + 8) % VHDX_LOG_SECTOR))
			break;
	}
	if (i < nd || !vhdx_csum_ok(*e, len)) {
		free(*e);
		*e = NULL;
		return 0;
	}
	return 1;
}

/*
 * The active sequence: the longest run of consecutive entries from some
 * sector, the one with the highest first sequence number.  *count 0: none.
 */
static int
vhdx_log_search(struct img *img, const struct vhdx_log *l, uint64_t *start,
    uint64_t *count)
{
	uint64_t pos, q, n, seq, best = 0;
	uint8_t *e;
	int r;

	*count = 0;
	for (pos = 0; pos < l->len; pos += VHDX_LOG_SECTOR) {
		if ((r = vhdx_log_entry(img, l, pos, 0, &e)) <= 0) {
			if (r < 0)
				return -1;
			continue;
		}
		seq = get_le64(e + VHDX_L_SEQ);
		q = pos;
		n = 0;
		/* a sequence can be no longer than the log has sectors */
		while (e != NULL && n < l->len / VHDX_LOG_SECTOR) {
			q = (q + get_le32(e + VHDX_L_LEN)) % l->len;
			n++;
			free(e);
			if (vhdx_log_entry(img, l, q, seq + n - 1, &e) < 0)
				return -1;
		}
		free(e);
		if (*count == 0 || seq > best) {
			best = seq;
			*start = pos;
			*count = n;
		}
	}
	return 0;
}

/* Write one descriptor's sector(s) where it says. */
/*
 * Write one descriptor's sector, or its run of zeroes, where it says.  A
 * zero run must end inside the file as the entry leaves it (limit), so a
 * hostile length cannot make the file grow without end.
 */
static int
vhdx_log_apply_desc(struct img *img, const uint8_t *d, const uint8_t *data,
    uint64_t limit)
{
	static const uint8_t zero[64 * KIB];
	uint8_t buf[VHDX_LOG_SECTOR];
	uint64_t at = get_le64(d + 16), len, n;

	if (at > (uint64_t)INT64_MAX - VHDX_LOG_SECTOR)
		return vhdx_einval();
	if (memcmp(d, "desc", 4) == 0) {
		if (((uint64_t)get_le32(data + 4) << 32 |
		    get_le32(data + 4092)) != get_le64(d + 24))
			return vhdx_einval();
		memcpy(buf, d + 8, 8);
		memcpy(buf + 8, data + 8, 4084);
		memcpy(buf + 4092, d + 4, 4);
		if (io_pwrite(img->fd, buf, sizeof(buf), at) < 0)
			return err_set(errno, "Could not replay the VHDX log");
		return 0;
	}
	len = get_le64(d + 8);
	if (at > limit || len > limit - at)
		return vhdx_einval();
	for (; len > 0; at += n, len -= n) {
		n = MIN(len, sizeof(zero));
		if (io_pwrite(img->fd, zero, n, at) < 0)
			return err_set(errno, "Could not replay the VHDX log");
	}
	return 0;
}

static int
vhdx_log_apply(struct img *img, const uint8_t *e)
{
	uint64_t nd = get_le32(e + VHDX_L_NDESC), i, fsize, last, limit;
	const uint8_t *data = e + vhdx_desc_sectors((uint32_t)nd) *
	    VHDX_LOG_SECTOR, *end = e + get_le32(e + VHDX_L_LEN);

	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	if (get_le64(e + VHDX_L_FLUSHED) > fsize)
		return vhdx_einval();
	last = get_le64(e + VHDX_L_LAST);
	limit = ROUND_UP(MAX(fsize, MIN(last, (uint64_t)INT64_MAX - MIB)), MIB);
	for (i = 0; i < nd; i++) {
		const uint8_t *d = e + 64 + 32 * i;

		if (memcmp(d, "desc", 4) == 0 && data + VHDX_LOG_SECTOR > end)
			return vhdx_einval();
		if (vhdx_log_apply_desc(img, d, data, limit) < 0)
			return -1;
		if (memcmp(d, "desc", 4) == 0)
			data += VHDX_LOG_SECTOR;
	}
	/* qemu grows the file only to an unaligned last offset, rounded */
	if (fsize < last && last % MIB) {
		if (last > (uint64_t)INT64_MAX - MIB)
			return vhdx_einval();
		if (io_ftruncate(img->fd, (off_t)ROUND_UP(last, MIB)) < 0)
			return err_set(errno, "Could not replay the VHDX log");
	}
	return 0;
}

static int vhdx_update_headers(struct img *, struct vhdx *, bool);

static int
vhdx_log_replay(struct img *img, struct vhdx *s, const struct vhdx_log *l,
    uint64_t pos, uint64_t count)
{
	uint8_t *e;
	uint64_t i;
	int r;

	for (i = 0; i < count; i++) {
		if ((r = vhdx_log_entry(img, l, pos, 0, &e)) <= 0)
			return r < 0 ? -1 : vhdx_einval();
		r = vhdx_log_apply(img, e);
		if (r == 0 && fmt_sync(img) < 0)
			r = err_set(errno, "Could not replay the VHDX log");
		pos = (pos + get_le32(e + VHDX_L_LEN)) % l->len;
		free(e);
		if (r < 0)
			return -1;
	}
	if (fmt_sync(img) < 0)
		return err_set(errno, "Could not replay the VHDX log");
	memset(s->hdr + VHDX_H_LOG_GUID, 0, 16);
	s->replayed = true;
	return vhdx_update_headers(img, s, true);
}

/*
 * A log with a valid sequence of entries of the current log GUID is
 * replayed on a read-write open and refused on a read-only one.
 */
static int
vhdx_open_log(struct img *img, struct vhdx *s)
{
	struct vhdx_log l;
	uint64_t start = 0, count;

	l.off = get_le64(s->hdr + VHDX_H_LOG_OFF);
	l.len = get_le32(s->hdr + VHDX_H_LOG_LEN);
	l.guid = s->hdr + VHDX_H_LOG_GUID;
	if (l.off < MIB || l.off % MIB || get_le16(s->hdr + VHDX_H_LOG_VERSION))
		return vhdx_einval();
	if (vhdx_guid_null(l.guid) || l.len == 0)
		return 0;
	if (l.len % MIB)
		return vhdx_einval();
	if (vhdx_log_search(img, &l, &start, &count) < 0)
		return -1;
	if (count == 0)
		return 0;
	if (!(img->flags & IMG_RDWR))
		return err_set(0, "VHDX image file '%s' opened read-only, but "
		    "contains a log that needs to be replayed\nTo replay the "
		    "log, run:\nqemu-img check -r all '%s'", img->filename,
		    img->filename);
	return vhdx_log_replay(img, s, &l, start, count);
}

static int
vhdx_open_regions(struct img *img, struct vhdx *s)
{
	static uint8_t t[VHDX_TABLE_SIZE];
	uint32_t n, i;
	const uint8_t *e;
	bool bat = false, meta = false;
	uint64_t off, len;

	if (io_pread_zero(img->fd, t, sizeof(t), VHDX_REGION1) < 0)
		return err_set(errno, "Could not read the VHDX region table");
	if (!vhdx_csum_ok(t, sizeof(t)) || memcmp(t, "regi", 4) != 0 ||
	    (n = get_le32(t + 8)) > VHDX_MAX_ENTRIES)
		return vhdx_einval();
	for (i = 0; i < n; i++) {
		e = t + 16 + 32 * i;
		off = get_le64(e + 16);
		len = get_le32(e + 24);
		if (vhdx_overlaps(s, off, len))
			return -1;
		if (memcmp(e, bat_guid, 16) == 0 && !bat) {
			bat = true;
			s->bat_off = off;
			s->bat_len = (uint32_t)len;
		} else if (memcmp(e, meta_guid, 16) == 0 && !meta) {
			meta = true;
			s->meta_off = off;
			s->meta_len = (uint32_t)len;
		} else if (memcmp(e, bat_guid, 16) == 0 ||
		    memcmp(e, meta_guid, 16) == 0) {
			return vhdx_einval();
		} else if (get_le32(e + 28) & 1) {
			return vhdx_errno(ENOTSUP);
		} else {
			continue;
		}
		s->regions[s->nregions].start = off;
		s->regions[s->nregions++].end = off + len;
	}
	if (!bat || !meta)
		return vhdx_einval();
	return 0;
}

/* Read the little-endian item of size bytes the entry at e points to. */
static int
vhdx_meta_item(struct img *img, struct vhdx *s, const uint8_t *e, size_t size,
    uint64_t *v)
{
	uint8_t b[8] = { 0 };
	uint64_t off = get_le32(e + 16);

	if (io_pread_zero(img->fd, b, size, s->meta_off + off) < 0)
		return err_set(errno, "Could not read VHDX metadata");
	*v = size == 8 ? get_le64(b) : get_le32(b);
	return 0;
}

static int
vhdx_open_metadata(struct img *img, struct vhdx *s)
{
	static const uint8_t *const ids[META_N] = { params_guid, vsize_guid,
	    page83_guid, lsec_guid, psec_guid, parent_guid };
	static uint8_t t[VHDX_TABLE_SIZE];
	const uint8_t *ent[META_N] = { NULL };
	uint64_t v, bs;
	uint32_t n, i, k;

	if (io_pread_zero(img->fd, t, sizeof(t), s->meta_off) < 0)
		return err_set(errno, "Could not read VHDX metadata");
	if (memcmp(t, "metadata", 8) != 0)
		return vhdx_einval();
	n = get_le16(t + 10);
	if (32 + 32ull * n > sizeof(t))
		return vhdx_einval();
	for (i = 0; i < n; i++) {
		const uint8_t *e = t + 32 + 32 * i;

		for (k = 0; k < META_N && memcmp(e, ids[k], 16) != 0; k++)
			;
		if (k < META_N && ent[k] != NULL)
			return vhdx_einval();
		if (k < META_N)
			ent[k] = e;
		else if (get_le32(e + 24) & VHDX_META_REQUIRED)
			return vhdx_errno(ENOTSUP);
	}
	for (k = 0; k < META_PARENT; k++)
		if (ent[k] == NULL)
			return vhdx_errno(ENOTSUP);
	if (vhdx_meta_item(img, s, ent[META_PARAMS], 4, &bs) < 0 ||
	    vhdx_meta_item(img, s, ent[META_PARAMS] + 0, 8, &v) < 0)
		return -1;
	s->params = (uint32_t)(v >> 32);
	if (s->params & VHDX_PARAM_HAS_PARENT)
		return vhdx_errno(ent[META_PARENT] ? ENOTSUP : EINVAL);
	if (vhdx_meta_item(img, s, ent[META_VSIZE], 8, &img->size) < 0 ||
	    vhdx_meta_item(img, s, ent[META_LSEC], 4, &v) < 0)
		return -1;
	if (bs < VHDX_BLOCK_MIN || bs > VHDX_BLOCK_MAX)
		return vhdx_einval();
	if (v != 512)
		return vhdx_errno(ENOTSUP);
	if (!is_pow2(bs))
		return vhdx_einval();
	s->block_size = (uint32_t)bs;
	s->lsec = (uint32_t)v;
	s->chunk_ratio = VHDX_CHUNK_SECTORS * s->lsec / s->block_size;
	/* qemu keeps whole sectors */
	img->size -= img->size % 512;
	return 0;
}

/*
 * BAT entries for blocks payload blocks: a sector bitmap entry after each
 * chunk.  qemu counts in 32 bits, so an empty disk gets 2^32 / ratio.
 */
static uint64_t
vhdx_entries(uint32_t blocks, uint64_t ratio)
{
	return blocks + (uint32_t)(blocks - 1) / ratio;
}

/* BAT index of the block holding virtual offset off. */
static uint64_t
vhdx_bat_index(const struct vhdx *s, uint64_t off)
{
	uint64_t b = off / s->block_size;

	return b + b / s->chunk_ratio;
}

/*
 * Fully present blocks must lie inside the file and outside the log, BAT
 * and metadata: res NULL stops at the first that does not, else each
 * counts as a corruption.
 */
static int
vhdx_check_bat(struct img *img, struct vhdx *s, struct img_check *res)
{
	uint64_t fsize, i, off, blen, b;
	int r = 0;

	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	fsize = ROUND_UP(fsize, 512);	/* qemu counts the file in sectors */
	for (i = 0; i < s->entries; i++) {
		if ((s->bat[i] & VHDX_STATE_MASK) != VHDX_FULLY_PRESENT)
			continue;
		off = s->bat[i] & VHDX_OFFSET_MASK;
		b = i - i / (s->chunk_ratio + 1);
		blen = img->size > b * s->block_size ?
		    MIN(s->block_size, img->size - b * s->block_size) :
		    s->block_size;
		if (off >= fsize)
			r = err_set(0, "VHDX BAT entry %" PRIu64 " start "
			    "offset %" PRIu64 " points after end of file (%"
			    PRIu64 "). Image has probably been truncated.",
			    i, off, fsize);
		else if (off + blen > fsize)
			r = err_set(0, "VHDX BAT entry %" PRIu64 " end "
			    "offset %" PRIu64 " points after end of file (%"
			    PRIu64 "). Image has probably been truncated.",
			    i, off + blen - 1, fsize);
		else if ((i + 1) % (s->chunk_ratio + 1) != 0 &&
		    vhdx_overlaps(s, off, s->block_size))
			r = -1;
		else
			continue;
		/* past the end, qemu says why, then fails the open bare
		 * (-EINVAL); like qcow2's corruption notice, the line goes
		 * out as it happens */
		if (res == NULL && off + blen > fsize) {
			warn_msg("%s", err_msg());
			return err_set(EINVAL, "Could not open '%s'",
			    img->filename);
		}
		if (res == NULL)
			return -1;
		res->corruptions++;
		if (res->note != NULL) {
			char *line;

			line = xasprintf("%s: %s", prog_name(), err_msg());

			res->note(line, res->note_arg);
			free(line);
		}
	}
	return r;
}

static int
vhdx_open_bat(struct img *img, struct vhdx *s)
{
	uint64_t blocks, fsize, i;
	uint8_t *buf;

	blocks = DIV_ROUND_UP(img->size, s->block_size);
	if (blocks > UINT32_MAX)
		return vhdx_einval();
	s->entries = vhdx_entries((uint32_t)blocks, s->chunk_ratio);
	if (s->entries > s->bat_len / 8)
		return vhdx_einval();
	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	/* bound memory by the file: a BAT past its end cannot be read */
	if (s->entries * 8 > fsize || s->bat_off > fsize - s->entries * 8)
		return vhdx_einval();
	buf = xmalloc(s->entries * 8 + 1);
	s->bat = xmalloc(s->entries * 8 + 1);
	if (io_pread_zero(img->fd, buf, s->entries * 8, s->bat_off) < 0) {
		free(buf);
		return err_set(errno, "Could not read the VHDX BAT");
	}
	for (i = 0; i < s->entries; i++)
		s->bat[i] = get_le64(buf + 8 * i);
	free(buf);
	return 0;
}

static int
vhdx_open(struct img *img)
{
	struct vhdx *s = img->priv;
	uint8_t sig[8];

	vhdx_name = img->filename;
	if (io_pread_zero(img->fd, sig, sizeof(sig), 0) < 0)
		return err_set(errno, "Could not read the VHDX signature");
	if (memcmp(sig, "vhdxfile", 8) != 0)
		return vhdx_einval();
	if (vhdx_open_headers(img, s) < 0 || vhdx_open_log(img, s) < 0 ||
	    vhdx_open_regions(img, s) < 0 || vhdx_open_metadata(img, s) < 0 ||
	    vhdx_open_bat(img, s) < 0)
		return -1;
	if (!(img->flags & IMG_NO_REPAIR) && vhdx_check_bat(img, s, NULL) < 0)
		return -1;
	return 0;
}

static void
vhdx_close(struct img *img)
{
	struct vhdx *s = img->priv;

	free(s->bat);
}

/* Host offset of off, or 0 when its block reads as zeroes. */
static int
vhdx_host(struct img *img, const struct vhdx *s, uint64_t off, uint64_t *host)
{
	uint64_t e = s->bat[vhdx_bat_index(s, off)];

	switch (e & VHDX_STATE_MASK) {
	case VHDX_FULLY_PRESENT:
		*host = (e & VHDX_OFFSET_MASK) + off % s->block_size;
		return 0;
	case VHDX_PARTIALLY_PRESENT:
	case 4:
		return err_set(EIO, "%s: read at %#" PRIx64, img->filename,
		    off);
	default:
		*host = 0;
		return 0;
	}
}

/*
 * qemu's vhdx driver has no block status (qemu-img maps everything as
 * data), so the true status goes out marked ST_QEMU_DATA: convert and
 * img-cat skip blocks the BAT says read as zeroes, maps stay qemu's.
 */
static int
vhdx_block_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	struct vhdx *s = img->priv;
	uint64_t host, h, n, done = 0;

	if (vhdx_host(img, s, off, &host) < 0)
		return -1;
	st->offset = host;
	st->flags = ST_QEMU_DATA | (host ? ST_DATA | ST_OFFSET : ST_ZERO);
	while (done < len) {
		if (vhdx_host(img, s, off + done, &h) < 0)
			return -1;
		if ((h == 0) != (host == 0) || (host && h != host + done))
			break;
		n = MIN(len - done, s->block_size - (off + done) % s->block_size);
		done += n;
	}
	st->len = done;
	return 0;
}

static int
vhdx_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	struct vhdx *s = img->priv;
	uint8_t *p = buf;
	uint64_t n, host;

	for (; len > 0; off += n, p += n, len -= n) {
		n = MIN(len, s->block_size - off % s->block_size);
		if (vhdx_host(img, s, off, &host) < 0)
			return -1;
		if (host == 0)
			memset(p, 0, n);
		else if (io_pread_zero(img->fd, p, n, host) < 0)
			return err_set(errno, "%s: read at %#" PRIx64,
			    img->filename, host);
	}
	return 0;
}

/*
 * Both headers rewritten with new sequence numbers and write GUIDs,
 * before the first write of guest data (the spec's data write GUID).
 */
static int
vhdx_update_headers(struct img *img, struct vhdx *s, bool data)
{
	uint64_t seq = get_le64(s->hdr + VHDX_H_SEQ);
	int i;

	vhdx_guid(s->hdr + VHDX_H_FILE_GUID);
	if (data)
		vhdx_guid(s->hdr + VHDX_H_DATA_GUID);
	for (i = 0; i < 2; i++) {
		put_le64(s->hdr + VHDX_H_SEQ, ++seq);
		vhdx_csum_set(s->hdr, VHDX_HEADER_SIZE);
		/* the other header first: one stays valid throughout */
		s->cur = !s->cur;
		if (io_pwrite(img->fd, s->hdr, VHDX_HEADER_SIZE,
		    s->cur == 0 ? VHDX_HEADER1 : VHDX_HEADER2) < 0 ||
		    fmt_sync(img) < 0)
			return err_set(errno, "%s: could not write the VHDX "
			    "headers", img->filename);
	}
	s->written = true;
	return 0;
}

/* Room for a new block at the end of the file, 1 MiB aligned. */
static int
vhdx_alloc(struct img *img, struct vhdx *s, uint64_t *at)
{
	uint64_t fsize;

	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	*at = ROUND_UP(fsize, MIB);
	if (*at > (uint64_t)INT64_MAX - s->block_size ||
	    io_ftruncate(img->fd, (off_t)(*at + s->block_size)) < 0)
		return err_set(errno, "%s: could not grow the file",
		    img->filename);
	return 0;
}

/* The BAT entry of a new block, once its data is on disk. */
static int
vhdx_set_entry(struct img *img, struct vhdx *s, uint64_t off, uint64_t at)
{
	uint64_t i = vhdx_bat_index(s, off);
	uint8_t le[8];

	if (fmt_sync(img) < 0)
		return err_set(errno, "%s: flush", img->filename);
	s->bat[i] = at | VHDX_FULLY_PRESENT;
	put_le64(le, s->bat[i]);
	if (io_pwrite(img->fd, le, 8, s->bat_off + 8 * i) < 0)
		return err_set(errno, "%s: could not write the VHDX BAT",
		    img->filename);
	return 0;
}

static int
vhdx_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	struct vhdx *s = img->priv;
	const uint8_t *p = buf;
	uint64_t n, host, at = 0;

	if (!s->written && vhdx_update_headers(img, s, true) < 0)
		return -1;
	for (; len > 0; off += n, p += n, len -= n) {
		n = MIN(len, s->block_size - off % s->block_size);
		if (vhdx_host(img, s, off, &host) < 0)
			return -1;
		if (host == 0) {
			if (vhdx_alloc(img, s, &at) < 0)
				return -1;
			host = at + off % s->block_size;
		} else if (host < MIB) {
			return err_set(EFAULT, "%s: write at %#" PRIx64,
			    img->filename, host);
		}
		if (io_pwrite(img->fd, p, n, host) < 0)
			return err_set(errno, "%s: write at %#" PRIx64,
			    img->filename, host);
		if (at != 0 && vhdx_set_entry(img, s, off, at) < 0)
			return -1;
		at = 0;
	}
	return 0;
}

static int
vhdx_flush(struct img *img)
{
	return fmt_sync(img);
}

static int
vhdx_info(struct img *img, struct img_info *info)
{
	struct vhdx *s = img->priv;

	info->cluster_size = s->block_size;
	return 0;
}

static int
vhdx_check(struct img *img, int fix, struct img_check *res)
{
	struct vhdx *s = img->priv;

	(void)fix;
	if (s->replayed)
		res->corruptions_fixed++;
	/* a failing fmt_file_size is what qemu calls a check error */
	if (vhdx_check_bat(img, s, res) < 0 && res->corruptions == 0)
		res->check_errors++;
	return 0;
}

/* Create */

struct vhdx_new {
	uint64_t	 size;
	uint64_t	 log_size;
	uint64_t	 block_size;
	bool		 fixed;
	bool		 zero_blocks;
};

static int
vhdx_create_opts_parse(const char *filename, uint64_t size,
    const struct opt_list *o, struct vhdx_new *n)
{
	const char *v;

	memset(n, 0, sizeof(*n));
	n->size = ROUND_UP(size, 512);
	n->log_size = MIB;
	n->zero_blocks = true;
	if ((v = opt_list_get(o, "log_size")) != NULL &&
	    opt_size(v, &n->log_size) < 0)
		return -1;
	if ((v = opt_list_get(o, "block_size")) != NULL &&
	    opt_size(v, &n->block_size) < 0)
		return -1;
	if ((v = opt_list_get(o, "block_state_zero")) != NULL)
		n->zero_blocks = opt_bool(v) == 1;
	v = opt_list_get(o, "subformat");
	if (v == NULL || strcmp(v, "dynamic") == 0)
		n->fixed = false;
	else if (strcmp(v, "fixed") == 0)
		n->fixed = true;
	else
		return err_set(0, "%s: Parameter 'subformat' does not accept "
		    "value '%s'", filename, v);
	n->log_size = ROUND_UP(n->log_size, MIB);
	n->block_size = MIN(ROUND_UP(n->block_size, MIB), VHDX_BLOCK_MAX);
	if (n->size > VHDX_MAX_SIZE)
		return err_set(0, "%s: Image size too large; max of 64TB",
		    filename);
	if (n->log_size > UINT32_MAX)
		return err_set(0, "%s: Log size must be smaller than 4 GB",
		    filename);
	if (n->block_size == 0)
		n->block_size = n->size > 32 * TIB ? 64 * MIB :
		    n->size > 100 * 1024 * MIB ? 32 * MIB :
		    n->size > 1024 * MIB ? 16 * MIB : 8 * MIB;
	if (!is_pow2(n->block_size))
		return err_set(0, "%s: Block size must be a power of two",
		    filename);
	return 0;
}

static void
vhdx_new_header(uint8_t *h, const struct vhdx_new *n, uint64_t seq)
{
	memset(h, 0, VHDX_HEADER_SIZE);
	memcpy(h, "head", 4);
	put_le64(h + VHDX_H_SEQ, seq);
	put_le16(h + VHDX_H_VERSION, 1);
	put_le32(h + VHDX_H_LOG_LEN, (uint32_t)n->log_size);
	put_le64(h + VHDX_H_LOG_OFF, VHDX_SECTION_END);
}

static void
vhdx_new_meta_entry(uint8_t *e, const uint8_t *guid, uint32_t off,
    uint32_t len, uint32_t flags)
{
	memcpy(e, guid, 16);
	put_le32(e + 16, off);
	put_le32(e + 20, len);
	put_le32(e + 24, flags);
}

/* The metadata table and its five items (qemu's order and offsets). */
static void
vhdx_new_metadata(uint8_t *t, uint8_t *items, const struct vhdx_new *n)
{
	const uint32_t vd = VHDX_META_REQUIRED | VHDX_META_VIRTUAL;

	memset(t, 0, VHDX_TABLE_SIZE);
	memcpy(t, "metadata", 8);
	put_le16(t + 10, 5);
	vhdx_new_meta_entry(t + 32, params_guid, 64 * KIB, 8,
	    VHDX_META_REQUIRED);
	vhdx_new_meta_entry(t + 64, vsize_guid, 64 * KIB + 8, 8, vd);
	vhdx_new_meta_entry(t + 96, page83_guid, 64 * KIB + 16, 16, vd);
	vhdx_new_meta_entry(t + 128, lsec_guid, 64 * KIB + 32, 4, vd);
	vhdx_new_meta_entry(t + 160, psec_guid, 64 * KIB + 36, 4, vd);
	memset(items, 0, 40);
	put_le32(items, (uint32_t)n->block_size);
	put_le32(items + 4, n->fixed ? VHDX_PARAM_LEAVE_ALLOC : 0);
	put_le64(items + 8, n->size);
	vhdx_guid(items + 16);
	put_le32(items + 32, 512);
	put_le32(items + 36, 512);
}

static int
vhdx_create_write(int fd, const struct vhdx_new *n)
{
	static const char creator[] = "QEMU v7.2.22";
	uint64_t ratio = VHDX_CHUNK_SECTORS * 512 / n->block_size, blocks,
	    entries, bat_off, bat_len, meta_off, data, i, b, st;
	uint8_t h[VHDX_HEADER_SIZE], t[VHDX_TABLE_SIZE], items[40], *bat,
	    id[8 + 2 * sizeof(creator)] = "vhdxfile";
	uint32_t seq;
	size_t k;
	int r;

	blocks = DIV_ROUND_UP(n->size, n->block_size);
	entries = vhdx_entries((uint32_t)blocks, ratio);
	bat_off = ROUND_UP(VHDX_SECTION_END + n->log_size, MIB);
	bat_len = ROUND_UP(entries * 8, MIB);
	meta_off = ROUND_UP(bat_off + bat_len, MIB);
	data = bat_off + bat_len + 5 * MIB;
	for (k = 0; k + 1 < sizeof(creator); k++)
		put_le16(id + 8 + 2 * k, (uint16_t)creator[k]);
	put_le16(id + 8 + 2 * k, 0);
	if (io_pwrite(fd, id, sizeof(id), 0) < 0)
		return err_set(errno, "Failed to write file signature");
	if (getrandom(&seq, sizeof(seq), 0) != sizeof(seq))
		seq = 1;
	vhdx_new_header(h, n, seq);
	vhdx_guid(h + VHDX_H_FILE_GUID);
	vhdx_guid(h + VHDX_H_DATA_GUID);
	vhdx_csum_set(h, sizeof(h));
	if (io_pwrite(fd, h, sizeof(h), VHDX_HEADER1) < 0)
		return err_set(errno, "Failed to write image headers");
	put_le64(h + VHDX_H_SEQ, (uint64_t)seq + 1);
	vhdx_csum_set(h, sizeof(h));
	if (io_pwrite(fd, h, sizeof(h), VHDX_HEADER2) < 0)
		return err_set(errno, "Failed to write image headers");
	if (ftruncate(fd, (off_t)(data + (n->fixed ? n->size : 0))) < 0)
		return err_set(errno, "Could not resize file");
	if (n->fixed || n->zero_blocks) {
		bat = calloc(1, bat_len + 1);
		if (bat == NULL)
			return err_set(ENOMEM, "Failed to allocate memory for "
			    "the BAT");
		st = n->zero_blocks ? VHDX_ZERO : VHDX_FULLY_PRESENT;
		for (b = 0; b < blocks; b++) {
			i = b + b / ratio;
			put_le64(bat + 8 * i, st == VHDX_ZERO ? st :
			    ROUND_UP(data + b * n->block_size, MIB) | st);
		}
		r = io_pwrite(fd, bat, bat_len, bat_off);
		free(bat);
		if (r < 0)
			return err_set(errno, "Failed to write the BAT");
	}
	memset(t, 0, sizeof(t));
	memcpy(t, "regi", 4);
	put_le32(t + 8, 2);
	memcpy(t + 16, bat_guid, 16);
	put_le64(t + 32, bat_off);
	put_le32(t + 40, (uint32_t)bat_len);
	memcpy(t + 48, meta_guid, 16);
	put_le64(t + 64, meta_off);
	put_le32(t + 72, MIB);
	vhdx_csum_set(t, sizeof(t));
	if (io_pwrite(fd, t, sizeof(t), VHDX_REGION1) < 0)
		return err_set(errno, "Failed to write first region table");
	if (io_pwrite(fd, t, sizeof(t), VHDX_REGION2) < 0)
		return err_set(errno, "Failed to write second region table");
	vhdx_new_metadata(t, items, n);
	if (io_pwrite(fd, t, sizeof(t), meta_off) < 0 ||
	    io_pwrite(fd, items, sizeof(items), meta_off + 64 * KIB) < 0)
		return err_set(errno, "Failed to initialize metadata");
	return 0;
}

static int
vhdx_create(const char *filename, uint64_t size, const struct opt_list *o)
{
	struct vhdx_new n;
	int fd, r;

	if (vhdx_create_opts_parse(filename, size, o, &n) < 0)
		return -1;
	fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "%s: Could not create '%s'", filename,
		    filename);
	r = vhdx_create_write(fd, &n);
	if (r < 0)
		err_prefix("%s", filename);
	if (close(fd) < 0 && r == 0)
		r = err_set(errno, "%s", filename);
	return r;
}

static const struct opt_desc vhdx_create_opts[] = {
	{ "size", OPT_SIZE, "Virtual disk size; max of 64TB.", NULL },
	{ "log_size", OPT_SIZE, "Log size; min 1MB.", "1048576" },
	{ "block_size", OPT_SIZE, "Block Size; min 1MB, max 256MB. 0 means "
	    "auto-calculate based on image size.", "0" },
	{ "subformat", OPT_STRING, "VHDX format type, can be either 'dynamic' "
	    "or 'fixed'. Default is 'dynamic'.", NULL },
	{ "block_state_zero", OPT_BOOL, "Force use of payload blocks of type "
	    "'ZERO'. Non-standard, but default.  Do not set to 'off' when "
	    "using 'qemu-img convert' with subformat=dynamic.", NULL },
	{ NULL, 0, NULL, NULL },
};

const struct fmt_ops vhdx_ops = {
	.name		= "vhdx",
	.priv_size	= sizeof(struct vhdx),
	.probe		= vhdx_probe,
	.open		= vhdx_open,
	.close		= vhdx_close,
	.create		= vhdx_create,
	.create_opts	= vhdx_create_opts,
	.read		= vhdx_read,
	.write		= vhdx_write,
	.block_status	= vhdx_block_status,
	.flush		= vhdx_flush,
	.info		= vhdx_info,
	.check		= vhdx_check,
};
