/*
 * Drives img_close_report for tests/fmt-blkdebug.bats (as git's
 * t/helper/test-tool): SRC's extents go into IMAGE as qemu-img convert -n
 * writes them (cache=unsafe; data written in 2 MiB requests, the rest
 * zeroed), then IMAGE closes as qemu's bdrv_close does.
 *   test-close IMAGE SRC
 * A failed write says why and stops; what closing could not do follows,
 * one "test-close: LINE" each.  Exit 1 when a write failed, else 0.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../formats/img.h"
#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"

#define CHUNK	(2u << 20)	/* qemu-img convert's IO_BUF_SIZE */
#define SPARSE	4096		/* its -S default */

static void
say(const char *line, void *arg)
{
	(void)arg;
	warn_msg("%s", line);
}

/* Data at off: written, but for whole zero 4 KiB blocks (convert's -S). */
static int
put(struct img *img, uint64_t off, const uint8_t *p, uint64_t n)
{
	uint64_t i, j, b = SPARSE;
	bool z;

	for (i = 0; i < n; i = j) {
		z = is_zero(p + i, (size_t)MIN(b, n - i));
		for (j = i; j < n && is_zero(p + j, (size_t)MIN(b, n - j)) == z;)
			j += MIN(b, n - j);
		if ((z ? img_write_zeroes(img, off + i, j - i, IMG_ZERO_UNMAP) :
		    img_write(img, off + i, (size_t)(j - i), p + i)) < 0)
			return -1;
	}
	return 0;
}

/* Lay src's extents into img; -1 with err_set at the first failure. */
static int
copy(struct img *img, struct img *src)
{
	uint8_t *buf = xmalloc(CHUNK);
	struct map_ext e;
	uint64_t off, n;
	int r = 0;

	for (off = 0; r == 0 && off < src->size; off += n) {
		if ((r = img_status(src, off, src->size - off, &e)) < 0)
			break;
		n = MIN(e.length, CHUNK);
		if (!e.data || e.zero)
			r = img_write_zeroes(img, off, n, IMG_ZERO_UNMAP);
		else if ((r = img_read(src, off, (size_t)n, buf)) == 0)
			r = put(img, off, buf, n);
	}
	free(buf);
	return r;
}

int
main(int argc, char *argv[])
{
	struct img *img, *src;
	int r;

	prog_init(argv[0]);
	if (argc != 3)
		die("usage: test-close IMAGE SRC");
	if ((src = img_open(argv[2], NULL, IMG_SHARE)) == NULL ||
	    (img = img_open(argv[1], NULL, IMG_RDWR | IMG_NO_FLUSH)) == NULL)
		die("%s", err_msg());
	if ((r = copy(img, src)) < 0)
		warn_msg("%s", err_msg());
	img_close_report(img, say, NULL);
	img_close(src);
	return r < 0 ? 1 : 0;
}
