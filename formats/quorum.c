/*
 * qemu's quorum node below a format (block/quorum.c), as far as img goes:
 * the children are copies of one file, reads come from the first, and the
 * node has no folder for relative names (bdrv_dirname fails on it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/json.h"
#include "blkdebug.h"
#include "img.h"
#include "quorum.h"

bool
quorum_file(const struct opt_list *o)
{
	const char *d = opt_list_get(o, "file.driver");

	return d != NULL && strcmp(d, "quorum") == 0;
}

static const char *
child(const struct opt_list *o, unsigned i, const char *key)
{
	char *k = xasprintf("file.children.%u.%s", i, key);
	const char *v = opt_list_get(o, k);

	free(k);
	return v;
}

/* The children's files, each opened as qemu does; the first one's name. */
const char *
quorum_check(const struct opt_list *o)
{
	const char *t = opt_list_get(o, "file.vote-threshold"), *f, *d;
	long threshold = t != NULL ? strtol(t, NULL, 10) : 0;
	unsigned n;
	int fd;

	if (threshold < 1) {
		err_set(0, "Parameter 'vote-threshold' expects a value >= 1");
		return NULL;
	}
	for (n = 0; (f = child(o, n, "filename")) != NULL; n++) {
		if ((d = child(o, n, "driver")) != NULL && strcmp(d, "file")) {
			err_set(0, "Unknown driver '%s'", d);
			return NULL;
		}
		if ((fd = open(f, O_RDONLY | O_CLOEXEC)) < 0) {
			err_set(errno, "Could not open '%s'", f);
			return NULL;
		}
		close(fd);
	}
	if (n == 0) {
		err_set(0, "Number of provided children must be 1 or more");
		return NULL;
	}
	if (threshold > (long)n) {
		err_set(0, "threshold may not exceed children count");
		return NULL;
	}
	return child(o, 0, "filename");
}

int
quorum_writable(const struct opt_list *o, int flags)
{
	if ((flags & IMG_RDWR) && child(o, 1, "filename") != NULL)
		return err_set(0, "quorum: writing to a node of several "
		    "children is not supported");
	return 0;
}

int64_t
quorum_copies_size(const struct opt_list *o)
{
	struct stat st;
	const char *f;
	int64_t sum = 0;
	unsigned i;

	for (i = 1; (f = child(o, i, "filename")) != NULL; i++)
		if (stat(f, &st) == 0)
			sum += (int64_t)st.st_blocks * 512;
	return sum;
}

char *
quorum_name(const struct opt_list *o, const char *fmt)
{
	struct jnode *top = jn_new_obj(), *q, *arr, *c;
	const char *f;
	char *key;
	unsigned i;

	if (fmt != NULL) {
		jn_str(top, "driver", fmt);
		q = jn_obj(top, "file");
	} else {
		q = top;
	}
	arr = jn_arr(q, "children");
	for (i = 0; (f = child(o, i, "filename")) != NULL; i++) {
		c = jn_obj(arr, NULL);
		jn_str(c, "driver", "file");
		jn_str(c, "filename", f);
	}
	jn_str(q, "driver", "quorum");
	key = xstrdup("file.vote-threshold");
	blkdbg_member(q, "vote-threshold", key, opt_list_get(o, key));
	free(key);
	return blkdbg_json_name(top);
}
