/* null-co: qemu's null driver, a disk of a given size that stores nothing. */
#include <string.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "fmt.h"

#define NULL_DEFAULT_SIZE	(1ull << 30)	/* qemu's default for "size" */

struct nullimg {
	bool	read_zeroes;
};

static int
null_open(struct img *img)
{
	struct nullimg *s = img->priv;
	const char *v;

	img->size = NULL_DEFAULT_SIZE;
	if (img->open_opts == NULL)
		return 0;
	if ((v = opt_list_get(img->open_opts, "size")) != NULL &&
	    opt_size(v, &img->size) < 0)
		return err_set(0, "Parameter 'size' expects a non-negative number below 2^64");
	if ((v = opt_list_get(img->open_opts, "read-zeroes")) != NULL)
		s->read_zeroes = opt_bool(v) == 1;
	return 0;
}

static int
null_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	(void)img;
	(void)off;
	memset(buf, 0, len);
	return 0;
}

static int
null_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	(void)img;
	(void)off;
	(void)len;
	(void)buf;
	return 0;
}

static int
null_block_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	struct nullimg *s = img->priv;

	st->len = len;
	st->offset = off;
	st->flags = s->read_zeroes ? ST_ZERO | ST_OFFSET : ST_DATA;
	return 0;
}

static int
null_flush(struct img *img)
{
	(void)img;
	return 0;
}

const struct fmt_ops null_ops = {
	.name		= "null-co",
	.priv_size	= sizeof(struct nullimg),
	.nofile		= true,
	.open		= null_open,
	.read		= null_read,
	.write		= null_write,
	.flush		= null_flush,
	.block_status	= null_block_status,
};
