/* JSON trees printed in QEMU's QObject style (qobject/qjson.c, block/qapi.c). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "json.h"

#define QDICT_BUCKETS	512	/* QDICT_BUCKET_MAX in QEMU's qdict.h */

static struct jnode *
add(struct jnode *parent, const char *key, enum jn_type t)
{
	struct jnode *n = xcalloc(1, sizeof(*n));

	n->type = t;
	if (key != NULL)
		n->key = xstrdup(key);
	if (parent != NULL) {
		n->seq = parent->last ? parent->last->seq + 1 : 0;
		if (parent->last)
			parent->last->next = n;
		else
			parent->child = n;
		parent->last = n;
	}
	return n;
}

struct jnode *
jn_new_obj(void)
{
	return add(NULL, NULL, JN_OBJ);
}

struct jnode *
jn_new_arr(void)
{
	return add(NULL, NULL, JN_ARR);
}

struct jnode *
jn_obj(struct jnode *parent, const char *key)
{
	return add(parent, key, JN_OBJ);
}

struct jnode *
jn_arr(struct jnode *parent, const char *key)
{
	return add(parent, key, JN_ARR);
}

void
jn_str(struct jnode *parent, const char *key, const char *v)
{
	add(parent, key, JN_STR)->s = xstrdup(v);
}

void
jn_int(struct jnode *parent, const char *key, int64_t v)
{
	add(parent, key, JN_INT)->i = v;
}

void
jn_uint(struct jnode *parent, const char *key, uint64_t v)
{
	add(parent, key, JN_UINT)->u = v;
}

void
jn_bool(struct jnode *parent, const char *key, bool v)
{
	add(parent, key, JN_BOOL)->b = v;
}

void
jn_double(struct jnode *parent, const char *key, double v)
{
	add(parent, key, JN_DOUBLE)->d = v;
}

void
jn_add(struct jnode *parent, const char *key, struct jnode *child)
{
	free(child->key);
	child->key = key ? xstrdup(key) : NULL;
	child->next = NULL;
	child->seq = parent->last ? parent->last->seq + 1 : 0;
	if (parent->last)
		parent->last->next = child;
	else
		parent->child = child;
	parent->last = child;
}

const struct jnode *
jn_get(const struct jnode *obj, const char *key)
{
	const struct jnode *c;

	for (c = obj->child; c; c = c->next)
		if (c->key && strcmp(c->key, key) == 0)
			return c;
	return NULL;
}

void
jn_free(struct jnode *n)
{
	struct jnode *c, *nx;

	if (n == NULL)
		return;
	for (c = n->child; c; c = nx) {
		nx = c->next;
		jn_free(c);
	}
	free(n->key);
	free(n->s);
	free(n);
}

/* tdb_hash, as QEMU's qdict.c uses to place keys in buckets */
static unsigned
qdict_bucket(const char *name)
{
	unsigned value, i;

	for (value = 0x238F13AFu * (unsigned)strlen(name), i = 0; name[i]; i++)
		value = value + ((unsigned)(unsigned char)name[i] << (i * 5 % 24));
	return (1103515243u * value + 12345u) % QDICT_BUCKETS;
}

static int
member_cmp(const void *a, const void *b)
{
	const struct jnode *x = *(const struct jnode *const *)a;
	const struct jnode *y = *(const struct jnode *const *)b;
	unsigned bx = qdict_bucket(x->key), by = qdict_bucket(y->key);

	if (bx != by)
		return bx < by ? -1 : 1;
	/* each bucket is a list with the newest entry first */
	return x->seq > y->seq ? -1 : x->seq < y->seq;
}

size_t
jn_members(const struct jnode *obj, const struct jnode ***out)
{
	const struct jnode *c;
	size_t n = 0;

	for (c = obj->child; c; c = c->next)
		n++;
	*out = xcalloc(n, sizeof(**out));
	n = 0;
	for (c = obj->child; c; c = c->next)
		(*out)[n++] = c;
	if (obj->type == JN_OBJ)
		qsort(*out, n, sizeof(**out), member_cmp);
	return n;
}

static void
print_str(FILE *f, const char *s)
{
	const unsigned char *p;

	fputc('"', f);
	for (p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':  fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\b': fputs("\\b", f); break;
		case '\f': fputs("\\f", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\u%04X", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

static void
newline(FILE *f, bool pretty, int indent)
{
	if (pretty)
		fprintf(f, "\n%*s", indent * 4, "");
}

static void
print_scalar(FILE *f, const struct jnode *n)
{
	char buf[64];

	switch (n->type) {
	case JN_STR:
		print_str(f, n->s);
		break;
	case JN_INT:
		fprintf(f, "%lld", (long long)n->i);
		break;
	case JN_UINT:
		fprintf(f, "%llu", (unsigned long long)n->u);
		break;
	case JN_BOOL:
		fputs(n->b ? "true" : "false", f);
		break;
	case JN_DOUBLE:
		/* qnum_to_string: %.17g, then the shortest that reads back */
		snprintf(buf, sizeof(buf), "%.17g", n->d);
		for (int prec = 1; prec <= 17; prec++) {
			snprintf(buf, sizeof(buf), "%.*g", prec, n->d);
			if (strtod(buf, NULL) == n->d)
				break;
		}
		fputs(buf, f);
		break;
	default:
		break;
	}
}

static void
print_node(FILE *f, const struct jnode *n, bool pretty, int indent)
{
	const struct jnode **m;
	size_t i, cnt;

	if (n->type != JN_OBJ && n->type != JN_ARR) {
		print_scalar(f, n);
		return;
	}
	cnt = jn_members(n, &m);
	fputc(n->type == JN_OBJ ? '{' : '[', f);
	for (i = 0; i < cnt; i++) {
		if (i > 0)
			fputs(pretty ? "," : ", ", f);
		newline(f, pretty, indent + 1);
		if (n->type == JN_OBJ) {
			print_str(f, m[i]->key);
			fputs(": ", f);
		}
		print_node(f, m[i], pretty, indent + 1);
	}
	newline(f, pretty, indent);
	fputc(n->type == JN_OBJ ? '}' : ']', f);
	free(m);
}

void
json_print(FILE *f, const struct jnode *n, bool pretty)
{
	print_node(f, n, pretty, 0);
}

void
json_dump_human(FILE *f, const struct jnode *n, int indent)
{
	const struct jnode **m;
	size_t i, cnt;

	if (n->type != JN_OBJ && n->type != JN_ARR) {
		print_scalar(f, n);
		fputc('\n', f);
		return;
	}
	cnt = jn_members(n, &m);
	for (i = 0; i < cnt; i++) {
		bool comp = m[i]->type == JN_OBJ || m[i]->type == JN_ARR;

		if (n->type == JN_OBJ) {
			char *k = xstrdup(m[i]->key), *p;

			for (p = k; *p; p++)
				if (*p == '-')
					*p = ' ';
			fprintf(f, "%*s%s:%c", indent * 4, "", k,
			    comp ? '\n' : ' ');
			free(k);
		} else {
			fprintf(f, "%*s[%zu]:%c", indent * 4, "", i,
			    comp ? '\n' : ' ');
		}
		if (m[i]->type == JN_STR) {
			fprintf(f, "%s\n", m[i]->s);	/* unquoted in the human dump */
			continue;
		}
		json_dump_human(f, m[i], indent + 1);
	}
	free(m);
}

#define JSON_MAX_DEPTH	64	/* QEMU's parser limit (MAX_NESTING) */

struct jparse {
	const char	*p;
	int		 depth;
};

static void
jp_space(struct jparse *j)
{
	while (isspace((unsigned char)*j->p))
		j->p++;
}

static char *
jp_string(struct jparse *j)
{
	char quote = *j->p++, *out = xmalloc(strlen(j->p) + 1), *o = out;

	/* QEMU's JSON also takes single-quoted strings */
	while (*j->p && *j->p != quote) {
		if (*j->p == '\\') {
			j->p++;
			switch (*j->p) {
			case 'n': *o++ = '\n'; break;
			case 't': *o++ = '\t'; break;
			case 'r': *o++ = '\r'; break;
			case 'b': *o++ = '\b'; break;
			case 'f': *o++ = '\f'; break;
			case '\0':
				free(out);
				return NULL;
			default: *o++ = *j->p;
			}
			j->p++;
			continue;
		}
		*o++ = *j->p++;
	}
	if (*j->p != quote) {
		free(out);
		return NULL;
	}
	j->p++;
	*o = '\0';
	return out;
}

static int jp_value(struct jparse *j, struct jnode *parent, const char *key);

static int
jp_container(struct jparse *j, struct jnode *n, char close)
{
	char *key = NULL;

	if (++j->depth > JSON_MAX_DEPTH)
		return err_set(0, "JSON parse error, too deeply nested");
	j->p++;
	jp_space(j);
	if (*j->p == close) {
		j->p++;
		j->depth--;
		return 0;
	}
	for (;;) {
		jp_space(j);
		if (close == '}') {
			if ((*j->p != '"' && *j->p != '\'') ||
			    (key = jp_string(j)) == NULL)
				return err_set(0, *j->p ? "JSON parse error, key is not a string in object" :
				    "JSON parse error, premature EOI");
			jp_space(j);
			if (*j->p++ != ':') {
				free(key);
				return err_set(0, j->p[-1] ? "JSON parse error, missing : in object pair" :
				    "JSON parse error, premature EOI");
			}
		}
		if (jp_value(j, n, key) < 0) {
			free(key);
			return -1;
		}
		free(key);
		key = NULL;
		jp_space(j);
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p == close) {
			j->p++;
			j->depth--;
			return 0;
		}
		return err_set(0, *j->p ? "JSON parse error, expected separator in %s" :
		    "JSON parse error, premature EOI", close == '}' ? "dict" : "list");
	}
}

static int
jp_value(struct jparse *j, struct jnode *parent, const char *key)
{
	char *str, *end;
	long long v;

	jp_space(j);
	switch (*j->p) {
	case '{':
		return jp_container(j, jn_obj(parent, key), '}');
	case '[':
		return jp_container(j, jn_arr(parent, key), ']');
	case '"':
	case '\'':
		if ((str = jp_string(j)) == NULL)
			return err_set(0, "JSON parse error, premature EOI");
		jn_str(parent, key, str);
		free(str);
		return 0;
	case '\0':
		return err_set(0, "JSON parse error, premature EOI");
	}
	if (strncmp(j->p, "true", 4) == 0 || strncmp(j->p, "false", 5) == 0) {
		jn_bool(parent, key, *j->p == 't');
		j->p += *j->p == 't' ? 4 : 5;
		return 0;
	}
	if (strncmp(j->p, "null", 4) == 0) {
		jn_str(parent, key, "null");
		j->p += 4;
		return 0;
	}
	errno = 0;
	v = strtoll(j->p, &end, 10);
	if (end == j->p || errno != 0)
		return err_set(0, "JSON parse error, invalid keyword '%.16s'", j->p);
	if (*end == '.' || *end == 'e' || *end == 'E')
		jn_double(parent, key, strtod(j->p, &end));
	else
		jn_int(parent, key, v);
	j->p = end;
	return 0;
}

struct jnode *
json_parse(const char *s)
{
	struct jparse j = { .p = s, .depth = 0 };
	struct jnode *holder = jn_new_arr(), *n;

	if (jp_value(&j, holder, NULL) < 0) {
		jn_free(holder);
		return NULL;
	}
	jp_space(&j);
	if (*j.p != '\0') {
		jn_free(holder);
		err_set(0, "JSON parse error, trailing characters");
		return NULL;
	}
	n = holder->child;
	holder->child = holder->last = NULL;
	jn_free(holder);
	n->next = NULL;
	return n;
}
