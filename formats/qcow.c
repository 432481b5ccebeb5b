/*
 * qcow: QEMU Copy-On-Write images, version 1.  A 48-byte big-endian header,
 * the backing file name, an L1 table of L2 table offsets and L2 tables of
 * cluster offsets; bit 63 of an L2 entry marks a cluster compressed with
 * raw deflate, its compressed size in the bits below it.  As qemu's qcow.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../lib/crypto.h"
#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "../lib/secret.h"
#include "blkdebug.h"
#include "fmt.h"

#define QCOW_MAGIC		0x514649fbu	/* "QFI\xfb" */
#define QCOW_VERSION		1
#define QCOW_HEADER_SIZE	48
#define QCOW_CRYPT_NONE		0
#define QCOW_CRYPT_AES		1
#define QCOW_OFLAG_COMPRESSED	(1ULL << 63)
#define QCOW_BACKING_MAX	1023

/* header field offsets */
enum {
	QCOW_H_MAGIC = 0, QCOW_H_VERSION = 4, QCOW_H_BACKING_OFFSET = 8,
	QCOW_H_BACKING_SIZE = 16, QCOW_H_MTIME = 20, QCOW_H_SIZE = 24,
	QCOW_H_CLUSTER_BITS = 32, QCOW_H_L2_BITS = 33, QCOW_H_CRYPT = 36,
	QCOW_H_L1 = 40,
};

struct qcow {
	unsigned	 cluster_bits, l2_bits;
	uint64_t	 cluster_size;
	uint64_t	 l2_size;		/* entries per L2 table */
	uint64_t	 offset_mask;		/* of a compressed entry */
	uint64_t	 l1_offset;
	uint64_t	 l1_size;
	uint64_t	 l1_avail;		/* entries in memory; the rest are 0 */
	uint64_t	*l1;			/* host order */
	uint64_t	*l2;			/* the cached L2 table */
	uint64_t	 l2_offset;		/* 0: none cached */
	uint8_t		*tbuf;			/* an L2 table's bytes */
	uint8_t		*zbuf;			/* compressed bytes */
	uint8_t		*cache;			/* the last decompressed cluster */
	uint64_t	 cache_offset;		/* its entry, UINT64_MAX: none */
	bool		 crypt;			/* AES-CBC, IVs from guest sectors */
	bool		 unlocked;		/* the key is known (not IMG_NO_IO) */
	struct crypto_cipher c;
	struct crypto_ivgen g;
};

static int
qcow_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	if (len < 8)
		return 0;
	return get_be32(buf) == QCOW_MAGIC &&
	    get_be32(buf + QCOW_H_VERSION) == QCOW_VERSION ? 100 : 0;
}

/* Refuse what qemu's qcow_open refuses, in its words and order. */
static int
qcow_check_header(struct img *img, const uint8_t *h)
{
	struct qcow *s = img->priv;
	uint32_t version = get_be32(h + QCOW_H_VERSION);
	uint32_t crypt = get_be32(h + QCOW_H_CRYPT);
	uint64_t size = get_be64(h + QCOW_H_SIZE), shift;
	unsigned cb = h[QCOW_H_CLUSTER_BITS], l2b = h[QCOW_H_L2_BITS];

	if (get_be32(h) != QCOW_MAGIC)
		return err_set(0, "Image not in qcow format");
	if (version != QCOW_VERSION) {
		if (version == 2 || version == 3)
			return err_set(0, "qcow (v%d) does not support qcow "
			    "version %" PRIu32 "\nTry the 'qcow2' driver "
			    "instead.", QCOW_VERSION, version);
		return err_set(0, "qcow (v%d) does not support qcow version %"
		    PRIu32, QCOW_VERSION, version);
	}
	if (size <= 1)
		return err_set(0, "Image size is too small (must be at least 2 "
		    "bytes)");
	if (cb < 9 || cb > 16)
		return err_set(0, "Cluster size must be between 512 and 64k");
	if (l2b < 9 - 3 || l2b > 16 - 3)
		return err_set(0, "L2 table size must be between 512 and 64k");
	if (crypt != QCOW_CRYPT_NONE && crypt != QCOW_CRYPT_AES)
		return err_set(0, "invalid encryption method in qcow header");
	shift = cb + l2b;
	if (size > UINT64_MAX - (1ULL << shift) ||
	    ((size + (1ULL << shift) - 1) >> shift) > INT_MAX / 8)
		return err_set(0, "Image too large");
	s->cluster_bits = cb;
	s->l2_bits = l2b;
	s->cluster_size = 1ULL << cb;
	s->l2_size = 1ULL << l2b;
	s->offset_mask = (1ULL << (63 - cb)) - 1;
	s->l1_size = (size + (1ULL << shift) - 1) >> shift;
	s->l1_offset = get_be64(h + QCOW_H_L1);
	s->crypt = crypt == QCOW_CRYPT_AES;
	img->size = size / 512 * 512;
	return 0;
}

/*
 * The legacy AES key (crypto_qcow_key), IVs from guest sectors.  qemu
 * cannot tell a wrong passphrase: the data just reads as noise.
 */
static int
qcow_unlock(struct img *img)
{
	struct qcow *s = img->priv;
	const char *id = img->open_opts ?
	    opt_list_get(img->open_opts, "encrypt.key-secret") : NULL;
	const char *password;
	int r;

	if (id == NULL)
		return err_set(0, "Parameter 'encrypt.key-secret' is required "
		    "for cipher");
	if ((password = secret_get_utf8(id)) == NULL)
		return -1;
	r = crypto_qcow_key(password, &s->c, &s->g);
	s->unlocked = r == 0;
	return r;
}

static int
qcow_read_backing_name(struct img *img, const uint8_t *h)
{
	uint64_t off = get_be64(h + QCOW_H_BACKING_OFFSET);
	uint32_t len = get_be32(h + QCOW_H_BACKING_SIZE);

	if (off == 0)
		return 0;
	if (len > QCOW_BACKING_MAX)
		return err_set(0, "Backing file name too long");
	img->backing_file = xcalloc(1, len + 1);
	if (off > (uint64_t)INT64_MAX - len ||
	    io_pread_zero(img->fd, img->backing_file, len, off) < 0)
		return err_set(errno ? errno : EINVAL,
		    "Could not read the backing file name");
	return 0;
}

static int
qcow_open(struct img *img)
{
	struct qcow *s = img->priv;
	uint8_t h[QCOW_HEADER_SIZE], *buf;
	uint64_t fsize, len, i;

	if (io_pread_zero(img->fd, h, sizeof(h), 0) < 0)
		return err_set(errno, "Could not read the qcow header");
	if (qcow_check_header(img, h) < 0 ||
	    (s->crypt && !(img->flags & IMG_NO_IO) && qcow_unlock(img) < 0))
		return -1;
	if (img->open_opts != NULL &&
	    opt_list_get(img->open_opts, "encrypt.key-secret") != NULL)
		fmt_json_name(img, "encrypt.key-secret",
		    opt_list_get(img->open_opts, "encrypt.key-secret"));
	/*
	 * qemu reads a table past the end of the file as zeroes: only the
	 * entries the file holds are kept, so a hostile header cannot make
	 * us take more memory than the file's size.
	 */
	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	s->l1_avail = s->l1_offset >= fsize ? 0 :
	    MIN(s->l1_size, (fsize - s->l1_offset) / 8);
	len = s->l1_avail * 8;
	s->l1 = xmalloc(len ? len : 1);
	buf = xmalloc(len ? len : 1);
	if (io_pread_zero(img->fd, buf, len, s->l1_offset) < 0) {
		free(buf);
		return err_set(errno, "Could not read the qcow L1 table");
	}
	for (i = 0; i < s->l1_avail; i++)
		s->l1[i] = get_be64(buf + 8 * i);
	free(buf);
	s->l2 = xmalloc(s->l2_size * 8);
	s->tbuf = xmalloc(s->l2_size * 8);
	s->zbuf = xmalloc(s->cluster_size);
	s->cache = xmalloc(s->cluster_size);
	s->cache_offset = UINT64_MAX;
	return qcow_read_backing_name(img, h);
}

static void
qcow_close(struct img *img)
{
	struct qcow *s = img->priv;

	free(s->l1);
	free(s->l2);
	free(s->tbuf);
	free(s->zbuf);
	free(s->cache);
	explicit_bzero(&s->c, sizeof(s->c));
}

/* An encrypted image is read and written in whole sectors. */
static int
qcow_crypt_check(struct img *img)
{
	struct qcow *s = img->priv;

	if (s->crypt && !s->unlocked)
		return err_set(0, "Parameter 'encrypt.key-secret' is required "
		    "for cipher");
	return 0;
}

static uint64_t *
qcow_load_l2(struct img *img, uint64_t off)
{
	struct qcow *s = img->priv;
	uint64_t i;

	if (s->l2_offset == off)
		return s->l2;
	s->l2_offset = 0;
	if (off > (uint64_t)INT64_MAX - s->l2_size * 8 ||
	    io_pread_zero(img->fd, s->tbuf, s->l2_size * 8, off) < 0) {
		err_set(errno ? errno : EINVAL, "%s: could not read the qcow "
		    "L2 table at %#" PRIx64, img->filename, off);
		return NULL;
	}
	for (i = 0; i < s->l2_size; i++)
		s->l2[i] = get_be64(s->tbuf + 8 * i);
	s->l2_offset = off;
	return s->l2;
}

/* The L2 entry of the cluster holding off (0: unallocated). */
static int
qcow_entry(struct img *img, uint64_t off, uint64_t *e)
{
	struct qcow *s = img->priv;
	uint64_t l1i = off >> (s->cluster_bits + s->l2_bits), *l2;

	*e = 0;
	if (l1i >= s->l1_avail || s->l1[l1i] == 0)
		return 0;
	if ((l2 = qcow_load_l2(img, s->l1[l1i])) == NULL)
		return -1;
	*e = l2[(off >> s->cluster_bits) & (s->l2_size - 1)];
	return 0;
}

static int
qcow_kind(uint64_t e)
{
	if (e == 0)
		return 0;
	return e & QCOW_OFLAG_COMPRESSED ? 2 : 1;
}

/* Whether the L2 table covering off is absent (all its clusters unallocated). */
static bool
qcow_no_l2(const struct qcow *s, uint64_t off)
{
	uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);

	return l1i >= s->l1_avail || s->l1[l1i] == 0;
}

/*
 * The clusters alike from off (at most len bytes): unallocated,
 * compressed, or plain and contiguous on disk.  Absent L2 tables are
 * skipped whole, so a huge empty disk maps in a few steps.
 */
static int
qcow_run(struct img *img, uint64_t off, uint64_t len, uint64_t *e,
    uint64_t *n)
{
	struct qcow *s = img->priv;
	uint64_t cs = s->cluster_size, span = cs << s->l2_bits;
	uint64_t in = off & (cs - 1), pos, f, k;

	if (qcow_entry(img, off, e) < 0)
		return -1;
	pos = off - in + cs;
	if (*e == 0 && qcow_no_l2(s, off))
		pos = ROUND_DOWN(off, span) + span;
	while (pos - off < len) {
		if (*e == 0 && qcow_no_l2(s, pos)) {
			pos += span;
			continue;
		}
		if (qcow_entry(img, pos, &f) < 0)
			return -1;
		k = (pos - (off - in)) / cs;
		if (qcow_kind(f) != qcow_kind(*e) ||
		    (qcow_kind(f) == 1 && f != *e + k * cs))
			break;
		pos += cs;
	}
	*n = MIN(len, pos - off);
	return 0;
}

static int
qcow_decompress(struct img *img, uint64_t e)
{
	struct qcow *s = img->priv;
	uint64_t coff = e & s->offset_mask;
	uint64_t csize = (e >> (63 - s->cluster_bits)) & (s->cluster_size - 1);
	z_stream z;
	int zr;

	if (s->cache_offset == e)
		return 0;
	s->cache_offset = UINT64_MAX;
	if (io_pread_zero(img->fd, s->zbuf, csize, coff) < 0)
		return err_set(errno, "%s: read at %#" PRIx64, img->filename,
		    coff);
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -12) != Z_OK)
		return err_set(0, "%s: zlib initialisation failed",
		    img->filename);
	z.next_in = s->zbuf;
	z.avail_in = (uInt)csize;
	z.next_out = s->cache;
	z.avail_out = (uInt)s->cluster_size;
	zr = inflate(&z, Z_FINISH);
	inflateEnd(&z);
	if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR) || z.avail_out != 0)
		return err_set(EIO, "%s: bad compressed cluster at %#" PRIx64,
		    img->filename, coff);
	s->cache_offset = e;
	return 0;
}

static int qcow_read(struct img *img, uint64_t off, size_t len, void *buf);
static int qcow_write(struct img *img, uint64_t off, size_t len,
    const void *buf);

/*
 * Encryption works on whole sectors: a partial one is read (and
 * rewritten) whole around the caller's bytes.
 */
static int
qcow_crypt_unaligned(struct img *img, uint64_t off, size_t len, void *rbuf,
    const void *wbuf)
{
	uint64_t a = ROUND_DOWN(off, 512), end = ROUND_UP(off + len, 512);
	uint8_t *tmp = xmalloc(end - a);
	int r;

	r = qcow_read(img, a, end - a, tmp);
	if (r == 0 && rbuf != NULL)
		memcpy(rbuf, tmp + (off - a), len);
	if (r == 0 && wbuf != NULL) {
		memcpy(tmp + (off - a), wbuf, len);
		r = qcow_write(img, a, end - a, tmp);
	}
	free(tmp);
	return r;
}

static int
qcow_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	struct qcow *s = img->priv;
	uint8_t *p = buf;
	uint64_t e, n, in, host;

	if (qcow_crypt_check(img) < 0)
		return -1;
	if (s->crypt && ((off | len) & 511))
		return qcow_crypt_unaligned(img, off, len, buf, NULL);
	for (; len > 0; off += n, p += n, len -= n) {
		if (qcow_run(img, off, len, &e, &n) < 0)
			return -1;
		in = off & (s->cluster_size - 1);
		if (e == 0) {
			if (fmt_read_backing(img, off, n, p) < 0)
				return -1;
			continue;
		}
		if (e & QCOW_OFLAG_COMPRESSED) {
			n = MIN(n, s->cluster_size - in);
			if (qcow_decompress(img, e) < 0)
				return -1;
			memcpy(p, s->cache + in, n);
			continue;
		}
		if (e & 511)
			return err_set(EIO, "%s: misaligned cluster offset %#"
			    PRIx64, img->filename, e);
		host = e + in;
		blkdbg_event(img->fd, BLKDBG_READ_AIO);
		if (io_pread_zero(img->fd, p, n, host) < 0)
			return err_set(errno, "%s: read at %#" PRIx64,
			    img->filename, host);
		if (s->crypt)
			crypto_sectors_decrypt(&s->c, &s->g, 512, off / 512, p,
			    n);
	}
	return 0;
}

static int
qcow_block_status(struct img *img, uint64_t off, uint64_t len,
    struct fmt_status *st)
{
	struct qcow *s = img->priv;
	uint64_t e, n;

	if (qcow_run(img, off, len, &e, &n) < 0)
		return -1;
	st->len = n;
	if (e == 0) {
		st->flags = 0;
	} else if (e & QCOW_OFLAG_COMPRESSED) {
		st->flags = ST_DATA;
	} else if (s->crypt) {
		st->flags = ST_DATA;	/* ciphertext: no offset, as qemu */
	} else {
		st->flags = ST_DATA | ST_OFFSET;
		st->offset = e + (off & (s->cluster_size - 1));
		st->via_driver = (e & 511) != 0;	/* qcow_read says EIO */
	}
	return 0;
}

static int
qcow_end(struct img *img, uint64_t *end, bool align)
{
	struct qcow *s = img->priv;

	if (fmt_file_size(img, end) < 0)
		return -1;
	if (align)
		*end = ROUND_UP(*end, s->cluster_size);
	if (*end > (uint64_t)INT64_MAX - s->cluster_size - s->l2_size * 8)
		return err_set(E2BIG, "%s", img->filename);
	return 0;
}

/* The L2 table of off, a new one at the end of the file if need be. */
static uint64_t *
qcow_l2_for_write(struct img *img, uint64_t off, uint64_t *l2o)
{
	struct qcow *s = img->priv;
	uint64_t l1i = off >> (s->cluster_bits + s->l2_bits);
	uint8_t be[8];

	if (l1i >= s->l1_avail) {
		s->l1 = xrealloc(s->l1, (l1i + 1) * 8);
		memset(s->l1 + s->l1_avail, 0, (l1i + 1 - s->l1_avail) * 8);
		s->l1_avail = l1i + 1;
	}
	if ((*l2o = s->l1[l1i]) != 0)
		return qcow_load_l2(img, *l2o);
	if (qcow_end(img, l2o, true) < 0)
		return NULL;
	put_be64(be, *l2o);
	if (io_pwrite(img->fd, be, 8, s->l1_offset + 8 * l1i) < 0 ||
	    fmt_sync(img) < 0) {
		err_set(errno, "%s: could not write the qcow L1 table",
		    img->filename);
		return NULL;
	}
	s->l1[l1i] = *l2o;
	memset(s->l2, 0, s->l2_size * 8);
	memset(s->tbuf, 0, s->l2_size * 8);
	s->l2_offset = *l2o;
	if (io_pwrite(img->fd, s->tbuf, s->l2_size * 8, *l2o) < 0 ||
	    fmt_sync(img) < 0) {
		err_set(errno, "%s: could not write a qcow L2 table",
		    img->filename);
		return NULL;
	}
	return s->l2;
}

static int
qcow_set_entry(struct img *img, uint64_t off, uint64_t e)
{
	struct qcow *s = img->priv;
	uint64_t l2o, *l2, i = (off >> s->cluster_bits) & (s->l2_size - 1);
	uint8_t be[8];

	if ((l2 = qcow_l2_for_write(img, off, &l2o)) == NULL)
		return -1;
	l2[i] = e;
	put_be64(be, e);
	if (io_pwrite(img->fd, be, 8, l2o + 8 * i) < 0)
		return err_set(errno, "%s: could not write a qcow L2 table",
		    img->filename);
	return 0;
}

/*
 * A new cluster at the end of the file for the cluster holding off: what
 * was there before (a compressed cluster, the backing file) around the n
 * bytes of p.
 */
static int
qcow_alloc(struct img *img, uint64_t off, const uint8_t *p, uint64_t n,
    uint64_t old)
{
	struct qcow *s = img->priv;
	uint64_t cs = s->cluster_size, start = ROUND_DOWN(off, cs), host;
	uint8_t *buf;
	int r = 0;

	/* the L2 table first, so the cluster goes after it */
	if (qcow_l2_for_write(img, off, &host) == NULL ||
	    qcow_end(img, &host, true) < 0)
		return -1;
	buf = xmalloc(cs);
	if (old != 0) {
		if ((r = qcow_decompress(img, old)) == 0)
			memcpy(buf, s->cache, cs);
	} else if (s->crypt) {
		/* qemu fills the rest of a new encrypted cluster with zeroes */
		memset(buf, 0, cs);
	} else {
		r = fmt_read_backing(img, start, MIN(cs, img->size - start),
		    buf);
		memset(buf + MIN(cs, img->size - start), 0,
		    cs - MIN(cs, img->size - start));
	}
	memcpy(buf + (off - start), p, n);
	if (s->crypt)
		crypto_sectors_encrypt(&s->c, &s->g, 512, start / 512, buf, cs);
	blkdbg_event(img->fd, BLKDBG_WRITE_AIO);
	/* qemu truncates the file to take a new cluster, but one it rewrites */
	if (r == 0 && (old == 0 || n == cs) &&
	    io_ftruncate(img->fd, host + cs) < 0)
		r = err_set(errno, "%s: write at %#" PRIx64, img->filename,
		    host);
	if (r == 0 && io_pwrite(img->fd, buf, cs, host) < 0)
		r = err_set(errno, "%s: write at %#" PRIx64, img->filename,
		    host);
	free(buf);
	if (r < 0)
		return -1;
	return qcow_set_entry(img, off, host);
}

/* n bytes of guest offset off at host, encrypted first when the image is */
static int
qcow_pwrite(struct img *img, const uint8_t *p, uint64_t n, uint64_t host,
    uint64_t off)
{
	struct qcow *s = img->priv;
	uint8_t *tmp = NULL;
	int r = 0;

	if (s->crypt) {
		tmp = xmalloc(n);
		memcpy(tmp, p, n);
		crypto_sectors_encrypt(&s->c, &s->g, 512, off / 512, tmp, n);
		p = tmp;
	}
	if (io_pwrite(img->fd, p, n, host) < 0)
		r = err_set(errno, "%s: write at %#" PRIx64, img->filename,
		    host);
	free(tmp);
	return r;
}

static int
qcow_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	struct qcow *s = img->priv;
	const uint8_t *p = buf;
	uint64_t e, n, in;

	if (qcow_crypt_check(img) < 0)
		return -1;
	if (s->crypt && ((off | len) & 511))
		return qcow_crypt_unaligned(img, off, len, NULL, buf);
	for (; len > 0; off += n, p += n, len -= n) {
		in = off & (s->cluster_size - 1);
		n = MIN(len, s->cluster_size - in);
		if (qcow_entry(img, off, &e) < 0)
			return -1;
		if (e == 0 || (e & QCOW_OFLAG_COMPRESSED)) {
			if (qcow_alloc(img, off, p, n, e) < 0)
				return -1;
			continue;
		}
		if (e & 511)
			return err_set(EIO, "%s: misaligned cluster offset %#"
			    PRIx64, img->filename, e);
		blkdbg_event(img->fd, BLKDBG_WRITE_AIO);
		if (qcow_pwrite(img, p, n, e + in, off) < 0)
			return -1;
	}
	return 0;
}

/* One cluster compressed (the last may be short); stored plain if it won't shrink. */
static int
qcow_write_compressed(struct img *img, uint64_t off, size_t len,
    const void *buf)
{
	struct qcow *s = img->priv;
	uint64_t cs = s->cluster_size, host, e;
	uint8_t *in;
	z_stream z;
	int zr, r;

	if (s->crypt)
		return err_set(0, "Compression and encryption not supported at "
		    "the same time");
	if (len > cs)
		return qcow_write_compressed(img, off, cs, buf) < 0 ? -1 :
		    qcow_write_compressed(img, off + cs, len - cs,
		    (const uint8_t *)buf + cs);
	if ((off & (cs - 1)) || (len != cs && off + len != img->size))
		return err_set(EINVAL, "%s: compressed writes must be whole "
		    "clusters", img->filename);
	if (qcow_entry(img, off, &e) < 0)
		return -1;
	if (qcow_kind(e) == 1)		/* allocated plain: stays plain */
		return qcow_write(img, off, len, buf);
	in = xcalloc(1, cs);
	memcpy(in, buf, len);
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
	    Z_DEFAULT_STRATEGY) != Z_OK) {
		free(in);
		return err_set(0, "%s: zlib initialisation failed",
		    img->filename);
	}
	z.next_in = in;
	z.avail_in = (uInt)cs;
	z.next_out = s->zbuf;
	z.avail_out = (uInt)cs;
	zr = deflate(&z, Z_FINISH);
	deflateEnd(&z);
	if (zr != Z_STREAM_END || z.total_out >= cs) {
		r = qcow_write(img, off, len, buf);
		free(in);
		return r;
	}
	free(in);
	if (qcow_l2_for_write(img, off, &host) == NULL ||
	    qcow_end(img, &host, false) < 0)
		return -1;
	if (io_pwrite(img->fd, s->zbuf, z.total_out, host) < 0)
		return err_set(errno, "%s: write at %#" PRIx64, img->filename,
		    host);
	e = host | QCOW_OFLAG_COMPRESSED |
	    (uint64_t)z.total_out << (63 - s->cluster_bits);
	return qcow_set_entry(img, off, e);
}

static int
qcow_flush(struct img *img)
{
	return fmt_sync(img);
}

static int
qcow_info(struct img *img, struct img_info *info)
{
	struct qcow *s = img->priv;

	info->cluster_size = s->cluster_size;
	info->encrypted = s->crypt;
	return 0;
}

/* qemu's qcow_make_empty: a zeroed L1 table, the file cut after it. */
static int
qcow_make_empty(struct img *img)
{
	struct qcow *s = img->priv;
	uint64_t len = s->l1_size * 8;
	uint8_t *z = xcalloc(1, len ? len : 1);
	int r;

	r = io_pwrite(img->fd, z, len, s->l1_offset);
	free(z);
	if (r < 0 || fmt_sync(img) < 0 ||
	    io_ftruncate(img->fd, (off_t)(s->l1_offset + len)) < 0)
		return err_set(errno, "%s: could not empty the image",
		    img->filename);
	memset(s->l1, 0, s->l1_avail * 8);
	s->l2_offset = 0;
	s->cache_offset = UINT64_MAX;
	return 0;
}

static int
qcow_create_file(int fd, uint64_t size, const char *backing)
{
	uint8_t h[QCOW_HEADER_SIZE] = { 0 }, *l1;
	uint64_t hsize = QCOW_HEADER_SIZE, blen = 0, shift, l1len;
	int r;

	put_be32(h + QCOW_H_MAGIC, QCOW_MAGIC);
	put_be32(h + QCOW_H_VERSION, QCOW_VERSION);
	put_be64(h + QCOW_H_SIZE, size);
	if (backing != NULL && strcmp(backing, "fat:") == 0)
		backing = NULL;
	if (backing != NULL) {
		blen = strlen(backing);
		put_be64(h + QCOW_H_BACKING_OFFSET, hsize);
		put_be32(h + QCOW_H_BACKING_SIZE, (uint32_t)blen);
		hsize += blen;
		/* 512-byte clusters: nothing unmodified is copied */
		h[QCOW_H_CLUSTER_BITS] = 9;
		h[QCOW_H_L2_BITS] = 12;
	} else {
		h[QCOW_H_CLUSTER_BITS] = 12;
		h[QCOW_H_L2_BITS] = 9;
	}
	hsize = ROUND_UP(hsize, 8);
	shift = h[QCOW_H_CLUSTER_BITS] + h[QCOW_H_L2_BITS];
	l1len = ROUND_UP(((size + (1ULL << shift) - 1) >> shift) * 8, 512);
	put_be64(h + QCOW_H_L1, hsize);
	if (ftruncate(fd, 0) < 0)
		return err_set(errno, "Could not resize file");
	if (io_pwrite(fd, h, sizeof(h), 0) < 0 || (backing != NULL &&
	    io_pwrite(fd, backing, blen, QCOW_HEADER_SIZE) < 0))
		return err_set(errno, "Could not write the qcow header");
	l1 = xcalloc(1, l1len ? l1len : 1);
	r = io_pwrite(fd, l1, l1len, hsize);
	free(l1);
	if (r < 0)
		return err_set(errno, "Could not write the qcow L1 table");
	return 0;
}

static int
qcow_create(const char *filename, uint64_t size, const struct opt_list *o)
{
	const char *backing = opt_list_get(o, "backing_file");
	const char *enc = opt_list_get(o, "encryption");
	const char *efmt = opt_list_get(o, "encrypt.format");
	const char *bfmt = opt_list_get(o, "backing_fmt"), *key = NULL;
	uint8_t crypt[4];
	size_t klen;
	int fd, r;

	/* qcow cannot record a backing format, but qemu checks it names one */
	if (bfmt != NULL && !img_driver_known(bfmt))
		return err_set(0, "%s: unrecognized backing format '%s'",
		    filename, bfmt);
	if (efmt != NULL && strcmp(efmt, "aes") != 0)
		return err_set(0, "%s: Unsupported encryption format",
		    filename);
	if ((enc != NULL && opt_bool(enc) == 1) || efmt != NULL) {
		if ((key = opt_list_get(o, "encrypt.key-secret")) == NULL)
			return err_set(0, "%s: Parameter 'encrypt.key-secret' "
			    "is required for cipher", filename);
		if (secret_get(key, &klen) == NULL)
			return err_prefix("%s", filename);
	}
	/* qemu rounds the size up to whole sectors */
	if (size > UINT64_MAX - 511)
		return err_set(0, "%s: Image too large", filename);
	size = ROUND_UP(size, 512);
	if (size == 0)
		return err_set(0, "%s: Image size is too small, cannot be zero "
		    "length", filename);
	fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "%s: Could not create '%s'", filename,
		    filename);
	put_be32(crypt, key != NULL ? QCOW_CRYPT_AES : QCOW_CRYPT_NONE);
	if ((r = qcow_create_file(fd, size, backing)) == 0 &&
	    io_pwrite(fd, crypt, 4, QCOW_H_CRYPT) < 0)
		r = err_set(errno, "Could not write the qcow header");
	if (r < 0)
		err_prefix("%s", filename);
	if (close(fd) < 0 && r == 0)
		r = err_set(errno, "%s", filename);
	return r;
}

static const struct opt_desc qcow_create_opts[] = {
	{ "size", OPT_SIZE, "Virtual disk size", NULL },
	{ "backing_file", OPT_STRING, "File name of a base image", NULL },
	{ "backing_fmt", OPT_STRING, "Format of the backing image", NULL },
	{ "encryption", OPT_BOOL, "Encrypt the image with format 'aes'. "
	    "(Deprecated in favor of encrypt.format=aes)", NULL },
	{ "encrypt.format", OPT_STRING, "Encrypt the image, format choices: "
	    "'aes'", NULL },
	{ "encrypt.key-secret", OPT_STRING, "ID of the secret that provides "
	    "the AES encryption key", NULL },
	{ NULL, 0, NULL, NULL },
};

const struct fmt_ops qcow_ops = {
	.name		= "qcow",
	.priv_size	= sizeof(struct qcow),
	.probe		= qcow_probe,
	.open		= qcow_open,
	.close		= qcow_close,
	.create		= qcow_create,
	.create_opts	= qcow_create_opts,
	.read		= qcow_read,
	.write		= qcow_write,
	.write_compressed = qcow_write_compressed,
	.flush		= qcow_flush,
	.block_status	= qcow_block_status,
	.info		= qcow_info,
	.make_empty	= qcow_make_empty,
};
