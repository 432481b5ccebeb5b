/*
 * dmg: Apple disk images, read-only as in qemu: the "koly" trailer, the
 * plist's (or resource fork's) "mish" block tables, and chunks stored raw,
 * zlib-compressed or as zeroes.  bzip2 and lzfse chunks are skipped, as
 * Debian's qemu (built without those modules) skips them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "fmt.h"

#define DMG_KOLY		0x6b6f6c79u	/* "koly" */
#define DMG_MISH		0x6d697368u	/* "mish" */
#define DMG_LENGTHS_MAX		(64u << 20)	/* qemu's cap on one chunk */
#define DMG_SECTORCOUNTS_MAX	(DMG_LENGTHS_MAX / 512)
#define DMG_PLIST_MAX		(64u << 20)	/* bytes of plist we read */
#define DMG_MISH_HEADER		204
#define DMG_CHUNK_ENTRY		40
#define SECTOR			512

enum {
	UDZE = 0,		/* zeroes */
	UDRW = 1,		/* raw */
	UDIG = 2,		/* ignored: zeroes */
	UDZO = 0x80000005,	/* zlib */
};

struct dmg {
	uint32_t	*types;
	uint64_t	*sectors, *counts, *offsets, *lengths;
	uint32_t	 n, cap;
	uint64_t	 max_len, max_sectors;
	int64_t		 cached;		/* chunk in `out`, or -1 */
	uint8_t		*in, *out;
};

static int
dmg_probe(const uint8_t *buf, size_t len, const char *filename)
{
	size_t n;

	(void)buf;
	(void)len;
	/* qemu's dmg probe looks at the name only */
	if (filename == NULL || (n = strlen(filename)) <= 4)
		return 0;
	return strcmp(filename + n - 4, ".dmg") == 0 ? 2 : 0;
}

static void
grow(struct dmg *s, uint32_t more)
{
	uint32_t cap = s->cap ? s->cap : 64;

	while (cap < s->n + more)
		cap *= 2;
	if (cap == s->cap)
		return;
	s->types = xrealloc(s->types, cap * sizeof(*s->types));
	s->sectors = xrealloc(s->sectors, cap * sizeof(*s->sectors));
	s->counts = xrealloc(s->counts, cap * sizeof(*s->counts));
	s->offsets = xrealloc(s->offsets, cap * sizeof(*s->offsets));
	s->lengths = xrealloc(s->lengths, cap * sizeof(*s->lengths));
	s->cap = cap;
}

static int
add_chunk(struct dmg *s, const uint8_t *e, uint64_t sector_base,
    uint64_t data_base)
{
	uint32_t type = get_be32(e), i = s->n;

	if (type != UDZE && type != UDRW && type != UDIG && type != UDZO)
		return 0;	/* terminators, comments, bzip2, lzfse */
	s->types[i] = type;
	s->sectors[i] = get_be64(e + 8) + sector_base;
	s->counts[i] = get_be64(e + 16);
	if (type != UDIG && s->counts[i] > DMG_SECTORCOUNTS_MAX)
		return err_set(0, "sector count %llu for chunk %u is larger than max (%u)",
		    (unsigned long long)s->counts[i], i, DMG_SECTORCOUNTS_MAX);
	s->offsets[i] = get_be64(e + 24) + data_base;
	s->lengths[i] = get_be64(e + 32);
	if (s->lengths[i] > DMG_LENGTHS_MAX)
		return err_set(0, "length %llu for chunk %u is larger than max (%u)",
		    (unsigned long long)s->lengths[i], i, DMG_LENGTHS_MAX);
	if (type == UDZO || type == UDRW) {
		s->max_len = MAX(s->max_len, s->lengths[i]);
		s->max_sectors = MAX(s->max_sectors, s->counts[i]);
	}
	s->n++;
	return 0;
}

static int
read_mish(struct dmg *s, const uint8_t *b, size_t len)
{
	uint64_t sector_base, data_base;
	size_t off, k, n;

	/* not a mish block, or too short for one: skipped as qemu does */
	if (len < 244 || get_be32(b) != DMG_MISH)
		return 0;
	sector_base = get_be64(b + 8);
	data_base = get_be64(b + 24);
	n = (len - DMG_MISH_HEADER) / DMG_CHUNK_ENTRY;
	grow(s, (uint32_t)n);
	for (k = 0, off = DMG_MISH_HEADER; k < n; k++, off += DMG_CHUNK_ENTRY)
		if (add_chunk(s, b + off, sector_base, data_base) < 0)
			return -1;
	return 0;
}

static int
b64(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decode the base64 text of one <data> element, skipping white space. */
static size_t
base64_decode(const char *p, const char *end, uint8_t *out)
{
	unsigned acc = 0, bits = 0;
	size_t n = 0;
	int v;

	for (; p < end && *p != '='; p++) {
		if ((v = b64((unsigned char)*p)) < 0)
			continue;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	return n;
}

static int
read_plist(struct img *img, struct dmg *s, uint64_t off, uint64_t len)
{
	char *x, *p, *q, *end;
	uint8_t *buf;
	int r = 0;

	if (len > DMG_PLIST_MAX)
		return err_set(0, "dmg: plist of %llu bytes is too large",
		    (unsigned long long)len);
	x = xmalloc(len + 1);
	if (io_pread(img->fd, x, len, off) != (ssize_t)len) {
		free(x);
		return err_set(errno ? errno : EIO, "Could not read the plist");
	}
	x[len] = '\0';
	buf = xmalloc(len);
	end = x + len;
	for (p = x; r == 0 && (p = strstr(p, "<data>")) != NULL; p = q) {
		p += 6;
		if ((q = strstr(p, "</data>")) == NULL)
			q = end;
		r = read_mish(s, buf, base64_decode(p, q, buf));
	}
	free(buf);
	free(x);
	return r;
}

/* The resource fork: a table of blkx resources, each a mish block. */
static int
read_rsrc(struct img *img, struct dmg *s, uint64_t off, uint64_t len)
{
	uint8_t *b;
	uint32_t data_off, data_len, pos, n;
	int r = 0;

	if (len > DMG_PLIST_MAX || len < 16)
		return err_set(0, "dmg: bad resource fork");
	b = xmalloc(len);
	if (io_pread(img->fd, b, len, off) != (ssize_t)len) {
		free(b);
		return err_set(errno ? errno : EIO, "Could not read the resource fork");
	}
	data_off = get_be32(b);
	data_len = get_be32(b + 8);
	/* resources: a 4-byte length, then that many bytes */
	for (pos = data_off; r == 0 && pos + 4 <= len &&
	    pos + 4 <= (uint64_t)data_off + data_len; pos += 4 + n) {
		n = get_be32(b + pos);
		if (n > len - pos - 4)
			break;
		r = read_mish(s, b + pos + 4, n);
	}
	free(b);
	return r;
}

/* The trailer: the first "koly" among the last 1023 bytes that leaves 512. */
static int
find_koly(struct img *img, uint8_t *k)
{
	uint8_t buf[1023];
	uint64_t fsize, start, i;
	size_t n;

	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	if (fsize < 512)	/* qemu 7.2 says the same as for no trailer */
		return err_set(0, "Could not locate UDIF trailer in dmg file");
	start = fsize > sizeof(buf) ? fsize - sizeof(buf) : 0;
	n = (size_t)(fsize - start);
	if (io_pread(img->fd, buf, n, start) != (ssize_t)n)
		return err_set(errno ? errno : EIO, "Could not read the dmg trailer");
	for (i = 0; i + 512 <= n; i++)
		if (get_be32(buf + i) == DMG_KOLY) {
			memcpy(k, buf + i, 512);
			return 0;
		}
	return err_set(0, "Could not locate UDIF trailer in dmg file");
}

static int
dmg_open(struct img *img)
{
	struct dmg *s = img->priv;
	uint8_t k[512] = { 0 };
	uint64_t end = 0;
	uint32_t i;
	int r;

	s->cached = -1;
	if (img->flags & IMG_RDWR)
		return err_set(0, "Image is read-only");
	if (find_koly(img, k) < 0)
		return -1;
	if (get_be64(k + 0x28) && get_be64(k + 0x30))
		r = read_rsrc(img, s, get_be64(k + 0x28), get_be64(k + 0x30));
	else if (get_be64(k + 0xd8) && get_be64(k + 0xe0))
		r = read_plist(img, s, get_be64(k + 0xd8), get_be64(k + 0xe0));
	else
		r = err_set(EINVAL, "Invalid argument");
	if (r < 0)
		return -1;
	/* the trailer's sector count is the disk's size, as qemu takes it */
	if (get_be64(k + 0x1ec) > INT64_MAX / SECTOR)
		return err_set(EINVAL, "dmg: sector count too large");
	img->size = get_be64(k + 0x1ec) * SECTOR;
	for (i = 0; i < s->n; i++)
		end = MAX(end, s->sectors[i] + s->counts[i]);
	(void)end;
	s->in = xmalloc(s->max_len ? s->max_len : 1);
	s->out = xmalloc(s->max_sectors ? s->max_sectors * SECTOR : 1);
	return 0;
}

static void
dmg_close(struct img *img)
{
	struct dmg *s = img->priv;

	free(s->types);
	free(s->sectors);
	free(s->counts);
	free(s->offsets);
	free(s->lengths);
	free(s->in);
	free(s->out);
}

static int64_t
find_chunk(const struct dmg *s, uint64_t sector)
{
	uint32_t i;

	for (i = 0; i < s->n; i++)
		if (sector >= s->sectors[i] && sector - s->sectors[i] < s->counts[i])
			return i;
	return -1;
}

static int
load_chunk(struct img *img, uint32_t c)
{
	struct dmg *s = img->priv;
	uint64_t want = s->counts[c] * SECTOR;
	z_stream z;
	int zr;

	if (s->cached == (int64_t)c)
		return 0;
	s->cached = -1;
	if (io_pread(img->fd, s->in, s->lengths[c], s->offsets[c]) !=
	    (ssize_t)s->lengths[c])
		return err_set(errno ? errno : EIO, "%s: read of chunk %u",
		    img->filename, c);
	if (s->types[c] == UDRW) {
		if (s->lengths[c] < want)
			return err_set(EIO, "%s: chunk %u is short", img->filename, c);
		memcpy(s->out, s->in, want);
	} else {
		memset(&z, 0, sizeof(z));
		if (inflateInit(&z) != Z_OK)
			return err_set(ENOMEM, "zlib");
		z.next_in = s->in;
		z.avail_in = (uInt)s->lengths[c];
		z.next_out = s->out;
		z.avail_out = (uInt)want;
		zr = inflate(&z, Z_FINISH);
		inflateEnd(&z);
		if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR) || z.avail_out != 0)
			return err_set(EIO, "%s: chunk %u does not decompress",
			    img->filename, c);
	}
	s->cached = c;
	return 0;
}

static int
dmg_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	struct dmg *s = img->priv;
	uint8_t *p = buf;
	uint64_t sec, in, n;
	int64_t c;

	while (len > 0) {
		sec = off / SECTOR;
		if ((c = find_chunk(s, sec)) < 0)
			return err_set(EIO, "%s: sector %llu is in no chunk",
			    img->filename, (unsigned long long)sec);
		in = off - s->sectors[c] * SECTOR;
		n = MIN(len, s->counts[c] * SECTOR - in);
		if (s->types[c] == UDZE || s->types[c] == UDIG)
			memset(p, 0, n);
		else if (load_chunk(img, (uint32_t)c) < 0)
			return -1;
		else
			memcpy(p, s->out + in, n);
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* qemu has no get_info for dmg: info shows no dirty flag */
static int
dmg_info(struct img *img, struct img_info *info)
{
	(void)img;
	info->no_dirty_flag = true;
	return 0;
}

const struct fmt_ops dmg_ops = {
	.name		= "dmg",
	.priv_size	= sizeof(struct dmg),
	.probe		= dmg_probe,
	.open		= dmg_open,
	.close		= dmg_close,
	.read		= dmg_read,
	.info		= dmg_info,
};
