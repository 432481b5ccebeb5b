/*
 * parallels: Parallels expandable images (docs/interop/parallels.txt): a
 * 64-byte little-endian header, a BAT of 32-bit cluster offsets (in
 * sectors, or in clusters for "WithouFreSpacExt" images), then the data
 * area, as qemu's parallels driver.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/crypto.h"
#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "fmt.h"

#define PRL_MAGIC		"WithoutFreeSpace"
#define PRL_MAGIC2		"WithouFreSpacExt"
#define PRL_VERSION		2
#define PRL_HEADER_SIZE		64
#define PRL_INUSE_MAGIC		0x746f6e59u
#define PRL_SECTOR		512
#define PRL_DEFAULT_CLUSTER	(1u << 20)
#define PRL_MAX_FACTOR		(1ULL << 32)
#define PRL_HEADS		16
#define PRL_SEC_IN_CYL		32

/* header field offsets */
enum {
	PRL_H_VERSION = 16, PRL_H_HEADS = 20, PRL_H_CYLINDERS = 24,
	PRL_H_TRACKS = 28, PRL_H_BAT_ENTRIES = 32, PRL_H_NB_SECTORS = 36,
	PRL_H_INUSE = 44, PRL_H_DATA_OFF = 48, PRL_H_FLAGS = 52,
	PRL_H_EXT_OFF = 56,
};

struct prl {
	uint8_t		 hdr[PRL_HEADER_SIZE];
	uint32_t	 tracks;		/* sectors per cluster */
	uint32_t	 mult;			/* BAT unit, in sectors */
	uint32_t	 bat_size;
	uint32_t	 bat_avail;		/* entries in memory; the rest are 0 */
	uint32_t	*bat;			/* host order */
	uint64_t	 data_end;		/* in sectors */
	bool		 unclean;
	bool		 rw;
};

static int
prl_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	if (len < 20)
		return 0;
	if ((memcmp(buf, PRL_MAGIC, 16) == 0 ||
	    memcmp(buf, PRL_MAGIC2, 16) == 0) &&
	    get_le32(buf + PRL_H_VERSION) == PRL_VERSION)
		return 100;
	return 0;
}

/* The host sector of sector (-1: unallocated). */
static int64_t
prl_sector(const struct prl *s, uint64_t sector)
{
	uint64_t idx = sector / s->tracks;

	if (idx >= s->bat_avail || s->bat[idx] == 0)
		return -1;
	return (int64_t)((uint64_t)s->bat[idx] * s->mult + sector % s->tracks);
}

/* Refuse what qemu's parallels_open refuses, in its words and order. */
static int
prl_check_header(struct img *img, const uint8_t *h)
{
	struct prl *s = img->priv;
	uint64_t sectors = get_le64(h + PRL_H_NB_SECTORS);

	if (get_le32(h + PRL_H_VERSION) != PRL_VERSION)
		return err_set(0, "Image not in Parallels format");
	s->tracks = get_le32(h + PRL_H_TRACKS);
	if (memcmp(h, PRL_MAGIC, 16) == 0) {
		s->mult = 1;
		sectors &= 0xffffffffu;
	} else if (memcmp(h, PRL_MAGIC2, 16) == 0) {
		s->mult = s->tracks;
	} else {
		return err_set(0, "Image not in Parallels format");
	}
	if (s->tracks == 0)
		return err_set(0, "Invalid image: Zero sectors per track");
	if (s->tracks > INT32_MAX / 513)
		return err_set(0, "Invalid image: Too big cluster");
	s->bat_size = get_le32(h + PRL_H_BAT_ENTRIES);
	if (s->bat_size > INT_MAX / 4)
		return err_set(0, "Catalog too large");
	if (sectors > INT64_MAX / PRL_SECTOR)
		return err_set(0, "Image too large");
	img->size = sectors * PRL_SECTOR;
	return 0;
}

static int
prl_write_header(struct img *img)
{
	struct prl *s = img->priv;

	if (io_pwrite(img->fd, s->hdr, sizeof(s->hdr), 0) < 0 ||
	    fmt_sync(img) < 0)
		return err_set(errno, "%s: could not write the Parallels header",
		    img->filename);
	return 0;
}

#define PRL_EXT_MAGIC		0xab234cef23dcea87ULL
#define PRL_EXT_END		0ULL
#define PRL_EXT_BITMAP		0x20385fae252cb34aULL
#define PRL_EXT_HDR		24	/* magic, MD5 sum */
#define PRL_FEAT_HDR		24	/* magic, flags, data size, unused */
#define PRL_BITMAP_HDR		32	/* size, id, granularity, l1 size */

/* A dirty bitmap feature, checked as qemu's parallels_load_bitmap. */
static int
prl_ext_bitmap(struct img *img, const uint8_t *p, uint32_t len)
{
	uint64_t size, l1;

	if (len < PRL_BITMAP_HDR)
		return err_set(0, "Too small Bitmap Feature area in Parallels "
		    "Format Extension: %d bytes, expected at least %d bytes",
		    (int)len, PRL_BITMAP_HDR);
	size = get_le64(p);
	l1 = get_le32(p + 28);
	if (size != img->size / PRL_SECTOR)
		return err_set(0, "Bitmap size (in sectors) %" PRId64 " differs "
		    "from disk size in sectors %" PRId64, (int64_t)size,
		    (int64_t)(img->size / PRL_SECTOR));
	if (l1 * 8 > len - PRL_BITMAP_HDR)
		return err_set(0, "Bitmaps feature corrupted: l1 table exceeds "
		    "extension data_size");
	return 0;
}

/*
 * qemu reads the Format Extension cluster of a read-only image (its
 * bitmaps are not ours to show, but a bad one fails the open).
 */
static int
prl_read_ext(struct img *img, uint64_t off)
{
	struct prl *s = img->priv;
	uint64_t cs = (uint64_t)s->tracks * PRL_SECTOR, magic, pos;
	uint32_t dlen;
	uint8_t *buf, sum[16];
	int r = -1;

	buf = xmalloc(cs);
	if (io_pread_zero(img->fd, buf, cs, off) < 0) {
		err_set(errno, "Failed to read Format Extension cluster");
		goto out;
	}
	if ((magic = get_le64(buf)) != PRL_EXT_MAGIC) {
		err_set(0, "Wrong parallels Format Extension magic: 0x%" PRIx64
		    ", expected: 0x%llx", magic, PRL_EXT_MAGIC);
		goto out;
	}
	crypto_hash(HASH_MD5, buf + PRL_EXT_HDR, cs - PRL_EXT_HDR, sum);
	if (memcmp(sum, buf + 8, 16) != 0) {
		err_set(0, "Wrong checksum in Format Extension header. Format "
		    "extension is corrupted.");
		goto out;
	}
	for (pos = PRL_EXT_HDR;;) {
		if (pos + PRL_FEAT_HDR > cs) {
			err_set(0, "Can not read feature header, as remaining "
			    "bytes (%d) in Format Extension cluster is less than "
			    "feature header size (%d)", (int)(cs - pos),
			    PRL_FEAT_HDR);
			goto out;
		}
		magic = get_le64(buf + pos);
		dlen = get_le32(buf + pos + 16);
		if (pos + PRL_FEAT_HDR + dlen > cs) {
			err_set(0, "Feature data_size exceedes Format Extension "
			    "cluster");
			goto out;
		}
		pos += PRL_FEAT_HDR;
		if (magic == PRL_EXT_END) {
			r = 0;
			goto out;
		}
		if (magic != PRL_EXT_BITMAP) {
			err_set(0, "Unknown feature: 0x%" PRIx64, magic);
			goto out;
		}
		if (prl_ext_bitmap(img, buf + pos, dlen) < 0)
			goto out;
		pos += ROUND_UP((uint64_t)dlen, 8);
	}
out:
	free(buf);
	return r;
}

static int
prl_open(struct img *img)
{
	struct prl *s = img->priv;
	uint64_t fsize, len, i, off, data_off, ext;
	uint8_t *buf;

	if (io_pread_zero(img->fd, s->hdr, sizeof(s->hdr), 0) < 0)
		return err_set(errno, "Could not read the Parallels header");
	if (prl_check_header(img, s->hdr) < 0 || fmt_file_size(img, &fsize) < 0)
		return -1;
	/*
	 * qemu reads a BAT past the end of the file as zeroes: only the
	 * entries the file holds are kept, so the memory is bounded by it.
	 */
	s->bat_avail = fsize <= PRL_HEADER_SIZE ? 0 :
	    (uint32_t)MIN(s->bat_size, (fsize - PRL_HEADER_SIZE) / 4);
	len = (uint64_t)s->bat_avail * 4;
	s->bat = xmalloc(len ? len : 1);
	buf = xmalloc(len ? len : 1);
	if (io_pread_zero(img->fd, buf, len, PRL_HEADER_SIZE) < 0) {
		free(buf);
		return err_set(errno, "Could not read the Parallels BAT");
	}
	for (i = 0; i < s->bat_avail; i++)
		s->bat[i] = get_le32(buf + 4 * i);
	free(buf);
	data_off = get_le32(s->hdr + PRL_H_DATA_OFF);
	s->data_end = data_off ? data_off : DIV_ROUND_UP(PRL_HEADER_SIZE +
	    (uint64_t)s->bat_size * 4, PRL_SECTOR);
	for (i = 0; i < s->bat_avail; i++) {
		off = (uint64_t)s->bat[i] * s->mult;
		if (s->bat[i] != 0 && off >= s->data_end)
			s->data_end = off + s->tracks;
	}
	if (get_le32(s->hdr + PRL_H_INUSE) == PRL_INUSE_MAGIC) {
		/* not closed cleanly: only a check may write it */
		s->unclean = true;
		if (img->flags & IMG_RDWR)
			return err_set(0, "parallels: Image was not closed "
			    "correctly; cannot be opened read/write");
	}
	ext = get_le64(s->hdr + PRL_H_EXT_OFF);
	if (!(img->flags & IMG_RDWR)) {
		if (ext == 0)
			return 0;
		if (ext > INT64_MAX / PRL_SECTOR)
			return err_set(0, "Failed to read Format Extension "
			    "cluster: Invalid argument");
		return prl_read_ext(img, ext * PRL_SECTOR);
	}
	put_le32(s->hdr + PRL_H_INUSE, PRL_INUSE_MAGIC);
	if (prl_write_header(img) < 0)
		return -1;
	s->rw = true;
	return 0;
}

static void
prl_close(struct img *img)
{
	struct prl *s = img->priv;

	if (s->rw) {
		put_le32(s->hdr + PRL_H_INUSE, 0);
		if (prl_write_header(img) == 0)
			(void)!io_ftruncate(img->fd, (off_t)(s->data_end *
			    PRL_SECTOR));
	}
	free(s->bat);
}

/* Clusters alike from sector: unallocated, or allocated and contiguous. */
static int64_t
prl_run(const struct prl *s, uint64_t sector, uint64_t nb, uint64_t *n)
{
	int64_t start = prl_sector(s, sector), off;
	uint64_t step;

	*n = 0;
	do {
		/* past the BAT in memory everything is unallocated */
		if (start < 0 && (sector + *n) / s->tracks >= s->bat_avail) {
			*n = nb;
			break;
		}
		off = prl_sector(s, sector + *n);
		if (*n > 0 && (start < 0 ? off >= 0 : off != start +
		    (int64_t)*n))
			break;
		step = MIN(nb - *n, s->tracks - (sector + *n) % s->tracks);
		*n += step;
	} while (*n < nb);
	return start;
}

static int
prl_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	struct prl *s = img->priv;
	uint8_t *p = buf;
	uint64_t n, in, host;
	int64_t pos;

	while (len > 0) {
		in = off % PRL_SECTOR;
		pos = prl_run(s, off / PRL_SECTOR, DIV_ROUND_UP(in + len,
		    PRL_SECTOR), &n);
		n = MIN(len, n * PRL_SECTOR - in);
		if (pos < 0) {
			memset(p, 0, n);
		} else {
			host = (uint64_t)pos * PRL_SECTOR + in;
			if (io_pread_zero(img->fd, p, n, host) < 0)
				return err_set(errno, "%s: read at %#" PRIx64,
				    img->filename, host);
		}
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int
prl_block_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	struct prl *s = img->priv;
	uint64_t n, in = off % PRL_SECTOR;
	int64_t pos;

	pos = prl_run(s, off / PRL_SECTOR, DIV_ROUND_UP(in + len, PRL_SECTOR),
	    &n);
	st->len = MIN(len, n * PRL_SECTOR - in);
	if (pos < 0) {
		st->flags = 0;
		return 0;
	}
	st->flags = ST_DATA | ST_OFFSET;
	st->offset = (uint64_t)pos * PRL_SECTOR + in;
	return 0;
}

/* A new cluster at the end of the data area for BAT entry idx. */
static int
prl_alloc(struct img *img, uint64_t idx)
{
	struct prl *s = img->priv;
	uint64_t cs = (uint64_t)s->tracks * PRL_SECTOR;
	uint64_t host = s->data_end * PRL_SECTOR, fsize;
	uint8_t be[4], *z;
	int r = 0;

	if (s->data_end / s->mult > UINT32_MAX)
		return err_set(EFBIG, "%s", img->filename);
	if (idx >= s->bat_avail) {
		s->bat = xrealloc(s->bat, (idx + 1) * 4);
		memset(s->bat + s->bat_avail, 0, (idx + 1 - s->bat_avail) * 4);
		s->bat_avail = (uint32_t)idx + 1;
	}
	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	/* what qemu preallocates reads as zeroes: so must the new cluster */
	if (host < fsize) {
		z = xcalloc(1, cs);
		r = io_pwrite(img->fd, z, cs, host);
		free(z);
	} else if (io_extend(img->fd, host + cs) < 0) {
		r = -1;
	}
	if (r < 0)
		return err_set(errno, "%s: could not allocate a cluster",
		    img->filename);
	s->bat[idx] = (uint32_t)(s->data_end / s->mult);
	s->data_end += s->tracks;
	put_le32(be, s->bat[idx]);
	if (io_pwrite(img->fd, be, 4, PRL_HEADER_SIZE + 4 * idx) < 0)
		return err_set(errno, "%s: could not write the BAT",
		    img->filename);
	return 0;
}

static int
prl_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	struct prl *s = img->priv;
	uint64_t cs = (uint64_t)s->tracks * PRL_SECTOR, n, host, idx;
	const uint8_t *p = buf;

	for (; len > 0; off += n, p += n, len -= n) {
		idx = off / cs;
		n = MIN(len, cs - off % cs);
		if (idx >= s->bat_size)
			return err_set(EINVAL, "%s: write past the BAT",
			    img->filename);
		if ((idx >= s->bat_avail || s->bat[idx] == 0) &&
		    prl_alloc(img, idx) < 0)
			return -1;
		host = (uint64_t)s->bat[idx] * s->mult * PRL_SECTOR + off % cs;
		if (io_pwrite(img->fd, p, n, host) < 0)
			return err_set(errno, "%s: write at %#" PRIx64,
			    img->filename, host);
	}
	return 0;
}

static int
prl_flush(struct img *img)
{
	return fmt_sync(img);
}

static int
prl_info(struct img *img, struct img_info *info)
{
	(void)img;
	info->no_dirty_flag = true;
	return 0;
}

static void prl_note(struct img_check *, const char *, ...) PRINTF(2, 3);

static void
prl_note(struct img_check *res, const char *fmt, ...)
{
	char line[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (res->note)
		res->note(line, res->note_arg);
}

/* qemu's parallels_co_check: unclean header, clusters past the end, leaks. */
static int
prl_check(struct img *img, int fix, struct img_check *res)
{
	struct prl *s = img->priv;
	uint64_t cs = (uint64_t)s->tracks * PRL_SECTOR, size, off, high = 0;
	uint64_t prev = 0, i, count;
	bool flush = false;
	uint8_t be[4];

	if (fmt_file_size(img, &size) < 0) {
		res->check_errors++;
		return -1;
	}
	if (s->unclean) {
		prl_note(res, "%s image was not closed correctly",
		    fix & IMG_FIX_ERRORS ? "Repairing" : "ERROR");
		res->corruptions++;
		if (fix & IMG_FIX_ERRORS) {
			res->corruptions_fixed++;
			s->unclean = false;
			put_le32(s->hdr + PRL_H_INUSE, 0);
			flush = true;
		}
	}
	res->total_clusters = s->bat_size;
	for (i = 0; i < s->bat_size; i++) {
		off = i < s->bat_avail ?
		    (uint64_t)s->bat[i] * s->mult * PRL_SECTOR : 0;
		if (off == 0) {
			prev = 0;
			continue;
		}
		if (off > size) {
			prl_note(res, "%s cluster %" PRIu64 " is outside image",
			    fix & IMG_FIX_ERRORS ? "Repairing" : "ERROR", i);
			res->corruptions++;
			if (fix & IMG_FIX_ERRORS) {
				prev = 0;
				s->bat[i] = 0;
				res->corruptions_fixed++;
				put_le32(be, 0);
				if (io_pwrite(img->fd, be, 4,
				    PRL_HEADER_SIZE + 4 * i) < 0) {
					res->check_errors++;
					return err_set(errno, "%s",
					    img->filename);
				}
				flush = true;
				continue;
			}
		}
		res->allocated_clusters++;
		high = MAX(high, off);
		if (prev != 0 && prev + cs != off)
			res->fragmented_clusters++;
		prev = off;
	}
	if (flush && prl_write_header(img) < 0) {
		res->check_errors++;
		return -1;
	}
	res->image_end_offset = high + cs;
	if (size > res->image_end_offset) {
		count = DIV_ROUND_UP(size - res->image_end_offset, cs);
		prl_note(res, "%s space leaked at the end of the image %" PRIu64,
		    fix & IMG_FIX_LEAKS ? "Repairing" : "ERROR",
		    size - res->image_end_offset);
		res->leaks += (int64_t)count;
		if (fix & IMG_FIX_LEAKS) {
			if (io_ftruncate(img->fd, (off_t)res->image_end_offset) < 0) {
				res->check_errors++;
				return err_set(errno, "%s", img->filename);
			}
			res->leaks_fixed += (int64_t)count;
		}
	}
	return 0;
}

static int
prl_create_file(int fd, uint64_t size, uint64_t cs)
{
	uint8_t h[PRL_SECTOR] = { 0 };
	uint64_t entries = DIV_ROUND_UP(size, cs), bat_sectors;

	bat_sectors = DIV_ROUND_UP(PRL_HEADER_SIZE + 4 * entries, cs);
	bat_sectors = bat_sectors * cs / PRL_SECTOR;
	memcpy(h, PRL_MAGIC2, 16);
	put_le32(h + PRL_H_VERSION, PRL_VERSION);
	put_le32(h + PRL_H_HEADS, PRL_HEADS);
	put_le32(h + PRL_H_CYLINDERS, (uint32_t)(size / PRL_SECTOR /
	    PRL_HEADS / PRL_SEC_IN_CYL));
	put_le32(h + PRL_H_TRACKS, (uint32_t)(cs / PRL_SECTOR));
	put_le32(h + PRL_H_BAT_ENTRIES, (uint32_t)entries);
	put_le64(h + PRL_H_NB_SECTORS, DIV_ROUND_UP(size, PRL_SECTOR));
	put_le32(h + PRL_H_DATA_OFF, (uint32_t)bat_sectors);
	if (ftruncate(fd, 0) < 0)
		return err_set(errno, "Could not resize file");
	if (io_pwrite(fd, h, sizeof(h), 0) < 0 ||
	    ftruncate(fd, (off_t)(bat_sectors * PRL_SECTOR)) < 0)
		return err_set(errno, "Failed to create Parallels image");
	return 0;
}

static int
prl_create(const char *filename, uint64_t size, const struct opt_list *o)
{
	const char *v = opt_list_get(o, "cluster_size");
	uint64_t cs = PRL_DEFAULT_CLUSTER;
	int fd, r;

	if (v != NULL && opt_size(v, &cs) < 0)
		return err_set(0, "%s: Invalid cluster size", filename);
	/* qemu rounds both up to whole sectors first */
	if (size > UINT64_MAX - PRL_SECTOR || cs > UINT64_MAX - PRL_SECTOR)
		return err_set(0, "%s: Cluster size is too large", filename);
	size = ROUND_UP(size, PRL_SECTOR);
	cs = ROUND_UP(cs, PRL_SECTOR);
	if (cs >= INT64_MAX / PRL_MAX_FACTOR)
		return err_set(0, "%s: Cluster size is too large", filename);
	if (size >= PRL_MAX_FACTOR * cs)
		return err_set(0, "%s: Image size is too large for this cluster "
		    "size", filename);
	if (cs == 0)
		return err_set(0, "%s: Cluster size must be a multiple of 512 "
		    "bytes", filename);
	fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "%s: Could not create '%s'", filename,
		    filename);
	if ((r = prl_create_file(fd, size, cs)) < 0)
		err_prefix("%s", filename);
	if (close(fd) < 0 && r == 0)
		r = err_set(errno, "%s", filename);
	return r;
}

static const struct opt_desc prl_create_opts[] = {
	{ "size", OPT_SIZE, "Virtual disk size", NULL },
	{ "cluster_size", OPT_SIZE, "Parallels image cluster size", "1048576" },
	{ NULL, 0, NULL, NULL },
};

const struct fmt_ops parallels_ops = {
	.name		= "parallels",
	.priv_size	= sizeof(struct prl),
	.probe		= prl_probe,
	.open		= prl_open,
	.close		= prl_close,
	.create		= prl_create,
	.create_opts	= prl_create_opts,
	.read		= prl_read,
	.write		= prl_write,
	.flush		= prl_flush,
	.block_status	= prl_block_status,
	.info		= prl_info,
	.check		= prl_check,
};
