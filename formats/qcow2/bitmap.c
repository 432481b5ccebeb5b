/*
 * qcow2 persistent dirty bitmaps: the directory as qemu-img info lists it,
 * and the in-use flag of a writer that does not track.  docs/interop/
 * qcow2.txt, "Bitmaps extension" and "Bitmap directory".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "qcow2.h"

#define BME_IN_USE	(1u << 0)
#define BME_AUTO	(1u << 1)
#define BME_FIXED	24	/* directory entry without extra data and name */

struct bm_entry {
	uint64_t	 at;		/* offset of the entry in the directory */
	uint32_t	 flags;
	unsigned	 gbits;		/* granularity bits */
	const char	*name;
	uint16_t	 nlen;
};

static int
read_dir(struct img *img, uint8_t **dir)
{
	struct qcow2 *s = img->priv;

	*dir = xmalloc(s->bm_dir_size ? s->bm_dir_size : 1);
	if (qcow2_pread_meta(img, *dir, s->bm_dir_size, s->bm_dir_offset,
	    "bitmap directory") < 0) {
		free(*dir);
		return -1;
	}
	return 0;
}

/* Entry number i of the directory at *pos; -1 with err_set when it overruns. */
static int
next_entry(struct img *img, const uint8_t *dir, uint64_t *pos,
    struct bm_entry *e)
{
	struct qcow2 *s = img->priv;
	uint64_t left = s->bm_dir_size - *pos, need;
	uint32_t extra;

	if (left < BME_FIXED)
		goto bad;
	e->at = *pos;
	e->flags = get_be32(dir + *pos + 12);
	e->gbits = dir[*pos + 17];
	e->nlen = get_be16(dir + *pos + 18);
	extra = get_be32(dir + *pos + 20);
	need = BME_FIXED + (uint64_t)extra + e->nlen;
	if (need > left || e->gbits > 63)
		goto bad;
	e->name = (const char *)dir + *pos + BME_FIXED + extra;
	*pos += MIN(ROUND_UP(need, 8), left);
	return 0;
bad:
	return err_set(0, "%s: bitmap directory at %#llx is corrupt",
	    img->filename, (unsigned long long)s->bm_dir_offset);
}

/* The "bitmaps" list of qemu-img info's format-specific data. */
int
qcow2_bitmap_info(struct img *img, struct jnode *data)
{
	struct qcow2 *s = img->priv;
	struct jnode *arr, *bm, *flags;
	struct bm_entry e;
	uint64_t pos = 0;
	uint8_t *dir;
	uint32_t i;
	char *name;

	if (s->nb_bitmaps == 0)
		return 0;
	if (read_dir(img, &dir) < 0)
		return -1;
	arr = jn_arr(data, "bitmaps");
	for (i = 0; i < s->nb_bitmaps; i++) {
		if (next_entry(img, dir, &pos, &e) < 0) {
			free(dir);
			return -1;
		}
		bm = jn_obj(arr, NULL);
		flags = jn_arr(bm, "flags");
		if (e.flags & BME_IN_USE)
			jn_str(flags, NULL, "in-use");
		if (e.flags & BME_AUTO)
			jn_str(flags, NULL, "auto");
		name = xasprintf("%.*s", (int)e.nlen, e.name);
		jn_str(bm, "name", name);
		free(name);
		jn_uint(bm, "granularity", 1ull << e.gbits);
	}
	free(dir);
	return 0;
}

/*
 * Before the first write: we do not track writes in bitmaps, so every
 * enabled ("auto") bitmap is marked in use, which tells qemu it is no
 * longer consistent.  Disabled bitmaps stay valid; the bitmaps stay
 * referenced, so qemu-img check finds no leaks.
 */
int
qcow2_bitmaps_in_use(struct img *img)
{
	struct qcow2 *s = img->priv;
	struct bm_entry e;
	uint64_t pos = 0;
	uint8_t *dir;
	uint32_t i;
	bool dirty = false;
	int r = 0;

	if (s->nb_bitmaps == 0)
		return 0;
	if (read_dir(img, &dir) < 0)
		return -1;
	for (i = 0; i < s->nb_bitmaps && r == 0; i++) {
		if ((r = next_entry(img, dir, &pos, &e)) < 0)
			break;
		if ((e.flags & BME_AUTO) && !(e.flags & BME_IN_USE)) {
			put_be32(dir + e.at + 12, e.flags | BME_IN_USE);
			dirty = true;
		}
	}
	if (r == 0 && dirty)
		r = qcow2_pwrite(img, dir, s->bm_dir_size, s->bm_dir_offset,
		    "bitmap directory");
	if (r == 0 && dirty && fdatasync(img->fd) < 0 && errno != EINVAL)
		r = err_set(errno, "%s: fsync", img->filename);
	free(dir);
	return r;
}
