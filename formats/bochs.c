/*
 * bochs: Bochs' growing redolog images, read-only as in qemu: a catalog of
 * extents, each a sector bitmap followed by its sectors.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "fmt.h"

#define BOCHS_HEADER_SIZE	512
#define BOCHS_MAGIC		"Bochs Virtual HD Image"
#define BOCHS_TYPE		"Redolog"
#define BOCHS_SUBTYPE		"Growing"
#define BOCHS_V1		0x00010000u
#define BOCHS_V2		0x00020000u
#define BOCHS_MAX_CATALOG	0x100000u	/* entries; qemu's limit (~8 TB) */
#define BOCHS_MAX_EXTENT	0x800000u
#define BOCHS_UNALLOC		0xffffffffu
#define SECTOR			512

struct bochs {
	uint32_t	*catalog;
	uint32_t	 catalog_size;
	uint64_t	 data_offset;
	uint32_t	 extent_size;
	uint64_t	 bitmap_blocks, extent_blocks;
};

static int
bochs_probe(const uint8_t *buf, size_t len, const char *filename)
{
	uint32_t v;

	(void)filename;
	if (len < BOCHS_HEADER_SIZE)
		return 0;
	v = get_le32(buf + 64);
	/* NUL-terminated strings in fixed fields of 32, 16 and 16 bytes */
	if (memcmp(buf, BOCHS_MAGIC, sizeof(BOCHS_MAGIC)) == 0 &&
	    memcmp(buf + 32, BOCHS_TYPE, sizeof(BOCHS_TYPE)) == 0 &&
	    memcmp(buf + 48, BOCHS_SUBTYPE, sizeof(BOCHS_SUBTYPE)) == 0 &&
	    (v == BOCHS_V1 || v == BOCHS_V2))
		return 100;
	return 0;
}

static int
check_geometry(struct img *img, struct bochs *s, uint32_t bitmap)
{
	uint64_t extents;

	if (s->extent_size < SECTOR)
		return err_set(0, "Extent size must be at least 512");
	if (!is_pow2(s->extent_size))
		return err_set(0, "Extent size %u is not a power of two",
		    s->extent_size);
	if (s->extent_size > BOCHS_MAX_EXTENT)
		return err_set(0, "Extent size %u is too large", s->extent_size);
	extents = DIV_ROUND_UP(img->size / SECTOR, s->extent_size / SECTOR);
	if (s->catalog_size < extents)
		return err_set(0, "Catalog size is too small for this disk size");
	s->bitmap_blocks = 1 + ((uint64_t)bitmap - 1) / SECTOR;
	s->extent_blocks = 1 + ((uint64_t)s->extent_size - 1) / SECTOR;
	return 0;
}

static int
bochs_open(struct img *img)
{
	struct bochs *s = img->priv;
	uint8_t h[BOCHS_HEADER_SIZE];
	uint32_t i, hdr;

	if (img->flags & IMG_RDWR)
		return err_set(0, "Image is read-only");
	if (io_pread(img->fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    !bochs_probe(h, sizeof(h), img->filename))
		return err_set(0, "Image not in Bochs format");
	img->size = ROUND_DOWN(get_le64(h + (get_le32(h + 64) == BOCHS_V1 ?
	    84 : 88)), SECTOR);
	s->catalog_size = get_le32(h + 72);
	if (s->catalog_size > BOCHS_MAX_CATALOG)
		return err_set(0, "Catalog size is too large");
	hdr = get_le32(h + 68);
	s->catalog = calloc(s->catalog_size ? s->catalog_size : 1, 4);
	if (s->catalog == NULL)
		return err_set(ENOMEM, "Could not allocate the catalog");
	if (io_pread(img->fd, s->catalog, (size_t)s->catalog_size * 4, hdr) !=
	    (ssize_t)s->catalog_size * 4)
		return err_set(errno ? errno : EIO, "Could not read the catalog");
	for (i = 0; i < s->catalog_size; i++)
		s->catalog[i] = get_le32(&s->catalog[i]);
	s->data_offset = (uint64_t)hdr + (uint64_t)s->catalog_size * 4;
	s->extent_size = get_le32(h + 80);
	return check_geometry(img, s, get_le32(h + 76));
}

static void
bochs_close(struct img *img)
{
	struct bochs *s = img->priv;

	free(s->catalog);
}

/* Host offset of a sector, or 0 when it reads as zeroes. */
static int
sector_offset(struct img *img, uint64_t sector, uint64_t *host)
{
	struct bochs *s = img->priv;
	uint64_t per = s->extent_size / SECTOR, ext = sector / per;
	uint64_t in = sector % per, bitmap;
	uint8_t bit;

	*host = 0;
	if (ext >= s->catalog_size || s->catalog[ext] == BOCHS_UNALLOC)
		return 0;
	bitmap = s->data_offset + SECTOR * (uint64_t)s->catalog[ext] *
	    (s->extent_blocks + s->bitmap_blocks);
	if (io_pread(img->fd, &bit, 1, bitmap + in / 8) != 1)
		return err_set(errno ? errno : EIO, "%s: read of a sector bitmap",
		    img->filename);
	if ((bit >> (in % 8)) & 1)
		*host = bitmap + SECTOR * (s->bitmap_blocks + in);
	return 0;
}

static int
bochs_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	uint8_t tmp[SECTOR], *p = buf;
	uint64_t host, sec, skip, n;

	while (len > 0) {
		sec = off / SECTOR;
		skip = off % SECTOR;
		n = MIN(len, SECTOR - skip);
		if (sector_offset(img, sec, &host) < 0)
			return -1;
		if (host == 0)
			memset(tmp, 0, SECTOR);
		else if (io_pread_zero(img->fd, tmp, SECTOR, host) < 0)
			return err_set(errno, "%s: read", img->filename);
		memcpy(p, tmp + skip, n);
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* qemu has no get_info for bochs: info shows no dirty flag */
static int
bochs_info(struct img *img, struct img_info *info)
{
	(void)img;
	info->no_dirty_flag = true;
	return 0;
}

const struct fmt_ops bochs_ops = {
	.name		= "bochs",
	.priv_size	= sizeof(struct bochs),
	.probe		= bochs_probe,
	.open		= bochs_open,
	.close		= bochs_close,
	.read		= bochs_read,
	.info		= bochs_info,
};
