/*
 * qcow2 internal snapshots: the snapshot table, and creating, applying and
 * deleting snapshots by moving references, as qemu's block/qcow2-snapshot.c.
 * docs/interop/qcow2.txt, "Snapshots".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "../blkdebug.h"
#include "qcow2.h"

#define SN_EXTRA		24		/* the extra data qemu writes */
#define SN_MAX_EXTRA		1024		/* QCOW_MAX_SNAPSHOT_EXTRA_DATA */
#define SN_MAX_TABLE		(1024u * QCOW2_MAX_SNAPSHOTS)

/* One snapshot table entry, decoded. */
struct snap {
	uint64_t	 l1_offset;
	uint32_t	 l1_size;
	char		*id, *name;
	uint32_t	 date_sec, date_nsec;
	uint64_t	 vm_clock_nsec;
	uint64_t	 vm_state_size;
	uint64_t	 disk_size;
	uint64_t	 icount;		/* UINT64_MAX: none */
	uint32_t	 extra_size;		/* as read (at least SN_EXTRA when written) */
	uint8_t		*extra_more;		/* extra data past SN_EXTRA, kept */
};

/* The references added so far, dropped again if a later one fails. */
struct journal {
	struct qcow2_free	*v;
	size_t			 n, cap;
};

struct snaps {
	struct snap	*v;
	uint32_t	 n;
	uint64_t	 bytes;			/* table size on disk */
};

static void
snaps_free(struct snaps *t)
{
	uint32_t i;

	for (i = 0; t->v != NULL && i < t->n; i++) {
		free(t->v[i].id);
		free(t->v[i].name);
		free(t->v[i].extra_more);
	}
	free(t->v);
	memset(t, 0, sizeof(*t));
}

/*
 * Decode the entry at off; *len: its size before padding.  As qemu reads
 * it, bytes past the end of the file read as zeroes (the table's size is
 * capped by the caller).
 */
static int
read_entry(struct img *img, uint64_t off, struct snap *sn, uint64_t *len,
    uint32_t i)
{
	uint8_t h[QCOW2_SNAPSHOT_ENTRY], *var;
	uint32_t idlen, namelen, extra;
	uint64_t n;

	if (io_pread_zero(img->fd, h, sizeof(h), off) < 0)
		return err_set(errno, "Failed to read snapshot table");
	sn->l1_offset = get_be64(h);
	sn->l1_size = get_be32(h + 8);
	idlen = get_be16(h + 12);
	namelen = get_be16(h + 14);
	sn->date_sec = get_be32(h + 16);
	sn->date_nsec = get_be32(h + 20);
	sn->vm_clock_nsec = get_be64(h + 24);
	sn->vm_state_size = get_be32(h + 32);
	extra = get_be32(h + 36);
	if (extra > SN_MAX_EXTRA)
		return err_set(0, "Too much extra metadata in snapshot table "
		    "entry %u\nYou can force-remove this extra metadata with "
		    "qemu-img check -r all", i);
	n = (uint64_t)extra + idlen + namelen;
	var = xmalloc(n + 1);
	if (io_pread_zero(img->fd, var, n, off + sizeof(h)) < 0) {
		free(var);
		return err_set(errno, "Failed to read snapshot table");
	}
	sn->extra_size = extra;
	sn->disk_size = UINT64_MAX;
	sn->icount = UINT64_MAX;
	if (extra >= 8)
		sn->vm_state_size = get_be64(var);
	if (extra >= 16)
		sn->disk_size = get_be64(var + 8);
	if (extra >= 24)
		sn->icount = get_be64(var + 16);
	if (extra > SN_EXTRA) {
		sn->extra_more = xmalloc(extra - SN_EXTRA);
		memcpy(sn->extra_more, var + SN_EXTRA, extra - SN_EXTRA);
	}
	sn->id = xasprintf("%.*s", (int)idlen, (char *)var + extra);
	sn->name = xasprintf("%.*s", (int)namelen, (char *)var + extra + idlen);
	free(var);
	*len = sizeof(h) + n;
	return 0;
}

/*
 * The snapshot table, entry by entry, as qcow2_read_snapshots: at most
 * QCOW_MAX_SNAPSHOTS_SIZE bytes in all.  Errors read as qemu's failure to
 * open the image.
 */
static int
read_snaps(struct img *img, struct snaps *t)
{
	struct qcow2 *s = img->priv;
	uint64_t off = s->snapshots_offset, len = 0, size = 0;
	uint32_t i;

	memset(t, 0, sizeof(*t));
	if (s->nb_snapshots == 0)
		return 0;
	t->v = xcalloc(s->nb_snapshots, sizeof(*t->v));
	for (i = 0; i < s->nb_snapshots; i++) {
		t->n = i + 1;
		off = s->snapshots_offset + ROUND_UP(size, 8);
		if (read_entry(img, off, &t->v[i], &len, i) < 0)
			goto fail;
		size = ROUND_UP(size, 8) + len;
		if (size > SN_MAX_TABLE) {
			err_set(0, "Snapshot table is too big\nYou can force-remove "
			    "all %u overhanging snapshots with qemu-img check -r "
			    "all", s->nb_snapshots - i);
			goto fail;
		}
		if (t->v[i].disk_size == UINT64_MAX)
			t->v[i].disk_size = img->size;
	}
	t->bytes = size;
	return 0;
fail:
	snaps_free(t);
	return err_prefix("Could not open '%s'", img->filename);
}

int
qcow2_snapshot_list(struct img *img, struct img_snapshot **out, size_t *n)
{
	struct snaps t;
	struct img_snapshot *v;
	uint32_t i;

	*out = NULL;
	*n = 0;
	if (read_snaps(img, &t) < 0)
		return -1;
	if (t.n == 0)
		return 0;
	v = xcalloc(t.n, sizeof(*v));
	for (i = 0; i < t.n; i++) {
		v[i].id = t.v[i].id;
		v[i].name = t.v[i].name;
		t.v[i].id = t.v[i].name = NULL;
		v[i].vm_state_size = t.v[i].vm_state_size;
		v[i].date_sec = t.v[i].date_sec;
		v[i].date_nsec = t.v[i].date_nsec;
		v[i].vm_clock_nsec = t.v[i].vm_clock_nsec;
		v[i].icount = t.v[i].icount;
	}
	*out = v;
	*n = t.n;
	snaps_free(&t);
	return 0;
}

static size_t
entry_size(const struct snap *sn)
{
	return QCOW2_SNAPSHOT_ENTRY + MAX(SN_EXTRA, sn->extra_size) +
	    strlen(sn->id) + strlen(sn->name);
}

static void
put_entry(uint8_t *p, const struct snap *sn)
{
	uint32_t extra = MAX(SN_EXTRA, sn->extra_size);
	size_t idlen = strlen(sn->id);

	put_be64(p, sn->l1_offset);
	put_be32(p + 8, sn->l1_size);
	put_be16(p + 12, (uint16_t)idlen);
	put_be16(p + 14, (uint16_t)strlen(sn->name));
	put_be32(p + 16, sn->date_sec);
	put_be32(p + 20, sn->date_nsec);
	put_be64(p + 24, sn->vm_clock_nsec);
	put_be32(p + 32, (uint32_t)sn->vm_state_size);
	put_be32(p + 36, extra);
	p += QCOW2_SNAPSHOT_ENTRY;
	put_be64(p, sn->vm_state_size);
	put_be64(p + 8, sn->disk_size);
	put_be64(p + 16, sn->icount);
	if (sn->extra_more != NULL)
		memcpy(p + SN_EXTRA, sn->extra_more, extra - SN_EXTRA);
	memcpy(p + extra, sn->id, idlen);
	memcpy(p + extra + idlen, sn->name, strlen(sn->name));
}

/*
 * qcow2_write_snapshots: the table goes to new clusters, everything it
 * depends on reaches the disk, the header points at it (bytes 60-71:
 * nb_snapshots, snapshots_offset), then the old table is freed.
 */
static int
write_snaps(struct img *img, struct snaps *t)
{
	struct qcow2 *s = img->priv;
	uint64_t size = 0, off = 0, old = s->snapshots_offset, oldn;
	uint8_t *buf, h[12];
	uint32_t i;
	int r;

	for (i = 0; i < t->n; i++) {
		size = ROUND_UP(size, 8) + entry_size(&t->v[i]);
		if (size > SN_MAX_TABLE)
			return err_set(EFBIG, "%s: snapshot table too large",
			    img->filename);
	}
	/* qemu allocates (an empty table too), flushes, writes, flushes */
	if (size == 0)
		blkdbg_event(img->fd, BLKDBG_CLUSTER_ALLOC);
	if (size > 0 && (off = qcow2_alloc_clusters(img,
	    DIV_ROUND_UP(size, s->cluster_size))) == 0)
		return -1;
	if (qcow2_flush_node(img) < 0)
		return -1;
	if (size > 0) {
		buf = xcalloc(1, size);
		for (size = 0, i = 0; i < t->n; i++) {
			size = ROUND_UP(size, 8);
			put_entry(buf + size, &t->v[i]);
			size += entry_size(&t->v[i]);
		}
		r = qcow2_pwrite(img, buf, size, off, "snapshot table");
		free(buf);
		if (r < 0)
			return -1;
	}
	if (qcow2_flush_node(img) < 0)
		return -1;
	put_be32(h, t->n);
	put_be64(h + 4, off);
	if (qcow2_pwrite(img, h, sizeof(h), 60, "qcow2 header") < 0 ||
	    qcow2_fsync(img) < 0)
		return -1;
	oldn = s->nb_snapshots ? ROUND_UP(t->bytes, s->cluster_size) : 0;
	s->nb_snapshots = t->n;
	s->snapshots_offset = off;
	t->bytes = size;
	if (old == 0 || oldn == 0)
		return 0;
	/*
	 * qemu's qcow2_free_clusters: a failure leaks the old table, with
	 * this line from the block layer itself, and the table stays written
	 */
	blkdbg_event(img->fd, BLKDBG_CLUSTER_FREE);
	if (qcow2_refcount_update(img, old, oldn, -1) < 0)
		notice("qcow2_free_clusters failed: %s",
		    strerror(err_errno() ? err_errno() : EIO));
	return 0;
}

static int
add_ref(struct img *img, uint64_t off, uint64_t len, int addend,
    struct journal *j)
{
	struct qcow2 *s = img->priv;
	uint64_t ti = (off >> s->cluster_bits) >> s->rb_bits;

	if (addend == 0)
		return 0;
	/*
	 * qemu's update_refcount cannot create a refcount block here: its
	 * alloc_refcount_block answers -EAGAIN (qemu-iotests 080).
	 */
	if (addend > 0 && ti >= QCOW2_MAX_RT_BYTES / 8)
		return err_set(EFBIG, "%s: no refcount table for cluster %#llx",
		    img->filename, (unsigned long long)off);
	if (addend > 0 && (ti >= s->rt_size || !(s->rt[ti] & QCOW2_RTE_OFFSET)))
		return err_set(EAGAIN, "%s: no refcount block for cluster %#llx",
		    img->filename, (unsigned long long)off);
	if (qcow2_refcount_update(img, off, len, addend) < 0) {
		/* qemu's update_refcount fails an overflow with -EINVAL */
		if (err_errno() == ERANGE)
			err_set(EINVAL, "%s: refcount overflow", img->filename);
		return -1;
	}
	if (j == NULL)
		return 0;
	if (j->n == j->cap) {
		j->cap = j->cap ? 2 * j->cap : 256;
		j->v = xrealloc(j->v, j->cap * sizeof(*j->v));
	}
	j->v[j->n].off = off;
	j->v[j->n].len = len;
	j->n++;
	return 0;
}

/* Undo what the journal holds; the error recorded stays as it was. */
static void
journal_undo(struct img *img, struct journal *j)
{
	char msg[1024], suffix[256];
	int e = err_errno();
	size_t n, k;

	snprintf(msg, sizeof(msg), "%s", err_msg());
	snprintf(suffix, sizeof(suffix), ": %s", strerror(e));
	n = strlen(msg);
	k = strlen(suffix);
	if (e != 0 && n >= k && strcmp(msg + n - k, suffix) == 0)
		msg[n - k] = '\0';
	while (j->n > 0) {
		j->n--;
		(void)qcow2_refcount_update(img, j->v[j->n].off, j->v[j->n].len, -1);
	}
	err_set(e, "%s", msg);
}

/* The new entry's COPIED flag: set when it alone references its cluster. */
static int
copied_flag(struct img *img, uint64_t off, uint64_t e, uint64_t *ne)
{
	struct qcow2 *s = img->priv;
	uint64_t rc;

	if (qcow2_refcount_get(img, off >> s->cluster_bits, &rc) < 0)
		return -1;
	*ne = rc == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED;
	return 0;
}

/* One L2 table: add addend to what it references, and fix the COPIED flags. */
static int
update_l2(struct img *img, uint64_t l2off, int addend, struct journal *jr)
{
	struct qcow2 *s = img->priv;
	uint64_t j, e, ne, off, len;
	uint8_t *l2;
	bool changed = false;

	for (j = 0; j < qcow2_l2_entries(s); j++) {
		if ((l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
			return -1;
		e = qcow2_l2_entry(s, l2, j);
		qcow2_entry_range(s, e, &off, &len);
		if (len == 0)
			continue;
		if (add_ref(img, off, len, addend, jr) < 0)
			return -1;
		if (e & QCOW2_OFLAG_COMPRESSED)
			continue;
		if (off & (s->cluster_size - 1))
			return err_set(0, "%s: Cluster allocation offset %#llx "
			    "unaligned (L2 offset: %#llx, L2 index: %#llx)",
			    img->filename, (unsigned long long)off,
			    (unsigned long long)l2off, (unsigned long long)j);
		if (copied_flag(img, off, e, &ne) < 0)
			return -1;
		if (ne != e) {
			if ((l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
				return -1;
			qcow2_l2_set(s, l2, j, ne);
			changed = true;
		}
	}
	if (changed)
		qcow2_cache_dirty(&s->l2_cache, l2off);
	return 0;
}

/*
 * qemu's qcow2_update_snapshot_refcount: add addend (+1, -1 or 0) to the
 * refcount of every L2 table of l1 and every cluster they reference, then
 * set QCOW2_OFLAG_COPIED exactly where the refcount is 1.  *changed: some
 * L1 entry changed.
 */
static int
update_refs(struct img *img, uint64_t *l1, uint32_t n, int addend,
    bool *changed, struct journal *jr)
{
	struct qcow2 *s = img->priv;
	uint64_t l2off, ne;
	uint32_t i;

	*changed = false;
	for (i = 0; i < n; i++) {
		if ((l2off = l1[i] & QCOW2_L1E_OFFSET) == 0)
			continue;
		if (l2off & (s->cluster_size - 1))
			return err_set(0, "%s: L2 table offset %#llx unaligned "
			    "(L1 index: %#x)", img->filename,
			    (unsigned long long)l2off, i);
		if (update_l2(img, l2off, addend, jr) < 0 ||
		    add_ref(img, l2off, s->cluster_size, addend, jr) < 0)
			return -1;
		if (copied_flag(img, l2off, l1[i], &ne) < 0)
			return -1;
		if (ne != l1[i]) {
			l1[i] = ne;
			*changed = true;
		}
	}
	return 0;
}

/* update_refs on the active L1 table, marking changed entries for write-back. */
static int
update_active(struct img *img, int addend, struct journal *jr)
{
	struct qcow2 *s = img->priv;
	uint64_t *old = xcalloc(s->l1_size ? s->l1_size : 1, 8);
	bool changed;
	uint32_t i;
	int r;

	memcpy(old, s->l1, (size_t)s->l1_size * 8);
	r = update_refs(img, s->l1, s->l1_size, addend, &changed, jr);
	for (i = 0; i < s->l1_size; i++)
		if (s->l1[i] != old[i]) {
			s->l1_dirty[i] = 1;
			s->any_l1_dirty = true;
		}
	free(old);
	return r;
}

/* A snapshot's L1 table, in host order; NULL with err_set. */
static uint64_t *
read_l1(struct img *img, const struct snap *sn)
{
	struct qcow2 *s = img->priv;
	uint64_t *t, fsize;
	uint8_t *buf;
	uint32_t i;

	if (fmt_file_size(img, &fsize) < 0)
		return NULL;
	if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		err_set(0, "Snapshot L1 table too large");
		return NULL;
	}
	if ((sn->l1_offset & (s->cluster_size - 1)) ||
	    sn->l1_offset > fsize || (uint64_t)sn->l1_size * 8 > fsize - sn->l1_offset) {
		err_set(0, "Snapshot L1 table offset invalid");
		return NULL;
	}
	buf = xmalloc(sn->l1_size ? (size_t)sn->l1_size * 8 : 1);
	t = xcalloc(sn->l1_size ? sn->l1_size : 1, 8);
	if (sn->l1_size && qcow2_pread_meta(img, buf, (size_t)sn->l1_size * 8,
	    sn->l1_offset, "snapshot L1 table") < 0) {
		free(buf);
		free(t);
		return NULL;
	}
	for (i = 0; i < sn->l1_size; i++)
		t[i] = get_be64(buf + 8 * (size_t)i);
	free(buf);
	return t;
}

static int
write_l1(struct img *img, uint64_t off, const uint64_t *t, uint32_t n)
{
	uint8_t *buf = xmalloc(n ? (size_t)n * 8 : 1);
	uint32_t i;
	int r;

	for (i = 0; i < n; i++)
		put_be64(buf + 8 * (size_t)i, t[i]);
	r = n ? qcow2_pwrite(img, buf, (size_t)n * 8, off, "L1 table") : 0;
	free(buf);
	return r;
}

/* find_snapshot_by_id_and_name: -1 when none matches. */
static int
find(const struct snaps *t, const char *id, const char *name)
{
	uint32_t i;

	for (i = 0; i < t->n; i++)
		if ((id == NULL || strcmp(t->v[i].id, id) == 0) &&
		    (name == NULL || strcmp(t->v[i].name, name) == 0))
			return (int)i;
	return -1;
}

/* find_new_snapshot_id: one more than the largest numeric id. */
static char *
new_id(const struct snaps *t)
{
	unsigned long max = 0, v;
	uint32_t i;

	for (i = 0; i < t->n; i++) {
		v = strtoul(t->v[i].id, NULL, 10);
		max = MAX(max, v);
	}
	return xasprintf("%lu", max + 1);
}

static int
check_writable(struct img *img)
{
	struct qcow2 *s = img->priv;

	if (s->data_file != NULL || (s->incompat & QCOW2_INCOMPAT_DATA_FILE))
		return err_set(ENOTSUP, "%s: external data file", img->filename);
	return qcow2_prepare_write(img);
}

int
qcow2_snapshot_create(struct img *img, const struct img_snapshot *in)
{
	struct qcow2 *s = img->priv;
	struct snaps t;
	struct journal jr = { NULL, 0, 0 };
	struct snap *sn;
	uint64_t *l1;
	int r = -1;

	if (check_writable(img) < 0 || read_snaps(img, &t) < 0)
		return -1;
	if (t.n >= QCOW2_MAX_SNAPSHOTS) {
		err_set(EFBIG, "%s: too many snapshots", img->filename);
		goto out;
	}
	t.v = xrealloc(t.v, (t.n + 1) * sizeof(*t.v));
	sn = &t.v[t.n];
	memset(sn, 0, sizeof(*sn));
	sn->id = new_id(&t);
	t.n++;
	sn->name = xstrdup(in->name);
	sn->disk_size = img->size;
	sn->vm_state_size = in->vm_state_size;
	sn->date_sec = (uint32_t)in->date_sec;
	sn->date_nsec = in->date_nsec;
	sn->vm_clock_nsec = in->vm_clock_nsec;
	sn->icount = in->icount;
	sn->extra_size = SN_EXTRA;
	sn->l1_size = s->l1_size;
	/* the snapshot's L1 table: a copy of the active one */
	if (qcow2_flush(img) < 0 || (s->l1_size > 0 &&
	    (sn->l1_offset = qcow2_alloc_clusters(img, DIV_ROUND_UP(
	    (uint64_t)s->l1_size * 8, s->cluster_size))) == 0))
		goto out;
	l1 = xcalloc(s->l1_size ? s->l1_size : 1, 8);
	memcpy(l1, s->l1, (size_t)s->l1_size * 8);
	r = write_l1(img, sn->l1_offset, l1, s->l1_size);
	free(l1);
	if (r < 0)
		goto out;
	/* every reference gains one, and is durable before the table names it */
	r = -1;
	if (update_active(img, 1, &jr) < 0) {
		/* the L1 copy leaks, as qemu leaves it (qemu-iotests 112) */
		journal_undo(img, &jr);
		goto out;
	}
	if (qcow2_flush_node(img) < 0)
		goto out;
	r = write_snaps(img, &t);
out:
	free(jr.v);
	snaps_free(&t);
	return r;
}

/*
 * qcow2_snapshot_goto: the disk takes the snapshot's size, the active L1
 * table (grown if needed) takes the snapshot's entries; the snapshot's
 * references gain one before the old active ones lose one.
 */
int
qcow2_snapshot_apply(struct img *img, const char *name)
{
	struct qcow2 *s = img->priv;
	struct snaps t;
	struct journal jr = { NULL, 0, 0 };
	struct snap *sn;
	uint64_t *l1 = NULL, *cur;
	char why[512];
	bool changed;
	int i, r = -1;

	if (read_snaps(img, &t) < 0)
		return -1;
	if ((i = find(&t, name, NULL)) < 0 && (i = find(&t, NULL, name)) < 0) {
		err_set(ENOENT, "Failed to load snapshot");
		goto out;
	}
	sn = &t.v[i];
	if (check_writable(img) < 0)
		goto out;
	if ((l1 = read_l1(img, sn)) == NULL) {
		/* qemu reports the table, then "Failed to load snapshot" */
		snprintf(why, sizeof(why), "%s", err_msg());
		err_set(0, "%s\nFailed to load snapshot: %s", why,
		    strerror(qcow2_l1_errno(why)));
		goto out;
	}
	if (sn->disk_size != img->size &&
	    qcow2_resize(img, sn->disk_size, IMG_PREALLOC_OFF) < 0) {
		/* qemu reports the truncation, then "Failed to load snapshot" */
		snprintf(why, sizeof(why), "%s", err_msg());
		err_set(0, "%s\nFailed to load snapshot: %s", why,
		    strerror(err_errno() ? err_errno() : EIO));
		goto out;
	}
	if (sn->l1_size > s->l1_size) {
		cur = xcalloc(sn->l1_size, 8);
		memcpy(cur, s->l1, (size_t)s->l1_size * 8);
		if (qcow2_replace_l1(img, cur, sn->l1_size) < 0)
			goto load_failed;
	}
	if (qcow2_flush(img) < 0)
		goto load_failed;
	if (update_refs(img, l1, sn->l1_size, 1, &changed, &jr) < 0) {
		journal_undo(img, &jr);
		goto load_failed;
	}
	if (qcow2_flush_node(img) < 0)
		goto load_failed;
	cur = xcalloc(s->l1_size ? s->l1_size : 1, 8);
	memcpy(cur, l1, (size_t)sn->l1_size * 8);
	if (write_l1(img, s->l1_offset, cur, s->l1_size) < 0 ||
	    qcow2_fsync(img) < 0) {
		free(cur);
		goto load_failed;
	}
	/* the old active table's references go; then the new one's flags */
	r = update_refs(img, s->l1, s->l1_size, -1, &changed, NULL);
	free(s->l1);
	s->l1 = cur;
	if (r < 0 || (r = update_active(img, 0, NULL)) < 0)
		goto load_failed;
	s->zc_valid = false;
	if ((r = qcow2_flush_node(img)) == 0)
		goto out;
load_failed:
	/* qemu's bdrv_snapshot_goto: "Failed to load snapshot: strerror" */
	r = err_wrap("Failed to load snapshot");
out:
	free(jr.v);
	free(l1);
	snaps_free(&t);
	return r;
}

/*
 * qcow2_snapshot_delete: the table forgets the snapshot first (a crash
 * then leaks), then its references and L1 table go, and the active
 * table's COPIED flags are brought up to date.
 */
int
qcow2_snapshot_delete(struct img *img, const char *name)
{
	struct qcow2 *s = img->priv;
	struct snaps t;
	struct snap sn;
	uint64_t *l1 = NULL;
	bool changed;
	int i, r = -1;

	if (read_snaps(img, &t) < 0)
		return -1;
	if ((i = find(&t, NULL, name)) < 0) {
		err_set(0, "snapshot not found");
		goto out;
	}
	sn = t.v[i];
	if (check_writable(img) < 0 || (l1 = read_l1(img, &sn)) == NULL)
		goto out;
	memmove(&t.v[i], &t.v[i + 1], (t.n - (uint32_t)i - 1) * sizeof(*t.v));
	t.n--;
	if (write_snaps(img, &t) < 0) {
		err_wrap("Failed to remove snapshot from snapshot list");
		t.v[t.n++] = sn;	/* freed with the rest */
		goto out;
	}
	free(sn.id);
	free(sn.name);
	free(sn.extra_more);
	/*
	 * qemu's steps, named as it names them: the references go (the
	 * refcount blocks written: nothing on disk refers to the snapshot's
	 * clusters any more), then the active table's COPIED flags
	 */
	if (update_refs(img, l1, sn.l1_size, -1, &changed, NULL) < 0 ||
	    qcow2_refcount_flush(img) < 0 || qcow2_fsync(img) < 0) {
		err_set(err_errno() ? err_errno() : EIO,
		    "Failed to free the cluster and L1 table");
		goto out;
	}
	if (sn.l1_size > 0 && qcow2_refcount_update(img, sn.l1_offset,
	    ROUND_UP((uint64_t)sn.l1_size * 8, s->cluster_size), -1) < 0)
		goto out;
	if (update_active(img, 0, NULL) < 0 || qcow2_flush_node(img) < 0) {
		err_wrap("Failed to update snapshot status in disk");
		goto out;
	}
	r = 0;
out:
	free(l1);
	snaps_free(&t);
	return r;
}

/* The errno qemu's validate_table gives with a read_l1 message. */
int
qcow2_l1_errno(const char *msg)
{
	return strstr(msg, "too large") != NULL ? EFBIG : EINVAL;
}

/* A snapshot L1 table at off of n entries, bounds-checked; NULL with err_set. */
uint64_t *
qcow2_read_l1(struct img *img, uint64_t off, uint32_t n)
{
	struct snap sn;

	memset(&sn, 0, sizeof(sn));
	sn.l1_offset = off;
	sn.l1_size = n;
	return read_l1(img, &sn);
}

/* Where the snapshots' L1 tables are (malloc'd arrays of *n). */
int
qcow2_snapshot_l1s(struct img *img, uint64_t **offs, uint32_t **sizes,
    uint32_t *n)
{
	struct snaps t;
	uint32_t i;

	*offs = NULL;
	*sizes = NULL;
	*n = 0;
	if (read_snaps(img, &t) < 0)
		return -1;
	*offs = xcalloc(t.n ? t.n : 1, sizeof(**offs));
	*sizes = xcalloc(t.n ? t.n : 1, sizeof(**sizes));
	for (i = 0; i < t.n; i++) {
		(*offs)[i] = t.v[i].l1_offset;
		(*sizes)[i] = t.v[i].l1_size;
	}
	*n = t.n;
	snaps_free(&t);
	return 0;
}

/* qcow2_upgrade: a table missing v3's extra data is written anew. */
int
qcow2_snapshot_upgrade(struct img *img)
{
	struct snaps t;
	uint32_t i;
	bool need = false;
	int r = 0;

	if (read_snaps(img, &t) < 0)
		return -1;
	for (i = 0; i < t.n; i++)
		need |= t.v[i].extra_size < 16;
	if (need)
		r = write_snaps(img, &t);
	snaps_free(&t);
	return r;
}

/* qcow2_downgrade's snapshot test: v2 cannot keep another size or a big VM state. */
int
qcow2_snapshot_downgrade_ok(struct img *img)
{
	struct snaps t;
	uint32_t i;
	int r = 0;

	if (read_snaps(img, &t) < 0)
		return -1;
	for (i = 0; i < t.n; i++)
		if (t.v[i].vm_state_size > UINT32_MAX ||
		    t.v[i].disk_size != img->size)
			r = err_set(0, "Internal snapshots prevent downgrade "
			    "of image");
	snaps_free(&t);
	return r;
}


/*
 * qcow2_snapshot_load_tmp: a read-only image shows the snapshot's disk
 * (its L1 table in place of the active one) until it is closed.  With
 * only one of id and name given, the other is not compared; with a
 * single string (by_either), it is tried as an id, then as a name.
 */
int
qcow2_snapshot_load(struct img *img, const char *id, const char *name,
    bool by_either)
{
	struct qcow2 *s = img->priv;
	struct snaps t;
	uint64_t *l1;
	int i;

	if (img->flags & IMG_RDWR)
		return err_set(0, "Device '' is writable, cannot load a snapshot");
	if (read_snaps(img, &t) < 0)
		return -1;
	i = find(&t, id, by_either ? NULL : name);
	if (i < 0 && by_either)
		i = find(&t, NULL, id);
	if (i < 0) {
		snaps_free(&t);
		return err_set(0, "Can't find snapshot");
	}
	if ((l1 = read_l1(img, &t.v[i])) == NULL) {
		snaps_free(&t);
		return -1;
	}
	free(s->l1);
	free(s->l1_dirty);
	s->l1 = l1;
	s->l1_size = t.v[i].l1_size;
	s->l1_offset = t.v[i].l1_offset;
	s->l1_dirty = xcalloc(s->l1_size ? s->l1_size : 1, 1);
	s->any_l1_dirty = false;
	s->zc_valid = false;
	snaps_free(&t);
	return 0;
}
