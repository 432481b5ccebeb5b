/* I/O helpers: full reads and writes over EINTR and short counts, zero tests. */
#ifndef IMG_IO_H
#define IMG_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IO_BUFSIZE	(4u << 20)	/* data moves in 4 MiB buffers */
#define IO_ALIGN	4096

/* Request types, as qemu's BlkdebugIOType (error injection's iotype). */
enum { IO_READ, IO_WRITE, IO_WRITE_ZEROES, IO_DISCARD, IO_FLUSH,
	IO_BLOCK_STATUS, IO_TRUNCATE };

/*
 * Error injection (formats/blkdebug.c): when set, asked before each request
 * on an fd; a non-zero answer is the errno the request fails with.  NULL
 * (no blkdebug image open) costs one test per request.
 */
extern int	(*io_fault)(int fd, int type, uint64_t off, uint64_t len);
/* io_fault's answer for a request made without io_pread/io_pwrite; 0 or -1 (errno). */
int	io_fault_check(int fd, int type, uint64_t off, uint64_t len);

struct iovec;

/* A request on an fd, as io_copies meets it and io_do makes it. */
struct io_req {
	int			 type;	/* IO_READ, IO_WRITE, ... IO_TRUNCATE */
	void			*buf;	/* IO_READ: len bytes */
	const struct iovec	*iov;	/* IO_WRITE: iovcnt buffers, len bytes */
	int			 iovcnt;
	uint64_t		 off;	/* IO_TRUNCATE: the new size */
	uint64_t		 len;
	/*
	 * IO_WRITE_ZEROES, IO_DISCARD: fallocate's mode; IO_FLUSH: 1 fsync;
	 * IO_TRUNCATE: 1 to grow as writes would (io_extend)
	 */
	int			 mode;
};

/*
 * Copies of one file (formats/quorum.c): when set, each request made with
 * the io_* helpers below goes to it first.  It answers IO_NOT_COPIES for an
 * fd that is not its own, else makes the request on every copy (io_do) and
 * answers what io_do would: bytes read, 0, or -1 with errno.
 */
#define IO_NOT_COPIES	(-2)
extern ssize_t	(*io_copies)(int fd, const struct io_req *r);
/*
 * Register (or drop) one kind of such node's hook: io_copies then asks
 * each registered hook in turn until one owns the fd.
 */
void	io_copies_add(ssize_t (*hook)(int fd, const struct io_req *r));
void	io_copies_del(ssize_t (*hook)(int fd, const struct io_req *r));
/* The request on fd itself, no hook asked: bytes read (IO_READ), 0 or -1 (errno). */
ssize_t	io_do(int fd, const struct io_req *r);
/* Write all of iov at off. 0 or -1 (errno). */
int	io_pwritev(int fd, const struct iovec *iov, int iovcnt, uint64_t off);
/* fallocate(2) (zeroing modes), ftruncate(2), fdatasync(2), fsync(2), as requests io_copies sees. */
int	io_fallocate(int fd, int mode, uint64_t off, uint64_t len);
/* fallocate's hole punch for a discard: copies (io_copies) may ignore it, as qemu's quorum does. */
int	io_discard(int fd, uint64_t off, uint64_t len);
/*
 * io_ftruncate is qemu's bdrv_truncate of a file node, which copies
 * (quorum) refuse with ENOTSUP; io_extend grows a file as writes past its
 * end would (where qemu writes instead), which copies take.
 */
int	io_ftruncate(int fd, uint64_t size);
int	io_extend(int fd, uint64_t size);
int	io_fdatasync(int fd);
int	io_fsync(int fd);

/* Read up to len bytes at off; returns bytes read (short only at EOF), -1 on error (errno). */
ssize_t	io_pread(int fd, void *buf, size_t len, uint64_t off);
/* Read exactly len bytes at off; past EOF reads as zeroes. 0 or -1 (errno). */
int	io_pread_zero(int fd, void *buf, size_t len, uint64_t off);
/* Write exactly len bytes at off. 0 or -1 (errno). */
int	io_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* Stream read: fills buf unless EOF comes first; returns bytes read, -1 on error. */
ssize_t	io_read(int fd, void *buf, size_t len);
/* Stream write of everything. 0 or -1 (errno). */
int	io_write(int fd, const void *buf, size_t len);

bool	is_zero(const void *buf, size_t len);
/* A buffer aligned to IO_ALIGN (for O_DIRECT); free with free(). Exits on failure. */
void	*io_alloc(size_t len);
/* Grow a pipe's buffer (best effort). */
void	io_pipe_grow(int fd);

#endif
