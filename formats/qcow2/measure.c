/*
 * qcow2 size measurement: the metadata a new image needs, as
 * docs/interop/qcow2.txt lays it out (header, L1, L2, refcount table and blocks).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "../fmt.h"
#include "qcow2.h"

#define BM_DIR_MAX	(64u << 20)	/* QCOW2_MAX_BITMAP_DIRECTORY_SIZE */
#define BM_ENTRY_HDR	24		/* fixed part of a bitmap directory entry */


#define MAX_L1_BYTES	(32u << 20)	/* QCOW_MAX_L1_SIZE */

struct mopts {
	uint64_t	cluster_size;
	uint64_t	refcount_bits;
	bool		extended_l2;
	bool		v3;
	bool		prealloc_all;	/* falloc or full: every data cluster counts */
	bool		backing;
};

/*
 * Refcount table and blocks for `clusters` clusters, counting the refcount
 * metadata itself: iterate to the fixed point.
 */
static uint64_t
refcount_meta(uint64_t clusters, uint64_t cluster_size, uint64_t refcount_bits)
{
	uint64_t per_table = cluster_size / 8, per_block = cluster_size * 8 /
	    refcount_bits;
	uint64_t table = 0, blocks = 0, n = 0, last;

	do {
		last = n;
		blocks = DIV_ROUND_UP(clusters + table + blocks, per_block);
		table = DIV_ROUND_UP(blocks, per_table);
		n = clusters + blocks + table;
	} while (n != last);
	return (blocks + table) * cluster_size;
}

/* Bytes of a fully allocated image of `size` bytes (data included). */
static uint64_t
prealloc_size(uint64_t size, const struct mopts *mo)
{
	uint64_t cs = mo->cluster_size, l2e = mo->extended_l2 ? 16 : 8;
	uint64_t aligned = ROUND_UP(size, cs), meta = cs, nl2e, nl1e;

	nl2e = ROUND_UP(aligned / cs, cs / l2e);
	meta += nl2e * l2e;
	nl1e = ROUND_UP(nl2e * l2e / cs, cs / 8);
	meta += nl1e * 8;
	meta += refcount_meta((meta + aligned) / cs, cs, mo->refcount_bits);
	return meta + aligned;
}

static int
parse_opts(const struct opt_list *o, struct mopts *mo)
{
	const char *v;
	uint64_t n;

	memset(mo, 0, sizeof(*mo));
	mo->cluster_size = 65536;
	mo->refcount_bits = 16;
	mo->v3 = true;
	if ((v = opt_list_get(o, "cluster_size")) != NULL &&
	    (opt_size(v, &n) < 0 || !is_pow2(n) || n < 512 || n > (2u << 20)))
		return err_set(0, "Cluster size must be a power of two between 512 and 2048k");
	else if (v != NULL)
		mo->cluster_size = n;
	if ((v = opt_list_get(o, "compat")) != NULL) {
		if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
			mo->v3 = false;
		else if (strcmp(v, "1.1") && strcmp(v, "v3"))
			return err_set(0, "Invalid compatibility level: '%s'", v);
	}
	if ((v = opt_list_get(o, "refcount_bits")) != NULL) {
		if (opt_size(v, &n) < 0 || !is_pow2(n) || n > 64)
			return err_set(0, "Refcount width must be a power of two and may not exceed 64 bits");
		mo->refcount_bits = n;
	}
	if (!mo->v3 && mo->refcount_bits != 16)
		return err_set(0, "Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)");
	if ((v = opt_list_get(o, "extended_l2")) != NULL && opt_bool(v) == 1) {
		mo->extended_l2 = true;
		if (mo->cluster_size < 16384)
			return err_set(0, "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
	}
	if ((v = opt_list_get(o, "preallocation")) != NULL) {
		if (!strcmp(v, "falloc") || !strcmp(v, "full"))
			mo->prealloc_all = true;
		else if (strcmp(v, "off") && strcmp(v, "metadata"))
			return err_set(0, "invalid parameter value: %s", v);
	}
	mo->backing = opt_list_get(o, "backing_file") != NULL;
	return 0;
}

/* Data bytes the new image needs for in's content, in whole clusters. */
static int
data_required(struct img *in, uint64_t cs, uint64_t *required)
{
	struct map_ext e;
	uint64_t off, end, n;

	*required = 0;
	for (off = 0; off < in->size; off += n) {
		if (img_status(in, off, in->size - off, &e) < 0)
			return -1;
		n = e.length;
		if (e.zero || !(e.present && e.data))
			continue;
		/* count from the cluster start through the cluster end */
		end = ROUND_UP(off + n, cs);
		*required += off % cs + (end - off);
		n = end - off;
		if (off + n > in->size)
			n = in->size - off;
	}
	return 0;
}

int
qcow2_measure(const struct opt_list *o, struct img *in, uint64_t size,
    struct img_measure *m)
{
	struct mopts mo;
	uint64_t vsize, required, l2_tables, l2e, luks;

	if (parse_opts(o, &mo) < 0 ||
	    qcow2_crypt_measure(o, mo.cluster_size, &luks) < 0)
		return -1;
	if (in != NULL)
		size = in->size;
	vsize = ROUND_UP(size, mo.cluster_size);
	l2e = mo.extended_l2 ? 16 : 8;
	l2_tables = DIV_ROUND_UP(vsize / mo.cluster_size, mo.cluster_size / l2e);
	if (l2_tables > MAX_L1_BYTES / 8)
		return err_set(0, "The image size is too large (try using a larger cluster size)");
	/* an empty disk needs metadata only; with a new backing file, assume
	 * it shares nothing with the input */
	required = in != NULL && mo.backing ? vsize : 0;
	if (in != NULL && !mo.backing &&
	    data_required(in, mo.cluster_size, &required) < 0)
		return -1;
	if (mo.prealloc_all)
		required = vsize;
	m->fully_allocated = luks + prealloc_size(vsize, &mo);
	m->required = m->fully_allocated - vsize + required;
	m->has_bitmaps = mo.v3 && in != NULL &&
	    img_bitmaps_size(in, mo.cluster_size, &m->bitmaps);
	return 0;
}

/*
 * The bytes img's persistent bitmaps would take in a new image with
 * clusters of cs bytes: every bitmap fully allocated, its table, and the
 * directory ("Bitmaps extension" in docs/interop/qcow2.txt).
 */
bool
qcow2_bitmaps_size(struct img *img, uint64_t cs, uint64_t *size)
{
	struct qcow2 *s = img->priv;
	uint64_t pos, dir = 0, bytes, clusters;
	uint32_t name, extra, i;
	uint8_t *buf;

	*size = 0;
	if (s->version < 3)
		return false;
	if (s->nb_bitmaps == 0 || s->bm_dir_size == 0 ||
	    s->bm_dir_size > BM_DIR_MAX)
		return true;
	buf = xmalloc(s->bm_dir_size);
	if (io_pread(img->fd, buf, s->bm_dir_size, s->bm_dir_offset) !=
	    (ssize_t)s->bm_dir_size) {
		free(buf);
		return true;
	}
	for (pos = 0, i = 0; i < s->nb_bitmaps &&
	    pos + BM_ENTRY_HDR <= s->bm_dir_size; i++) {
		unsigned gbits = buf[pos + 17];

		name = get_be16(buf + pos + 18);
		extra = get_be32(buf + pos + 20);
		if (gbits > 63 || extra > s->bm_dir_size)
			break;
		bytes = DIV_ROUND_UP(DIV_ROUND_UP(img->size, (uint64_t)1 << gbits), 8);
		clusters = DIV_ROUND_UP(bytes, cs);
		*size += clusters * cs + ROUND_UP(clusters * 8, cs);
		dir += ROUND_UP(BM_ENTRY_HDR + name, 8);
		pos += ROUND_UP(BM_ENTRY_HDR + (uint64_t)extra + name, 8);
	}
	*size += ROUND_UP(dir, cs);
	free(buf);
	return true;
}
