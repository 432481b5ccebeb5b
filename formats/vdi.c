/*
 * vdi: VirtualBox disk images, version 1.1 (a 512-byte little-endian header,
 * a block map of 32-bit entries, 1 MiB data blocks), as qemu's vdi driver.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "fmt.h"

#define VDI_SECTOR		512
#define VDI_HEADER_SIZE		512	/* the structure, text included */
#define VDI_SIGNATURE		0xbeda107fu
#define VDI_VERSION_1_1		0x00010001u
#define VDI_TYPE_DYNAMIC	1
#define VDI_TYPE_STATIC		2
#define VDI_BLOCK_SIZE		(1u << 20)	/* the only block size qemu takes */
#define VDI_UNALLOCATED		0xffffffffu
#define VDI_DISCARDED		0xfffffffeu	/* reads as zeroes */
#define VDI_IS_ALLOCATED(e)	((e) < VDI_DISCARDED)
/* qemu reads the block map in one request of at most 2 GiB - 512 bytes */
#define VDI_BLOCKS_MAX		0x1fffff80u
#define VDI_DISK_SIZE_MAX	((uint64_t)VDI_BLOCKS_MAX * VDI_BLOCK_SIZE)
#define VDI_TEXT		"<<< QEMU VM Virtual Disk Image >>>\n"

/* header field offsets */
enum {
	VDI_H_SIGNATURE = 0x40, VDI_H_VERSION = 0x44, VDI_H_HEADER_SIZE = 0x48,
	VDI_H_TYPE = 0x4c, VDI_H_OFFSET_BMAP = 0x154, VDI_H_OFFSET_DATA = 0x158,
	VDI_H_SECTOR_SIZE = 0x168, VDI_H_DISK_SIZE = 0x170,
	VDI_H_BLOCK_SIZE = 0x178, VDI_H_BLOCKS = 0x180,
	VDI_H_ALLOCATED = 0x184, VDI_H_UUID_IMAGE = 0x188,
	VDI_H_UUID_SNAP = 0x198, VDI_H_UUID_LINK = 0x1a8,
	VDI_H_UUID_PARENT = 0x1b8,
};

struct vdi {
	uint8_t		 hdr[VDI_HEADER_SIZE];	/* as read, rewritten on allocation */
	uint32_t	*bmap;			/* host order, nmap entries */
	uint32_t	 nmap;			/* entries the file holds */
	uint32_t	 blocks;
	uint32_t	 allocated;
	uint32_t	 type;
	uint64_t	 offset_bmap;
	uint64_t	 offset_data;
};

static int
vdi_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	/*
	 * qemu probes a zero-padded sector: a file as short as the signature's
	 * end is a vdi image to it, so check only that far.
	 */
	if (len < VDI_H_SIGNATURE + 4)
		return 0;
	return get_le32(buf + VDI_H_SIGNATURE) == VDI_SIGNATURE ? 100 : 0;
}

static bool
vdi_uuid_null(const uint8_t *p)
{
	return is_zero(p, 16);
}

/* Refuse what qemu's vdi_open refuses, with its words and in its order. */
static int
vdi_check_header(const uint8_t *h, uint64_t *disk_size)
{
	uint32_t sig = get_le32(h + VDI_H_SIGNATURE);
	uint32_t ver = get_le32(h + VDI_H_VERSION);
	uint32_t bmap = get_le32(h + VDI_H_OFFSET_BMAP);
	uint32_t data = get_le32(h + VDI_H_OFFSET_DATA);
	uint32_t ssize = get_le32(h + VDI_H_SECTOR_SIZE);
	uint32_t bsize = get_le32(h + VDI_H_BLOCK_SIZE);
	uint32_t blocks = get_le32(h + VDI_H_BLOCKS);
	uint64_t size = get_le64(h + VDI_H_DISK_SIZE);

	if (size > VDI_DISK_SIZE_MAX)
		return err_set(0, "Unsupported VDI image size (size is 0x%" PRIx64
		    ", max supported is 0x%" PRIx64 ")", size, VDI_DISK_SIZE_MAX);
	/* VBoxManage convertfromraw makes odd sizes: qemu rounds them up */
	size = ROUND_UP(size, VDI_SECTOR);
	if (sig != VDI_SIGNATURE)
		return err_set(0, "Image not in VDI format (bad signature %08" PRIx32
		    ")", sig);
	if (ver != VDI_VERSION_1_1)
		return err_set(0, "unsupported VDI image (version %" PRIu32 ".%"
		    PRIu32 ")", ver >> 16, ver & 0xffff);
	if (bmap % VDI_SECTOR != 0)
		return err_set(0, "unsupported VDI image (unaligned block map offset "
		    "0x%" PRIx32 ")", bmap);
	if (data % VDI_SECTOR != 0)
		return err_set(0, "unsupported VDI image (unaligned data offset 0x%"
		    PRIx32 ")", data);
	if (ssize != VDI_SECTOR)
		return err_set(0, "unsupported VDI image (sector size %" PRIu32
		    " is not %u)", ssize, VDI_SECTOR);
	if (bsize != VDI_BLOCK_SIZE)
		return err_set(0, "unsupported VDI image (block size %" PRIu32
		    " is not %u)", bsize, VDI_BLOCK_SIZE);
	if (size > (uint64_t)blocks * bsize)
		return err_set(0, "unsupported VDI image (disk size %" PRIu64 ", "
		    "image bitmap has room for %" PRIu64 ")", size,
		    (uint64_t)blocks * bsize);
	if (!vdi_uuid_null(h + VDI_H_UUID_LINK))
		return err_set(0, "unsupported VDI image (non-NULL link UUID)");
	if (!vdi_uuid_null(h + VDI_H_UUID_PARENT))
		return err_set(0, "unsupported VDI image (non-NULL parent UUID)");
	if (blocks > VDI_BLOCKS_MAX)
		return err_set(0, "unsupported VDI image (too many blocks %u, max is "
		    "%u)", blocks, VDI_BLOCKS_MAX);
	*disk_size = size;
	return 0;
}

/*
 * A block map entry: past the end of the file qemu reads zeroes, so there
 * every block is block 0.  Only the entries in the file are kept, so a
 * hostile header cannot make us allocate more memory than the file's size.
 */
static uint32_t
vdi_entry(const struct vdi *s, uint64_t blk)
{
	return blk < s->nmap ? s->bmap[blk] : 0;
}

static int
vdi_open(struct img *img)
{
	struct vdi *s = img->priv;
	uint64_t fsize, len, i;
	uint8_t *buf;

	/* qemu reads a short header as if zeroes followed: same refusals */
	if (io_pread_zero(img->fd, s->hdr, sizeof(s->hdr), 0) < 0)
		return err_set(errno, "Could not read VDI header");
	if (vdi_check_header(s->hdr, &img->size) < 0)
		return -1;
	/* the header qemu rewrites on allocation carries the rounded size */
	put_le64(s->hdr + VDI_H_DISK_SIZE, img->size);
	s->blocks = get_le32(s->hdr + VDI_H_BLOCKS);
	s->allocated = get_le32(s->hdr + VDI_H_ALLOCATED);
	s->type = get_le32(s->hdr + VDI_H_TYPE);
	s->offset_bmap = get_le32(s->hdr + VDI_H_OFFSET_BMAP);
	s->offset_data = get_le32(s->hdr + VDI_H_OFFSET_DATA);
	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	len = fsize > s->offset_bmap ? fsize - s->offset_bmap : 0;
	s->nmap = (uint32_t)MIN(s->blocks, DIV_ROUND_UP(len, 4));
	len = (uint64_t)s->nmap * 4;
	if ((buf = malloc(len + 1)) == NULL ||
	    (s->bmap = malloc(len + 1)) == NULL) {
		free(buf);
		return err_set(ENOMEM, "Could not allocate the VDI block map");
	}
	if (io_pread_zero(img->fd, buf, len, s->offset_bmap) < 0) {
		free(buf);
		return err_set(errno, "Could not read the VDI block map");
	}
	for (i = 0; i < s->nmap; i++)
		s->bmap[i] = get_le32(buf + 4 * i);
	free(buf);
	return 0;
}

/* Keep entries up to blk in memory (a write past the file's map). */
static int
vdi_grow_map(struct img *img, uint64_t blk)
{
	struct vdi *s = img->priv;
	uint32_t *m;

	if (blk < s->nmap)
		return 0;
	if ((m = realloc(s->bmap, (blk + 1) * 4)) == NULL)
		return err_set(ENOMEM, "%s: could not grow the VDI block map",
		    img->filename);
	memset(m + s->nmap, 0, (blk + 1 - s->nmap) * 4);
	s->bmap = m;
	s->nmap = (uint32_t)blk + 1;
	return 0;
}

static void
vdi_close(struct img *img)
{
	struct vdi *s = img->priv;

	free(s->bmap);
}

static uint64_t
vdi_host(const struct vdi *s, uint32_t entry, uint64_t inblk)
{
	return s->offset_data + (uint64_t)entry * VDI_BLOCK_SIZE + inblk;
}

static int
vdi_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	struct vdi *s = img->priv;
	uint8_t *p = buf;
	uint64_t inblk, n;
	uint32_t e;

	for (; len > 0; off += n, p += n, len -= n) {
		inblk = off % VDI_BLOCK_SIZE;
		n = MIN(len, VDI_BLOCK_SIZE - inblk);
		e = vdi_entry(s, off / VDI_BLOCK_SIZE);
		if (!VDI_IS_ALLOCATED(e))
			memset(p, 0, n);
		else if (io_pread_zero(img->fd, p, n, vdi_host(s, e, inblk)) < 0)
			return err_set(errno, "%s: read at %#" PRIx64, img->filename,
			    vdi_host(s, e, inblk));
	}
	return 0;
}

/* A run of blocks alike: unallocated, or allocated and contiguous on disk. */
static int
vdi_block_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	struct vdi *s = img->priv;
	uint64_t blk = off / VDI_BLOCK_SIZE, end = off + len, next, n;
	uint32_t e = vdi_entry(s, blk), f;
	bool zero;

	next = MIN(end, (blk + 1) * VDI_BLOCK_SIZE);
	while (next < end) {
		f = vdi_entry(s, ++blk);
		if (VDI_IS_ALLOCATED(e) != VDI_IS_ALLOCATED(f) ||
		    (VDI_IS_ALLOCATED(e) && f != e + (blk - off / VDI_BLOCK_SIZE)))
			break;
		next = MIN(end, (blk + 1) * VDI_BLOCK_SIZE);
	}
	st->len = next - off;
	if (!VDI_IS_ALLOCATED(e)) {
		st->flags = ST_ZERO;
		return 0;
	}
	st->flags = ST_DATA | ST_OFFSET;
	st->offset = vdi_host(s, e, off % VDI_BLOCK_SIZE);
	/* qemu asks the file about a static image (BDRV_BLOCK_RECURSE) */
	if (s->type == VDI_TYPE_STATIC) {
		if (fmt_file_status(img, st->offset, st->len, &n, &zero) < 0)
			return -1;
		st->len = n;
		if (zero)
			st->flags |= ST_ZERO;
	}
	return 0;
}

/* After new blocks: the header (blocks allocated), then their map sectors. */
static int
vdi_write_map(struct img *img, uint64_t first, uint64_t last)
{
	struct vdi *s = img->priv;
	uint64_t per = VDI_SECTOR / 4, i, len;
	uint8_t *buf;
	int r;

	put_le32(s->hdr + VDI_H_ALLOCATED, s->allocated);
	if (io_pwrite(img->fd, s->hdr, sizeof(s->hdr), 0) < 0)
		return err_set(errno, "%s: could not write the VDI header",
		    img->filename);
	first = first / per * per;
	last = last / per * per + per;
	len = (last - first) * 4;
	buf = xcalloc(1, len);
	for (i = first; i < last && i < s->blocks; i++)
		put_le32(buf + 4 * (i - first), vdi_entry(s, i));
	r = io_pwrite(img->fd, buf, len, s->offset_bmap + first * 4);
	free(buf);
	if (r < 0)
		return err_set(errno, "%s: could not write the VDI block map",
		    img->filename);
	return 0;
}

/* A new block at the end of the data area: its bytes, zeroes around them. */
static int
vdi_alloc(struct img *img, uint64_t blk, uint64_t inblk, const uint8_t *p,
    uint64_t n, uint8_t **block)
{
	struct vdi *s = img->priv;

	if (s->allocated >= s->blocks)
		return err_set(0, "%s: VDI header counts %" PRIu32 " blocks "
		    "allocated of %" PRIu32 ": no room for another", img->filename,
		    s->allocated, s->blocks);
	if (*block == NULL)
		*block = xmalloc(VDI_BLOCK_SIZE);
	memset(*block, 0, VDI_BLOCK_SIZE);
	memcpy(*block + inblk, p, n);
	if (vdi_grow_map(img, blk) < 0)
		return -1;
	if (io_pwrite(img->fd, *block, VDI_BLOCK_SIZE,
	    vdi_host(s, s->allocated, 0)) < 0)
		return err_set(errno, "%s: write at %#" PRIx64, img->filename,
		    vdi_host(s, s->allocated, 0));
	s->bmap[blk] = s->allocated++;
	return 0;
}

static int
vdi_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	struct vdi *s = img->priv;
	const uint8_t *p = buf;
	uint8_t *block = NULL;
	uint64_t blk, inblk, n, first = UINT64_MAX, last = 0;
	uint32_t e;
	int r = 0;

	for (; len > 0 && r == 0; off += n, p += n, len -= n) {
		blk = off / VDI_BLOCK_SIZE;
		inblk = off % VDI_BLOCK_SIZE;
		n = MIN(len, VDI_BLOCK_SIZE - inblk);
		e = vdi_entry(s, blk);
		if (!VDI_IS_ALLOCATED(e)) {
			if ((r = vdi_alloc(img, blk, inblk, p, n, &block)) == 0) {
				first = MIN(first, blk);
				last = MAX(last, blk);
			}
		} else if (e >= s->blocks) {
			r = err_set(0, "%s: VDI block map entry %" PRIu64 " (%" PRIu32
			    ") is out of range", img->filename, blk, e);
		} else if (io_pwrite(img->fd, p, n, vdi_host(s, e, inblk)) < 0) {
			r = err_set(errno, "%s: write at %#" PRIx64, img->filename,
			    vdi_host(s, e, inblk));
		}
	}
	free(block);
	if (first != UINT64_MAX && vdi_write_map(img, first, last) < 0)
		return -1;
	return r;
}

static int
vdi_flush(struct img *img)
{
	return fmt_sync(img);
}

static int
vdi_info(struct img *img, struct img_info *info)
{
	(void)img;
	info->cluster_size = VDI_BLOCK_SIZE;
	return 0;
}

static void
vdi_note(struct img_check *res, const char *line)
{
	res->corruptions++;
	if (res->note)
		res->note(line, res->note_arg);
}

/*
 * qemu's vdi_check: map entries in range and each data block used once,
 * the count right.  A used-block bitmap: at most 64 MiB for 2^29 blocks.
 */
static int
vdi_check(struct img *img, int fix, struct img_check *res)
{
	struct vdi *s = img->priv;
	uint32_t i, e, count = 0;
	uint8_t *used;
	char line[128];

	if (fix)
		return err_set(0, IMG_CHECK_NOTSUP);
	if ((used = calloc(1, s->blocks / 8 + 1)) == NULL)
		return err_set(ENOMEM, "Could not allocate memory");
	for (i = 0; i < s->blocks; i++) {
		e = vdi_entry(s, i);
		if (!VDI_IS_ALLOCATED(e))
			continue;
		if (e >= s->blocks) {
			snprintf(line, sizeof(line), "ERROR: block index %" PRIu32
			    " too large, is %" PRIu32, i, e);
			vdi_note(res, line);
			continue;
		}
		count++;
		if (used[e / 8] & (1 << e % 8)) {
			/* qemu names the data block twice */
			snprintf(line, sizeof(line), "ERROR: block index %" PRIu32
			    " also used by %" PRIu32, e, e);
			vdi_note(res, line);
		}
		used[e / 8] |= 1 << e % 8;
	}
	if (count != s->allocated) {
		snprintf(line, sizeof(line), "ERROR: allocated blocks mismatch, is %"
		    PRIu32 ", should be %" PRIu32, count, s->allocated);
		vdi_note(res, line);
	}
	free(used);
	return 0;
}

/* A random (version 4) UUID in VirtualBox's byte order: the first three fields LE. */
static void
vdi_uuid(uint8_t *p)
{
	uint8_t u[16], t;

	if (getrandom(u, sizeof(u), 0) != sizeof(u))
		memset(u, 0, sizeof(u));
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	t = u[0], u[0] = u[3], u[3] = t;
	t = u[1], u[1] = u[2], u[2] = t;
	t = u[4], u[4] = u[5], u[5] = t;
	t = u[6], u[6] = u[7], u[7] = t;
	memcpy(p, u, sizeof(u));
}

static int
vdi_create_file(int fd, uint64_t size, bool stat)
{
	uint8_t h[VDI_HEADER_SIZE] = { 0 }, *map;
	uint64_t blocks = DIV_ROUND_UP(size, VDI_BLOCK_SIZE), mlen, i;
	int r;

	mlen = ROUND_UP(blocks * 4, VDI_SECTOR);
	memcpy(h, VDI_TEXT, sizeof(VDI_TEXT) - 1);
	put_le32(h + VDI_H_SIGNATURE, VDI_SIGNATURE);
	put_le32(h + VDI_H_VERSION, VDI_VERSION_1_1);
	put_le32(h + VDI_H_HEADER_SIZE, 0x180);
	put_le32(h + VDI_H_TYPE, stat ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC);
	put_le32(h + VDI_H_OFFSET_BMAP, VDI_HEADER_SIZE);
	put_le32(h + VDI_H_OFFSET_DATA, (uint32_t)(VDI_HEADER_SIZE + mlen));
	put_le32(h + VDI_H_SECTOR_SIZE, VDI_SECTOR);
	put_le64(h + VDI_H_DISK_SIZE, size);
	put_le32(h + VDI_H_BLOCK_SIZE, VDI_BLOCK_SIZE);
	put_le32(h + VDI_H_BLOCKS, (uint32_t)blocks);
	put_le32(h + VDI_H_ALLOCATED, stat ? (uint32_t)blocks : 0);
	vdi_uuid(h + VDI_H_UUID_IMAGE);
	vdi_uuid(h + VDI_H_UUID_SNAP);
	if (io_pwrite(fd, h, sizeof(h), 0) < 0)
		return err_set(errno, "Error writing header");
	if (mlen == 0)
		return 0;
	if ((map = calloc(1, mlen)) == NULL)
		return err_set(ENOMEM, "Could not allocate bmap");
	for (i = 0; i < blocks; i++)
		put_le32(map + 4 * i, stat ? (uint32_t)i : VDI_UNALLOCATED);
	r = io_pwrite(fd, map, mlen, VDI_HEADER_SIZE);
	free(map);
	if (r < 0)
		return err_set(errno, "Error writing bmap");
	if (stat && ftruncate(fd, (off_t)(VDI_HEADER_SIZE + mlen +
	    blocks * VDI_BLOCK_SIZE)) < 0)
		return err_set(errno, "Could not resize file");
	return 0;
}

static int
vdi_create(const char *filename, uint64_t size, const struct opt_list *o)
{
	const char *v = opt_list_get(o, "static");
	bool stat = v != NULL && opt_bool(v) == 1;
	int fd, r;

	/* qemu rounds the size up to whole sectors before it checks it */
	if (size > UINT64_MAX - VDI_SECTOR ||
	    ROUND_UP(size, VDI_SECTOR) > VDI_DISK_SIZE_MAX)
		return err_set(0, "%s: Unsupported VDI image size (size is 0x%"
		    PRIx64 ", max supported is 0x%" PRIx64 ")", filename,
		    ROUND_UP(size, VDI_SECTOR), VDI_DISK_SIZE_MAX);
	size = ROUND_UP(size, VDI_SECTOR);
	fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "%s: Could not create '%s'", filename,
		    filename);
	if ((r = vdi_create_file(fd, size, stat)) < 0)
		err_prefix("%s", filename);
	if (close(fd) < 0 && r == 0)
		r = err_set(errno, "%s", filename);
	return r;
}

static const struct opt_desc vdi_create_opts[] = {
	{ "size", OPT_SIZE, "Virtual disk size", NULL },
	{ "static", OPT_BOOL, "VDI static (pre-allocated) image", "off" },
	{ NULL, 0, NULL, NULL },
};

const struct fmt_ops vdi_ops = {
	.name		= "vdi",
	.priv_size	= sizeof(struct vdi),
	.probe		= vdi_probe,
	.open		= vdi_open,
	.close		= vdi_close,
	.create		= vdi_create,
	.create_opts	= vdi_create_opts,
	.read		= vdi_read,
	.write		= vdi_write,
	.flush		= vdi_flush,
	.block_status	= vdi_block_status,
	.info		= vdi_info,
	.check		= vdi_check,
};
