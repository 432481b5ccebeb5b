/* I/O helpers. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "err.h"
#include "int.h"
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

ssize_t (*io_copies)(int fd, const struct io_req *r);

/* The nodes below formats that hook requests (quorum, blkverify). */
static ssize_t (*copies[4])(int fd, const struct io_req *r);

/* Each hook in turn, until one owns fd. */
static ssize_t
copies_any(int fd, const struct io_req *r)
{
	ssize_t n;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(copies); i++)
		if (copies[i] != NULL &&
		    (n = copies[i](fd, r)) != IO_NOT_COPIES)
			return n;
	return IO_NOT_COPIES;
}

void
io_copies_add(ssize_t (*hook)(int, const struct io_req *))
{
	size_t i, free_slot = ARRAY_SIZE(copies);

	for (i = 0; i < ARRAY_SIZE(copies); i++) {
		if (copies[i] == hook)
			return;
		if (copies[i] == NULL && free_slot == ARRAY_SIZE(copies))
			free_slot = i;
	}
	/* a slot per kind of node */
	assert(free_slot < ARRAY_SIZE(copies));
	copies[free_slot] = hook;
	io_copies = copies_any;
}

void
io_copies_del(ssize_t (*hook)(int, const struct io_req *))
{
	size_t i;
	bool any = false;

	for (i = 0; i < ARRAY_SIZE(copies); i++) {
		if (copies[i] == hook)
			copies[i] = NULL;
		any |= copies[i] != NULL;
	}
	if (!any)
		io_copies = NULL;
}

/* The request through io_copies, else on fd itself. */
static ssize_t
io_req(int fd, const struct io_req *r)
{
	ssize_t n;

	if (io_copies != NULL && (n = io_copies(fd, r)) != IO_NOT_COPIES)
		return n;
	return io_do(fd, r);
}

static ssize_t
do_read(int fd, const struct io_req *q)
{
	size_t done = 0;
	ssize_t r;

	while (done < q->len) {
		r = pread(fd, (char *)q->buf + done, q->len - done,
		    (off_t)(q->off + done));
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

static int
do_write(int fd, const struct io_req *q)
{
	struct iovec v[64];
	uint64_t off = q->off, skip = 0;
	ssize_t r;
	int i = 0, n;

	/* pwritev takes up to 64 buffers a turn here, the first cut by skip */
	while (off - q->off < q->len && i < q->iovcnt) {
		for (n = 0; n < 64 && i + n < q->iovcnt; n++)
			v[n] = q->iov[i + n];
		v[0].iov_base = (char *)v[0].iov_base + skip;
		v[0].iov_len -= skip;
		r = pwritev(fd, v, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			errno = ENOSPC;
			return -1;
		}
		off += (uint64_t)r;
		for (r += (ssize_t)skip; i < q->iovcnt &&
		    (size_t)r >= q->iov[i].iov_len; i++)
			r -= (ssize_t)q->iov[i].iov_len;
		skip = (uint64_t)r;
	}
	return 0;
}

ssize_t
io_do(int fd, const struct io_req *r)
{
	switch (r->type) {
	case IO_READ:
		return do_read(fd, r);
	case IO_WRITE:
		return do_write(fd, r);
	case IO_WRITE_ZEROES:
	case IO_DISCARD:
		return fallocate(fd, r->mode, (off_t)r->off, (off_t)r->len);
	case IO_FLUSH:
		return r->mode ? fsync(fd) : fdatasync(fd);
	case IO_TRUNCATE:
		return ftruncate(fd, (off_t)r->off);
	}
	errno = EINVAL;
	return -1;
}

ssize_t
io_pread(int fd, void *buf, size_t len, uint64_t off)
{
	struct io_req r = { .type = IO_READ, .buf = buf, .off = off,
	    .len = len };

	if (off > INT64_MAX || len > INT64_MAX - off) {
		errno = EINVAL;
		return -1;
	}
	if (io_fault != NULL && io_fault_check(fd, IO_READ, off, len) < 0)
		return -1;
	return io_req(fd, &r);
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
	struct iovec v = { (void *)(uintptr_t)buf, len };

	return io_pwritev(fd, &v, 1, off);
}

int
io_pwritev(int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct io_req r = { .type = IO_WRITE, .iov = iov, .iovcnt = iovcnt,
	    .off = off };
	int i;

	for (i = 0; i < iovcnt; i++)
		r.len += iov[i].iov_len;
	if (off > INT64_MAX || r.len > INT64_MAX - off) {
		errno = EFBIG;
		return -1;
	}
	if (io_fault != NULL && io_fault_check(fd, IO_WRITE, off, r.len) < 0)
		return -1;
	return (int)io_req(fd, &r);
}

int
io_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
	struct io_req r = { .type = IO_WRITE_ZEROES, .off = off, .len = len,
	    .mode = mode };

	return (int)io_req(fd, &r);
}

int
io_discard(int fd, uint64_t off, uint64_t len)
{
	struct io_req r = { .type = IO_DISCARD, .off = off, .len = len,
	    .mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE };

	return (int)io_req(fd, &r);
}

int
io_ftruncate(int fd, uint64_t size)
{
	struct io_req r = { .type = IO_TRUNCATE, .off = size };

	if (size > INT64_MAX) {
		errno = EFBIG;
		return -1;
	}
	return (int)io_req(fd, &r);
}

int
io_extend(int fd, uint64_t size)
{
	struct io_req r = { .type = IO_TRUNCATE, .off = size, .mode = 1 };

	if (size > INT64_MAX) {
		errno = EFBIG;
		return -1;
	}
	return (int)io_req(fd, &r);
}

int
io_fdatasync(int fd)
{
	struct io_req r = { .type = IO_FLUSH };

	return (int)io_req(fd, &r);
}

int
io_fsync(int fd)
{
	struct io_req r = { .type = IO_FLUSH, .mode = 1 };

	return (int)io_req(fd, &r);
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
