/*
 * img-create: make a new image, as qemu-img create (qemu-img.c img_create,
 * block.c bdrv_img_create).
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/img.h"
#include "../lib/err.h"
#include "../lib/human.h"
#include "../lib/int.h"
#include "../lib/opt.h"
#include "../lib/secret.h"

static const char usage_text[] =
    "usage: img-create [--object objectdef] [-q] [-f fmt] [-b backing_file]\n"
    "                  [-F backing_fmt] [-u] [-o options] filename [size]\n";

enum { OPT_OBJECT = 256, OPT_LONG, OPT_SHORT };

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":F:b:f:ho:qu";

/*
 * The file protocol's create options (block/file-posix.c): qemu appends
 * them after the format's, so they show in "-o help" with a file name and
 * in the "Formatting" line.  The raw driver carries them itself.
 */
static const struct opt_desc file_opts[] = {
	{ "size", OPT_SIZE, "Virtual disk size", NULL },
	{ "nocow", OPT_BOOL, "Turn off copy-on-write (valid only on btrfs)",
	    NULL },
	{ "preallocation", OPT_STRING,
	    "Preallocation mode (allowed values: off, falloc, full)", NULL },
	{ "extent_size_hint", OPT_SIZE,
	    "Extent size hint for the image file, 0 to disable", NULL },
	{ NULL, 0, NULL, NULL },
};

#define MAX_OPTS	64

struct create_args {
	const char	*fmt;
	const char	*base;		/* -b */
	const char	*base_fmt;	/* -F */
	char		*options;	/* every -o, joined by commas */
	bool		 quiet;
	bool		 no_backing;	/* -u */
};

/* What qemu-img sees of the format: its options, then the protocol's. */
struct desc_list {
	const struct opt_desc	*d[MAX_OPTS];
	size_t			 n;
};

static _Noreturn void
usage(void)
{
	printf("%s\nCreate a disk image of SIZE bytes (suffixes k, M, G, T, P, "
	    "E), or as large as\nits backing file.\n\n"
	    "Options:\n"
	    "  -f FMT             the image format (default: raw)\n"
	    "  -b BACKING_FILE    the backing file, relative to the new image\n"
	    "  -F BACKING_FMT     the backing file's format\n"
	    "  -u                 don't open the backing file\n"
	    "  -o OPTIONS         format options (-o help lists them)\n"
	    "  -q                 quiet: no \"Formatting\" line\n"
	    "      --object OBJ   accepted for qemu-img compatibility\n"
	    "  -h, --help         show this help\n"
	    "\nSee img-create(1).\n", usage_text);
	exit(close_stdout());
}

/* is_valid_option_list: not empty, no leading ',', no odd trailing commas */
static void
accumulate(struct create_args *a, const char *s)
{
	size_t len = strlen(s), i;
	char *p;

	for (i = len; i > 0 && s[i - 1] == ','; i--)
		;
	if (s[0] == '\0' || s[0] == ',' || (len - i) % 2 != 0)
		die("Invalid option list: %s", s);
	if (a->options == NULL) {
		a->options = xstrdup(s);
		return;
	}
	p = xasprintf("%s,%s", a->options, s);
	free(a->options);
	a->options = p;
}

/* has_help_option: some element of the list is exactly "help" or "?" */
static bool
has_help(const char *s)
{
	const char *p = s, *start;

	while (*p) {
		for (start = p; *p && (*p != ',' || p[1] == ','); p++)
			if (*p == ',')
				p++;
		if ((p - start == 4 && strncmp(start, "help", 4) == 0) ||
		    (p - start == 1 && *start == '?'))
			return true;
		if (*p == ',')
			p++;
	}
	return false;
}

static const struct opt_desc *
find_desc(const struct opt_desc *d, const char *name)
{
	for (; d != NULL && d->name != NULL; d++)
		if (strcmp(d->name, name) == 0)
			return d;
	return NULL;
}

/* A driver entry the file protocol owns (raw carries those), not the format */
static bool
protocol_only(const struct opt_desc *d)
{
	const struct opt_desc *f = find_desc(file_opts, d->name);

	return f != NULL && strcmp(d->name, "size") != 0 && d->help != NULL &&
	    strcmp(f->help, d->help) == 0;
}

static void
desc_add(struct desc_list *l, const struct opt_desc *d)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->d[i]->name, d->name) == 0)
			return;
	assert(l->n < MAX_OPTS);	/* our tables are shorter */
	l->d[l->n++] = d;
}

/* qemu_opts_append(format's, protocol's); !with_proto: the format's only */
static void
build_descs(struct desc_list *l, const char *fmt, bool with_proto)
{
	const struct opt_desc *d;

	l->n = 0;
	for (d = img_create_opts(fmt); d != NULL && d->name != NULL; d++)
		if (!protocol_only(d))
			desc_add(l, d);
	if (with_proto)
		for (d = file_opts; d->name != NULL; d++)
			desc_add(l, d);
}

static const struct opt_desc *
desc_find(const struct desc_list *l, const char *name)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->d[i]->name, name) == 0)
			return l->d[i];
	return NULL;
}

/* qemu 7.2's protocol drivers, by prefix, that img does not have */
static const struct {
	const char	*prefix, *driver;
} qemu_protocols[] = {
	{ "host_device", "host_device" }, { "host_cdrom", "host_cdrom" },
	{ "nbd", "nbd" }, { "nbd+tcp", "nbd" }, { "nbd+unix", "nbd" },
	{ "http", "http" }, { "https", "https" },
	{ "ftp", "ftp" }, { "ftps", "ftps" }, { "ssh", "ssh" },
	{ "gluster", "gluster" }, { "gluster+tcp", "gluster" },
	{ "gluster+unix", "gluster" }, { "gluster+rdma", "gluster" },
	{ "iscsi", "iscsi" }, { "iser", "iser" }, { "nfs", "nfs" },
	{ "rbd", "rbd" }, { "nvme", "nvme" }, { "fat", "vvfat" },
	{ "null-co", "null-co" }, { "null-aio", "null-aio" },
	{ "blkdebug", "blkdebug" }, { "blkverify", "blkverify" },
};

/*
 * bdrv_find_protocol: "file:x" names the file x (the generic layer strips
 * it) and a plain name the file itself: NULL.  Else the "proto:" before
 * the first '/' is one of qemu's protocols img lacks: its driver name, for
 * qemu's "Protocol driver ... does not support image creation" once the
 * format is checked; or one nobody has (named: say which image).
 */
static const char *
find_protocol(const char *file, bool named)
{
	size_t i, n = strcspn(file, ":/");

	if (file[n] != ':' || (n == 4 && strncmp(file, "file", 4) == 0))
		return NULL;
	for (i = 0; i < ARRAY_SIZE(qemu_protocols); i++)
		if (strlen(qemu_protocols[i].prefix) == n &&
		    strncmp(file, qemu_protocols[i].prefix, n) == 0)
			return qemu_protocols[i].driver;
	if (named)
		die("%s: Unknown protocol '%.*s'", file, (int)n, file);
	die("Unknown protocol '%.*s'", (int)n, file);
}

/* print_block_option_help */
static int
option_help(const char *filename, const char *fmt)
{
	const struct opt_desc *d = img_create_opts(fmt);
	const char *proto;
	struct desc_list l;

	if (!img_format_known(fmt))
		die("Unknown file format '%s'", fmt);
	if (d == NULL)
		die("Format driver '%s' does not support image creation", fmt);
	if (filename != NULL &&
	    (proto = find_protocol(filename, false)) != NULL)
		die("Protocol driver '%s' does not support image creation",
		    proto);
	build_descs(&l, fmt, filename != NULL);
	if (filename != NULL)
		printf("Supported options:\n");
	else
		printf("Supported %s options:\n", fmt);
	human_opt_help(stdout, l.d, l.n);
	if (filename == NULL)
		printf("\nThe protocol level may support further options.\n"
		    "Specify the target filename to include those options.\n");
	return close_stdout();
}

/* qemu-img's cvtnum("image size", s) */
static uint64_t
parse_image_size(const char *s)
{
	uint64_t v;
	int r = opt_size(s, &v);

	if (r == -1) {
		warn_msg("Invalid image size specified. You may use k, M, G, "
		    "T, P or E suffixes for");
		die("kilobytes, megabytes, gigabytes, terabytes, petabytes and "
		    "exabytes.");
	}
	if (r < 0)
		die("Invalid image size specified. Must be between 0 and %lld.",
		    (long long)INT64_MAX);
	return v;
}

/*
 * qemu_opts_do_parse: "key=value" (",," is a comma in the value) or a flag,
 * "key" for on and "nokey" for off; "id" is skipped.  Each is checked as
 * it comes, so the first bad one is the one qemu names.
 */
static void
parse_options(const char *file, const char *s, const struct desc_list *l,
    struct opt_list *o)
{
	size_t len = strlen(s) + 1, n;
	char *key = xmalloc(len), *val = xmalloc(len), *q, buf[32];
	const struct opt_desc *d;
	const char *p = s, *v;

	while (*p) {
		n = strcspn(p, "=,");
		memcpy(key, p, n);
		key[n] = '\0';
		p += n;
		if (*p == '=') {
			for (p++, q = val; *p && (*p != ',' || p[1] == ',');
			    p++) {
				if (*p == ',')
					p++;
				*q++ = *p;
			}
			*q = '\0';
		} else if (strncmp(key, "no", 2) == 0) {
			memmove(key, key + 2, n - 1);
			strcpy(val, "off");
		} else {
			strcpy(val, "on");
		}
		if (*p == ',')
			p++;
		if (strcmp(key, "id") == 0)
			continue;
		if ((d = desc_find(l, key)) == NULL)
			die("%s: Invalid parameter '%s'", file, key);
		if (opt_check(d, val, buf, sizeof(buf), &v) < 0)
			die("%s: %s", file, err_msg());
		opt_list_set(o, key, val);
	}
	free(key);
	free(val);
}

/*
 * Open the backing file as qemu does before creating: it must exist, and
 * gives the format's name to a missing -F and its size to a missing size.
 */
static void
check_backing(const char *file, const char *base, struct opt_list *o,
    int64_t *size)
{
	const char *bfmt = opt_list_get(o, "backing_fmt");
	char *path = img_backing_path(file, base), buf[32];
	struct img *b;

	/* BDRV_O_NO_IO, as bdrv_img_create: an encrypted one needs no key */
	if ((b = img_open(path, bfmt, IMG_SHARE | IMG_NO_PROBE_WARN |
	    IMG_NO_IO)) == NULL) {
		err_unprefix("Could not open '%s'", path);
		free(path);
		die("%s: %s\nCould not open backing image.", file, err_msg());
	}
	if (bfmt == NULL) {
		/* qemu's hint ends without a newline */
		fprintf(stderr, "%s: %s: Backing file specified without "
		    "backing format\nDetected format of %s.", prog_name(), file,
		    img_format(b));
		img_close(b);
		free(path);
		exit(1);
	}
	if (*size < 0) {
		*size = (int64_t)b->size;
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)b->size);
		opt_list_set(o, "size", buf);
	}
	img_close(b);
	free(path);
}

static void
set_backing(const char *file, const struct create_args *a, struct opt_list *o)
{
	const char *base;

	if (a->base != NULL) {
		if (find_desc(img_create_opts(a->fmt), "backing_file") == NULL)
			die("%s: Backing file not supported for file format "
			    "'%s'", file, a->fmt);
		opt_list_set(o, "backing_file", a->base);
	}
	if (a->base_fmt != NULL) {
		if (find_desc(img_create_opts(a->fmt), "backing_fmt") == NULL)
			die("%s: Backing file format not supported for file "
			    "format '%s'", file, a->fmt);
		opt_list_set(o, "backing_fmt", a->base_fmt);
	}
	if ((base = opt_list_get(o, "backing_file")) == NULL)
		return;
	if (strcmp(base, file) == 0)
		die("%s: Error: Trying to create an image with the same "
		    "filename as the backing file", file);
	if (base[0] == '\0')
		die("%s: Expected backing file name, got empty string", file);
}

static void
print_escaped(const char *v)
{
	for (; *v; v++) {
		if (*v == ',')
			putchar(',');
		putchar(*v);
	}
}

/* A checked number or size as qemu holds it, in bytes */
static uint64_t
value_number(const struct opt_desc *d, const char *v)
{
	const char *canon;
	char buf[32];

	if (opt_check(d, v, buf, sizeof(buf), &canon) < 0)
		return 0;
	return strtoull(canon, NULL, 10);
}

/* qemu_opts_print: every option given or with a default, in table order */
static void
print_formatting(const char *file, const char *fmt, const struct desc_list *l,
    const struct opt_list *o)
{
	const struct opt_desc *d;
	const char *v, *sep = "";
	size_t i;

	printf("Formatting '%s', fmt=%s ", file, fmt);
	for (i = 0; i < l->n; i++) {
		d = l->d[i];
		v = opt_list_get(o, d->name);
		if (v == NULL && (v = d->def) == NULL)
			continue;
		printf("%s%s=", sep, d->name);
		if (d->type == OPT_STRING)
			print_escaped(v);
		else if ((d->type == OPT_SIZE || d->type == OPT_NUMBER) &&
		    opt_list_get(o, d->name) != NULL)
			printf("%lld", (long long)value_number(d, v));
		else
			printf("%s", v);
		sep = " ";
	}
	/* flushed before any error, as qemu's bdrv_img_create does */
	printf("\n");
	flush_stdout();
}

/*
 * What the driver takes: its own options (not the file protocol's extras),
 * each value as qemu hands it over once parsed.
 */
static void
driver_options(const char *fmt, const struct opt_list *o, struct opt_list *out)
{
	const struct opt_desc *d;
	const char *v;
	char buf[32];
	size_t i;

	for (i = 0; i < o->n; i++) {
		if ((d = find_desc(img_create_opts(fmt), o->v[i].key)) == NULL)
			continue;
		if (opt_check(d, o->v[i].val, buf, sizeof(buf), &v) == 0)
			opt_list_set(out, d->name, v);
	}
}

/* qemu_opt_get_size(opts, "cluster_size", 0) != 0: given, or a default */
static bool
has_cluster_size(const struct desc_list *l, const struct opt_list *o)
{
	const struct opt_desc *d = desc_find(l, "cluster_size");
	const char *v = opt_list_get(o, "cluster_size");

	if (d == NULL || (v == NULL && (v = d->def) == NULL))
		return false;
	return value_number(d, v) != 0;
}

/* bdrv_img_create */
static void
create(const char *file, const struct create_args *a, int64_t size)
{
	struct opt_list o = { 0, NULL }, drv = { 0, NULL };
	struct desc_list l;
	const char *v, *proto;
	char buf[32];
	uint64_t u;

	if (!img_format_known(a->fmt))
		die("%s: Unknown file format '%s'", file, a->fmt);
	proto = find_protocol(file, true);
	if (img_create_opts(a->fmt) == NULL)
		die("%s: Format driver '%s' does not support image creation",
		    file, a->fmt);
	if (proto != NULL)
		die("%s: Protocol driver '%s' does not support image creation",
		    file, proto);
	build_descs(&l, a->fmt, true);
	if (a->options != NULL)
		parse_options(file, a->options, &l, &o);
	if ((v = opt_list_get(&o, "size")) != NULL) {
		if (size >= 0)
			die("%s: The image size must be specified only once",
			    file);
		opt_size(v, &u);
		size = (int64_t)u;
	} else if (size >= 0) {
		snprintf(buf, sizeof(buf), "%lld", (long long)size);
		opt_list_set(&o, "size", buf);
	}
	set_backing(file, a, &o);
	if ((v = opt_list_get(&o, "backing_file")) != NULL) {
		if (!a->no_backing)
			check_backing(file, v, &o, &size);
		else if (opt_list_get(&o, "backing_fmt") == NULL)
			die("%s: Backing file specified without backing format",
			    file);
	}
	if (size < 0)
		die("%s: Image creation needs a size parameter", file);
	if (!a->quiet)
		print_formatting(file, a->fmt, &l, &o);
	driver_options(a->fmt, &o, &drv);
	if (img_create(file, a->fmt, (uint64_t)size, &drv) < 0) {
		if (err_errno() == EFBIG)
			die("%s: The image size is too large for file format "
			    "'%s'%s", file, a->fmt, has_cluster_size(&l, &o) ?
			    " (try using a larger cluster size)" : "");
		die("%s", err_msg());
	}
	opt_list_free(&drv);
	opt_list_free(&o);
}

int
main(int argc, char *argv[])
{
	struct create_args a = { .fmt = "raw" };
	int64_t size = -1;
	const char *file;
	int c;

	prog_init(argv[0]);
	while ((c = getopt_long(argc, argv, shortopts, longopts,
	    NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'F':
			a.base_fmt = optarg;
			break;
		case 'b':
			a.base = optarg;
			break;
		case 'f':
			a.fmt = optarg;
			break;
		case 'o':
			accumulate(&a, optarg);
			break;
		case 'q':
			a.quiet = true;
			break;
		case 'u':
			a.no_backing = true;
			break;
		case OPT_OBJECT:
			object_add_or_exit(optarg, 1);
			break;
		case OPT_LONG:
		case OPT_SHORT:
			opt_print_options(longopts, shortopts, c == OPT_LONG);
		default:
			opt_usage_error(c, argv);
		}
	}
	file = optind < argc ? argv[optind] : NULL;
	if (a.options != NULL && has_help(a.options)) {
		free(a.options);
		return option_help(file, a.fmt);
	}
	if (optind >= argc)
		die_usage("Expecting image file name");
	if (++optind < argc)
		size = (int64_t)parse_image_size(argv[optind++]);
	if (optind != argc)
		die_usage("Unexpected argument: %s", argv[optind]);
	create(file, &a, size);
	free(a.options);
	return close_stdout();
}
