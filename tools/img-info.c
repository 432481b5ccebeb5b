/*
 * img-info: describe an image or its backing chain, as qemu-img info
 * (qemu-img.c img_info, block/qapi.c bdrv_image_info_dump).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/img.h"
#include "../lib/err.h"
#include "../lib/human.h"
#include "../lib/json.h"
#include "../lib/opt.h"

static const char usage_text[] =
    "usage: img-info [--object objectdef] [--image-opts] [-f fmt] "
    "[--output=ofmt]\n"
    "                [--backing-chain] [-U] filename\n";

#define NSEC	1000000000ULL

enum {
	OPT_OUTPUT = 256, OPT_BACKING_CHAIN, OPT_OBJECT, OPT_IMAGE_OPTS,
	OPT_LONG, OPT_SHORT,
};

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "format", required_argument, NULL, 'f' },
	{ "output", required_argument, NULL, OPT_OUTPUT },
	{ "backing-chain", no_argument, NULL, OPT_BACKING_CHAIN },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "force-share", no_argument, NULL, 'U' },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":f:hU";

struct info_args {
	const char	*fmt;
	const char	*output;
	bool		 chain;
	bool		 image_opts;
	int		 flags;
};

static _Noreturn void
usage(void)
{
	printf("%s\nDescribe a disk image, or with --backing-chain every image "
	    "of its chain.\n\n"
	    "Options:\n"
	    "  -f, --format FMT       the image's format (default: probe)\n"
	    "      --output=OFMT      human (default) or json\n"
	    "      --backing-chain    describe the whole backing chain\n"
	    "      --image-opts       FILENAME is an option list "
	    "(driver=...,file.filename=...)\n"
	    "      --object OBJDEF    accepted for qemu-img compatibility\n"
	    "  -U, --force-share      open the image in shared mode\n"
	    "  -h, --help             show this help\n"
	    "\nSee img-info(1).\n", usage_text);
	exit(close_stdout());
}

/* bdrv_get_specific_info's {"type": FMT, "data": {...}} from the driver's */
static struct jnode *
specific_node(struct img *img, struct jnode *spec)
{
	struct jnode *wrap;

	if (jn_get(spec, "type") != NULL && jn_get(spec, "data") != NULL)
		return spec;
	wrap = jn_new_obj();
	jn_str(wrap, "type", img_format(img));
	jn_add(wrap, "data", spec);
	return wrap;
}

/* SnapshotInfo list; frees the driver's array */
static void
add_snapshots(struct jnode *j, struct img_info *info)
{
	struct img_snapshot *sn;
	struct jnode *arr, *o;
	size_t i;

	arr = jn_arr(j, "snapshots");
	for (i = 0; i < info->nb_snapshots; i++) {
		sn = &info->snapshots[i];
		o = jn_obj(arr, NULL);
		jn_str(o, "id", sn->id);
		jn_str(o, "name", sn->name);
		jn_int(o, "vm-state-size", (int64_t)sn->vm_state_size);
		jn_int(o, "date-sec", sn->date_sec);
		jn_int(o, "date-nsec", sn->date_nsec);
		jn_int(o, "vm-clock-sec", (int64_t)(sn->vm_clock_nsec / NSEC));
		jn_int(o, "vm-clock-nsec", (int64_t)(sn->vm_clock_nsec % NSEC));
		if (sn->icount != UINT64_MAX)
			jn_int(o, "icount", (int64_t)sn->icount);
		free(sn->id);
		free(sn->name);
	}
	free(info->snapshots);
}

/* One layer as QAPI's ImageInfo, members in the schema's order. */
static struct jnode *
layer_info(struct img *img)
{
	struct img_info info;
	struct jnode *j;
	int64_t actual;

	if (img_get_info(img, &info) < 0)
		return NULL;
	j = jn_new_obj();
	jn_str(j, "filename", img->filename);
	jn_str(j, "format", img_format(img));
	if (!info.no_dirty_flag)
		jn_bool(j, "dirty-flag", info.dirty);
	if ((actual = img_actual_size(img)) >= 0)
		jn_int(j, "actual-size", actual);
	jn_int(j, "virtual-size", (int64_t)img->size);
	if (info.cluster_size != 0)
		jn_int(j, "cluster-size", (int64_t)info.cluster_size);
	if (info.encrypted)
		jn_bool(j, "encrypted", true);
	if (img->backing_file != NULL && img->backing_file[0] != '\0') {
		jn_str(j, "backing-filename", img->backing_file);
		if (img->backing_path != NULL)
			jn_str(j, "full-backing-filename", img->backing_path);
		if (img->backing_fmt != NULL && img->backing_fmt[0] != '\0')
			jn_str(j, "backing-filename-format", img->backing_fmt);
	}
	if (info.nb_snapshots > 0)
		add_snapshots(j, &info);
	if (info.specific != NULL)
		jn_add(j, "format-specific", specific_node(img, info.specific));
	return j;
}

static bool
seen(char **names, int n, const char *name)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

/*
 * collect_image_info_list: open each layer alone and follow its backing
 * name ourselves, so a loop is caught by name with qemu's message.
 */
static struct jnode *
collect(const char *filename, const struct info_args *a)
{
	struct jnode *list = jn_new_arr(), *j;
	char *names[IMG_MAX_CHAIN + 1], *fmt = NULL, *name = xstrdup(filename);
	int n = 0, flags = IMG_NO_BACKING | a->flags;
	struct img *img;

	if (a->fmt != NULL)
		fmt = xstrdup(a->fmt);
	while (name != NULL) {
		if (seen(names, n, name))
			die("Backing file '%s' creates an infinite loop.",
			    name);
		if (n == IMG_MAX_CHAIN)
			die("Backing chain of '%s' is deeper than %d images",
			    filename, IMG_MAX_CHAIN);
		names[n++] = name;
		if (n == 1 && a->image_opts)
			img = img_open_image_opts(name, flags);
		else
			img = img_open(name, fmt, flags);
		if (img == NULL || (j = layer_info(img)) == NULL)
			die("%s", err_msg());
		jn_add(list, NULL, j);
		free(fmt);
		fmt = NULL;
		name = NULL;
		if (a->chain && img->backing_path != NULL) {
			name = xstrdup(img->backing_path);
			if (img->backing_fmt != NULL &&
			    img->backing_fmt[0] != '\0')
				fmt = xstrdup(img->backing_fmt);
		}
		img_close(img);
	}
	while (n > 0)
		free(names[--n]);
	return list;
}

static const char *
jstr(const struct jnode *j, const char *key)
{
	const struct jnode *m = jn_get(j, key);

	return m != NULL ? m->s : NULL;
}

static int64_t
jint(const struct jnode *j, const char *key)
{
	const struct jnode *m = jn_get(j, key);

	return m != NULL ? m->i : -1;
}

/* bdrv_snapshot_dump of each, under qemu's header */
static void
print_snapshots(const struct jnode *arr)
{
	const struct jnode *o;
	struct human_snap sn;

	printf("Snapshot list:\n");
	human_snap_header(stdout);
	printf("\n");
	for (o = arr->child; o != NULL; o = o->next) {
		sn.id = jstr(o, "id");
		sn.name = jstr(o, "name");
		sn.vm_state_size = (uint64_t)jint(o, "vm-state-size");
		sn.date_sec = jint(o, "date-sec");
		sn.vm_clock_nsec = (uint64_t)jint(o, "vm-clock-sec") * NSEC +
		    (uint64_t)jint(o, "vm-clock-nsec");
		sn.icount = (uint64_t)jint(o, "icount");
		human_snap_row(stdout, &sn);
		printf("\n");
	}
}

/* bdrv_image_info_dump */
static void
print_human(const struct jnode *j)
{
	const struct jnode *m;
	char vsize[HUMAN_SIZE_LEN], dsize[HUMAN_SIZE_LEN] = "unavailable";
	const char *bf, *full;

	human_size(jn_get(j, "virtual-size")->i, vsize, sizeof(vsize));
	if ((m = jn_get(j, "actual-size")) != NULL)
		human_size((uint64_t)m->i, dsize, sizeof(dsize));
	printf("image: %s\nfile format: %s\nvirtual size: %s (%lld bytes)\n"
	    "disk size: %s\n", jstr(j, "filename"), jstr(j, "format"), vsize,
	    (long long)jn_get(j, "virtual-size")->i, dsize);
	if ((m = jn_get(j, "encrypted")) != NULL && m->b)
		printf("encrypted: yes\n");
	if ((m = jn_get(j, "cluster-size")) != NULL)
		printf("cluster_size: %lld\n", (long long)m->i);
	if ((m = jn_get(j, "dirty-flag")) != NULL && m->b)
		printf("cleanly shut down: no\n");
	if ((bf = jstr(j, "backing-filename")) != NULL) {
		full = jstr(j, "full-backing-filename");
		printf("backing file: %s", bf);
		if (full == NULL)
			printf(" (cannot determine actual path)");
		else if (strcmp(bf, full) != 0)
			printf(" (actual path: %s)", full);
		printf("\n");
		if ((bf = jstr(j, "backing-filename-format")) != NULL)
			printf("backing file format: %s\n", bf);
	}
	if ((m = jn_get(j, "snapshots")) != NULL)
		print_snapshots(m);
	if ((m = jn_get(j, "format-specific")) != NULL) {
		printf("Format specific information:\n");
		json_dump_human(stdout, jn_get(m, "data"), 1);
	}
}

static void
print_list(const struct jnode *list, int output, bool chain)
{
	const struct jnode *j;

	if (output == OUT_JSON) {
		json_print(stdout, chain ? list : list->child, true);
		printf("\n");
		return;
	}
	for (j = list->child; j != NULL; j = j->next) {
		if (j != list->child)
			printf("\n");
		print_human(j);
	}
}

int
main(int argc, char *argv[])
{
	struct info_args a = { .fmt = NULL };
	struct jnode *list;
	int c, output = OUT_HUMAN;

	prog_init(argv[0]);
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'f':
			a.fmt = optarg;
			break;
		case 'U':
			a.flags |= IMG_SHARE;
			break;
		case OPT_OUTPUT:
			a.output = optarg;
			break;
		case OPT_BACKING_CHAIN:
			a.chain = true;
			break;
		case OPT_OBJECT:
			break;
		case OPT_IMAGE_OPTS:
			a.image_opts = true;
			break;
		case OPT_LONG:
		case OPT_SHORT:
			opt_print_options(longopts, shortopts, c == OPT_LONG);
		default:
			opt_usage_error(c, argv);
		}
	}
	if (optind != argc - 1)
		die_usage("Expecting one image file name");
	if (a.output != NULL && (output = opt_output(a.output)) < 0)
		die("--output must be used with human or json as argument.");
	if (a.image_opts && a.fmt != NULL)
		die("--image-opts and --format are mutually exclusive");
	list = collect(argv[optind], &a);
	print_list(list, output, a.chain);
	jn_free(list);
	return close_stdout();
}
