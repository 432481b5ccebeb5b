/* img-snapshot: list, create, apply and delete internal snapshots, as qemu-img snapshot. */
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "../formats/img.h"
#include "../lib/err.h"
#include "../lib/human.h"
#include "../lib/secret.h"

static const char usage_text[] =
    "usage: img-snapshot [--object objectdef] [--image-opts] [-U] [-q]\n"
    "                    [-l | -a snapshot | -c snapshot | -d snapshot] "
    "filename\n";

enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS, OPT_LONG, OPT_SHORT };

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "object", required_argument, NULL, OPT_OBJECT },
	{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
	{ "force-share", no_argument, NULL, 'U' },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = ":a:c:d:hlqU";

/* qemu's QEMUSnapshotInfo name holds 256 bytes */
#define SNAP_NAME_MAX	255

struct args {
	int		 action;	/* 0, 'l', 'a', 'c' or 'd' */
	const char	*name;
	const char	*filename;
	int		 flags;
	bool		 image_opts;
};

static _Noreturn void
usage(void)
{
	printf("%s\nList, create, apply or delete the internal snapshots of an "
	    "image.\n\n"
	    "  -l                  list the snapshots\n"
	    "  -c SNAPSHOT         create a snapshot of the current disk\n"
	    "  -a SNAPSHOT         apply (revert to) a snapshot, by id or name\n"
	    "  -d SNAPSHOT         delete the snapshot with that name\n"
	    "  -U, --force-share   open the image shared (only with -l)\n"
	    "  -q                  quiet\n"
	    "      --image-opts    FILENAME is an option list "
	    "(driver=...,file.filename=...)\n"
	    "      --object OBJDEF accepted for qemu-img compatibility\n"
	    "  -h, --help          show this help\n"
	    "\nSee img-snapshot(1).\n", usage_text);
	exit(close_stdout());
}

static void
parse(struct args *a, int argc, char **argv)
{
	int c;

	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'l':
		case 'a':
		case 'c':
		case 'd':
			if (a->action)
				die_usage("Cannot mix '-l', '-a', '-c', '-d'");
			a->action = c;
			a->name = optarg;
			break;
		case 'q':
			break;
		case 'U':
			a->flags |= IMG_SHARE;
			break;
		case OPT_OBJECT:
			object_add_or_exit(optarg, 1);
			break;
		case OPT_IMAGE_OPTS:
			a->image_opts = true;
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
	a->filename = argv[optind];
}

/*
 * Report a failure after the image is open: the error, then what closing
 * the image says (as qemu-img's blk_unref after error_report), exit 1.
 */
static _Noreturn PRINTF(2, 3) void
fail(struct img *img, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	warn_msg("%s", msg);
	img_close_report(img, warn_line, NULL);
	exit(1);
}

/* dump_snapshots: nothing at all when there are none */
static void
list(struct img *img)
{
	struct img_snapshot *sn;
	struct human_snap h;
	size_t i, n;

	if (img_snapshot_list(img, &sn, &n) < 0)
		fail(img, "%s", err_msg());
	if (n == 0)
		return;
	printf("Snapshot list:\n");
	human_snap_header(stdout);
	putchar('\n');
	for (i = 0; i < n; i++) {
		h.id = sn[i].id;
		h.name = sn[i].name;
		h.vm_state_size = sn[i].vm_state_size;
		h.date_sec = sn[i].date_sec;
		h.vm_clock_nsec = sn[i].vm_clock_nsec;
		h.icount = sn[i].icount;
		human_snap_row(stdout, &h);
		putchar('\n');
	}
	img_snapshots_free(sn, n);
}

static void
create(struct img *img, const char *name)
{
	struct img_snapshot sn;
	struct timeval tv;
	char buf[SNAP_NAME_MAX + 1];

	memset(&sn, 0, sizeof(sn));
	snprintf(buf, sizeof(buf), "%s", name);
	sn.name = buf;
	gettimeofday(&tv, NULL);
	sn.date_sec = tv.tv_sec;
	sn.date_nsec = (uint32_t)tv.tv_usec * 1000;
	sn.icount = 0;		/* qemu-img leaves it zeroed, not -1 */
	if (img_snapshot_create(img, &sn) < 0)
		fail(img, "Could not create snapshot '%s': %d (%s)",
		    name, -err_errno(), strerror(err_errno()));
}

int
main(int argc, char *argv[])
{
	struct args a = { .action = 0 };
	const char *msg, *nl;
	struct img_snapshot *sn;
	struct img *img;
	size_t n;
	int flags;

	prog_init(argv[0]);
	parse(&a, argc, argv);
	flags = a.flags | (a.action == 'l' ? 0 : IMG_RDWR);
	if ((flags & IMG_SHARE) && (flags & IMG_RDWR))
		die("Could not open '%s': force-share=on can only be used with "
		    "read-only images", a.filename);
	img = a.image_opts ? img_open_image_opts(a.filename, flags) :
	    img_open(a.filename, NULL, flags);
	if (img == NULL)
		die("%s", err_msg());
	/* qemu reads the snapshot table when it opens the image */
	if (img_snapshot_list(img, &sn, &n) < 0)
		fail(img, "%s", err_msg());
	img_snapshots_free(sn, n);
	switch (a.action) {
	case 'l':
		list(img);
		break;
	case 'c':
		create(img, a.name);
		break;
	case 'a':
		/* qemu reopens a probed raw image to apply: its warning twice */
		if (img->probed && strcmp(img_format(img), "raw") == 0)
			fprintf(stderr, "WARNING: Image format was not specified "
			    "for '%s' and probing guessed raw.\n"
			    "         Automatically detecting the format is "
			    "dangerous for raw images, write operations on block 0 "
			    "will be restricted.\n"
			    "         Specify the 'raw' format explicitly to remove "
			    "the restrictions.\n", a.filename);
		if (img_snapshot_apply(img, a.name) < 0) {
			/* a cause qemu reports first comes on a line before */
			msg = err_msg();
			if ((nl = strchr(msg, '\n')) != NULL) {
				fprintf(stderr, "%s: %.*s\n", prog_name(),
				    (int)(nl - msg), msg);
				msg = nl + 1;
			}
			fail(img, "Could not apply snapshot '%s': %s", a.name, msg);
		}
		break;
	case 'd':
		if (img_snapshot_delete(img, a.name) < 0)
			fail(img, "Could not delete snapshot '%s': %s",
			    a.name, err_msg());
		break;
	}
	img_close_report(img, warn_line, NULL);
	return close_stdout();
}
