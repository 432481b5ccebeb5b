/* qemu's image locking: OFD locks on bytes 100+n and 200+n of an image file. */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "lock.h"

/* One locked file: its own open file description carries every lock. */
struct lock_file {
	dev_t			 dev;
	ino_t			 ino;
	int			 fd;
	unsigned		 perm;		/* bytes 100+n held */
	unsigned		 unshared;	/* bytes 200+n held */
	struct lock_file	*next;
};

/* One user of a file: an open image, known by its descriptor. */
struct lock_user {
	int			 fd;
	struct lock_file	*file;
	unsigned		 perm, unshared;
	struct lock_user	*next;
};

static struct lock_file *files;
static struct lock_user *users;

static const char *const perm_names[] = {
	"consistent read", "write", "write unchanged", "resize",
};

static int
set_byte(int fd, int off, short type)
{
	struct flock fl = {
		.l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = 1,
	};

	return fcntl(fd, F_OFD_SETLK, &fl);
}

/* 1: another description holds a lock on byte off; 0: none; -1: errno */
static int
test_byte(int fd, int off)
{
	struct flock fl = {
		.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1,
	};

	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -1;
	return fl.l_type != F_UNLCK;
}

static bool
unsupported(int e)
{
	return e == EINVAL || e == EOPNOTSUPP || e == ENOLCK || e == ENOSYS;
}

/* qemu's raw_lock_error_setg: the message, and its hint when locked */
static int
lock_error(int e, const char *name, int depth, const char *what, int i)
{
	char pre[256] = "";
	int n;

	for (n = 0; n < depth && strlen(pre) + 30 < sizeof(pre); n++)
		strcat(pre, "Could not open backing file: ");
	if (e == EAGAIN || e == EACCES)
		return err_set(0, "%s%s%s%s\nIs another process using the image [%s]?",
		    pre, what, i >= 0 ? perm_names[i] : "",
		    i >= 0 ? "\" lock" : "", name);
	return err_set(e, "%s%s%s%s", pre, what, i >= 0 ? perm_names[i] : "",
	    i >= 0 ? "\" lock" : "");
}

/* Lock (or unlock) the bytes of the bits in set but not in have. */
static int
apply(struct lock_file *f, unsigned perm, unsigned unshared, short type,
    int *failed)
{
	int i;

	for (i = 0; i < 4; i++) {
		if ((perm & 1u << i) && !(f->perm & 1u << i) &&
		    set_byte(f->fd, LOCK_PERM_BASE + i, type) < 0)
			return *failed = LOCK_PERM_BASE + i, -1;
		if ((perm & 1u << i) && !(f->perm & 1u << i))
			f->perm |= 1u << i;
	}
	for (i = 0; i < 4; i++) {
		if ((unshared & 1u << i) && !(f->unshared & 1u << i) &&
		    set_byte(f->fd, LOCK_SHARED_BASE + i, type) < 0)
			return *failed = LOCK_SHARED_BASE + i, -1;
		if ((unshared & 1u << i) && !(f->unshared & 1u << i))
			f->unshared |= 1u << i;
	}
	return 0;
}

/* Drop the locks the file's users no longer need; close it when unused. */
static void
settle(struct lock_file *f)
{
	struct lock_file **pf;
	struct lock_user *u;
	unsigned perm = 0, unshared = 0;
	int i;

	for (u = users; u != NULL; u = u->next)
		if (u->file == f) {
			perm |= u->perm;
			unshared |= u->unshared;
		}
	for (i = 0; i < 4; i++) {
		if ((f->perm & ~perm & 1u << i) &&
		    set_byte(f->fd, LOCK_PERM_BASE + i, F_UNLCK) == 0)
			f->perm &= ~(1u << i);
		if ((f->unshared & ~unshared & 1u << i) &&
		    set_byte(f->fd, LOCK_SHARED_BASE + i, F_UNLCK) == 0)
			f->unshared &= ~(1u << i);
	}
	if (perm != 0 || unshared != 0)
		return;
	for (pf = &files; *pf != f; pf = &(*pf)->next)
		;
	*pf = f->next;
	close(f->fd);
	free(f);
}

static struct lock_file *
find_file(int fd)
{
	struct lock_file *f;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return NULL;
	for (f = files; f != NULL; f = f->next)
		if (f->dev == st.st_dev && f->ino == st.st_ino)
			return f;
	f = xcalloc(1, sizeof(*f));
	if ((f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		free(f);
		return NULL;
	}
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->next = files;
	files = f;
	return f;
}

/* The first of our wants that another process's locks refuse, as qemu checks. */
static int
check(struct lock_file *f, unsigned perm, unsigned unshared, const char **what)
{
	int i, r;

	for (i = 0; i < 4; i++)
		if ((perm & 1u << i) &&
		    (r = test_byte(f->fd, LOCK_SHARED_BASE + i)) != 0) {
			*what = "Failed to get \"";
			return r < 0 ? -1 : i;
		}
	for (i = 0; i < 4; i++)
		if ((unshared & 1u << i) &&
		    (r = test_byte(f->fd, LOCK_PERM_BASE + i)) != 0) {
			*what = "Failed to get shared \"";
			return r < 0 ? -1 : i;
		}
	return 4;
}

static void
drop_user(struct lock_user *u)
{
	struct lock_user **pu;
	struct lock_file *f = u->file;

	for (pu = &users; *pu != u; pu = &(*pu)->next)
		;
	*pu = u->next;
	free(u);
	settle(f);
}

int
lock_take(int fd, const char *name, unsigned perm, unsigned shared, int depth)
{
	unsigned unshared = ~shared & LOCK_PERM_ALL;
	struct lock_user *u;
	struct lock_file *f;
	const char *what;
	char buf[32];
	int failed, i, e;

	perm &= LOCK_PERM_ALL;
	if (fd < 0 || (perm == 0 && unshared == 0))
		return 0;
	if ((f = find_file(fd)) == NULL)
		return unsupported(errno) ? 0 : lock_error(errno, name, depth,
		    "Could not lock the image file", -1);
	u = xcalloc(1, sizeof(*u));
	*u = (struct lock_user){ fd, f, perm, unshared, users };
	users = u;
	if (apply(f, perm, unshared, F_RDLCK, &failed) < 0) {
		e = errno;
		drop_user(u);
		if (unsupported(e))
			return 0;
		snprintf(buf, sizeof(buf), "Failed to lock byte %d", failed);
		return lock_error(e, name, depth, buf, -1);
	}
	if ((i = check(f, perm, unshared, &what)) == 4)
		return 0;
	e = i < 0 ? errno : EAGAIN;
	drop_user(u);
	if (i < 0 && unsupported(e))
		return 0;
	if (i < 0)
		return lock_error(e, name, depth, "Failed to check lock bytes", -1);
	return lock_error(e, name, depth, what, i);
}

int
lock_image(int fd, const char *name, bool rdwr, bool share, bool metadata,
    int depth)
{
	unsigned perm = LOCK_PERM_CONSISTENT_READ, shared = LOCK_PERM_ALL;

	if (share && rdwr)
		return 0;	/* qemu refuses force-share for writing */
	if (rdwr)
		perm |= LOCK_PERM_WRITE | (metadata ? LOCK_PERM_RESIZE : 0);
	/* a format's metadata: nobody else may write or resize its file */
	if (metadata && !share)
		shared &= ~(LOCK_PERM_WRITE | LOCK_PERM_RESIZE);
	return lock_take(fd, name, perm, shared, depth);
}

void
lock_drop(int fd)
{
	struct lock_user **pu, *u;
	struct lock_file *f;

	for (pu = &users; *pu != NULL; ) {
		if ((u = *pu)->fd != fd) {
			pu = &u->next;
			continue;
		}
		*pu = u->next;
		f = u->file;
		free(u);
		settle(f);
	}
}
