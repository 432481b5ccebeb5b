/* img: the dispatcher.  `img NAME ARGS...` runs img-NAME from our folder, else PATH. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../formats/img.h"

#define IMG_VERSION	"0.1"

struct cmd {
	const char	*name;
	const char	*summary;
};

static const struct cmd cmds[] = {
#include "cmdlist.h"
	{ NULL, NULL },
};

static const char usage_text[] =
    "usage: img [-h] [-V] [-T TRACE] COMMAND [ARGS...]\n"
    "       img help COMMAND\n";

static _Noreturn void
usage(void)
{
	const struct cmd *c;

	printf("%s\nDisk image toolkit, command-line compatible with qemu-img 7.2.\n\n"
	    "Commands:\n", usage_text);
	for (c = cmds; c->name; c++)
		printf("  %-10s %s\n", c->name, c->summary);
	printf("\nOptions:\n"
	    "  -h, --help           show this help\n"
	    "  -V, --version        show the version\n"
	    "  -T, --trace OPTS     accepted for qemu-img compatibility, ignored\n"
	    "\nimg NAME is the same as img-NAME. See img(1), img-NAME(1).\n");
	exit(0);
}

static _Noreturn void
version(void)
{
	printf("%s version " IMG_VERSION " (qemu-img 7.2 compatible)\n",
	    prog_name());
	exit(0);
}

/* Our own folder, from /proc/self/exe, so siblings run whatever PATH says. */
static char *
self_dir(void)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	char *slash;

	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	if ((slash = strrchr(buf, '/')) == NULL)
		return NULL;
	*slash = '\0';
	return xstrdup(buf);
}

static _Noreturn void
run(const char *name, int argc, char **argv)
{
	char *prog = xasprintf("img-%s", name), *dir, *path;
	int i;

	if (strchr(name, '/') != NULL || *name == '\0')
		die_usage("Command not found: %s", name);
	argv[0] = prog;
	(void)argc;
	setenv("IMG_PROG", prog_name(), 1);
	if ((dir = self_dir()) != NULL) {
		path = xasprintf("%s/%s", dir, prog);
		execv(path, argv);
		free(path);
		free(dir);
	}
	execvp(prog, argv);
	if (errno == ENOENT) {
		for (i = 0; cmds[i].name; i++)
			if (strcmp(cmds[i].name, name) == 0)
				die("%s: not installed next to %s or on PATH", prog,
				    prog_name());
		die_usage("Command not found: %s", name);
	}
	die_errno("%s", prog);
}

static void
list(int what)
{
	const char *const *f;
	const struct cmd *c;

	if (what == 'c')
		for (c = cmds; c->name; c++)
			puts(c->name);
	else
		for (f = img_format_names(); *f; f++)
			puts(*f);
	exit(close_stdout());
}

enum { OPT_LIST_COMMANDS = 256, OPT_LIST_FORMATS, OPT_LONG, OPT_SHORT };

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ "trace", required_argument, NULL, 'T' },
	{ "list-commands", no_argument, NULL, OPT_LIST_COMMANDS },
	{ "list-formats", no_argument, NULL, OPT_LIST_FORMATS },
	{ "long-options", no_argument, NULL, OPT_LONG },
	{ "short-options", no_argument, NULL, OPT_SHORT },
	{ NULL, 0, NULL, 0 },
};

static const char shortopts[] = "+:hVT:";

int
main(int argc, char *argv[])
{
	int c;

	prog_init(argv[0]);
	if (argc < 2)
		die_usage("Not enough arguments");
	/* "+": stop at the command name; its options are its own */
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage();
		case 'V':
			version();
		case 'T':
			break;
		case OPT_LIST_COMMANDS:
			list('c');
			break;
		case OPT_LIST_FORMATS:
			list('f');
			break;
		case OPT_LONG:
		case OPT_SHORT:
			opt_print_options(longopts, shortopts, c == OPT_LONG);
		default:
			opt_usage_error(c, argv);
		}
	}
	if (optind >= argc)
		return 0;	/* as qemu-img: options (-T) but no command */
	if (strcmp(argv[optind], "help") == 0) {
		char *args[] = { NULL, "--help", NULL };

		if (optind + 1 >= argc)
			usage();
		run(argv[optind + 1], 2, args);
	}
	run(argv[optind], argc - optind, argv + optind);
}
