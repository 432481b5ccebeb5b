/*
 * qcow2: the corrupt bit.  qemu's overlap check ("cached" mode) before a
 * write, and qcow2_signal_corruption: one line on stderr, and on an image
 * open for writing the corrupt bit set in the header and no more writes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "qcow2.h"

/* qemu's metadata_ol_names, in its QCow2MetadataOverlap bit order */
static const char *const ol_names[] = {
	"qcow2_header", "active L1 table", "active L2 table",
	"refcount table", "refcount block", "snapshot table",
	"inactive L1 table", "inactive L2 table", "bitmap directory",
};

static bool
overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return blen > 0 && a < b + blen && b < a + alen;
}

/* Tables of 64-bit cluster offsets (L1, refcount table) whose clusters hit. */
static bool
table_hits(const struct qcow2 *s, const uint64_t *t, uint64_t n,
    uint64_t mask, uint64_t off, uint64_t len)
{
	uint64_t i, o;

	for (i = 0; i < n; i++)
		if ((o = t[i] & mask) != 0 &&
		    overlaps(off, len, ROUND_DOWN(o, s->cluster_size),
		    s->cluster_size))
			return true;
	return false;
}

/* The first kind of metadata (QCOW2_OL_*) [off, off+len) overlaps, or -1. */
static int
overlap(struct img *img, uint64_t off, uint64_t len, unsigned ign)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size;

	len = ROUND_UP(off - ROUND_DOWN(off, cs) + len, cs);
	off = ROUND_DOWN(off, cs);
	if (!(ign & QCOW2_OL_HEADER) && off < cs)
		return 0;
	if (!(ign & QCOW2_OL_ACTIVE_L1) && overlaps(off, len, s->l1_offset,
	    (uint64_t)s->l1_size * 8))
		return 1;
	if (!(ign & QCOW2_OL_RT) && overlaps(off, len, s->rt_offset,
	    (uint64_t)s->rt_clusters * cs))
		return 3;
	if (!(ign & QCOW2_OL_SNAPSHOTS) && s->nb_snapshots > 0 &&
	    overlaps(off, len, s->snapshots_offset, 1))
		return 5;
	if (!(ign & QCOW2_OL_ACTIVE_L2) && s->l1 != NULL &&
	    table_hits(s, s->l1, s->l1_size, QCOW2_L1E_OFFSET, off, len))
		return 2;
	if (!(ign & QCOW2_OL_RB) && s->rt != NULL &&
	    table_hits(s, s->rt, s->rt_size, QCOW2_RTE_OFFSET, off, len))
		return 4;
	if (s->nb_bitmaps > 0 && overlaps(off, len, s->bm_dir_offset,
	    s->bm_dir_size))
		return 8;
	return -1;
}

/*
 * qemu's qcow2_signal_corruption for an image open for writing: one line
 * on stderr (the first time), the corrupt bit set, no more writes.  Read
 * only, the error alone (one line, as the tools print it).
 */
int
qcow2_corrupt(struct img *img, const char *fmt, ...)
{
	struct qcow2 *s = img->priv;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if ((img->flags & IMG_RDWR) && !s->fatal) {
		flush_stdout();
		notice("qcow2: Marking image as corrupt: %s; further "
		    "corruption events will be suppressed", msg);
		/* qemu's qcow2_mark_corrupt; the image is unusable after */
		s->fatal = true;
		(void)qcow2_set_incompat(img,
		    s->incompat | QCOW2_INCOMPAT_CORRUPT);
	}
	return err_set(0, "%s: %s", img->filename, msg);
}

int
qcow2_pre_write(struct img *img, uint64_t off, uint64_t len, unsigned ign)
{
	struct qcow2 *s = img->priv;
	int k;

	if (s->fatal)
		return err_set(EIO, "%s: Could not write", img->filename);
	if (len == 0 || (k = overlap(img, off, len, ign)) < 0)
		return 0;
	return qcow2_corrupt(img, "Preventing invalid write on metadata "
	    "(overlaps with %s)", ol_names[k]);
}
