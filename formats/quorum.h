/* qemu's quorum node below a format: copies of one file (formats/quorum.c). */
#ifndef IMG_QUORUM_H
#define IMG_QUORUM_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/opt.h"

/* qemu's message where a quorum node should give a folder */
#define QUORUM_NO_DIR	"Cannot generate a base directory for quorum nodes"

/* Whether the options put a quorum node between the format and its files. */
bool		 quorum_file(const struct opt_list *o);
/*
 * Check the node's options and children as qemu: the first child's
 * file, or NULL with err_set.
 */
const char	*quorum_check(const struct opt_list *o);
struct quorum;

/*
 * The quorum node of options o, its first child open on fd: opens (and
 * locks, as qemu) the other children, checks that they are as long as the
 * first, and from then on every request made with lib/io.c's helpers on
 * fd reaches each child as qemu's quorum makes it.  NULL with err_set.
 */
struct quorum	*quorum_open(const struct opt_list *o, int fd, int flags,
		    bool metadata);
/* The children's fds (the first is the image's own); returns how many. */
int		 quorum_fds(const struct quorum *q, const int **fds);
/* Close the other children (not the first's fd); accepts NULL. */
void		 quorum_free(struct quorum *q);
/*
 * Whether a format fmt image on a quorum resizes from old to size bytes
 * with preallocation prealloc (IMG_PREALLOC_*) as qemu's would: its
 * quorum node cannot truncate, so raw and a preallocating qcow2 fail
 * (err_set, -1); 0 otherwise.
 */
int		 quorum_resize(const char *fmt, uint64_t old, uint64_t size,
		    int prealloc);
/* Disk bytes of the children but the first (qemu's disk size sums all). */
int64_t		 quorum_copies_size(const struct opt_list *o);
/*
 * qemu's json:{...} name for the image of format fmt, or for the quorum
 * node itself (fmt NULL); malloc'd.
 */
char		*quorum_name(const struct opt_list *o, const char *fmt);

#endif
