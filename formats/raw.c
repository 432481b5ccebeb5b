/* raw: the disk's bytes as they are, sparse through SEEK_DATA/SEEK_HOLE. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "blkdebug.h"
#include "fmt.h"

#define RAW_SECTOR	512	/* qemu reports a file's length in whole sectors */
#define RAW_DIRECT_ALIGN 4096	/* qemu's request alignment with O_DIRECT here */

static int
raw_open(struct img *img)
{
	uint64_t size;

	if (fmt_file_size(img, &size) < 0)
		return -1;
	img->size = ROUND_UP(size, RAW_SECTOR);
	return 0;
}

static int
raw_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	blkdbg_event(img->fd, BLKDBG_READ_AIO);
	if (io_pread_zero(img->fd, buf, len, off) < 0)
		return err_set(errno, "%s: read at %#llx", img->filename,
		    (unsigned long long)off);
	return 0;
}

static int
raw_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	blkdbg_event(img->fd, BLKDBG_WRITE_AIO);
	if (io_pwrite(img->fd, buf, len, off) < 0)
		return err_set(errno, "%s: write at %#llx", img->filename,
		    (unsigned long long)off);
	return 0;
}

/* The disk is the file: every range is written where it lies. */
static int
raw_write_host(struct img *img, uint64_t off, uint64_t len, int *fd,
    uint64_t *host, uint64_t *n)
{
	*fd = img->fd;
	*host = off;
	*n = len;
	return 1;
}

static int
raw_write_zeroes(struct img *img, uint64_t off, uint64_t len, int flags)
{
	static const uint8_t zeroes[65536];
	uint64_t fsize, n;

	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	if (off >= fsize)
		return 0;	/* past the end of the file reads as zeroes already */
	len = MIN(len, fsize - off);
	if ((flags & IMG_ZERO_UNMAP) &&
	    io_fallocate(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
	    (off_t)off, (off_t)len) == 0)
		return 0;
	if (io_fallocate(img->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
	    (off_t)off, (off_t)len) == 0)
		return 0;
	for (; len > 0; off += n, len -= n) {
		n = MIN(len, sizeof(zeroes));
		if (raw_write(img, off, n, zeroes) < 0)
			return -1;
	}
	return 0;
}

static int
raw_discard(struct img *img, uint64_t off, uint64_t len)
{
	(void)io_discard(img->fd, off, len);
	return 0;
}

static int
raw_flush(struct img *img)
{
	return fmt_sync(img);
}

static int
raw_block_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	uint64_t fsize, n;
	bool zero;

	/*
	 * qemu's BDRV_BLOCK_RAW: the status is the file's, asked through a
	 * blkdebug node in between (which may fail it), and names that file
	 */
	if (io_fault_check(img->fd, IO_BLOCK_STATUS, off, len) < 0)
		return err_set(errno, "%s", img->filename);
	if (fmt_file_status(img, off, len, &n, &zero) < 0)
		return -1;
	st->offset = off;
	st->len = n;
	/* quorum_co_block_status says data or zero, at no offset */
	st->flags = (zero ? ST_ZERO : ST_DATA) |
	    (img->quorum == NULL ? ST_OFFSET : 0);
	st->file = img->blkdebug != NULL ? img->path : NULL;
	/*
	 * The sector-rounded tail past EOF is a zero extent of its own, but
	 * with O_DIRECT qemu's status is in whole 4 KiB blocks, so it joins
	 * the data before it.
	 */
	if (!zero && (img->flags & IMG_DIRECT) &&
	    fmt_file_size(img, &fsize) == 0 && off + n == fsize)
		st->len = MIN(len,
		    MIN(img->size, ROUND_UP(fsize, RAW_DIRECT_ALIGN)) - off);
	return 0;
}

static int
raw_prealloc(int fd, const char *filename, const char *mode, uint64_t size)
{
	static const uint8_t zeroes[65536];
	uint64_t off, n;
	int r;

	if (mode == NULL || strcmp(mode, "off") == 0)
		return 0;
	if (strcmp(mode, "falloc") == 0) {
		if ((r = posix_fallocate(fd, 0, (off_t)size)) != 0)
			return err_set(r, "%s: Could not preallocate data for the new file",
			    filename);
		return 0;
	}
	if (strcmp(mode, "full") != 0)
		return err_set(0, "%s: Invalid parameter '%s'", filename, mode);
	for (off = 0; off < size; off += n) {
		n = MIN(size - off, sizeof(zeroes));
		if (io_pwrite(fd, zeroes, n, off) < 0)
			return err_set(errno, "%s: Could not write zeros for preallocation",
			    filename);
	}
	return 0;
}

static const uint8_t raw_first_block[4096];

static int
check_prealloc(const char *filename, const char *mode)
{
	if (mode == NULL || !strcmp(mode, "off") || !strcmp(mode, "falloc") ||
	    !strcmp(mode, "full"))
		return 0;
	if (!strcmp(mode, "metadata"))
		return err_set(0, "%s: Unsupported preallocation mode: %s",
		    filename, mode);
	return err_set(0, "%s: invalid parameter value: %s", filename, mode);
}

static int
raw_create(const char *filename, uint64_t size, const struct opt_list *o)
{
	int fd;

	if (check_prealloc(filename, opt_list_get(o, "preallocation")) < 0)
		return -1;

	fd = open(filename, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "%s: Could not create '%s'", filename, filename);
	if (ftruncate(fd, (off_t)size) < 0) {
		err_set(errno, "%s: Could not resize file", filename);
		close(fd);
		return -1;
	}
	if (raw_prealloc(fd, filename, opt_list_get(o, "preallocation"), size) < 0) {
		close(fd);
		return -1;
	}
	/*
	 * qemu's file driver writes the first block of a new file (its
	 * allocate_first_block(), for alignment probing), so there a new raw
	 * image maps as 4 KiB of data (512 bytes when smaller) then zeroes;
	 * img-map and qemu-img map show the same only if we do too.
	 */
	if (size > 0)
		(void)io_pwrite(fd, raw_first_block, size < sizeof(raw_first_block) ?
		    RAW_SECTOR : sizeof(raw_first_block), 0);
	if (close(fd) < 0)
		return err_set(errno, "%s", filename);
	return 0;
}

static int
raw_measure(const struct opt_list *o, struct img *in, uint64_t size,
    struct img_measure *m)
{
	(void)o;
	/* unallocated sectors count towards a raw file's size */
	m->required = in ? in->size : ROUND_UP(size, RAW_SECTOR);
	m->fully_allocated = m->required;
	return 0;
}

/* file-posix's raw_regular_truncate: the file takes exactly size bytes. */
static int
raw_resize(struct img *img, uint64_t size, int prealloc)
{
	static const uint8_t zeroes[65536];
	uint64_t cur, off, n;
	int r;

	if (fmt_file_size(img, &cur) < 0)
		return -1;
	if (prealloc != IMG_PREALLOC_OFF && cur > size)
		return err_set(0, "Cannot use preallocation for shrinking files");
	switch (prealloc) {
	case IMG_PREALLOC_OFF:
		if (io_ftruncate(img->fd, (off_t)size) < 0)
			return err_set(errno, "Could not resize file");
		break;
	case IMG_PREALLOC_FALLOC:
		if (size > cur && (r = posix_fallocate(img->fd, (off_t)cur,
		    (off_t)(size - cur))) != 0)
			return err_set(r, "Could not preallocate new data");
		break;
	case IMG_PREALLOC_FULL:
		if (io_ftruncate(img->fd, (off_t)size) < 0)
			return err_set(errno, "Could not resize file");
		for (off = cur; off < size; off += n) {
			n = MIN(size - off, sizeof(zeroes));
			if (io_pwrite(img->fd, zeroes, n, off) < 0)
				return err_set(errno, "Could not write zeros for "
				    "preallocation");
		}
		if (io_fsync(img->fd) < 0)
			return err_set(errno, "Could not flush file to disk");
		break;
	default:
		return err_set(0, "Unsupported preallocation mode: metadata");
	}
	img->size = ROUND_UP(size, RAW_SECTOR);
	return 0;
}

static const struct opt_desc raw_create_opts[] = {
	{ "size", OPT_SIZE, "Virtual disk size", NULL },
	{ "preallocation", OPT_STRING,
	    "Preallocation mode (allowed values: off, falloc, full)", NULL },
	{ "nocow", OPT_BOOL, "Turn off copy-on-write (valid only on btrfs)", NULL },
	{ "extent_size_hint", OPT_SIZE,
	    "Extent size hint for the image file, 0 to disable", NULL },
	{ NULL, 0, NULL, NULL },
};

const struct fmt_ops raw_ops = {
	.name		= "raw",
	.priv_size	= 0,
	.whole_reads	= true,
	.probe		= NULL,
	.open		= raw_open,
	.create		= raw_create,
	.create_opts	= raw_create_opts,
	.read		= raw_read,
	.write		= raw_write,
	.write_host	= raw_write_host,
	.write_zeroes	= raw_write_zeroes,
	.discard	= raw_discard,
	.flush		= raw_flush,
	.block_status	= raw_block_status,
	.measure	= raw_measure,
	.resize		= raw_resize,
};
