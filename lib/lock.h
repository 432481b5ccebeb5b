/*
 * qemu's image locking (block/file-posix.c): open file description locks
 * on single bytes of an image file.  A user holding permission n keeps a
 * read lock on byte LOCK_PERM_BASE + n; one that does not share n keeps a
 * read lock on byte LOCK_SHARED_BASE + n.  A new user test-locks the
 * complementary bytes: LOCK_SHARED_BASE + n for each n it wants,
 * LOCK_PERM_BASE + n for each n it does not share.
 *
 * Within one process nothing conflicts (qemu's block layer is one graph):
 * every lock on one file goes through one open file description, the
 * union of what this process's users of the file hold.
 */
#ifndef IMG_LOCK_H
#define IMG_LOCK_H

#include <stdbool.h>

#define LOCK_PERM_BASE		100
#define LOCK_SHARED_BASE	200

/* qemu's BlockPermission bits, in its order */
enum {
	LOCK_PERM_CONSISTENT_READ	= 1 << 0,
	LOCK_PERM_WRITE			= 1 << 1,
	LOCK_PERM_WRITE_UNCHANGED	= 1 << 2,
	LOCK_PERM_RESIZE		= 1 << 3,
	LOCK_PERM_ALL			= (1 << 4) - 1,
};

/*
 * Take perm on fd's file, sharing shared with other processes, and check
 * that no other process holds what we don't share or withholds what we
 * want.  name is the file name for the hint; each of depth levels of
 * backing file adds qemu's "Could not open backing file: ".  Released by
 * lock_drop(fd).  0, or -1 with err_set (qemu's message and hint).  A
 * file system without OFD locks is used unlocked, as qemu's locking=auto.
 */
int	lock_take(int fd, const char *name, unsigned perm, unsigned shared,
	    int depth);
/*
 * The permissions qemu takes on an image file: read-only or read-write,
 * force-share (-U), and whether a format with metadata (not raw) sits on
 * it.  Then lock_take.
 */
int	lock_image(int fd, const char *name, bool rdwr, bool share,
	    bool metadata, int depth);
/* Release what every lock_take on fd holds (nothing held: nothing done). */
void	lock_drop(int fd);

#endif
