/*
 * qcow2 metadata cache: whole L2 tables and refcount blocks in a bounded LRU,
 * written back lazily; a cache writes what it depends on first (L2 tables
 * after the refcount blocks that account for their clusters).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/err.h"
#include "../../lib/io.h"
#include "../blkdebug.h"
#include "qcow2.h"

void
qcow2_cache_init(struct qcow2_cache *c, struct img *img, const char *what,
    size_t max, struct qcow2_cache *depends)
{
	memset(c, 0, sizeof(*c));
	c->img = img;
	c->what = what;
	c->max = max;
	c->depends = depends;
	c->ents = xcalloc(max, sizeof(*c->ents));
	for (c->nhash = 16; c->nhash < 2 * max; c->nhash *= 2)
		;
	c->hash = xcalloc(c->nhash, sizeof(*c->hash));
}

void
qcow2_cache_free(struct qcow2_cache *c)
{
	size_t i;

	if (c->ents != NULL)
		for (i = 0; i < c->max; i++)
			free(c->ents[i].data);
	free(c->ents);
	free(c->hash);
	memset(c, 0, sizeof(*c));
}

static size_t
bucket(const struct qcow2_cache *c, uint64_t off)
{
	return (size_t)((off >> 9) * 0x9e3779b97f4a7c15ull >> 20) & (c->nhash - 1);
}

static struct qcow2_centry *
lookup(const struct qcow2_cache *c, uint64_t off)
{
	struct qcow2_centry *e;

	for (e = c->hash[bucket(c, off)]; e != NULL; e = e->hnext)
		if (e->off == off)
			return e;
	return NULL;
}

static void
lru_unlink(struct qcow2_cache *c, struct qcow2_centry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void
lru_front(struct qcow2_cache *c, struct qcow2_centry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (c->tail == NULL)
		c->tail = e;
}

static void
hash_unlink(struct qcow2_cache *c, struct qcow2_centry *e)
{
	struct qcow2_centry **pp = &c->hash[bucket(c, e->off)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	e->hnext = NULL;
}

static void
set_dirty(struct qcow2_cache *c, struct qcow2_centry *e, bool dirty)
{
	if (e->dirty != dirty)
		c->ndirty += dirty ? 1 : -1;
	e->dirty = dirty;
}

static int write_all(struct qcow2_cache *c);

static int
write_entry(struct qcow2_cache *c, struct qcow2_centry *e)
{
	struct qcow2 *s = c->img->priv;

	if (!e->dirty)
		return 0;
	/*
	 * Crash safety: the refcounts of this table's clusters reach the disk
	 * first.  After that fsync every dirty table may go, so write them all
	 * and pay it once, not once per table evicted.
	 */
	if (c->depends != NULL && c->depends->ndirty > 0) {
		if (write_all(c->depends) < 0)
			return -1;
		if (fmt_sync(c->img) < 0)
			return -1;
		return write_all(c);
	}
	if (qcow2_pre_write(c->img, e->off, s->cluster_size,
	    c == &s->l2_cache ? QCOW2_OL_ACTIVE_L2 : QCOW2_OL_RB) < 0)
		return -1;
	blkdbg_event(c->img->fd, c == &s->l2_cache ? BLKDBG_L2_UPDATE :
	    BLKDBG_REFBLOCK_UPDATE_PART);
	if (qcow2_pwrite(c->img, e->data, s->cluster_size, e->off, c->what) < 0)
		return -1;
	set_dirty(c, e, false);
	return 0;
}

static int
write_all(struct qcow2_cache *c)
{
	size_t i;

	for (i = 0; i < c->n && c->ndirty > 0; i++)
		if (c->ents[i].off != 0 && c->ents[i].dirty &&
		    write_entry(c, &c->ents[i]) < 0)
			return -1;
	return 0;
}

/* An unused slot goes last in the LRU, so it is the next one reused. */
static void
park(struct qcow2_cache *c, struct qcow2_centry *e)
{
	e->off = 0;
	set_dirty(c, e, false);
	e->prev = c->tail;
	e->next = NULL;
	if (c->tail)
		c->tail->next = e;
	c->tail = e;
	if (c->head == NULL)
		c->head = e;
}

/* A free slot: a never-used one, else the least recently used, written back. */
static struct qcow2_centry *
take_slot(struct qcow2_cache *c)
{
	struct qcow2 *s = c->img->priv;
	struct qcow2_centry *e;

	if (c->n < c->max) {
		e = &c->ents[c->n++];
		e->data = xmalloc(s->cluster_size);
		return e;
	}
	e = c->tail;
	if (e->off != 0 && write_entry(c, e) < 0)
		return NULL;
	lru_unlink(c, e);
	if (e->off != 0)
		hash_unlink(c, e);
	e->off = 0;
	return e;
}

static uint8_t *
install(struct qcow2_cache *c, struct qcow2_centry *e, uint64_t off)
{
	size_t b = bucket(c, off);

	e->off = off;
	e->hnext = c->hash[b];
	c->hash[b] = e;
	lru_front(c, e);
	return e->data;
}

uint8_t *
qcow2_cache_get(struct qcow2_cache *c, uint64_t off)
{
	struct qcow2 *s = c->img->priv;
	struct qcow2_centry *e;

	if ((e = lookup(c, off)) != NULL) {
		if (c->head != e) {
			lru_unlink(c, e);
			lru_front(c, e);
		}
		return e->data;
	}
	if ((e = take_slot(c)) == NULL)
		return NULL;
	if (c == &s->l2_cache)
		blkdbg_event(c->img->fd, BLKDBG_L2_LOAD);
	if (qcow2_pread_meta(c->img, e->data, s->cluster_size, off, c->what) < 0) {
		park(c, e);
		return NULL;
	}
	return install(c, e, off);
}

uint8_t *
qcow2_cache_get_empty(struct qcow2_cache *c, uint64_t off)
{
	struct qcow2 *s = c->img->priv;
	struct qcow2_centry *e;

	if ((e = lookup(c, off)) == NULL) {
		if ((e = take_slot(c)) == NULL)
			return NULL;
		install(c, e, off);
	}
	memset(e->data, 0, s->cluster_size);
	set_dirty(c, e, true);
	return e->data;
}

void
qcow2_cache_dirty(struct qcow2_cache *c, uint64_t off)
{
	struct qcow2_centry *e = lookup(c, off);

	if (e != NULL)
		set_dirty(c, e, true);
}

void
qcow2_cache_drop(struct qcow2_cache *c, uint64_t off)
{
	struct qcow2_centry *e = lookup(c, off);

	if (e == NULL)
		return;
	hash_unlink(c, e);
	lru_unlink(c, e);
	park(c, e);
}

int
qcow2_cache_write(struct qcow2_cache *c)
{
	return write_all(c);
}
