/*
 * qcow2: changing the backing file recorded in the header cluster
 * (docs/interop/qcow2.txt, "Header" and "Header extensions").
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "../fmt.h"
#include "qcow2.h"

#define EXT_BACKING_FMT	0xe2792acau
#define V2_HEADER	72


/* Copy the extensions other than the backing format; returns the new end or 0. */
static size_t
copy_exts(const uint8_t *old, size_t start, size_t end, uint8_t *out,
    size_t off, size_t cs)
{
	uint32_t magic, len;
	size_t n;

	while (start + 8 <= end) {
		magic = get_be32(old + start);
		len = get_be32(old + start + 4);
		if (magic == 0)
			break;
		n = 8 + ROUND_UP((size_t)len, 8);
		if (len > end - start - 8 || n > end - start)
			return 0;
		if (magic != EXT_BACKING_FMT) {
			if (off + n + 8 > cs)
				return 0;
			memcpy(out + off, old + start, n);
			off += n;
		}
		start += n;
	}
	return off;
}

int
qcow2_set_backing(struct img *img, const char *file, const char *fmt)
{
	struct qcow2 *s = img->priv;
	size_t cs = s->cluster_size, hlen, off, blen = file ? strlen(file) : 0;
	uint64_t boff;
	uint8_t *old = NULL, *hdr = NULL;
	int r = -1;

	if (img->ops->flush(img) < 0 || qcow2_prepare_write(img) < 0)
		return -1;
	old = xmalloc(cs);
	hdr = xcalloc(1, cs);
	if (io_pread(img->fd, old, cs, 0) != (ssize_t)cs) {
		err_set(errno ? errno : EIO, "%s: Could not read the qcow2 header",
		    img->filename);
		goto out;
	}
	hlen = s->version >= 3 ? get_be32(old + 100) : V2_HEADER;
	boff = get_be64(old + 8);
	if (hlen > cs || boff > cs) {
		err_set(EINVAL, "%s: bad header", img->filename);
		goto out;
	}
	memcpy(hdr, old, hlen);
	off = hlen;
	if (fmt != NULL && blen > 0) {
		put_be32(hdr + off, EXT_BACKING_FMT);
		put_be32(hdr + off + 4, (uint32_t)strlen(fmt));
		memcpy(hdr + off + 8, fmt, strlen(fmt));
		off += 8 + ROUND_UP(strlen(fmt), 8);
	}
	off = copy_exts(old, hlen, boff ? boff : cs, hdr, off, cs);
	if (off == 0 || off + 8 + blen > cs) {
		err_set(ENOSPC, "No space left in the file header");
		goto out;
	}
	off += 8;			/* end of extensions */
	put_be64(hdr + 8, blen ? off : 0);
	put_be32(hdr + 16, (uint32_t)blen);
	memcpy(hdr + off, file ? file : "", blen);
	if (io_pwrite(img->fd, hdr, cs, 0) < 0 ||
	    (fdatasync(img->fd) < 0 && errno != EINVAL)) {
		err_set(errno, "%s: Could not write the qcow2 header", img->filename);
		goto out;
	}
	free(img->backing_file);
	free(img->backing_fmt);
	img->backing_file = blen ? xstrdup(file) : NULL;
	img->backing_fmt = blen && fmt ? xstrdup(fmt) : NULL;
	r = 0;
out:
	free(old);
	free(hdr);
	return r;
}

#define L1E_OFFSET_MASK	0x00fffffffffffe00ull

/*
 * Empty the image: every L2 entry becomes unallocated (reads fall through
 * to the backing file), the clusters they held are freed.  L2 tables stay.
 */
int
qcow2_make_empty(struct img *img)
{
	struct qcow2 *s = img->priv;
	uint64_t i, j, l2off, entry;
	uint8_t *l2;

	if (qcow2_prepare_write(img) < 0)
		return -1;
	for (i = 0; i < s->l1_size; i++) {
		if ((s->l1[i] & L1E_OFFSET_MASK) == 0)
			continue;
		if (qcow2_l2_for_write(img, i, &l2off) < 0 ||
		    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
			return -1;
		for (j = 0; j < qcow2_l2_entries(s); j++) {
			entry = qcow2_l2_entry(s, l2, j);
			if (entry == 0 && qcow2_l2_bitmap(s, l2, j) == 0)
				continue;
			if (qcow2_free_entry(img, entry) < 0)
				return -1;
			qcow2_l2_set(s, l2, j, 0);
			if (s->extl2)
				put_be64(l2 + (j << 4) + 8, 0);
		}
		qcow2_cache_dirty(&s->l2_cache, l2off);
	}
	s->zc_valid = false;
	return img->ops->flush(img);
}
