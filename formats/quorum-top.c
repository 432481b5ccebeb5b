/*
 * qemu's quorum node on top (block/quorum.c, driver=quorum): its children
 * are images of any format, each opened as its children.N options say.
 * Changes go to every child and succeed when vote-threshold of them do;
 * reads vote on the children's bytes, or take the first child that reads.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/err.h"
#include "../lib/json.h"
#include "blkdebug.h"
#include "fmt.h"
#include "img.h"
#include "quorum.h"

struct qtop {
	struct quorum_params	 p;
	struct img		**kid;
};

enum { CH_WRITE, CH_ZEROES, CH_FLUSH };

/*
 * One change on every child (qemu's quorum_co_pwritev, _flush): done when
 * vote-threshold children took it, else the errno most of them failed with.
 */
static int
change_all(struct img *img, int what, uint64_t off, uint64_t len,
    const void *buf, int flags)
{
	struct qtop *q = img->priv;
	int *err = xcalloc((size_t)q->p.n, sizeof(*err)), i, r, ok = 0;
	struct img *kid;

	for (i = 0; i < q->p.n; i++) {
		kid = q->kid[i];
		r = what == CH_WRITE ? img_write(kid, off, (size_t)len, buf) :
		    what == CH_ZEROES ? img_write_zeroes(kid, off, len, flags) :
		    img_flush(kid);
		if (r < 0)
			err[i] = err_errno() ? err_errno() : EIO;
		else
			ok++;
	}
	r = ok >= q->p.threshold ? 0 :
	    err_set(quorum_vote_error(err, q->p.n), "%s", img->filename);
	free(err);
	return r;
}

static int
qtop_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	return change_all(img, CH_WRITE, off, len, buf, 0);
}

static int
qtop_write_zeroes(struct img *img, uint64_t off, uint64_t len, int flags)
{
	return change_all(img, CH_ZEROES, off, len, NULL, flags);
}

static int
qtop_flush(struct img *img)
{
	return change_all(img, CH_FLUSH, 0, 0, NULL, 0);
}

/*
 * blkverify=on: the two children must agree, else qemu's quorum prints
 * where and ends the process (quorum_compare's exit(1)), as blkverify
 * does; no caller could go on from a broken mirror.
 */
static void
verify(uint64_t off, size_t len, const uint8_t *a, const uint8_t *b)
{
	size_t i;

	for (i = 0; i < len && a[i] == b[i]; i++)
		continue;
	if (i == len)
		return;
	die_notice("quorum: offset=%" PRIu64 " bytes=%zu contents mismatch "
	    "at offset %" PRIu64, off, len, off + i);
}

/* Children whose bytes lost the vote get the winner's (rewrite-corrupted). */
static void
rewrite(struct qtop *q, const struct quorum_vote *v, int w, uint64_t off)
{
	int i;

	for (i = 0; i < q->p.n; i++)
		if (quorum_vote_lost(v, i, w))
			(void)img_write(q->kid[i], off, (size_t)v->got[w],
			    v->buf[w]);
}

static int
read_vote(struct img *img, uint64_t off, size_t len, uint8_t *out)
{
	struct qtop *q = img->priv;
	struct quorum_vote v;
	int i, w, ok, votes;

	quorum_vote_new(&v, q->p.n, out, len);
	for (i = 0; i < q->p.n; i++) {
		v.got[i] = (ssize_t)len;
		if (img_read(q->kid[i], off, len, v.buf[i]) < 0) {
			v.got[i] = -1;
			v.err[i] = err_errno() ? err_errno() : EIO;
		}
	}
	if (q->p.blkverify && v.got[0] >= 0 && v.got[1] >= 0)
		verify(off, len, v.buf[0], v.buf[1]);
	if ((w = quorum_vote_count(&v, q->p.threshold, &votes, &ok)) < 0) {
		err_set(errno, "%s", img->filename);
	} else {
		if (q->p.rewrite && votes < ok)
			rewrite(q, &v, w, off);
		quorum_vote_take(&v, w);
	}
	quorum_vote_free(&v);
	return w < 0 ? -1 : 0;
}

static int
qtop_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	struct qtop *q = img->priv;
	int i;

	if (!q->p.fifo)
		return read_vote(img, off, len, buf);
	/* read-pattern=fifo: the first child that reads */
	for (i = 0; i < q->p.n; i++)
		if (img_read(q->kid[i], off, len, buf) == 0)
			return 0;
	return -1;
}

/*
 * quorum_co_block_status: zero where every child reads zeroes (as far
 * as the shortest of their zero runs), else data without an offset as
 * far as the longest data run a child has.
 */
static int
qtop_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	struct qtop *q = img->priv;
	uint64_t zero = len, data = 0;
	struct map_ext e;
	int i;

	for (i = 0; i < q->p.n; i++) {
		if (img_status(q->kid[i], off, len, &e) < 0) {
			data = len;
			break;
		}
		if (e.zero)
			zero = e.length < zero ? e.length : zero;
		else
			data = e.length > data ? e.length : data;
	}
	st->len = data ? data : zero;
	st->flags = data ? ST_DATA : ST_ZERO;
	return 0;
}

/* qemu's quorum has no bdrv_get_info: info shows no dirty flag */
static int
qtop_info(struct img *img, struct img_info *info)
{
	(void)img;
	info->no_dirty_flag = true;
	return 0;
}

/* bdrv_sum_allocated_file_size: what every child takes */
static int64_t
qtop_actual_size(struct img *img)
{
	struct qtop *q = img->priv;
	int64_t sum = 0, n;
	int i;

	for (i = 0; i < q->p.n; i++) {
		if ((n = img_actual_size(q->kid[i])) < 0)
			return -1;	/* one unknown makes the sum unknown */
		sum += n;
	}
	return sum;
}

static int
qtop_open(struct img *img)
{
	return err_set(0, "%s: quorum needs its children", img->filename);
}

static void
qtop_close(struct img *img)
{
	struct qtop *q = img->priv;
	int i;

	for (i = 0; i < q->p.n; i++)
		img_close(q->kid[i]);
	free(q->kid);
}

static const struct fmt_ops quorum_top_ops = {
	.name		= "quorum",
	.priv_size	= sizeof(struct qtop),
	.open		= qtop_open,
	.close		= qtop_close,
	.read		= qtop_read,
	.write		= qtop_write,
	.write_zeroes	= qtop_write_zeroes,
	.flush		= qtop_flush,
	.block_status	= qtop_status,
	.info		= qtop_info,
	.actual_size	= qtop_actual_size,
};

/*
 * The child's node as bdrv_refresh_filename names it: its own json: name,
 * the file itself (driver=file), or its format over its file.
 */
static struct jnode *
child_node(const struct img *kid, const struct opt_list *o, int i)
{
	char *k = xasprintf("children.%d.driver", i);
	const char *d = opt_list_get(o, k);
	struct jnode *j, *f;

	free(k);
	if (kid->blkdebug != NULL) {
		/* a format over blkdebug: that node in full */
		j = jn_new_obj();
		jn_str(j, "driver", img_format(kid));
		k = xasprintf("children.%d.file.", i);
		jn_add(j, "file", blkdbg_node_json(o, k));
		free(k);
		return j;
	}
	if (strncmp(kid->filename, "json:", 5) == 0 &&
	    (j = json_parse(kid->filename + 5)) != NULL)
		return j;
	j = jn_new_obj();
	if (d != NULL && strcmp(d, "file") == 0) {
		f = j;
	} else {
		jn_str(j, "driver", img_format(kid));
		f = jn_obj(j, "file");
	}
	jn_str(f, "driver", "file");
	jn_str(f, "filename", kid->filename);
	return j;
}

static char *
top_name(struct img **kids, int n, const struct opt_list *o)
{
	struct jnode *top = jn_new_obj(), *arr = jn_arr(top, "children");
	int i;

	for (i = 0; i < n; i++)
		jn_add(arr, NULL, child_node(kids[i], o, i));
	quorum_json_opts(top, o, "");
	return blkdbg_json_name(top);
}

struct img *
quorum_top(struct img **kids, const struct quorum_params *p,
    const struct opt_list *o, int flags)
{
	struct img *img;
	struct qtop *q;
	int i, *fd;

	if (flags & IMG_RDWR) {
		fd = xcalloc((size_t)p->n, sizeof(*fd));
		for (i = 0; i < p->n; i++)
			fd[i] = kids[i]->fd;
		for (i = 1; i < p->n && (fd[i] < 0 ||
		    quorum_twice(fd, i, kids[i]->path ? kids[i]->path :
		    kids[i]->filename) == 0); i++)
			continue;
		free(fd);
		if (i < p->n)
			goto fail;
	}
	/* quorum_getlength: the children must be as long as each other */
	for (i = 1; i < p->n; i++)
		if (kids[i]->size != kids[0]->size) {
			err_set(EIO, "Could not refresh total sector count");
			goto fail;
		}
	/* quorum_child_perm: rewriting takes write on the children */
	if (p->rewrite && !(flags & IMG_RDWR)) {
		err_set(0, "Block node is read-only");
		goto fail;
	}
	img = xcalloc(1, sizeof(*img));
	q = xcalloc(1, sizeof(*q));
	q->p = *p;
	q->kid = kids;
	img->ops = &quorum_top_ops;
	img->priv = q;
	img->fd = -1;
	img->flags = flags;
	img->size = kids[0]->size;
	img->filename = top_name(kids, p->n, o);
	img->no_dir = true;
	return img;
fail:
	for (i = 0; i < p->n; i++)
		img_close(kids[i]);
	free(kids);
	return NULL;
}
