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
	IO_BLOCK_STATUS };

/*
 * Error injection (formats/blkdebug.c): when set, asked before each request
 * on an fd; a non-zero answer is the errno the request fails with.  NULL
 * (no blkdebug image open) costs one test per request.
 */
extern int	(*io_fault)(int fd, int type, uint64_t off, uint64_t len);
/* io_fault's answer for a request made without io_pread/io_pwrite; 0 or -1 (errno). */
int	io_fault_check(int fd, int type, uint64_t off, uint64_t len);

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
