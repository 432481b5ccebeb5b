/* Option values: qemu's size suffixes, -o lists with ",," escapes. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "int.h"
#include "opt.h"

static int
suffix_shift(int c)
{
	switch (tolower(c)) {
	case 'b': return 0;
	case 'k': return 10;
	case 'm': return 20;
	case 'g': return 30;
	case 't': return 40;
	case 'p': return 50;
	case 'e': return 60;
	}
	return -1;
}

int
opt_size_unit(const char *s, uint64_t unit, uint64_t *out)
{
	const char *p = s;
	char *end;
	uint64_t ival, mul = unit;
	double frac = 0;
	int shift;

	while (isspace((unsigned char)*p))
		p++;
	if (*p == '-' || !isdigit((unsigned char)*p))
		return -1;
	errno = 0;
	ival = strtoull(p, &end, 10);
	if (errno == ERANGE)
		return -2;
	if (ival == 0 && end == p + 1 && (*end == 'x' || *end == 'X')) {
		/* hex, as qemu_strtosz takes it: "0x10", never a fraction */
		ival = strtoull(p, &end, 16);
		if (errno == ERANGE)
			return -2;
		if (end == p + 1 || *end == '.')
			return -1;
	} else if (*end == '.') {
		char *fend;

		/* "1." and "1.k" have no fraction digits; no exponents */
		frac = strtod(end, &fend);
		if (fend == end)
			fend = end + 1;
		else if (memchr(end, 'e', fend - end) || memchr(end, 'E', fend - end))
			return -1;
		end = fend;
	}
	if (*end != '\0') {
		if ((shift = suffix_shift(*end)) < 0 || end[1] != '\0')
			return -1;
		mul = (uint64_t)1 << shift;
	} else if (frac != 0 && unit == 1) {
		return -1;	/* a fraction needs a suffix */
	}
	if (ival > INT64_MAX / mul)
		return -2;
	ival *= mul;
	if (frac != 0) {
		double f = floor(frac * (double)mul + 0.5);	/* qemu rounds */

		if ((double)ival + f >= 9223372036854775807.0)
			return -2;
		ival += (uint64_t)f;
	}
	if (ival > INT64_MAX)
		return -2;
	*out = ival;
	return 0;
}

int
opt_size(const char *s, uint64_t *out)
{
	return opt_size_unit(s, 1, out);
}

int
opt_cvtnum(const char *name, const char *s, uint64_t min, uint64_t max,
    uint64_t *out)
{
	int r = opt_size(s, out);

	if (r == -1)
		return err_set(0, "Invalid %s specified. You may use k, M, G, T, P or E suffixes for\n"
		    "%s: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.",
		    name, prog_name());
	if (r < 0 || *out < min || *out > max)
		return err_set(0, "Invalid %s specified. Must be between %llu and %llu.",
		    name, (unsigned long long)min, (unsigned long long)max);
	return 0;
}

void
opt_print_options(const struct option *longopts, const char *optstring,
    bool longs)
{
	const struct option *o;
	const char *p;

	if (longs) {
		for (o = longopts; o->name; o++)
			if (strcmp(o->name, "long-options") != 0 &&
			    strcmp(o->name, "short-options") != 0)
				printf("--%s\n", o->name);
	} else {
		for (p = optstring; *p; p++)
			if (isalnum((unsigned char)*p))
				printf("-%c\n", *p);
	}
	exit(close_stdout());
}

void
opt_usage_error(int c, char *const argv[])
{
	if (c == ':')
		die_usage("missing argument for option '%s'", argv[optind - 1]);
	die_usage("unrecognized option '%s'", argv[optind - 1]);
}

char *
opt_implied_key(const char *s, const char *key)
{
	if (*s == '\0' || s[strcspn(s, "=,")] == '=')
		return xstrdup(s);
	return xasprintf("%s=%s", key, s);
}

int
opt_cache_mode(const char *mode)
{
	static const struct {
		const char	*name;
		int		 bits;
	} modes[] = {
		{ "none", OPT_CACHE_DIRECT }, { "off", OPT_CACHE_DIRECT },
		{ "directsync", OPT_CACHE_DIRECT | OPT_CACHE_WRITETHROUGH },
		{ "writeback", 0 }, { "unsafe", OPT_CACHE_NO_FLUSH },
		{ "writethrough", OPT_CACHE_WRITETHROUGH },
	};
	size_t i;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(mode, modes[i].name) == 0)
			return modes[i].bits;
	return -1;
}

int
opt_output(const char *s)
{
	if (strcmp(s, "human") == 0)
		return OUT_HUMAN;
	if (strcmp(s, "json") == 0)
		return OUT_JSON;
	return -1;
}

int
opt_bool(const char *s)
{
	if (!strcmp(s, "on") || !strcmp(s, "yes") || !strcmp(s, "true") ||
	    !strcmp(s, "y"))
		return 1;
	if (!strcmp(s, "off") || !strcmp(s, "no") || !strcmp(s, "false") ||
	    !strcmp(s, "n"))
		return 0;
	return -1;
}

void
opt_list_set(struct opt_list *l, const char *key, const char *val)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		if (strcmp(l->v[i].key, key) == 0) {
			free(l->v[i].val);
			l->v[i].val = xstrdup(val);
			return;
		}
	}
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n].key = xstrdup(key);
	l->v[l->n].val = xstrdup(val);
	l->n++;
}

/* Copy one ",,"-escaped token up to an unescaped ',' (or '=' if stop_eq). */
static const char *
token(const char *p, char *buf, int stop_eq)
{
	while (*p) {
		if (*p == ',') {
			if (p[1] != ',')
				break;
			p++;
		} else if (stop_eq && *p == '=') {
			break;
		}
		*buf++ = *p++;
	}
	*buf = '\0';
	return p;
}

int
opt_list_parse(struct opt_list *l, const char *s)
{
	size_t len = strlen(s) + 1;
	/* a bare key ("?", "k") takes the value "on": room for it too */
	char *key = xmalloc(len), *val = xmalloc(MAX(len, sizeof("on")));
	const char *p = s;

	while (*p) {
		p = token(p, key, 1);
		if (*p == '=') {
			p = token(p + 1, val, 0);
		} else {
			strcpy(val, "on");
		}
		if (*key == '\0') {
			free(key);
			free(val);
			return err_set(0, "Invalid parameter ''");
		}
		opt_list_set(l, key, val);
		if (*p == ',')
			p++;
	}
	free(key);
	free(val);
	return 0;
}

const char *
opt_list_get(const struct opt_list *l, const char *key)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->v[i].key, key) == 0)
			return l->v[i].val;
	return NULL;
}

bool
opt_list_has_help(const struct opt_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].key, "help") || !strcmp(l->v[i].key, "?"))
			return true;
	return false;
}

void
opt_list_free(struct opt_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].val);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

int
opt_check(const struct opt_desc *d, const char *v, char *buf, size_t size,
    const char **val)
{
	unsigned long long n;
	uint64_t u;
	char *end;
	int r;

	*val = v;
	switch (d->type) {
	case OPT_BOOL:
		if ((r = opt_bool(v)) < 0)
			return err_set(0, "Parameter '%s' expects 'on' or 'off'",
			    d->name);
		*val = r ? "on" : "off";
		return 0;
	case OPT_NUMBER:
		errno = 0;
		n = strtoull(v, &end, 0);	/* qemu_strtou64: "-1" wraps */
		if (n == ULLONG_MAX && errno == ERANGE)
			return err_set(0, "Value '%s' is too large for parameter "
			    "'%s'", v, d->name);
		if (end == v || *end != '\0')
			return err_set(0, "Parameter '%s' expects a number",
			    d->name);
		snprintf(buf, size, "%llu", n);
		*val = buf;
		return 0;
	case OPT_SIZE:
		if ((r = opt_size(v, &u)) == -1)
			return err_set(0, "Parameter '%s' expects a non-negative "
			    "number below 2^64\nOptional suffix k, M, G, T, P or "
			    "E means kilo-, mega-, giga-, tera-, peta-\nand "
			    "exabytes, respectively.", d->name);
		if (r < 0)
			return err_set(0, "Value '%s' is out of range for "
			    "parameter '%s'", v, d->name);
		snprintf(buf, size, "%llu", (unsigned long long)u);
		*val = buf;
		return 0;
	default:
		return 0;
	}
}
