/*
 * qcow2 compressed clusters: zlib (raw deflate, 4 KiB window) and zstd,
 * read on a small thread pool and written packed as qemu packs them.
 * docs/interop/qcow2.txt, "Compressed Clusters Descriptor".
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "../blkdebug.h"
#include "qcow2.h"

static int
decompress(const struct qcow2 *s, uint8_t *dst, const uint8_t *src, size_t n)
{
	ZSTD_inBuffer in = { src, n, 0 };
	ZSTD_outBuffer out = { dst, s->cluster_size, 0 };
	ZSTD_DCtx *dc;
	z_stream z;
	size_t r = 0, ipos, opos;
	int zr;

	if (s->compression == QCOW2_COMPRESS_ZLIB) {
		memset(&z, 0, sizeof(z));
		z.next_in = (uint8_t *)src;
		z.avail_in = (unsigned)n;
		z.next_out = dst;
		z.avail_out = (unsigned)s->cluster_size;
		if (inflateInit2(&z, -12) != Z_OK)
			return -1;
		/* the sector-rounded input may hold more than the stream */
		zr = inflate(&z, Z_FINISH);
		inflateEnd(&z);
		return (zr == Z_STREAM_END || zr == Z_BUF_ERROR) &&
		    z.avail_out == 0 ? 0 : -1;
	}
	if ((dc = ZSTD_createDCtx()) == NULL)
		return -1;
	while (out.pos < out.size) {
		ipos = in.pos;
		opos = out.pos;
		r = ZSTD_decompressStream(dc, &out, &in);
		if (ZSTD_isError(r) || (in.pos <= ipos && out.pos <= opos))
			break;
	}
	ZSTD_freeDCtx(dc);
	return out.pos == out.size && !ZSTD_isError(r) && r == 0 ? 0 : -1;
}

/* Decompress the cluster an L2 entry describes into s->zc_buf. */
static int
load_compressed(struct img *img, uint64_t entry)
{
	struct qcow2 *s = img->priv;
	uint64_t off, len;
	uint8_t *buf;
	int r;

	if (s->zc_valid && s->zc_off == entry)
		return 0;
	qcow2_entry_range(s, entry, &off, &len);
	if (s->zc_buf == NULL)
		s->zc_buf = xmalloc(s->cluster_size);
	buf = xmalloc(len);	/* at most two clusters: csize_mask bounds it */
	if (io_pread_zero(img->fd, buf, len, off) < 0) {
		free(buf);
		return err_set(errno, "%s: Could not read compressed cluster "
		    "at %#llx", img->filename, (unsigned long long)off);
	}
	s->zc_valid = false;
	r = decompress(s, s->zc_buf, buf, len);
	free(buf);
	if (r < 0)
		return err_set(0, "%s: compressed cluster at %#llx does not "
		    "decompress", img->filename, (unsigned long long)off);
	s->zc_valid = true;
	s->zc_off = entry;
	return 0;
}

/* The L2 entry of the cluster at guest offset off (whose table exists). */
static int
entry_at(struct img *img, uint64_t off, uint64_t *e)
{
	struct qcow2 *s = img->priv;
	uint64_t l2off;
	uint8_t *l2;

	if (qcow2_l2_lookup(img, off / qcow2_l2_span(s), &l2off, &l2) < 0)
		return -1;
	*e = l2 ? qcow2_l2_entry(s, l2, (off >> s->cluster_bits) &
	    (qcow2_l2_entries(s) - 1)) : 0;
	return 0;
}

/* Decompression jobs: worker t takes clusters t, t + nt, t + 2 nt, ... */
struct zjob {
	struct img	*img;
	const struct qcow2_zbatch *b;
	unsigned	 t, nt;
	uint64_t	 bad;		/* host offset that failed, or 0 */
	int		 errnum;
};

static void *
zworker(void *arg)
{
	struct zjob *j = arg;
	struct qcow2 *s = j->img->priv;
	uint8_t *buf = xmalloc(2 * s->cluster_size);
	uint64_t off, len;
	size_t i;

	for (i = j->t; i < j->b->n && j->bad == 0; i += j->nt) {
		qcow2_entry_range(s, j->b->ents[i], &off, &len);
		/* csize_mask bounds len to two clusters */
		if (io_pread_zero(j->img->fd, buf, len, off) < 0)
			j->errnum = errno;
		if (j->errnum || decompress(s, j->b->dst[i], buf, len) < 0)
			j->bad = off ? off : 1;
	}
	free(buf);
	return NULL;
}

/*
 * The batch's whole compressed clusters, on up to four threads, as qemu's
 * pool of QCOW2_MAX_THREADS; the batch is emptied.
 */
int
qcow2_zbatch_run(struct img *img, struct qcow2_zbatch *b)
{
	struct zjob j[4];
	pthread_t tid[4];
	bool started[4];
	unsigned nt = (unsigned)MIN(b->n, 4), t;
	int r = 0;

	for (t = 0; t < nt; t++) {
		j[t] = (struct zjob){ img, b, t, nt, 0, 0 };
		started[t] = t > 0 &&
		    pthread_create(&tid[t], NULL, zworker, &j[t]) == 0;
		if (t > 0 && !started[t])
			zworker(&j[t]);		/* no thread: do it here */
	}
	if (nt > 0)
		zworker(&j[0]);
	for (t = 1; t < nt; t++) {
		if (started[t])
			pthread_join(tid[t], NULL);
		if (j[t].bad && !j[0].bad)
			j[0] = j[t];
	}
	b->n = 0;
	if (nt > 0 && j[0].bad)
		r = err_set(j[0].errnum, "%s: compressed cluster at %#llx does "
		    "not decompress", img->filename,
		    (unsigned long long)j[0].bad);
	return r;
}

void
qcow2_zbatch_free(struct qcow2_zbatch *b)
{
	free(b->ents);
	free(b->dst);
	memset(b, 0, sizeof(*b));
}

/*
 * Compressed clusters: whole ones go into the batch b (decompressed side
 * by side when it runs), partial ones through the one-cluster cache.
 */
int
qcow2_read_compressed(struct img *img, uint64_t off, uint64_t len, uint8_t *p,
    struct qcow2_zbatch *b)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, head, n, e;

	for (; len > 0; off += n, p += n, len -= n) {
		head = off & (cs - 1);
		n = MIN(len, cs - head);
		if (entry_at(img, off, &e) < 0)
			return -1;
		if (n < cs) {
			if (load_compressed(img, e) < 0)
				return -1;
			memcpy(p, s->zc_buf + head, n);
			continue;
		}
		if (b->n == b->cap) {
			b->cap = b->cap ? 2 * b->cap : 64;
			b->ents = xrealloc(b->ents, b->cap * sizeof(*b->ents));
			b->dst = xrealloc(b->dst, b->cap * sizeof(*b->dst));
		}
		b->ents[b->n] = e;
		b->dst[b->n++] = p;
	}
	return 0;
}

long
qcow2_compress(const struct qcow2 *s, uint8_t *dst, size_t dstlen,
    const uint8_t *src, size_t srclen)
{
	ZSTD_inBuffer in = { src, srclen, 0 };
	ZSTD_outBuffer out = { dst, dstlen, 0 };
	ZSTD_CCtx *cc;
	z_stream z;
	size_t r;
	int zr;

	if (s->compression == QCOW2_COMPRESS_ZLIB) {
		memset(&z, 0, sizeof(z));
		/* raw deflate, 4 KiB window: what qemu writes and reads */
		if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
		    Z_DEFAULT_STRATEGY) != Z_OK)
			return -1;
		z.next_in = (uint8_t *)src;
		z.avail_in = (unsigned)srclen;
		z.next_out = dst;
		z.avail_out = (unsigned)dstlen;
		zr = deflate(&z, Z_FINISH);
		deflateEnd(&z);
		if (zr == Z_STREAM_END)
			return (long)(dstlen - z.avail_out);
		return zr == Z_OK || zr == Z_BUF_ERROR ? 0 : -1;
	}
	if ((cc = ZSTD_createCCtx()) == NULL)
		return -1;
	r = ZSTD_compressStream2(cc, &out, &in, ZSTD_e_end);
	ZSTD_freeCCtx(cc);
	if (ZSTD_isError(r))
		return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? 0 : -1;
	return r == 0 ? (long)out.pos : 0;
}

/* One cluster (the last may be short), compressed unless it does not shrink. */
/*
 * Store one cluster whose compressed form is cbuf[0..clen) (clen 0: it
 * did not shrink, so src goes out as is, as qemu stores it).
 */
static int
store_compressed(struct img *img, uint64_t off, size_t len,
    const uint8_t *src, const uint8_t *cbuf, long clen)
{
	struct qcow2 *s = img->priv;
	uint64_t span = qcow2_l2_span(s), l2off, idx;
	uint64_t coff, nsec, old;
	uint8_t *l2;

	if (clen == 0)
		return qcow2_write(img, off, len, src);
	if (qcow2_l2_for_write(img, off / span, &l2off) < 0 ||
	    (coff = qcow2_alloc_bytes(img, (uint64_t)clen)) == 0 ||
	    qcow2_pre_write(img, coff, (uint64_t)clen, 0) < 0)
		return -1;
	/* qemu sets the entry (in its cache) before it writes the data */
	blkdbg_event(img->fd, BLKDBG_L2_UPDATE_COMPRESSED);
	blkdbg_event(qcow2_dfd(img), BLKDBG_WRITE_COMPRESSED);
	if (qcow2_pwrite(img, cbuf, (size_t)clen, coff, "compressed cluster") < 0 ||
	    (l2 = qcow2_cache_get(&s->l2_cache, l2off)) == NULL)
		return -1;
	nsec = (coff + (uint64_t)clen - 1) / QCOW2_SECTOR - coff / QCOW2_SECTOR;
	idx = (off >> s->cluster_bits) & (qcow2_l2_entries(s) - 1);
	old = qcow2_l2_entry(s, l2, idx);
	qcow2_set_entry(s, l2, idx, coff | QCOW2_OFLAG_COMPRESSED |
	    (nsec << s->csize_shift), 0);
	qcow2_cache_dirty(&s->l2_cache, l2off);
	s->zc_valid = false;
	return qcow2_free_entry(img, old);
}

/*
 * Compression jobs: workers take the next cluster of a run from a shared
 * counter, so a worker that gets less CPU (a busy machine) holds up no one.
 */
struct cjob {
	const struct qcow2 *s;
	const uint8_t	*src;		/* n clusters, the last maybe short */
	size_t		 len;
	uint8_t		*dst;		/* n * cluster_size */
	long		*clen;
	uint64_t	 n;
	uint64_t	 next;		/* the next cluster to take (atomic) */
};

static void *
cworker(void *arg)
{
	struct cjob *j = arg;
	uint64_t cs = j->s->cluster_size, i;
	uint8_t *pad = xmalloc(cs);
	const uint8_t *src;
	size_t n;

	while ((i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED)) < j->n) {
		src = j->src + i * cs;
		n = (size_t)MIN(cs, j->len - i * cs);
		if (n < cs) {	/* the disk's last cluster: pad with zeroes */
			memcpy(pad, src, n);
			memset(pad + n, 0, cs - n);
			src = pad;
		}
		/* a result not smaller than cs - 1 is stored uncompressed */
		j->clen[i] = qcow2_compress(j->s, j->dst + i * cs, cs - 1, src, cs);
	}
	free(pad);
	return NULL;
}

/*
 * Compress n clusters on one thread per core, at most four (qemu's
 * QCOW2_MAX_THREADS): the pipeline's writer side then uses every core
 * while the reader streams.
 */
static void
compress_many(const struct qcow2 *s, const uint8_t *src, size_t len,
    uint8_t *dst, long *clen, uint64_t n)
{
	struct cjob j = { s, src, len, dst, clen, n, 0 };
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	pthread_t tid[4];
	bool started[4];
	unsigned nt, t;

	nt = (unsigned)MIN(n, (uint64_t)MIN(MAX(cores, 1), 4));
	for (t = 1; t < nt; t++)
		started[t] = pthread_create(&tid[t], NULL, cworker, &j) == 0;
	cworker(&j);
	for (t = 1; t < nt; t++)
		if (started[t])
			pthread_join(tid[t], NULL);
}

int
qcow2_write_compressed(struct img *img, uint64_t off, size_t len,
    const void *buf)
{
	struct qcow2 *s = img->priv;
	uint64_t cs = s->cluster_size, n, nc, i;
	const uint8_t *p = buf;
	uint8_t *cbuf;
	long *clen;
	int r = 0;

	/* qemu: no compressed clusters in an external data file */
	if (s->has_data)
		return err_set(ENOTSUP, "%s", img->filename);

	if (qcow2_prepare_write(img) < 0)
		return -1;
	s->guest_written = true;
	qcow2_bitmaps_dirty(img, off, len);
	if ((off & (cs - 1)) || ((len & (cs - 1)) && off + len != img->size))
		return err_set(EINVAL, "%s: compressed writes must cover whole "
		    "clusters", img->filename);
	nc = DIV_ROUND_UP(len, cs);
	cbuf = xmalloc(nc * cs);
	clen = xcalloc(nc, sizeof(*clen));
	compress_many(s, p, len, cbuf, clen, nc);
	for (i = 0; i < nc && r == 0; i++) {
		n = MIN(len - i * cs, cs);
		if (clen[i] < 0)
			r = err_set(0, "%s: compression failed", img->filename);
		else
			r = store_compressed(img, off + i * cs, n, p + i * cs,
			    cbuf + i * cs, clen[i]);
	}
	free(cbuf);
	free(clen);
	return r;
}
