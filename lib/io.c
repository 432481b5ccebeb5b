/* I/O helpers. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "io.h"

int (*io_fault)(int fd, int type, uint64_t off, uint64_t len);

int
io_fault_check(int fd, int type, uint64_t off, uint64_t len)
{
	int e;

	if (io_fault == NULL || (e = io_fault(fd, type, off, len)) == 0)
		return 0;
	errno = e;
	return -1;
}

ssize_t
io_pread(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	ssize_t r;

	if (off > INT64_MAX || len > INT64_MAX - off) {
		errno = EINVAL;
		return -1;
	}
	if (io_fault != NULL && io_fault_check(fd, IO_READ, off, len) < 0)
		return -1;
	while (done < len) {
		r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

int
io_pread_zero(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t r = io_pread(fd, buf, len, off);

	if (r < 0)
		return -1;
	if ((size_t)r < len)
		memset((char *)buf + r, 0, len - (size_t)r);
	return 0;
}

int
io_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	ssize_t r;

	if (off > INT64_MAX || len > INT64_MAX - off) {
		errno = EFBIG;
		return -1;
	}
	if (io_fault != NULL && io_fault_check(fd, IO_WRITE, off, len) < 0)
		return -1;
	while (done < len) {
		r = pwrite(fd, (const char *)buf + done, len - done,
		    (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0) {
			errno = ENOSPC;
			return -1;
		}
		done += (size_t)r;
	}
	return 0;
}

ssize_t
io_read(int fd, void *buf, size_t len)
{
	size_t done = 0;
	ssize_t r;

	while (done < len) {
		r = read(fd, (char *)buf + done, len - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

int
io_write(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	ssize_t r;

	while (done < len) {
		r = write(fd, (const char *)buf + done, len - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)r;
	}
	return 0;
}

bool
is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t i;

	/* Check a short head byte by byte, then compare the buffer with itself shifted. */
	for (i = 0; i < len && i < 16; i++)
		if (p[i])
			return false;
	return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}

void *
io_alloc(size_t len)
{
	void *p;

	if (posix_memalign(&p, IO_ALIGN, len ? len : IO_ALIGN) != 0)
		die("out of memory");
	return p;
}

void
io_pipe_grow(int fd)
{
#ifdef F_SETPIPE_SZ
	(void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
#else
	(void)fd;
#endif
}
