/*
 * cloop: Linux compressed loop images, read-only as in qemu: a shell
 * preamble, block size and count, an offset table, zlib blocks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "fmt.h"

#define CLOOP_PREAMBLE		128
#define CLOOP_MAX_BLOCK		(64u << 20)	/* qemu's MAX_BLOCK_SIZE */
#define CLOOP_MAX_OFFSETS	(512u << 20)	/* bytes of offset table */
#define SECTOR			512

static const char cloop_magic[] =
    "#!/bin/sh\n"
    "#V2.0 Format\n"
    "modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";

struct cloop {
	uint32_t	 block_size, n_blocks;
	uint64_t	*offsets;		/* n_blocks + 1 */
	uint8_t		*zbuf, *block;
	uint64_t	 zbuf_size;
	int64_t		 cached;		/* block in `block`, or -1 */
};

static int
cloop_probe(const uint8_t *buf, size_t len, const char *filename)
{
	size_t n = MIN(len, sizeof(cloop_magic) - 1);

	(void)filename;
	return memcmp(buf, cloop_magic, n) == 0 ? 2 : 0;
}

static int
check_header(struct cloop *s)
{
	if (s->block_size % SECTOR)
		return err_set(0, "block_size %u must be a multiple of 512",
		    s->block_size);
	if (s->block_size == 0)
		return err_set(0, "block_size cannot be zero");
	if (s->block_size > CLOOP_MAX_BLOCK)
		return err_set(0, "block_size %u must be %u MB or less",
		    s->block_size, CLOOP_MAX_BLOCK / (1024 * 1024));
	if (s->n_blocks > (UINT32_MAX - 1) / sizeof(uint64_t))
		return err_set(0, "n_blocks %u must be %zu or less", s->n_blocks,
		    (size_t)((UINT32_MAX - 1) / sizeof(uint64_t)));
	if (((uint64_t)s->n_blocks + 1) * 8 > CLOOP_MAX_OFFSETS)
		return err_set(0, "image requires too many offsets, try increasing block size");
	return 0;
}

/* Offsets must grow; no compressed block may be absurdly large. */
static int
check_offsets(struct cloop *s)
{
	uint64_t i, size;

	for (i = 1; i <= s->n_blocks; i++) {
		if (s->offsets[i] < s->offsets[i - 1])
			return err_set(0, "offsets not monotonically increasing at index %llu, image file is corrupt",
			    (unsigned long long)i);
		size = s->offsets[i] - s->offsets[i - 1];
		if (size > 2 * (uint64_t)CLOOP_MAX_BLOCK)
			return err_set(0, "invalid compressed block size at index %llu, image file is corrupt",
			    (unsigned long long)i);
		s->zbuf_size = MAX(s->zbuf_size, size);
	}
	return 0;
}

static int
cloop_open(struct img *img)
{
	struct cloop *s = img->priv;
	uint8_t h[8];
	uint64_t n, i;

	s->cached = -1;
	if (img->flags & IMG_RDWR)
		return err_set(0, "Image is read-only");
	if (io_pread(img->fd, h, 8, CLOOP_PREAMBLE) != 8)
		return err_set(errno ? errno : EIO, "Could not read the cloop header");
	s->block_size = get_be32(h);
	s->n_blocks = get_be32(h + 4);
	if (check_header(s) < 0)
		return -1;
	n = (uint64_t)s->n_blocks + 1;
	if ((s->offsets = calloc(n, 8)) == NULL)
		return err_set(ENOMEM, "Could not allocate the offsets");
	if (io_pread(img->fd, s->offsets, n * 8, CLOOP_PREAMBLE + 8) !=
	    (ssize_t)(n * 8))
		return err_set(errno ? errno : EIO, "Could not read the offsets");
	for (i = 0; i < n; i++)
		s->offsets[i] = get_be64(&s->offsets[i]);
	if (check_offsets(s) < 0)
		return -1;
	if ((s->zbuf = malloc(s->zbuf_size ? s->zbuf_size : 1)) == NULL ||
	    (s->block = malloc(s->block_size)) == NULL)
		return err_set(ENOMEM, "Could not allocate the block buffers");
	img->size = (uint64_t)s->n_blocks * s->block_size;
	return 0;
}

static void
cloop_close(struct img *img)
{
	struct cloop *s = img->priv;

	free(s->offsets);
	free(s->zbuf);
	free(s->block);
}

static int
load_block(struct img *img, uint64_t b)
{
	struct cloop *s = img->priv;
	uint64_t zlen = s->offsets[b + 1] - s->offsets[b];
	uLongf out = s->block_size;

	if (s->cached == (int64_t)b)
		return 0;
	s->cached = -1;
	if (io_pread(img->fd, s->zbuf, zlen, s->offsets[b]) != (ssize_t)zlen)
		return err_set(errno ? errno : EIO, "%s: read of block %llu",
		    img->filename, (unsigned long long)b);
	if (uncompress(s->block, &out, s->zbuf, zlen) != Z_OK ||
	    out != s->block_size)
		return err_set(EIO, "%s: block %llu does not decompress",
		    img->filename, (unsigned long long)b);
	s->cached = (int64_t)b;
	return 0;
}

static int
cloop_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	struct cloop *s = img->priv;
	uint8_t *p = buf;
	uint64_t b, in, n;

	while (len > 0) {
		b = off / s->block_size;
		in = off % s->block_size;
		n = MIN(len, s->block_size - in);
		if (load_block(img, b) < 0)
			return -1;
		memcpy(p, s->block + in, n);
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* qemu has no get_info for cloop: info shows no dirty flag */
static int
cloop_info(struct img *img, struct img_info *info)
{
	(void)img;
	info->no_dirty_flag = true;
	return 0;
}

const struct fmt_ops cloop_ops = {
	.name		= "cloop",
	.priv_size	= sizeof(struct cloop),
	.probe		= cloop_probe,
	.open		= cloop_open,
	.close		= cloop_close,
	.read		= cloop_read,
	.info		= cloop_info,
};
