/*
 * vpc: Virtual PC / VHD images, fixed and dynamic ("Virtual Hard Disk Image
 * Format Specification": the "conectix" footer, the "cxsparse" dynamic
 * header, the block allocation table, sector bitmaps), as qemu's vpc driver.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "fmt.h"

#define VPC_SECTOR		512
#define VPC_FOOTER_SIZE		512
#define VPC_DYN_SIZE		1024
#define VPC_TYPE_FIXED		2
#define VPC_TYPE_DYNAMIC	3
#define VPC_UNALLOCATED		0xffffffffu
#define VPC_BLOCK_SIZE		0x200000u	/* what qemu creates */
/* 2040 GiB: qemu's limit on any image */
#define VPC_MAX_SECTORS		0xff000000ull
/* the largest CHS geometry; an image this size uses current_size */
#define VPC_CHS_MAX_C		65535
#define VPC_CHS_MAX_H		16
#define VPC_CHS_MAX_S		255
#define VPC_MAX_GEOMETRY	((uint64_t)VPC_CHS_MAX_C * VPC_CHS_MAX_H * \
				    VPC_CHS_MAX_S)
#define VPC_TIMESTAMP_BASE	946684800	/* 2000-01-01 00:00:00 UTC */

/* footer fields (big endian) */
enum {
	VPC_F_COOKIE = 0, VPC_F_FEATURES = 8, VPC_F_VERSION = 12,
	VPC_F_DATA_OFFSET = 16, VPC_F_TIMESTAMP = 24, VPC_F_CREATOR_APP = 28,
	VPC_F_MAJOR = 32, VPC_F_MINOR = 34, VPC_F_CREATOR_OS = 36,
	VPC_F_ORIG_SIZE = 40, VPC_F_CUR_SIZE = 48, VPC_F_CYLS = 56,
	VPC_F_HEADS = 58, VPC_F_SECS = 59, VPC_F_TYPE = 60,
	VPC_F_CHECKSUM = 64, VPC_F_UUID = 68,
};

/* dynamic disk header fields */
enum {
	VPC_D_COOKIE = 0, VPC_D_DATA_OFFSET = 8, VPC_D_TABLE_OFFSET = 16,
	VPC_D_VERSION = 24, VPC_D_MAX_ENTRIES = 28, VPC_D_BLOCK_SIZE = 32,
	VPC_D_CHECKSUM = 36,
};

struct vpc {
	uint8_t		 footer[VPC_FOOTER_SIZE];
	bool		 fixed;
	uint32_t	*bat;			/* host order, sector numbers */
	uint32_t	 entries;
	uint32_t	 block_size;
	uint32_t	 bitmap_size;
	uint64_t	 bat_offset;
	uint64_t	 free_offset;		/* end of the data: the footer copy */
	uint64_t	 last_bitmap;		/* bitmap last set all ones */
};

static int
vpc_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	return len >= 8 && memcmp(buf, "conectix", 8) == 0 ? 100 : 0;
}

static uint32_t
vpc_checksum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;
	size_t i;

	for (i = 0; i < len; i++)
		sum += p[i];
	return ~sum;
}

/* The checksum of a structure whose own checksum field is at csum. */
static uint32_t
vpc_checksum_without(const uint8_t *p, size_t len, size_t csum)
{
	uint32_t sum = ~vpc_checksum(p, len);
	size_t i;

	for (i = csum; i < csum + 4; i++)
		sum -= p[i];
	return ~sum;
}

/*
 * Virtual PC sizes a disk by its CHS geometry, Hyper-V and others by
 * current_size; the creator application tells which (qemu's table).
 */
static bool
vpc_uses_chs(const uint8_t *f)
{
	static const char *const apps[] = { "win ", "qem2", "d2v ", "CTXS" };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(apps); i++)
		if (memcmp(f + VPC_F_CREATOR_APP, apps[i], 4) == 0)
			return false;
	return memcmp(f + VPC_F_CREATOR_APP, "tap", 4) != 0;
}

static int
vpc_read_footer(struct img *img, struct vpc *s)
{
	uint64_t fsize;

	if (io_pread_zero(img->fd, s->footer, VPC_FOOTER_SIZE, 0) < 0)
		return err_set(errno, "Unable to read VHD header");
	if (memcmp(s->footer, "conectix", 8) == 0)
		return 0;
	/* a fixed disk has its footer only at the end */
	/* qemu sees the file's length in whole sectors */
	if (fmt_file_size(img, &fsize) < 0)
		return err_set(0, "Invalid file size");
	fsize = ROUND_UP(fsize, VPC_SECTOR);
	if (fsize < VPC_FOOTER_SIZE)
		return err_set(0, "File too small for a VHD header");
	if (io_pread_zero(img->fd, s->footer, VPC_FOOTER_SIZE,
	    fsize - VPC_FOOTER_SIZE) < 0)
		return err_set(errno, "Could not read VHD footer");
	if (memcmp(s->footer, "conectix", 8) != 0 ||
	    get_be32(s->footer + VPC_F_TYPE) != VPC_TYPE_FIXED)
		return err_set(0, "invalid VPC image");
	s->fixed = true;
	return 0;
}

/* The virtual size in sectors: CHS or current_size, as qemu chooses. */
static int
vpc_size(struct img *img, struct vpc *s, uint64_t *sectors)
{
	const uint8_t *f = s->footer;
	const char *calc = img->open_opts ?
	    opt_list_get(img->open_opts, "force_size_calc") : NULL;
	bool chs = vpc_uses_chs(f), force_sz = false;
	uint64_t n;

	if (calc != NULL && strcmp(calc, "current_size") == 0)
		force_sz = true;
	else if (calc != NULL && strcmp(calc, "chs") == 0)
		chs = true;
	else if (calc != NULL)
		return err_set(0, "Invalid size calculation mode: '%s'", calc);
	n = (uint64_t)get_be16(f + VPC_F_CYLS) * f[VPC_F_HEADS] * f[VPC_F_SECS];
	if (!chs || n == VPC_MAX_GEOMETRY || force_sz)
		n = get_be64(f + VPC_F_CUR_SIZE) / VPC_SECTOR;
	/* qemu fails without a message of its own: its words doubled */
	if (n > VPC_MAX_SECTORS)
		return err_set(EFBIG, "Could not open '%s'", img->filename);
	*sectors = n;
	return 0;
}

/* The dynamic header's geometry of blocks, refused as qemu refuses it. */
static int
vpc_open_dynamic_header(struct img *img, struct vpc *s, uint64_t sectors)
{
	uint64_t off = get_be64(s->footer + VPC_F_DATA_OFFSET);
	uint8_t d[VPC_DYN_SIZE];

	if (off > (uint64_t)INT64_MAX - VPC_DYN_SIZE ||
	    io_pread_zero(img->fd, d, sizeof(d), off) < 0)
		return err_set(0, "Error reading dynamic VHD header");
	if (memcmp(d + VPC_D_COOKIE, "cxsparse", 8) != 0)
		return err_set(0, "Invalid header magic");
	s->block_size = get_be32(d + VPC_D_BLOCK_SIZE);
	if (!is_pow2(s->block_size) || s->block_size < VPC_SECTOR)
		return err_set(0, "Invalid block size %" PRIu32, s->block_size);
	s->bitmap_size = ROUND_UP(s->block_size / (8 * VPC_SECTOR), VPC_SECTOR);
	s->entries = get_be32(d + VPC_D_MAX_ENTRIES);
	if (sectors * VPC_SECTOR / s->block_size > 0xffffffffu)
		return err_set(0, "Too many blocks");
	if ((uint64_t)s->entries * s->block_size < sectors * VPC_SECTOR)
		return err_set(0, "Page table too small");
	if (s->entries > INT_MAX / 4)
		return err_set(0, "Max Table Entries too large (%" PRId32 ")",
		    (int32_t)s->entries);
	s->bat_offset = get_be64(d + VPC_D_TABLE_OFFSET);
	return 0;
}

static int
vpc_truncated(void)
{
	return err_set(0, "block-vpc: free_data_block_offset points after "
	    "the end of file. The image has been truncated.");
}

static int
vpc_open_bat(struct img *img, struct vpc *s)
{
	uint64_t fsize, len = (uint64_t)s->entries * 4, i;
	uint8_t *buf;

	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	fsize = ROUND_UP(fsize, VPC_SECTOR);	/* as bdrv_getlength() */
	if (s->bat_offset > (uint64_t)INT64_MAX - len - VPC_SECTOR)
		return err_set(0, "Error reading pagetable");
	/*
	 * The data starts after the BAT, so a BAT past the end of the file
	 * fails the truncation check below: refusing it before reading
	 * also bounds the table's memory by the file's size.
	 */
	s->free_offset = ROUND_UP(s->bat_offset + len, VPC_SECTOR);
	if (s->free_offset > fsize)
		return vpc_truncated();
	if ((buf = malloc(len + 1)) == NULL ||
	    (s->bat = malloc(len + 1)) == NULL) {
		free(buf);
		return err_set(ENOMEM, "Unable to allocate memory for page table");
	}
	if (io_pread_zero(img->fd, buf, len, s->bat_offset) < 0) {
		free(buf);
		return err_set(errno, "Error reading pagetable");
	}
	for (i = 0; i < s->entries; i++) {
		s->bat[i] = get_be32(buf + 4 * i);
		if (s->bat[i] != VPC_UNALLOCATED)
			s->free_offset = MAX(s->free_offset, (uint64_t)s->bat[i] *
			    VPC_SECTOR + s->bitmap_size + s->block_size);
	}
	free(buf);
	if (s->free_offset > fsize)
		return vpc_truncated();
	s->last_bitmap = UINT64_MAX;
	return 0;
}

static int
vpc_open(struct img *img)
{
	struct vpc *s = img->priv;
	uint64_t sectors = 0;

	if (vpc_read_footer(img, s) < 0)
		return -1;
	if (vpc_checksum_without(s->footer, VPC_FOOTER_SIZE, VPC_F_CHECKSUM) !=
	    get_be32(s->footer + VPC_F_CHECKSUM))
		return err_set(0, "Incorrect header checksum");
	if (vpc_size(img, s, &sectors) < 0)
		return -1;
	img->size = sectors * VPC_SECTOR;
	if (s->fixed)
		return 0;
	if (vpc_open_dynamic_header(img, s, sectors) < 0)
		return -1;
	return vpc_open_bat(img, s);
}

static void
vpc_close(struct img *img)
{
	struct vpc *s = img->priv;

	free(s->bat);
}

/* Host offset of a virtual offset, or UINT64_MAX when its block is unallocated. */
static uint64_t
vpc_host(const struct vpc *s, uint64_t off)
{
	uint64_t i = off / s->block_size;

	if (i >= s->entries || s->bat[i] == VPC_UNALLOCATED)
		return UINT64_MAX;
	return (uint64_t)s->bat[i] * VPC_SECTOR + s->bitmap_size +
	    off % s->block_size;
}

static int
vpc_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	struct vpc *s = img->priv;
	uint8_t *p = buf;
	uint64_t n, host;

	if (s->fixed) {
		if (io_pread_zero(img->fd, buf, len, off) < 0)
			return err_set(errno, "%s: read at %#" PRIx64,
			    img->filename, off);
		return 0;
	}
	for (; len > 0; off += n, p += n, len -= n) {
		n = MIN(len, s->block_size - off % s->block_size);
		if ((host = vpc_host(s, off)) == UINT64_MAX)
			memset(p, 0, n);
		else if (io_pread_zero(img->fd, p, n, host) < 0)
			return err_set(errno, "%s: read at %#" PRIx64,
			    img->filename, host);
	}
	return 0;
}

/*
 * An allocated block is data to its end (qemu ignores the sector bitmap);
 * a run of unallocated blocks reads as zeroes.
 */
static int
vpc_block_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	struct vpc *s = img->priv;
	uint64_t end = off + len, next, host, n;
	bool zero;

	if (s->fixed) {		/* qemu asks the file under a fixed disk */
		if (fmt_file_status(img, off, len, &n, &zero) < 0)
			return -1;
		st->len = n;
		st->offset = off;
		st->flags = ST_DATA | ST_OFFSET | (zero ? ST_ZERO : 0);
		return 0;
	}
	host = vpc_host(s, off);
	next = MIN(end, ROUND_DOWN(off, s->block_size) + s->block_size);
	if (host != UINT64_MAX) {
		st->len = next - off;
		st->offset = host;
		st->flags = ST_DATA | ST_OFFSET;
		return 0;
	}
	while (next < end && vpc_host(s, next) == UINT64_MAX)
		next = MIN(end, next + s->block_size);
	st->len = next - off;
	st->flags = ST_ZERO;
	return 0;
}

static int
vpc_write_bitmap(struct img *img, struct vpc *s, uint64_t at)
{
	uint8_t *bitmap = xmalloc(s->bitmap_size);
	int r;

	memset(bitmap, 0xff, s->bitmap_size);
	r = io_pwrite(img->fd, bitmap, s->bitmap_size, at);
	free(bitmap);
	if (r < 0)
		return err_set(errno, "%s: could not write a VHD sector bitmap",
		    img->filename);
	return fmt_sync(img);
}

/*
 * A new block where the footer copy was: its bitmap (all sectors in use),
 * the footer moved past the block, then the BAT entry, each synced first.
 */
static int
vpc_alloc(struct img *img, struct vpc *s, uint64_t off)
{
	uint64_t i = off / s->block_size, at = s->free_offset;
	uint8_t be[4];

	if (i >= s->entries || at / VPC_SECTOR >= VPC_UNALLOCATED)
		return err_set(EINVAL, "%s: cannot allocate a VHD block at %#"
		    PRIx64, img->filename, off);
	if (vpc_write_bitmap(img, s, at) < 0)
		return -1;
	if (io_pwrite(img->fd, s->footer, VPC_FOOTER_SIZE,
	    at + s->bitmap_size + s->block_size) < 0 || fmt_sync(img) < 0)
		return err_set(errno, "%s: could not write the VHD footer",
		    img->filename);
	put_be32(be, (uint32_t)(at / VPC_SECTOR));
	if (io_pwrite(img->fd, be, 4, s->bat_offset + 4 * i) < 0 ||
	    fmt_sync(img) < 0)
		return err_set(errno, "%s: could not write the VHD block "
		    "allocation table", img->filename);
	s->bat[i] = (uint32_t)(at / VPC_SECTOR);
	s->free_offset = at + s->bitmap_size + s->block_size;
	s->last_bitmap = at;
	return 0;
}

static int
vpc_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	struct vpc *s = img->priv;
	const uint8_t *p = buf;
	uint64_t n, host, bitmap;

	if (s->fixed) {
		if (io_pwrite(img->fd, buf, len, off) < 0)
			return err_set(errno, "%s: write at %#" PRIx64,
			    img->filename, off);
		return 0;
	}
	for (; len > 0; off += n, p += n, len -= n) {
		n = MIN(len, s->block_size - off % s->block_size);
		if ((host = vpc_host(s, off)) == UINT64_MAX) {
			if (vpc_alloc(img, s, off) < 0)
				return -1;
			host = vpc_host(s, off);
		}
		/* mark every sector of a block written to in use, as qemu */
		bitmap = host - off % s->block_size - s->bitmap_size;
		if (bitmap != s->last_bitmap) {
			if (vpc_write_bitmap(img, s, bitmap) < 0)
				return -1;
			s->last_bitmap = bitmap;
		}
		if (io_pwrite(img->fd, p, n, host) < 0)
			return err_set(errno, "%s: write at %#" PRIx64,
			    img->filename, host);
	}
	return 0;
}

static int
vpc_flush(struct img *img)
{
	return fmt_sync(img);
}

static int
vpc_info(struct img *img, struct img_info *info)
{
	struct vpc *s = img->priv;

	info->cluster_size = s->fixed ? 0 : s->block_size;
	return 0;
}

/*
 * The VHD specification's CHS algorithm, with up to 255 heads past the
 * 127 GB EIDE limit as qemu allows; the product may be below total.
 */
static void
vpc_geometry(uint64_t total, uint16_t *c, uint8_t *h, uint8_t *spc)
{
	uint32_t ch;

	total = MIN(total, VPC_MAX_GEOMETRY);
	if (total >= 65535ull * 16 * 63) {
		*spc = 255;
		*h = 16;
		ch = (uint32_t)(total / *spc);
	} else {
		*spc = 17;
		ch = (uint32_t)(total / *spc);
		*h = (uint8_t)MAX(DIV_ROUND_UP(ch, 1024), 4);
		if (ch >= *h * 1024u || DIV_ROUND_UP(ch, 1024) > 16) {
			*spc = 31;
			*h = 16;
			ch = (uint32_t)(total / *spc);
		}
		if (ch >= *h * 1024u) {
			*spc = 63;
			*h = 16;
			ch = (uint32_t)(total / *spc);
		}
	}
	*c = (uint16_t)(ch / *h);
}

/*
 * The smallest geometry holding size (or the largest, then current_size
 * counts); *sectors is the size qemu gives the disk.  -1: past 2040 GiB.
 */
static int
vpc_rounded_size(uint64_t size, bool force, uint16_t *c, uint8_t *h,
    uint8_t *spc, uint64_t *sectors)
{
	uint64_t total, i;

	*c = 0;
	*h = 0;
	*spc = 0;
	if (force) {
		*c = VPC_CHS_MAX_C;
		*h = VPC_CHS_MAX_H;
		*spc = VPC_CHS_MAX_S;
	} else {
		total = MIN(VPC_MAX_GEOMETRY, size / VPC_SECTOR);
		for (i = 0; total > (uint64_t)*c * *h * *spc; i++)
			vpc_geometry(total + i, c, h, spc);
	}
	if ((uint64_t)*c * *h * *spc != VPC_MAX_GEOMETRY) {
		*sectors = (uint64_t)*c * *h * *spc;
		return 0;
	}
	*sectors = size / VPC_SECTOR;
	return *sectors > VPC_MAX_SECTORS ? -1 : 0;
}

static void
vpc_make_footer(uint8_t *f, uint64_t size, bool force, bool fixed,
    uint16_t c, uint8_t h, uint8_t spc)
{
	uint8_t uuid[16];

	memset(f, 0, VPC_FOOTER_SIZE);
	memcpy(f + VPC_F_COOKIE, "conectix", 8);
	put_be32(f + VPC_F_FEATURES, 2);
	put_be32(f + VPC_F_VERSION, 0x00010000);
	put_be64(f + VPC_F_DATA_OFFSET, fixed ? UINT64_MAX : VPC_FOOTER_SIZE);
	put_be32(f + VPC_F_TIMESTAMP, (uint32_t)(time(NULL) - VPC_TIMESTAMP_BASE));
	memcpy(f + VPC_F_CREATOR_APP, force ? "qem2" : "qemu", 4);
	put_be16(f + VPC_F_MAJOR, 5);	/* Virtual PC 2007 */
	put_be16(f + VPC_F_MINOR, 3);
	memcpy(f + VPC_F_CREATOR_OS, "Wi2k", 4);
	put_be64(f + VPC_F_ORIG_SIZE, size);
	put_be64(f + VPC_F_CUR_SIZE, size);
	put_be16(f + VPC_F_CYLS, c);
	f[VPC_F_HEADS] = h;
	f[VPC_F_SECS] = spc;
	put_be32(f + VPC_F_TYPE, fixed ? VPC_TYPE_FIXED : VPC_TYPE_DYNAMIC);
	if (getrandom(uuid, sizeof(uuid), 0) != sizeof(uuid))
		memset(uuid, 0, sizeof(uuid));
	uuid[6] = (uuid[6] & 0x0f) | 0x40;
	uuid[8] = (uuid[8] & 0x3f) | 0x80;
	memcpy(f + VPC_F_UUID, uuid, sizeof(uuid));
	put_be32(f + VPC_F_CHECKSUM, vpc_checksum(f, VPC_FOOTER_SIZE));
}

/* footer copy, dynamic header, BAT (all unallocated), footer */
static int
vpc_create_dynamic(int fd, const uint8_t *f, uint64_t sectors)
{
	uint64_t n = DIV_ROUND_UP(sectors, VPC_BLOCK_SIZE / VPC_SECTOR);
	uint64_t batlen = ROUND_UP(n * 4, VPC_SECTOR);
	uint8_t d[VPC_DYN_SIZE] = { 0 }, *bat;
	int r;

	memcpy(d + VPC_D_COOKIE, "cxsparse", 8);
	put_be64(d + VPC_D_DATA_OFFSET, UINT64_MAX);
	put_be64(d + VPC_D_TABLE_OFFSET, 3 * VPC_SECTOR);
	put_be32(d + VPC_D_VERSION, 0x00010000);
	put_be32(d + VPC_D_BLOCK_SIZE, VPC_BLOCK_SIZE);
	put_be32(d + VPC_D_MAX_ENTRIES, (uint32_t)n);
	put_be32(d + VPC_D_CHECKSUM, vpc_checksum(d, sizeof(d)));
	if ((bat = malloc(batlen + 1)) == NULL)
		return err_set(ENOMEM, "Unable to create or write VHD header");
	memset(bat, 0xff, batlen);
	r = io_pwrite(fd, f, VPC_FOOTER_SIZE, 0) < 0 ||
	    io_pwrite(fd, d, sizeof(d), VPC_FOOTER_SIZE) < 0 ||
	    io_pwrite(fd, bat, batlen, 3 * VPC_SECTOR) < 0 ||
	    io_pwrite(fd, f, VPC_FOOTER_SIZE, 3 * VPC_SECTOR + batlen) < 0;
	free(bat);
	if (r)
		return err_set(errno, "Unable to create or write VHD header");
	return 0;
}

static int
vpc_create_fixed(int fd, const uint8_t *f, uint64_t size)
{
	if (ftruncate(fd, (off_t)(size + VPC_FOOTER_SIZE)) < 0)
		return err_set(errno, "Could not resize file");
	if (io_pwrite(fd, f, VPC_FOOTER_SIZE, size) < 0)
		return err_set(errno, "Unable to write VHD header");
	return 0;
}

static int
vpc_create(const char *filename, uint64_t size, const struct opt_list *o)
{
	const char *sub = opt_list_get(o, "subformat");
	const char *fs = opt_list_get(o, "force_size");
	bool force = fs != NULL && opt_bool(fs) == 1, fixed;
	uint8_t footer[VPC_FOOTER_SIZE];
	uint64_t sectors;
	uint16_t c;
	uint8_t h, spc;
	int fd, r;

	if (sub == NULL || strcmp(sub, "dynamic") == 0)
		fixed = false;
	else if (strcmp(sub, "fixed") == 0)
		fixed = true;
	else
		return err_set(0, "%s: Parameter 'subformat' does not accept value "
		    "'%s'", filename, sub);
	/* qemu silently rounds up to sectors, then to a CHS geometry */
	size = ROUND_UP(MIN(size, (uint64_t)INT64_MAX - VPC_SECTOR), VPC_SECTOR);
	if (vpc_rounded_size(size, force, &c, &h, &spc, &sectors) < 0)
		return err_set(0, "%s: The image size is too large for file "
		    "format 'vpc'", filename);
	if (!force)
		size = sectors * VPC_SECTOR;
	vpc_make_footer(footer, size, force, fixed, c, h, spc);
	fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "%s: Could not create '%s'", filename,
		    filename);
	r = fixed ? vpc_create_fixed(fd, footer, size) :
	    vpc_create_dynamic(fd, footer, sectors);
	if (r < 0)
		err_prefix("%s", filename);
	if (close(fd) < 0 && r == 0)
		r = err_set(errno, "%s", filename);
	return r;
}

static const struct opt_desc vpc_create_opts[] = {
	{ "size", OPT_SIZE, "Virtual disk size", NULL },
	{ "subformat", OPT_STRING, "Type of virtual hard disk format. Supported "
	    "formats are {dynamic (default) | fixed} ", NULL },
	{ "force_size", OPT_BOOL, "Force disk size calculation to use the actual "
	    "size specified, rather than using the nearest CHS-based calculation",
	    NULL },
	{ NULL, 0, NULL, NULL },
};

const struct fmt_ops vpc_ops = {
	.name		= "vpc",
	.priv_size	= sizeof(struct vpc),
	.probe		= vpc_probe,
	.open		= vpc_open,
	.close		= vpc_close,
	.create		= vpc_create,
	.create_opts	= vpc_create_opts,
	.read		= vpc_read,
	.write		= vpc_write,
	.flush		= vpc_flush,
	.block_status	= vpc_block_status,
	.info		= vpc_info,
};
