/*
 * --object: qemu's user-creatable objects, parsed and checked as qemu-img
 * does (qom/object_interfaces.c); secrets (crypto/secret.c) keep their
 * data by id.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "opt.h"
#include "secret.h"

static const char *const object_types[] = {
	"authz-list", "authz-list-file", "authz-simple", "main-loop",
	"pr-manager-helper", "secret", "secret_keyring", "thread-context",
	"throttle-group", "tls-cipher-suites", "tls-creds-anon",
	"tls-creds-psk", "tls-creds-x509", NULL,
};

static const char *const secret_keys[] = {
	"data", "file", "format", "iv", "keyid", NULL,
};

struct object {
	char	*id;
	char	*type;
	char	*data;		/* a secret's bytes, NUL-terminated */
	size_t	 len;
};

static struct object *objects;
static size_t nobjects;
static char **defs;

static bool
in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

static bool
is_identifier(const char *s)
{
	const char *p;

	if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
		return false;
	for (p = s; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789-._", *p))
			return false;
	return true;
}

static struct object *
find(const char *id)
{
	size_t i;

	for (i = 0; i < nobjects; i++)
		if (strcmp(objects[i].id, id) == 0)
			return &objects[i];
	return NULL;
}

static char *
help_text(const char *type)
{
	const char *const *t;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (type == NULL) {
		fprintf(f, "List of user creatable objects:\n");
		for (t = object_types; *t; t++)
			fprintf(f, "  %s\n", *t);
	} else if (strcmp(type, "secret") == 0) {
		fprintf(f, "secret options:\n  data=<string>\n  file=<string>\n"
		    "  format=<QCryptoSecretFormat>\n  iv=<string>\n"
		    "  keyid=<string>\n");
	} else {
		fprintf(f, "%s options:\n", type);
	}
	fclose(f);
	return buf;
}

static int
b64_value(int c)
{
	const char *set = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789+/";
	const char *p = c ? strchr(set, c) : NULL;

	return p ? (int)(p - set) : -1;
}

/*
 * qbase64_decode: only base64 characters (and newlines), decoded as glib
 * does: whole quads only, '=' ends the data.
 */
static int
b64_decode(struct object *o)
{
	const char *in = o->data;
	char *out = xmalloc(strlen(in) + 1);
	unsigned quad = 0;
	size_t n = 0, k = 0;
	int v, pad = 0;

	if (strspn(in, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789+/=\n") != strlen(in)) {
		free(out);
		return err_set(0, "Base64 data contains invalid characters");
	}
	for (; *in; in++) {
		if (*in == '\n')
			continue;
		v = *in == '=' ? (pad++, 0) : b64_value(*in);
		quad = quad << 6 | (unsigned)v;
		if (++k < 4)
			continue;
		out[n++] = (char)(quad >> 16);
		if (pad < 2)
			out[n++] = (char)(quad >> 8);
		if (pad < 1)
			out[n++] = (char)quad;
		k = 0, quad = 0;
		if (pad)
			break;
	}
	out[n] = '\0';
	free(o->data);
	o->data = out;
	o->len = n;
	return 0;
}

static int
read_file(struct object *o, const char *file)
{
	char buf[4096];
	FILE *f = fopen(file, "r");
	size_t n;

	if (f == NULL)
		return err_set(0, "Unable to read %s: Failed to open file "
		    "\xe2\x80\x9c%s\xe2\x80\x9d: %s", file, file, strerror(errno));
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		o->data = xrealloc(o->data, o->len + n + 1);
		memcpy(o->data + o->len, buf, n);
		o->len += n;
		o->data[o->len] = '\0';
	}
	if (ferror(f)) {
		fclose(f);
		return err_set(errno, "Unable to read %s", file);
	}
	fclose(f);
	if (o->data == NULL)
		o->data = xstrdup("");
	return 0;
}

/* The secret's checks and data, as qcrypto_secret_complete. */
static int
secret_load(struct object *o, const struct opt_list *l)
{
	const char *v, *file, *data;
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->v[i].key, "qom-type") != 0 &&
		    strcmp(l->v[i].key, "id") != 0 &&
		    !in_list(secret_keys, l->v[i].key))
			return err_set(0, "Parameter '%s' is unexpected",
			    l->v[i].key);
	v = opt_list_get(l, "format");
	if (v != NULL && strcmp(v, "raw") != 0 && strcmp(v, "base64") != 0)
		return err_set(0, "Parameter 'format' does not accept value '%s'",
		    v);
	file = opt_list_get(l, "file");
	data = opt_list_get(l, "data");
	if (file != NULL && data != NULL)
		return err_set(0, "'file' and 'data' are mutually exclusive");
	if (file == NULL && data == NULL)
		return err_set(0, "Either 'file' or 'data' must be provided");
	if (file != NULL && read_file(o, file) < 0)
		return -1;
	if (data != NULL) {
		o->data = xstrdup(data);
		o->len = strlen(data);
	}
	if ((v = opt_list_get(l, "keyid")) != NULL) {
		if (find(v) == NULL || strcmp(find(v)->type, "secret") != 0)
			return err_set(0, "No secret with id '%s'", v);
		return err_set(0, "secret '%s': secrets encrypted with keyid are not supported",
		    o->id);
	}
	if ((v = opt_list_get(l, "format")) != NULL && !strcmp(v, "base64"))
		return b64_decode(o);
	return 0;
}

static int
check_object(const struct opt_list *l, char **help)
{
	const char *type = opt_list_get(l, "qom-type"), *id;

	if (type == NULL || *type == '\0')
		return err_set(0, "Parameter 'qom-type' is missing");
	if (!in_list(object_types, type))
		return err_set(0, "Parameter 'qom-type' does not accept value '%s'",
		    type);
	if (opt_list_has_help(l)) {
		*help = help_text(type);
		return 1;
	}
	if ((id = opt_list_get(l, "id")) == NULL)
		return err_set(0, "Parameter 'id' is missing");
	if (!is_identifier(id))
		return err_set(0, "Parameter 'id' expects an identifier\n"
		    "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.");
	return 0;
}

int
object_add(const char *def, char **help)
{
	struct opt_list l = { 0, NULL };
	struct object o = { 0 };
	char *s;
	int r;

	*help = NULL;
	if (strcmp(def, "help") == 0) {
		*help = help_text(NULL);
		return 1;
	}
	s = opt_implied_key(def, "qom-type");
	r = opt_list_parse(&l, s);
	free(s);
	if (r < 0 || (r = check_object(&l, help)) != 0)
		goto out;
	o.id = xstrdup(opt_list_get(&l, "id"));
	o.type = xstrdup(opt_list_get(&l, "qom-type"));
	if (strcmp(o.type, "secret") == 0 && secret_load(&o, &l) < 0) {
		r = -1;
	} else if (find(o.id) != NULL) {
		r = err_set(0, "attempt to add duplicate property '%s' to object (type 'container')",
		    o.id);
	} else {
		objects = xrealloc(objects, (nobjects + 1) * sizeof(*objects));
		objects[nobjects++] = o;
		defs = xrealloc(defs, (nobjects + 1) * sizeof(*defs));
		defs[nobjects - 1] = xstrdup(def);
		defs[nobjects] = NULL;
		o.id = o.type = o.data = NULL;
	}
	free(o.id);
	free(o.type);
	free(o.data);
out:
	opt_list_free(&l);
	return r;
}

const char *
secret_get(const char *id, size_t *len)
{
	struct object *o = find(id);

	if (o == NULL) {
		err_set(0, "No secret with id '%s'", id);
		return NULL;
	}
	if (strcmp(o->type, "secret") != 0) {
		err_set(0, "Object with id '%s' is not a secret", id);
		return NULL;
	}
	*len = o->len;
	return o->data;
}

/* RFC 3629 UTF-8, as g_utf8_validate (no NUL inside). */
static bool
utf8_valid(const unsigned char *p, size_t n)
{
	size_t i = 0, k, j;
	uint32_t c;

	while (i < n) {
		if (p[i] == 0)
			return false;
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0)
			k = 1, c = p[i] & 0x1f;
		else if ((p[i] & 0xf0) == 0xe0)
			k = 2, c = p[i] & 0x0f;
		else if ((p[i] & 0xf8) == 0xf0)
			k = 3, c = p[i] & 0x07;
		else
			return false;
		for (j = 1; j <= k; j++) {
			if (i + j >= n || (p[i + j] & 0xc0) != 0x80)
				return false;
			c = c << 6 | (p[i + j] & 0x3f);
		}
		if ((k == 1 && c < 0x80) || (k == 2 && c < 0x800) ||
		    (k == 3 && (c < 0x10000 || c > 0x10ffff)) ||
		    (c >= 0xd800 && c <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

const char *
secret_get_utf8(const char *id)
{
	const char *d;
	size_t len;

	if ((d = secret_get(id, &len)) == NULL)
		return NULL;
	if (!utf8_valid((const unsigned char *)d, len)) {
		err_set(0, "Data from secret %s is not valid UTF-8", id);
		return NULL;
	}
	return d;
}

const char *const *
object_defs(size_t *n)
{
	*n = nobjects;
	return (const char *const *)defs;
}

void
object_free_all(void)
{
	size_t i;

	for (i = 0; i < nobjects; i++) {
		free(objects[i].id);
		free(objects[i].type);
		if (objects[i].data != NULL)
			explicit_bzero(objects[i].data, objects[i].len);
		free(objects[i].data);
		free(defs[i]);
	}
	free(objects);
	free(defs);
	objects = NULL;
	defs = NULL;
	nobjects = 0;
}

void
object_add_or_exit(const char *def, int status)
{
	char *help;
	int r = object_add(def, &help);

	if (r == 0)
		return;
	if (r > 0) {
		fputs(help, stdout);
		free(help);
		exit(close_stdout() ? status : 0);
	}
	fprintf(stderr, "%s: %s\n", prog_name(), err_msg());
	exit(status);
}
