/*
 * blkdebug, qemu's error injection (block/blkdebug.c): [inject-error] and
 * [set-state] rules fire on events; active rules fail matching requests.
 * Below a format the rules meet the driver's I/O on the file (lib/io.c's
 * io_fault); above one they meet the requests on the virtual disk.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "../lib/json.h"
#include "blkdebug.h"
#include "fmt.h"

enum { ACT_INJECT, ACT_SET_STATE };

struct rule {
	int		 event;
	int		 action;
	int64_t		 state;		/* 0: any */
	uint64_t	 iotypes;	/* 1 << IO_* */
	int		 error;
	bool		 once;
	int64_t		 offset;	/* -1: any */
	int64_t		 new_state;
	struct rule	*next;		/* in rules[event], newest first */
	struct rule	*anext;		/* in the active list */
};

struct blkdebug {
	int		 fd;		/* below a format: the file; else -1 */
	int64_t		 state;
	struct rule	*rules[BLKDBG__MAX];
	struct rule	*active;
	uint64_t	 align, max_transfer;
	/* qemu's write_gen and flushed_gen: a flush with nothing new written
	 * since the last one never reaches the driver */
	uint64_t	 write_gen, flushed_gen;
	struct blkdebug	*next;
};

struct blkdebug *blkdbg_list;
/* img-bench reads from threads: rules and states change under this */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
const struct jnode *blkdbg_json;

static const char *const event_names[BLKDBG__MAX] = {
	"l1_update", "l1_grow_alloc_table", "l1_grow_write_table",
	"l1_grow_activate_table", "l2_load", "l2_update",
	"l2_update_compressed", "l2_alloc_cow_read", "l2_alloc_write",
	"read_aio", "read_backing_aio", "read_compressed", "write_aio",
	"write_compressed", "vmstate_load", "vmstate_save", "cow_read",
	"cow_write", "reftable_load", "reftable_grow", "reftable_update",
	"refblock_load", "refblock_update", "refblock_update_part",
	"refblock_alloc", "refblock_alloc_hookup", "refblock_alloc_write",
	"refblock_alloc_write_blocks", "refblock_alloc_write_table",
	"refblock_alloc_switch_table", "cluster_alloc", "cluster_alloc_bytes",
	"cluster_free", "flush_to_os", "flush_to_disk", "pwritev_rmw_head",
	"pwritev_rmw_after_head", "pwritev_rmw_tail", "pwritev_rmw_after_tail",
	"pwritev", "pwritev_zero", "pwritev_done", "empty_image_prepare",
	"l1_shrink_write_table", "l1_shrink_free_l2_clusters", "cor_write",
	"cluster_alloc_space", "none",
};

static const char *const iotype_names[] = {
	"read", "write", "write-zeroes", "discard", "flush", "block-status",
	NULL,
};

/* The options of each section, as qemu's QemuOptsList */
static const struct opt_desc inject_opts[] = {
	{ "event", OPT_STRING, NULL, NULL }, { "state", OPT_NUMBER, NULL, NULL },
	{ "iotype", OPT_STRING, NULL, NULL }, { "errno", OPT_NUMBER, NULL, NULL },
	{ "sector", OPT_NUMBER, NULL, NULL }, { "once", OPT_BOOL, NULL, NULL },
	{ "immediately", OPT_BOOL, NULL, NULL }, { NULL, 0, NULL, NULL },
};
static const struct opt_desc state_opts[] = {
	{ "event", OPT_STRING, NULL, NULL }, { "state", OPT_NUMBER, NULL, NULL },
	{ "new_state", OPT_NUMBER, NULL, NULL }, { NULL, 0, NULL, NULL },
};
/* blkdebug's runtime options (and the limits it checks) */
static const struct opt_desc node_opts[] = {
	{ "align", OPT_SIZE, NULL, NULL }, { "max-transfer", OPT_SIZE, NULL, NULL },
	{ "opt-write-zero", OPT_SIZE, NULL, NULL },
	{ "max-write-zero", OPT_SIZE, NULL, NULL },
	{ "opt-discard", OPT_SIZE, NULL, NULL },
	{ "max-discard", OPT_SIZE, NULL, NULL }, { NULL, 0, NULL, NULL },
};

/* One [section] being read: its options in order. */
struct section {
	const struct opt_desc	*desc;
	const char		*name;
	struct opt_list		 o;
};

struct sections {
	struct section	*v;
	size_t		 n;
};

static struct blkdebug *
find_fd(int fd)
{
	struct blkdebug *b;

	for (b = blkdbg_list; b != NULL; b = b->next)
		if (b->fd == fd)
			return b;
	return NULL;
}

/* qemu's blkdebug_co_debug_event: rules of ev in the current state act. */
static void
event(struct blkdebug *b, int ev)
{
	struct rule *r;
	int64_t new_state = b->state;
	bool injected = false;

	for (r = b->rules[ev]; r != NULL; r = r->next) {
		if (r->state != 0 && r->state != b->state)
			continue;
		if (r->action == ACT_SET_STATE) {
			new_state = r->new_state;
			continue;
		}
		if (!injected)
			b->active = NULL;	/* a new set replaces the old */
		injected = true;
		r->anext = b->active;
		b->active = r;
	}
	b->state = new_state;
}

void
blkdbg_fire(int fd, enum blkdbg_event ev)
{
	struct blkdebug *b;

	pthread_mutex_lock(&lock);
	if ((b = find_fd(fd)) != NULL && fd >= 0)
		event(b, ev);
	pthread_mutex_unlock(&lock);
}

uint64_t
blkdbg_align(int fd)
{
	struct blkdebug *b;
	uint64_t a = 1;

	pthread_mutex_lock(&lock);
	if (fd >= 0 && (b = find_fd(fd)) != NULL && b->align > 1)
		a = b->align;
	pthread_mutex_unlock(&lock);
	return a;
}

static void
drop_rule(struct blkdebug *b, struct rule *r)
{
	struct rule **p;

	for (p = &b->active; *p != NULL; p = &(*p)->anext)
		if (*p == r) {
			*p = r->anext;
			break;
		}
	for (p = &b->rules[r->event]; *p != NULL; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			break;
		}
	free(r);
}

/* qemu's rule_check: the errno a request fails with, or 0. */
static int
check(struct blkdebug *b, int type, uint64_t off, uint64_t len)
{
	struct rule *r;
	uint64_t end;
	int e;

	if (b->align > 1 && len > 0) {
		/* the block layer widens requests to the node's alignment */
		end = ROUND_UP(off + len, b->align);
		off = ROUND_DOWN(off, b->align);
		len = end - off;
	}
	for (r = b->active; r != NULL; r = r->anext) {
		if (!(r->iotypes & (1ull << type)))
			continue;
		if (r->offset == -1 || (len > 0 && (uint64_t)r->offset >= off &&
		    (uint64_t)r->offset - off < len))
			break;
	}
	if (r == NULL || r->error == 0)
		return 0;
	e = r->error;
	if (r->once)
		drop_rule(b, r);
	return e;
}

/*
 * qemu's bdrv_padding_rmw_read: an unaligned write first reads its head
 * and tail blocks, between events; a failing read (which a once rule
 * meets) ends it, but not the write.
 */
static void
rmw_read(struct blkdebug *b, uint64_t off, uint64_t len)
{
	uint64_t a = b->align, head = off & (a - 1), tail = (off + len) & (a - 1);
	uint64_t blen;
	bool merge;

	tail = tail ? a - tail : 0;
	if (!head && !tail)
		return;
	blen = head + len + tail > a && head && tail ? 2 * a : a;
	merge = head + len + tail == blen;
	if (head || merge) {
		if (head)
			event(b, BLKDBG_PWRITEV_RMW_HEAD);
		if (merge && tail)
			event(b, BLKDBG_PWRITEV_RMW_TAIL);
		if (check(b, IO_READ, off - head, merge ? blen : a) != 0)
			return;
		if (head)
			event(b, BLKDBG_PWRITEV_RMW_AFTER_HEAD);
		if (merge && tail)
			event(b, BLKDBG_PWRITEV_RMW_AFTER_TAIL);
		if (merge)
			return;
	}
	if (tail) {
		event(b, BLKDBG_PWRITEV_RMW_TAIL);
		if (check(b, IO_READ, off + len + tail - a, a) == 0)
			event(b, BLKDBG_PWRITEV_RMW_AFTER_TAIL);
	}
}

/*
 * A request on the node (qemu's block/io.c around blkdebug's own checks):
 * writes fire pwritev (pwritev_zero) before and pwritev_done after, and
 * count for flushes; a flush with nothing written since is not asked.
 */
static int
request(struct blkdebug *b, int type, uint64_t off, uint64_t len)
{
	int e;

	switch (type) {
	case IO_WRITE:
	case IO_WRITE_ZEROES:
		if (type == IO_WRITE && b->align > 1 && len > 0)
			rmw_read(b, off, len);
		event(b, type == IO_WRITE ? BLKDBG_PWRITEV : BLKDBG_PWRITEV_ZERO);
		e = check(b, type, off, len);
		event(b, BLKDBG_PWRITEV_DONE);
		b->write_gen++;
		return e;
	case IO_DISCARD:
		b->write_gen++;
		return check(b, type, off, len);
	case IO_FLUSH:
		if (b->flushed_gen == b->write_gen)
			return 0;
		if ((e = check(b, type, off, len)) == 0)
			b->flushed_gen = b->write_gen;
		return e;
	default:
		return check(b, type, off, len);
	}
}

static int
fault(int fd, int type, uint64_t off, uint64_t len)
{
	struct blkdebug *b;
	int e = 0;

	pthread_mutex_lock(&lock);
	if ((b = find_fd(fd)) != NULL && fd >= 0)
		e = request(b, type, off, len);
	pthread_mutex_unlock(&lock);
	return e;
}

static int
find_name(const char *const *names, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n && names[i] != NULL; i++)
		if (strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

/* QEMU_OPT_NUMBER: qemu_strtou64, so "-5" wraps as it does in qemu */
static int
parse_num(const char *key, const char *s, int64_t *v)
{
	char *end;

	errno = 0;
	*v = (int64_t)strtoull(s, &end, 0);
	if (*s == '\0' || *end != '\0' || errno != 0)
		return err_set(0, "Parameter '%s' expects a number", key);
	return 0;
}

static int
get_num(const struct opt_list *o, const char *key, int64_t def, int64_t *v)
{
	const char *s = opt_list_get(o, key);

	*v = def;
	return s != NULL ? parse_num(key, s, v) : 0;
}

static bool
get_bool(const struct opt_list *o, const char *key)
{
	const char *s = opt_list_get(o, key);

	return s != NULL && opt_bool(s) == 1;
}

/* qemu's add_rule; types were checked as the section was read. */
static int
add_rule(struct blkdebug *b, const struct section *sec)
{
	const struct opt_list *o = &sec->o;
	const char *ev = opt_list_get(o, "event"), *io;
	struct rule r = { .offset = -1 }, *n;
	int64_t v;
	int i;

	if (ev == NULL)
		return err_set(0, "Missing event name for rule");
	if ((i = find_name(event_names, BLKDBG__MAX, ev)) < 0)
		return err_set(0, "invalid parameter value: %s", ev);
	r.event = i;
	r.action = sec->desc == inject_opts ? ACT_INJECT : ACT_SET_STATE;
	if (get_num(o, "state", 0, &r.state) < 0)
		return -1;
	if (r.action == ACT_SET_STATE) {
		if (get_num(o, "new_state", 0, &r.new_state) < 0)
			return -1;
	} else {
		if (get_num(o, "errno", EIO, &v) < 0 ||
		    get_num(o, "sector", -1, &r.offset) < 0)
			return -1;
		r.error = (int)v;
		r.once = get_bool(o, "once");
		if (r.offset != -1)
			r.offset *= 512;
		/* block-status only when asked for by name */
		r.iotypes = (1ull << IO_BLOCK_STATUS) - 1;
		if ((io = opt_list_get(o, "iotype")) != NULL) {
			if ((i = find_name(iotype_names, SIZE_MAX, io)) < 0)
				return err_set(0, "invalid parameter value: %s",
				    io);
			r.iotypes = 1ull << i;
		}
	}
	n = xmalloc(sizeof(*n));
	*n = r;
	n->next = b->rules[r.event];
	b->rules[r.event] = n;
	return 0;
}

static const struct opt_desc *
find_desc(const struct opt_desc *d, const char *key)
{
	for (; d->name != NULL; d++)
		if (strcmp(d->name, key) == 0)
			return d;
	return NULL;
}

/* One option of a section, typed as qemu_opts_from_qdict checks it. */
static int
sec_set(struct section *sec, const char *key, const char *val, bool from_file)
{
	const struct opt_desc *d = find_desc(sec->desc, key);
	char buf[32];
	const char *v;
	int64_t n;

	if (d == NULL)
		return from_file ? err_set(0, "Invalid parameter '%s'", key) :
		    err_set(0, "[%s] section doesn't support the option '%s'",
		    sec->name, key);
	if (d->type == OPT_NUMBER && parse_num(key, val, &n) < 0) {
		return -1;
	} else if (d->type == OPT_BOOL &&
	    opt_check(d, val, buf, sizeof(buf), &v) < 0) {
		return err_set(0, "Parameter '%s' expects 'on' or 'off'", key);
	}
	opt_list_set(&sec->o, key, val);
	return 0;
}

static struct section *
sec_new(struct sections *s, const char *group)
{
	struct section *sec;
	const struct opt_desc *d;

	if (strcmp(group, "inject-error") == 0)
		d = inject_opts;
	else if (strcmp(group, "set-state") == 0)
		d = state_opts;
	else
		return NULL;
	s->v = xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
	sec = &s->v[s->n++];
	sec->desc = d;
	sec->name = d == inject_opts ? "inject-error" : "set-state";
	sec->o.n = 0;
	sec->o.v = NULL;
	return sec;
}

/* qemu_config_parse: [group] lines, then key = "value" lines. */
static int
read_config(const char *path, struct sections *s)
{
	char line[1024], group[64], arg[64], value[1024] = "";
	struct section *sec = NULL;
	FILE *f;
	int r = -1;

	if ((f = fopen(path, "r")) == NULL)
		return err_set(errno, "Could not read blkdebug config file");
	while (fgets(line, sizeof(line), f) != NULL) {
		if (line[0] == '\n' || line[0] == '#')
			continue;
		if (line[0] == '[') {
			if (sscanf(line, "[%63[^]]]", group) != 1) {
				err_set(0, "parse error");
				goto out;
			}
			if ((sec = sec_new(s, group)) == NULL) {
				err_set(0, "There is no option group '%s'", group);
				goto out;
			}
			continue;
		}
		/* as qemu, a bare word keeps the last value read */
		if (sscanf(line, " %63s = \"%1023[^\"]\"", arg, value) < 1) {
			err_set(0, "parse error");
			goto out;
		}
		if (sec == NULL) {
			err_set(0, "no group defined");
			goto out;
		}
		if (sec_set(sec, arg, value, true) < 0)
			goto out;
	}
	r = 0;
out:
	fclose(f);
	return r;
}

/* qemu_config_parse_qdict: "inject-error.N.KEY" lists (or one unnumbered). */
static int
read_lists(const struct opt_list *o, const char *prefix, const char *group,
    struct sections *s)
{
	size_t plen = strlen(prefix), glen = strlen(group), i;
	struct section *sec = NULL;
	const char *k, *dot;
	char *end;
	unsigned long idx, want = 0;

	for (i = 0; i < o->n; i++) {
		k = o->v[i].key;
		if (strncmp(k, prefix, plen) != 0 ||
		    strncmp(k + plen, group, glen) != 0 || k[plen + glen] != '.')
			continue;
		k += plen + glen + 1;
		idx = strtoul(k, &end, 10);
		if (end == k || *end != '.') {
			/* no list: the keys of one section */
			if (sec == NULL && (sec = sec_new(s, group)) == NULL)
				return -1;
			if (sec_set(sec, k, o->v[i].val, false) < 0)
				return -1;
			continue;
		}
		dot = end + 1;
		if (idx != want && idx + 1 != want)
			return err_set(0, "Unused option '%s' for [%s]", k, group);
		if (idx == want) {
			sec = sec_new(s, group);
			want++;
		}
		if (sec_set(sec, dot, o->v[i].val, false) < 0)
			return -1;
	}
	return 0;
}

static void
sections_free(struct sections *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		opt_list_free(&s->v[i].o);
	free(s->v);
}

static int
limits(struct blkdebug *b, const struct opt_list *o, const char *prefix)
{
	const struct opt_desc *d;
	uint64_t v[6] = { 0 }, align;
	const char *s;
	char *key;
	size_t i;

	for (d = node_opts, i = 0; d->name != NULL; d++, i++) {
		key = xasprintf("%s%s", prefix, d->name);
		s = opt_list_get(o, key);
		free(key);
		if (s != NULL && opt_size(s, &v[i]) < 0)
			return err_set(0, "Parameter '%s' expects a non-negative number below 2^64\n"
			    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
			    "and exabytes, respectively.", d->name);
	}
	if (v[0] && (v[0] >= INT_MAX || (v[0] & (v[0] - 1))))
		return err_set(0, "Cannot meet constraints with align %llu",
		    (unsigned long long)v[0]);
	align = v[0] ? v[0] : 1;
	for (i = 1; i < 6; i++) {
		/* max-write-zero and max-discard follow their opt- values */
		uint64_t a = (i == 3 || i == 5) ? MAX(v[i - 1], align) : align;

		if (v[i] && (v[i] >= INT_MAX || v[i] % a != 0))
			return err_set(0, "Cannot meet constraints with %s %llu",
			    node_opts[i].name, (unsigned long long)v[i]);
	}
	b->align = v[0];
	b->max_transfer = v[1];
	return 0;
}

bool
blkdbg_key(const char *key)
{
	static const char *const keys[] = { "config", "x-image", "image",
	    "driver", "node-name", "read-only", "auto-read-only",
	    "force-share", "discard", "detect-zeroes", "cache.direct",
	    "cache.no-flush", NULL };
	size_t i;

	if (!strncmp(key, "image.", 6) || !strncmp(key, "inject-error.", 13) ||
	    !strncmp(key, "set-state.", 10) ||
	    !strncmp(key, "take-child-perms.", 17) ||
	    !strncmp(key, "unshare-child-perms.", 20) ||
	    find_desc(node_opts, key) != NULL)
		return true;
	for (i = 0; keys[i] != NULL; i++)
		if (strcmp(keys[i], key) == 0)
			return true;
	return false;
}

static const char *
get_key(const struct opt_list *o, const char *prefix, const char *key)
{
	char *k = xasprintf("%s%s", prefix, key);
	const char *v = opt_list_get(o, k);

	free(k);
	return v;
}

const char *
blkdbg_file(const struct opt_list *o, const char *prefix)
{
	const char *f = get_key(o, prefix, "image.filename");

	return f != NULL ? f : get_key(o, prefix, "x-image");
}

struct blkdebug *
blkdbg_new(const struct opt_list *o, const char *prefix)
{
	struct blkdebug *b = xcalloc(1, sizeof(*b));
	struct sections s = { NULL, 0 };
	const char *config = get_key(o, prefix, "config");
	size_t i, plen = strlen(prefix);

	b->fd = -1;
	b->state = 1;
	for (i = 0; i < o->n; i++)
		if (!strncmp(o->v[i].key, prefix, plen) &&
		    !blkdbg_key(o->v[i].key + plen)) {
			err_set(0, "Block protocol 'blkdebug' doesn't support the option '%s'",
			    o->v[i].key + plen);
			goto fail;
		}
	if ((config != NULL && read_config(config, &s) < 0) ||
	    read_lists(o, prefix, "inject-error", &s) < 0 ||
	    read_lists(o, prefix, "set-state", &s) < 0)
		goto fail;
	/* qemu adds the inject-error rules first, then the set-state ones */
	for (i = 0; i < s.n; i++)
		if (s.v[i].desc == inject_opts && add_rule(b, &s.v[i]) < 0)
			goto fail;
	for (i = 0; i < s.n; i++)
		if (s.v[i].desc == state_opts && add_rule(b, &s.v[i]) < 0)
			goto fail;
	if (blkdbg_file(o, prefix) == NULL &&
	    get_key(o, prefix, "image.driver") == NULL) {
		err_set(0, "A block device must be specified for \"image\"");
		goto fail;
	}
	if (limits(b, o, prefix) < 0)
		goto fail;
	sections_free(&s);
	b->next = blkdbg_list;
	blkdbg_list = b;
	io_fault = fault;
	event(b, BLKDBG_NONE);
	return b;
fail:
	sections_free(&s);
	for (i = 0; i < BLKDBG__MAX; i++)
		while (b->rules[i] != NULL)
			drop_rule(b, b->rules[i]);
	free(b);
	return NULL;
}

int
blkdbg_attach(struct blkdebug *b, int fd)
{
	b->fd = fd;
	return 0;
}

void
blkdbg_free(struct blkdebug *b)
{
	struct blkdebug **p;
	size_t i;

	if (b == NULL)
		return;
	for (p = &blkdbg_list; *p != NULL; p = &(*p)->next)
		if (*p == b) {
			*p = b->next;
			break;
		}
	if (blkdbg_list == NULL)
		io_fault = NULL;
	for (i = 0; i < BLKDBG__MAX; i++)
		while (b->rules[i] != NULL)
			drop_rule(b, b->rules[i]);
	free(b);
}

int
blkdbg_parse_name(const char *name, const char *prefix, struct opt_list *o)
{
	const char *c;
	char *k, *v;

	name += strlen("blkdebug:");
	if ((c = strchr(name, ':')) == NULL)
		return err_set(0, "blkdebug requires both config file and image path");
	k = xasprintf("%sdriver", prefix);
	opt_list_set(o, k, "blkdebug");
	free(k);
	if (c != name) {
		k = xasprintf("%sconfig", prefix);
		v = xasprintf("%.*s", (int)(c - name), name);
		opt_list_set(o, k, v);
		free(k);
		free(v);
	}
	k = xasprintf("%sx-image", prefix);
	opt_list_set(o, k, c + 1);
	free(k);
	return 0;
}

const struct jnode *
blkdbg_json_member(const char *key)
{
	const struct jnode *n = blkdbg_json, *m;
	char *k = xstrdup(key), *part, *save = NULL, *end;
	unsigned long i;

	for (part = strtok_r(k, ".", &save); n != NULL && part != NULL;
	    part = strtok_r(NULL, ".", &save)) {
		if (n->type == JN_ARR) {
			i = strtoul(part, &end, 10);
			for (m = n->child; m != NULL && i > 0; m = m->next)
				i--;
			n = *end == '\0' ? m : NULL;
		} else {
			n = n->type == JN_OBJ ? jn_get(n, part) : NULL;
		}
	}
	free(k);
	return n;
}

void
blkdbg_member(struct jnode *obj, const char *name, const char *key,
    const char *val)
{
	const struct jnode *m = blkdbg_json_member(key);

	if (m != NULL && m->type == JN_INT)
		jn_int(obj, name, m->i);
	else if (m != NULL && m->type == JN_BOOL)
		jn_bool(obj, name, m->b);
	else
		jn_str(obj, name, val);
}

/* The file under a blkdebug node's image, when the image says no more. */
static const char *
plain_image(const struct opt_list *o, const char *prefix)
{
	static const char *const files[] = { "image.filename",
	    "image.file.filename", "x-image", NULL };
	const char *k, *v, *file = NULL;
	size_t i, j, plen = strlen(prefix);

	for (i = 0; i < o->n; i++) {
		if (strncmp(o->v[i].key, prefix, plen) != 0)
			continue;
		k = o->v[i].key + plen;
		v = o->v[i].val;
		for (j = 0; files[j] != NULL && strcmp(k, files[j]); j++)
			continue;
		if (files[j] != NULL)
			file = v;
		else if (!strcmp(k, "image.file.driver") ||
		    (!strcmp(k, "image.driver") && plen == 0))
			continue;
		else if (strcmp(k, "config") && strcmp(k, "driver") &&
		    (strcmp(k, "image.driver") || strcmp(v, "file")))
			return NULL;
	}
	return file;
}

/* The node under key "image": a format over a file, or the file itself. */
static struct jnode *
image_node(const struct opt_list *o, const char *prefix)
{
	struct jnode *j = jn_new_obj(), *f;
	const char *drv = get_key(o, prefix, "image.driver");
	const char *file = get_key(o, prefix, "image.file.filename");

	if (file != NULL) {
		jn_str(j, "driver", drv != NULL ? drv : "raw");
		f = jn_obj(j, "file");
		jn_str(f, "driver", "file");
		jn_str(f, "filename", file);
	} else {
		jn_str(j, "driver", "file");
		jn_str(j, "filename", blkdbg_file(o, prefix));
	}
	return j;
}

struct jnode *
blkdbg_node_json(const struct opt_list *o, const char *prefix)
{
	struct jnode *bd = jn_new_obj();
	size_t i, plen = strlen(prefix);
	const char *k;

	for (i = 0; i < o->n; i++) {
		k = o->v[i].key + plen;
		if (strncmp(o->v[i].key, prefix, plen) != 0 ||
		    !strcmp(k, "driver") || !strncmp(k, "image", 5) ||
		    !strcmp(k, "x-image") || !blkdbg_key(k) ||
		    (strncmp(k, "inject-error.", 13) &&
		    strncmp(k, "set-state.", 10) && strcmp(k, "config") &&
		    find_desc(node_opts, k) == NULL))
			continue;
		blkdbg_member(bd, k, o->v[i].key, o->v[i].val);
	}
	jn_add(bd, "image", image_node(o, prefix));
	jn_str(bd, "driver", "blkdebug");
	return bd;
}

/*
 * The name of the blkdebug node under prefix (node), or of the image whose
 * driver is fmt above it: "blkdebug:CONFIG:FILE" when the options say no
 * more than that.
 */
static char *
node_name(const struct opt_list *o, const char *prefix, const char *fmt,
    bool node)
{
	struct jnode *top = NULL, *bd;
	const char *file = plain_image(o, prefix), *conf;
	size_t i, plen = strlen(prefix);

	for (i = 0; !node && file != NULL && i < o->n; i++)
		if (strncmp(o->v[i].key, prefix, plen) != 0 &&
		    strcmp(o->v[i].key, "driver") != 0)
			file = NULL;	/* the format node has options too */
	if (file != NULL) {
		conf = get_key(o, prefix, "config");
		return xasprintf("blkdebug:%s:%s", conf ? conf : "", file);
	}
	bd = blkdbg_node_json(o, prefix);
	if (!node && plen > 0) {
		top = jn_new_obj();
		jn_str(top, "driver", fmt);
		jn_add(top, "file", bd);
		bd = top;
	}
	return blkdbg_json_name(bd);
}

char *
blkdbg_name(const struct opt_list *o, const char *prefix, const char *fmt)
{
	return node_name(o, prefix, fmt, false);
}

char *
blkdbg_node_name(const struct opt_list *o, const char *prefix)
{
	return node_name(o, prefix, NULL, true);
}

char *
blkdbg_json_name(struct jnode *j)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	fputs("json:", f);
	json_print(f, j, false);
	fclose(f);
	jn_free(j);
	return buf;
}

/* Above a format: the rules meet the requests on the virtual disk. */
struct filter {
	struct blkdebug	*b;
};

static int
filter_check(struct img *img, int type, uint64_t off, uint64_t len)
{
	struct filter *f = img->priv;
	int e;

	pthread_mutex_lock(&lock);
	e = check(f->b, type, off, len);
	pthread_mutex_unlock(&lock);

	return e ? err_set(e, "%s", img->filename) : 0;
}

struct img *
blkdbg_filter(struct blkdebug *b, struct img *child, const struct opt_list *o,
    int flags)
{
	struct img *img = xcalloc(1, sizeof(*img));
	struct filter *f = xcalloc(1, sizeof(*f));

	f->b = b;
	img->ops = &blkdebug_ops;
	img->priv = f;
	img->fd = -1;
	img->flags = flags;
	img->size = child->size;
	img->backing = child;
	img->filename = blkdbg_name(o, "", NULL);
	return img;
}

static int
filter_open(struct img *img)
{
	return err_set(0, "%s: blkdebug needs its options", img->filename);
}

static void
filter_close(struct img *img)
{
	struct filter *f = img->priv;

	blkdbg_free(f->b);
}

static int
filter_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	if (filter_check(img, IO_WRITE, off, len) < 0)
		return -1;
	return img_write(img->backing, off, len, buf);
}

static int
filter_write_zeroes(struct img *img, uint64_t off, uint64_t len, int flags)
{
	if (filter_check(img, IO_WRITE_ZEROES, off, len) < 0)
		return -1;
	return img_write_zeroes(img->backing, off, len, flags);
}

static int
filter_discard(struct img *img, uint64_t off, uint64_t len)
{
	if (filter_check(img, IO_DISCARD, off, len) < 0)
		return -1;
	return img_discard(img->backing, off, len);
}

static int
filter_flush(struct img *img)
{
	if (filter_check(img, IO_FLUSH, 0, 0) < 0)
		return -1;
	return img_flush(img->backing);
}

/* Never reached for reads (img_read asks the filter, then the image). */
static int
filter_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	(void)img;
	(void)off;
	st->len = len;
	st->flags = 0;
	return 0;
}

/* bdrv_get_info passes through a filter: cluster size and dirty flag */
static int
filter_info(struct img *img, struct img_info *info)
{
	struct img_info in;

	if (img_get_info(img->backing, &in) < 0)
		return -1;
	info->cluster_size = in.cluster_size;
	info->dirty = in.dirty;
	info->no_dirty_flag = in.no_dirty_flag;
	img_snapshots_free(in.snapshots, in.nb_snapshots);
	jn_free(in.specific);
	return 0;
}

/* qemu's blkdebug has no allocated-size: "disk size: unavailable" */
static int64_t
filter_actual_size(struct img *img)
{
	(void)img;
	return -1;
}

const struct fmt_ops blkdebug_ops = {
	.name		= "blkdebug",
	.priv_size	= sizeof(struct filter),
	.open		= filter_open,
	.close		= filter_close,
	.write		= filter_write,
	.write_zeroes	= filter_write_zeroes,
	.discard	= filter_discard,
	.flush		= filter_flush,
	.block_status	= filter_status,
	.info		= filter_info,
	.actual_size	= filter_actual_size,
	.filter		= filter_check,
};
