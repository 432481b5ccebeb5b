/* Extent maps: qemu-img map's output forms, printed and parsed. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "map.h"

void
map_print_json(FILE *f, const struct map_ext *e, bool first, bool last)
{
	if (first)
		fputc('[', f);
	fprintf(f, "{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
	    ", \"depth\": %" PRId64 ", \"present\": %s, \"zero\": %s"
	    ", \"data\": %s", e->start, e->length, e->depth,
	    e->present ? "true" : "false", e->zero ? "true" : "false",
	    e->data ? "true" : "false");
	if (e->has_offset)
		fprintf(f, ", \"offset\": %" PRIu64, e->offset);
	fputc('}', f);
	fputs(last ? "]\n" : ",\n", f);
}

bool
map_mergeable(const struct map_ext *a, const struct map_ext *b)
{
	if (a->present != b->present || a->zero != b->zero ||
	    a->data != b->data || a->depth != b->depth ||
	    a->has_offset != b->has_offset)
		return false;
	if ((a->filename == NULL) != (b->filename == NULL) ||
	    (a->filename && strcmp(a->filename, b->filename) != 0))
		return false;
	return !a->has_offset || a->offset + a->length == b->offset;
}

struct map_reader {
	FILE		*f;
	char		*name;
	unsigned long	 line;
	unsigned long	 ext_line;	/* where the last extent read starts */
	int		 human;		/* -1 unknown, 0 JSON, 1 human table */
	uint64_t	 next;		/* end of the previous extent */
	bool		 started;	/* an extent was read */
	struct map_ext	 pending;	/* human form: a data extent after a gap */
	bool		 have_pending;
};

struct map_reader *
map_reader_new(FILE *f, const char *name)
{
	struct map_reader *r = xcalloc(1, sizeof(*r));

	r->f = f;
	r->name = xstrdup(name);
	r->line = 1;
	r->human = -1;
	return r;
}

void
map_reader_free(struct map_reader *r)
{
	if (r == NULL)
		return;
	free(r->name);
	free(r);
}

static int
bad(struct map_reader *r, const char *what)
{
	return err_set(0, "%s: line %lu: %s", r->name, r->line, what);
}

static int
getc_line(struct map_reader *r)
{
	int c = getc(r->f);

	if (c == '\n')
		r->line++;
	return c;
}

static int
skip_space(struct map_reader *r)
{
	int c;

	while ((c = getc_line(r)) != EOF && isspace(c))
		;
	return c;
}

/* Read a JSON string body (after the opening quote) into buf. */
static int
read_string(struct map_reader *r, char *buf, size_t size)
{
	size_t n = 0;
	int c;

	while ((c = getc_line(r)) != '"') {
		if (c == EOF || c == '\n')
			return bad(r, "unterminated string");
		if (c == '\\' && (c = getc_line(r)) == EOF)
			return bad(r, "unterminated string");
		if (n + 1 >= size)
			return bad(r, "string too long");
		buf[n++] = (char)c;
	}
	buf[n] = '\0';
	return 0;
}

/* A bare value: number, true, false, null. */
static int
read_word(struct map_reader *r, int c, char *buf, size_t size)
{
	size_t n = 0;

	while (c != EOF && (isalnum(c) || c == '-' || c == '+' || c == '.')) {
		if (n + 1 >= size)
			return bad(r, "value too long");
		buf[n++] = (char)c;
		c = getc_line(r);
	}
	if (c != EOF) {
		if (c == '\n')
			r->line--;
		ungetc(c, r->f);
	}
	buf[n] = '\0';
	return n ? 0 : bad(r, "expected a value");
}

static int
set_field(struct map_reader *r, struct map_ext *e, const char *key,
    const char *val, unsigned *seen)
{
	char *end;
	uint64_t v;
	bool *flag = NULL;

	if (!strcmp(key, "present"))
		flag = &e->present;
	else if (!strcmp(key, "zero"))
		flag = &e->zero;
	else if (!strcmp(key, "data"))
		flag = &e->data;
	if (flag != NULL) {
		if (strcmp(val, "true") && strcmp(val, "false"))
			return bad(r, "expected true or false");
		*flag = !strcmp(val, "true");
		return 0;
	}
	if (strcmp(key, "start") && strcmp(key, "length") &&
	    strcmp(key, "depth") && strcmp(key, "offset"))
		return 0;	/* unknown keys (e.g. "compressed") are ignored */
	errno = 0;
	v = strtoull(val, &end, 10);
	if (*val == '-' || !isdigit((unsigned char)*val) || *end != '\0' ||
	    errno != 0 || v > INT64_MAX)
		return bad(r, "expected a non-negative integer");
	if (!strcmp(key, "start")) {
		e->start = v;
		*seen |= 1;
	} else if (!strcmp(key, "length")) {
		e->length = v;
		*seen |= 2;
	} else if (!strcmp(key, "depth")) {
		e->depth = (int64_t)v;
	} else {
		e->offset = v;
		e->has_offset = true;
	}
	return 0;
}

static int
read_object(struct map_reader *r, struct map_ext *e)
{
	char key[64], val[4096];	/* val: a file name, say */
	unsigned seen = 0;
	int c;

	memset(e, 0, sizeof(*e));
	for (;;) {
		c = skip_space(r);
		if (c == '}')
			break;
		if (c != '"' || read_string(r, key, sizeof(key)) < 0)
			return bad(r, "expected a key");
		if (skip_space(r) != ':')
			return bad(r, "expected ':'");
		c = skip_space(r);
		if (c == '"') {
			if (read_string(r, val, sizeof(val)) < 0)
				return -1;
		} else if (read_word(r, c, val, sizeof(val)) < 0) {
			return -1;
		}
		if (set_field(r, e, key, val, &seen) < 0)
			return -1;
		c = skip_space(r);
		if (c == '}')
			break;
		if (c != ',')
			return bad(r, "expected ',' or '}'");
	}
	if (seen != 3)
		return bad(r, "extent without start and length");
	if ((e->length == 0 && e->start != 0) || e->start + e->length < e->start)
		return bad(r, "bad extent length");
	return 1;
}

static int
read_json(struct map_reader *r, struct map_ext *e)
{
	int c, ret;

	for (;;) {
		c = skip_space(r);
		if (c == EOF)
			return ferror(r->f) ? err_set(errno, "%s", r->name) : 0;
		if (c == '[' || c == ']' || c == ',')
			continue;
		if (c != '{')
			return bad(r, "expected an extent object");
		r->ext_line = r->line;
		ret = read_object(r, e);
		/* qemu-img map of an empty image prints one extent of length 0 */
		if (ret == 1 && e->length == 0)
			continue;
		return ret;
	}
}

/* Human form: "Offset Length Mapped-to File" lines name data extents only. */
static int
read_human(struct map_reader *r, struct map_ext *e)
{
	char line[4096], file[4096];
	unsigned long long s, l, o;

	for (;;) {
		if (fgets(line, sizeof(line), r->f) == NULL)
			return ferror(r->f) ? err_set(errno, "%s", r->name) : 0;
		if (strncmp(line, "Offset", 6) == 0 ||
		    line[strspn(line, " \t\r\n")] == '\0') {
			r->line++;
			continue;
		}
		if (sscanf(line, "%llx %llx %llx %4095s", &s, &l, &o, file) < 3 ||
		    l == 0 || s + l < s)
			return bad(r, "malformed map line");
		r->ext_line = r->line++;
		memset(e, 0, sizeof(*e));
		e->start = s;
		e->length = l;
		e->present = e->data = e->has_offset = true;
		e->offset = o;
		return 1;
	}
}

int
map_read(struct map_reader *r, struct map_ext *e)
{
	int c, ret;

	if (r->have_pending) {
		*e = r->pending;
		r->have_pending = false;
		r->next = e->start + e->length;
		return 1;
	}
	if (r->human < 0) {
		c = skip_space(r);
		if (c == EOF)
			return ferror(r->f) ? err_set(errno, "%s", r->name) : 0;
		ungetc(c, r->f);
		r->human = c == 'O' || isdigit(c);
	}
	ret = r->human ? read_human(r, e) : read_json(r, e);
	if (ret <= 0)
		return ret;
	if (e->start < r->next)
		return bad(r, "extents overlap or are out of order");
	if (r->human && r->started && e->start > r->next) {
		/*
		 * The gap between two human-form data extents reads as zeroes;
		 * what comes before the first is not in the map (--start-offset).
		 */
		r->pending = *e;
		r->have_pending = true;
		memset(e, 0, sizeof(*e));
		e->start = r->next;
		e->length = r->pending.start - r->next;
		e->zero = true;
	}
	r->next = e->start + e->length;
	r->started = true;
	return 1;
}

bool
map_carries_data(const struct map_ext *e)
{
	return e->data && !e->zero;
}

int
map_read_within(struct map_reader *r, struct map_ext *e, uint64_t size,
    const char *image)
{
	int ret = map_read(r, e);

	if (ret > 0 && (e->start > size || e->length > size - e->start))
		return err_set(0, "%s: line %lu: extent %" PRIu64 "+%" PRIu64
		    " is past the end of '%s' (%" PRIu64 " bytes)", r->name,
		    r->ext_line, e->start, e->length, image, size);
	return ret;
}
