/*
 * vmdk: probing, opening (sparse headers, stream footers, descriptor files
 * and their extents) and info; VMware "Virtual Disk Format 1.1", sections
 * "The Descriptor File", "Hosted Sparse Extent Header", "Stream-Optimized".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "../../lib/json.h"
#include "../quorum.h"
#include "vmdk.h"

#define VMDK_MAX_NESTING	4	/* descriptor -> sparse -> descriptor ... */

static int vmdk_open_text(struct img *img, const char *path, const char *buf);

/* A text descriptor starts, after comments and blank lines, with version=N. */
static int
vmdk_probe_text(const char *p, const char *end)
{
	while (p < end) {
		if (*p == '#') {
			while (p < end && *p != '\n')
				p++;
			p++;
			continue;
		}
		if (*p == ' ') {
			while (p < end && *p == ' ')
				p++;
			if (p < end && *p == '\r')
				p++;
			if (p == end || *p != '\n')
				return 0;
			p++;
			continue;
		}
		if (end - p >= 10 && strncmp(p, "version=", 8) == 0 &&
		    p[8] >= '1' && p[8] <= '3' && p[9] == '\n')
			return 100;
		if (end - p >= 11 && strncmp(p, "version=", 8) == 0 &&
		    p[8] >= '1' && p[8] <= '3' && p[9] == '\r' && p[10] == '\n')
			return 100;
		return 0;
	}
	return 0;
}

static int
vmdk_probe(const uint8_t *buf, size_t len, const char *filename)
{
	uint32_t magic;

	(void)filename;
	if (len < 4)
		return 0;
	magic = get_be32(buf);
	if (magic == VMDK4_MAGIC || magic == VMDK3_MAGIC)
		return 100;
	return vmdk_probe_text((const char *)buf, (const char *)buf + len);
}

/* The first bytes of a file (at most VMDK_DESC_MAX), NUL-terminated. */
static char *
vmdk_read_desc(int fd, const char *name, uint64_t off)
{
	uint64_t size;
	off_t end;
	char *buf;

	if ((end = lseek(fd, 0, SEEK_END)) < 0) {
		err_set(errno, "%s", name);
		return NULL;
	}
	size = (uint64_t)end;
	size = MIN(size, VMDK_DESC_MAX);
	buf = xcalloc(1, MAX(size, 4) + 1);
	if (io_pread_zero(fd, buf, size, off) < 0) {
		err_set(errno, "Could not read from file");
		free(buf);
		return NULL;
	}
	buf[size] = '\0';
	return buf;
}

static struct vmdk_extent *
vmdk_add_extent(struct vmdk *s)
{
	struct vmdk_extent *e;

	s->ext = xrealloc(s->ext, (s->n + 1) * sizeof(*s->ext));
	e = &s->ext[s->n++];
	memset(e, 0, sizeof(*e));
	e->fd = -1;
	return e;
}

static void
vmdk_free_extent(struct vmdk_extent *e)
{
	vmdk_gt_free(e);
	free(e->l1);
	free(e->l1_backup);
	free(e->se_l1);
	free(e->path);
	free(e->type);
	if (e->own_fd && e->fd >= 0)
		close(e->fd);
}

/* Place e after the extents before it; the virtual size grows with it. */
static void
vmdk_link_extent(struct img *img, struct vmdk *s, struct vmdk_extent *e)
{
	e->end_sector = (s->n > 1 ? s->ext[s->n - 2].end_sector : 0) +
	    e->sectors;
	img->size = e->end_sector * VMDK_SECTOR;
}

static int
vmdk_read_table(struct vmdk_extent *e, uint64_t off, uint32_t **out,
    const char *what)
{
	uint32_t *t;
	size_t i, n = e->l1_size;

	/* qemu's request limit: BDRV_MAX_LENGTH, INT64_MAX in whole GiB */
	if (off > (INT64_MAX & ~((1ull << 30) - 1)) - n * sizeof(*t))
		return err_set(EIO, "Could not read %s from extent '%s'", what,
		    e->path);
	if ((t = calloc(n ? n : 1, sizeof(*t))) == NULL)
		return err_set(ENOMEM, "%s", e->path);
	/* past the end of the file reads as zeroes, as in qemu */
	if (io_pread_zero(e->fd, t, n * sizeof(*t), off) < 0) {
		free(t);
		return err_set(errno, "Could not read %s from extent '%s'",
		    what, e->path);
	}
	for (i = 0; i < n; i++)
		t[i] = get_le32(&t[i]);
	*out = t;
	return 0;
}

/* The header of a stream-optimized extent whose GD is at the end. */
static int
vmdk_read_footer(struct vmdk_extent *e, uint64_t fsize, uint8_t *hdr)
{
	uint8_t f[3 * VMDK_SECTOR];
	uint64_t end = ROUND_UP(fsize, VMDK_SECTOR);

	if (end < sizeof(f) || io_pread_zero(e->fd, f, sizeof(f),
	    end - sizeof(f)) < 0)
		return err_set(end < sizeof(f) ? EINVAL : errno,
		    "Failed to read footer");
	if (get_be32(f + 512) != VMDK4_MAGIC || get_le32(f + 8) != 0 ||
	    get_le32(f + 12) != VMDK_MARKER_FOOTER ||
	    get_le64(f + 1024) != 0 || get_le32(f + 1032) != 0 ||
	    get_le32(f + 1036) != VMDK_MARKER_EOS)
		return err_set(0, "Invalid footer");
	memcpy(hdr, f + 512, VMDK_HDR_SIZE);
	return 0;
}

/* Header fields against qemu's limits, then the grain directories. */
static int
vmdk_init_sparse(struct img *img, struct vmdk_extent *e, const uint8_t *h,
    uint64_t fsize)
{
	uint32_t version = get_le32(h + 4), flags = get_le32(h + 8);
	uint32_t gtes = get_le32(h + 44);
	uint64_t cap = get_le64(h + 12), gran = get_le64(h + 20);
	uint64_t gd = get_le64(h + 56), rgd = get_le64(h + 48);
	uint64_t grain_off = get_le64(h + 64), l1;

	e->compressed = get_le16(h + 77) == VMDK4_COMPRESS_DEFLATE;
	if (version > 3)
		return err_set(0, "Unsupported VMDK version %" PRIu32, version);
	if (version == 3 && (img->flags & IMG_RDWR) && !e->compressed)
		return err_set(0, "VMDK version 3 must be read only");
	if (gtes > VMDK_MAX_GTES)
		return err_set(0, "L2 table size too big");
	/* qemu holds grains per directory entry in 32 bits */
	if ((uint32_t)(gtes * gran) == 0)
		return err_set(0, "L1 entry size is invalid");
	e->l1_entry_sectors = (uint32_t)(gtes * gran);
	l1 = cap / e->l1_entry_sectors + (cap % e->l1_entry_sectors != 0);
	if (DIV_ROUND_UP(fsize, VMDK_SECTOR) < grain_off)
		return err_set(0, "File truncated, expecting at least %" PRId64
		    " bytes", (int64_t)(grain_off * VMDK_SECTOR));
	if (gran > VMDK_MAX_GRAIN_SECTORS)
		return err_set(0, "Invalid granularity, image may be corrupt");
	if (l1 > VMDK_MAX_L1)
		return err_set(0, "L1 size too big");
	if (cap > (UINT64_MAX >> 10))
		return err_set(0, "%s: capacity out of range", e->path);
	e->version = version;
	e->sectors = cap;
	e->cluster_sectors = gran;
	e->l2_size = gtes;
	e->l1_size = (uint32_t)l1;
	/* byte offsets wrap as in qemu; vmdk_read_table bounds them */
	e->l1_off = gd << 9;
	e->l1_backup_off = (flags & VMDK4_FLAG_RGD) ? rgd << 9 : 0;
	e->marker = (flags & VMDK4_FLAG_MARKER) != 0;
	e->zero_grain = (flags & VMDK4_FLAG_ZERO_GRAIN) != 0;
	e->next_cluster_sector = ROUND_UP(DIV_ROUND_UP(fsize, VMDK_SECTOR), gran);
	if (vmdk_read_table(e, e->l1_off, &e->l1, "l1 table") < 0)
		return -1;
	if (e->l1_backup_off != 0 && vmdk_read_table(e, e->l1_backup_off,
	    &e->l1_backup, "l1 backup table") < 0)
		return -1;
	return 0;
}

/* A "COWD" extent (VMware's older sparse format); takes the fd. */
static int
vmdk_open_cowd(struct img *img, int fd, bool own, const char *path,
    const char *type, const uint8_t *h, uint64_t fsize)
{
	struct vmdk *s = img->priv;
	struct vmdk_extent *e;
	uint32_t gran = get_le32(h + 16), l1 = get_le32(h + 24);

	e = vmdk_add_extent(s);
	e->fd = fd;
	e->own_fd = own;
	e->path = xstrdup(path);
	e->type = type ? xstrdup(type) : NULL;
	if (gran > VMDK_MAX_GRAIN_SECTORS)
		return err_set(0, "Invalid granularity, image may be corrupt");
	if (l1 > VMDK_MAX_L1)
		return err_set(0, "L1 size too big");
	/* qemu divides by it unchecked */
	if (gran == 0)
		return err_set(0, "%s: COWD grain size is 0", path);
	e->sectors = get_le32(h + 12);
	e->cluster_sectors = gran;
	e->l2_size = VMDK3_GTES;
	e->l1_size = l1;
	e->l1_entry_sectors = (uint64_t)VMDK3_GTES * gran;
	e->l1_off = (uint64_t)get_le32(h + 20) << 9;
	e->next_cluster_sector = ROUND_UP(DIV_ROUND_UP(fsize, VMDK_SECTOR), gran);
	if (vmdk_read_table(e, e->l1_off, &e->l1, "l1 table") < 0)
		return -1;
	vmdk_link_extent(img, s, e);
	return 0;
}

/* A header without capacity only points at a descriptor; takes the fd. */
static int
vmdk_open_pointer(struct img *img, int fd, bool own, const char *path,
    uint64_t desc)
{
	char *buf = NULL;
	int r;

	if (desc > (UINT64_MAX >> 9) / 2)
		r = err_set(0, "%s: descriptor offset out of range", path);
	else if ((buf = vmdk_read_desc(fd, path, desc * VMDK_SECTOR)) == NULL)
		r = -1;
	else
		r = vmdk_open_text(img, path, buf);
	free(buf);
	if (own)
		close(fd);
	return r;
}

/* A "KDMV" sparse extent in fd (named path); takes the fd. */
static int
vmdk_open_sparse(struct img *img, int fd, bool own, const char *path,
    const char *type)
{
	struct vmdk *s = img->priv;
	struct vmdk_extent *e;
	uint8_t h[VMDK_HDR_SIZE];
	uint64_t fsize;
	off_t end;
	int r;

	if ((end = lseek(fd, 0, SEEK_END)) < 0 ||
	    io_pread_zero(fd, h, sizeof(h), 0) < 0) {
		r = err_set(errno, "Could not read header from file '%s'", path);
		goto fail;
	}
	fsize = (uint64_t)end;
	if (get_be32(h) == VMDK3_MAGIC)
		return vmdk_open_cowd(img, fd, own, path, type, h, fsize);
	if (get_le64(h + 12) == 0 && get_le64(h + 28) != 0)
		return vmdk_open_pointer(img, fd, own, path, get_le64(h + 28));
	if (s->create_type == NULL)
		s->create_type = xstrdup("monolithicSparse");
	e = vmdk_add_extent(s);
	e->fd = fd;
	e->own_fd = own;
	e->path = xstrdup(path);
	e->type = type ? xstrdup(type) : NULL;
	if (get_le64(h + 56) == VMDK4_GD_AT_END &&
	    vmdk_read_footer(e, fsize, h) < 0)
		return -1;
	if (vmdk_init_sparse(img, e, h, fsize) < 0)
		return -1;
	if (e->compressed) {
		free(s->create_type);
		s->create_type = xstrdup("streamOptimized");
	}
	vmdk_link_extent(img, s, e);
	return 0;
fail:
	if (own)
		close(fd);
	return r;
}

/* vmdk_parse_description: the quoted value after `name`. */
static int
vmdk_desc_value(const char *desc, const char *name, char *out, size_t size)
{
	const char *p, *q, *end = desc + strlen(desc);

	if ((p = strstr(desc, name)) == NULL)
		return -1;
	p += strlen(name) + 2;		/* past ="  */
	if (p >= end)
		return -1;
	for (q = p; q < end && *q != '"'; q++)
		;
	if (q == end || size < (size_t)(q - p) + 1)
		return -1;
	memcpy(out, p, (size_t)(q - p));
	out[q - p] = '\0';
	return 0;
}

static int
vmdk_open_file(struct img *img, const char *path)
{
	int fd, oflags = (img->flags & IMG_RDWR) ? O_RDWR : O_RDONLY;

	if ((fd = open(path, oflags | O_CLOEXEC)) < 0)
		return err_set(errno, "Could not open '%s'", path);
	return fd;
}

static int
vmdk_add_flat(struct img *img, const char *path, const char *type,
    int64_t sectors, int64_t start)
{
	struct vmdk *s = img->priv;
	struct vmdk_extent *e;
	int fd;

	if (start > INT64_MAX / VMDK_SECTOR || sectors > INT64_MAX / VMDK_SECTOR)
		return err_set(0, "%s: extent out of range", path);
	if ((fd = vmdk_open_file(img, path)) < 0)
		return -1;
	e = vmdk_add_extent(s);
	e->fd = fd;
	e->own_fd = true;
	e->path = xstrdup(path);
	e->type = xstrdup(type);
	e->flat = true;
	e->sectors = (uint64_t)sectors;
	e->cluster_sectors = (uint64_t)sectors;
	e->flat_start = (uint64_t)start * VMDK_SECTOR;
	if (s->n > 1 && s->ext[s->n - 2].end_sector > UINT64_MAX / 1024 -
	    e->sectors)
		return err_set(0, "%s: extent out of range", path);
	vmdk_link_extent(img, s, e);
	return 0;
}

/* seSparse headers: VMware's fixed values, anything else refused by name. */
static int
vmdk_se_headers(const uint8_t *c, const uint8_t *v)
{
	static const uint8_t zero[304];

	if (get_le64(c) != VMDK_SE_CONST_MAGIC)
		return err_set(0, "Bad const header magic: 0x%016" PRIx64,
		    get_le64(c));
	if (get_le64(c + 8) != VMDK_SE_VERSION)
		return err_set(0, "Unsupported version: 0x%016" PRIx64,
		    get_le64(c + 8));
	if (get_le64(c + 24) != 8)
		return err_set(0, "Unsupported grain size: %" PRIu64,
		    get_le64(c + 24));
	if (get_le64(c + 32) != 64)
		return err_set(0, "Unsupported grain table size: %" PRIu64,
		    get_le64(c + 32));
	if (get_le64(c + 40) != 0)
		return err_set(0, "Unsupported flags: 0x%016" PRIx64,
		    get_le64(c + 40));
	if (get_le64(c + 48) || get_le64(c + 56) || get_le64(c + 64) ||
	    get_le64(c + 72))
		return err_set(0, "Unsupported reserved bits: 0x%016" PRIx64
		    " 0x%016" PRIx64 " 0x%016" PRIx64 " 0x%016" PRIx64,
		    get_le64(c + 48), get_le64(c + 56), get_le64(c + 64),
		    get_le64(c + 72));
	if (memcmp(c + 208, zero, sizeof(zero)) != 0)
		return err_set(0, "Unsupported non-zero const header padding");
	if (get_le64(v) != VMDK_SE_VOLATILE_MAGIC)
		return err_set(0, "Bad volatile header magic: 0x%016" PRIx64,
		    get_le64(v));
	if (get_le64(v + 24) != 0)
		return err_set(0, "Image is dirty, Replaying journal not supported");
	if (memcmp(v + 32, zero, 480 - 304) != 0 || memcmp(v + 32 + 176, zero,
	    304) != 0)
		return err_set(0, "Unsupported non-zero volatile header padding");
	return 0;
}

/* An ESXi seSparse extent, read-only as in qemu; takes the fd. */
static int
vmdk_open_sesparse(struct img *img, int fd, const char *path)
{
	struct vmdk *s = img->priv;
	struct vmdk_extent *e;
	uint8_t c[VMDK_SECTOR], v[VMDK_SECTOR];
	uint64_t l1, i;

	e = vmdk_add_extent(s);
	e->fd = fd;
	e->own_fd = true;
	e->path = xstrdup(path);
	e->type = xstrdup("SESPARSE");
	if (img->flags & IMG_RDWR)
		return err_set(0, "No write support for seSparse images available");
	if (io_pread_zero(fd, c, sizeof(c), 0) < 0)
		return err_set(errno, "Could not read const header from file "
		    "'%s'", path);
	if (get_le64(c + 80) > (UINT64_MAX >> 9) || io_pread_zero(fd, v,
	    sizeof(v), get_le64(c + 80) * VMDK_SECTOR) < 0)
		return err_set(EIO, "Could not read volatile header from file "
		    "'%s'", path);
	if (vmdk_se_headers(c, v) < 0)
		return -1;
	l1 = get_le64(c + 136) * VMDK_SECTOR / 8;
	if (l1 > VMDK_MAX_L1)
		return err_set(0, "L1 size too big");
	e->sesparse = true;
	e->sectors = get_le64(c + 16);
	if (e->sectors > (UINT64_MAX >> 10))
		return err_set(0, "%s: capacity out of range", path);
	e->cluster_sectors = 8;
	e->l2_size = VMDK3_GTES;
	e->l1_size = (uint32_t)l1;
	e->l1_entry_sectors = (uint64_t)VMDK3_GTES * 8;
	e->l1_off = get_le64(c + 128) << 9;
	e->se_gt_off = get_le64(c + 144);
	e->se_grain_off = get_le64(c + 192);
	if (e->l1_off > (INT64_MAX & ~((1ull << 30) - 1)) - l1 * 8)
		return err_set(EIO, "Could not read l1 table from extent '%s'",
		    path);
	if ((e->se_l1 = calloc(l1 ? l1 : 1, 8)) == NULL)
		return err_set(ENOMEM, "%s", path);
	if (io_pread_zero(fd, e->se_l1, l1 * 8, e->l1_off) < 0)
		return err_set(errno, "Could not read l1 table from extent '%s'",
		    path);
	for (i = 0; i < l1; i++)
		e->se_l1[i] = get_le64(&e->se_l1[i]);
	vmdk_link_extent(img, s, e);
	return 0;
}

/* "Invalid extent line: ..." names the line up to its end. */
static int
vmdk_bad_line(const char *p)
{
	size_t n = strcspn(p, "\n");

	if (n > 0 && p[n - 1] == '\r' && p[n] == '\0')
		n--;
	return err_set(0, "Invalid extent line: %.*s", (int)n, p);
}

static int
vmdk_open_extent(struct img *img, const char *desc_path, const char *type,
    int64_t sectors, const char *fname, int64_t flat_off)
{
	struct vmdk *s = img->priv;
	char *path;
	size_t before = s->n;
	int fd, r;

	if (img->no_dir && fname[0] != '/')
		return err_set(0, "Cannot use relative paths with VMDK "
		    "descriptor file '%s': %s", img->path ? img->path :
		    img->filename, QUORUM_NO_DIR);
	path = img_backing_path(desc_path, fname);

	if (!strcmp(type, "FLAT") || !strcmp(type, "VMFS")) {
		r = vmdk_add_flat(img, path, type, sectors, flat_off);
	} else if (!strcmp(type, "SPARSE") || !strcmp(type, "VMFSSPARSE")) {
		if ((fd = vmdk_open_file(img, path)) < 0) {
			free(path);
			return -1;
		}
		r = vmdk_open_sparse(img, fd, true, path, type);
		if (r == 0 && s->n == before + 1) {
			free(s->ext[before].type);
			s->ext[before].type = xstrdup(type);
		}
	} else if (!strcmp(type, "SESPARSE")) {
		if ((fd = vmdk_open_file(img, path)) < 0) {
			free(path);
			return -1;
		}
		r = vmdk_open_sesparse(img, fd, path);
	} else {
		r = err_set(0, "Unsupported extent type '%s'", type);
	}
	free(path);
	return r;
}

/* Extent lines: RW SECTORS TYPE "NAME" [OFFSET]; other lines are skipped. */
static int
vmdk_parse_extents(struct img *img, const char *path, const char *p)
{
	char access[11], type[11], fname[512];
	int64_t sectors, flat_off;
	int m;

	for (; *p; p += strcspn(p, "\n"), p += *p == '\n') {
		flat_off = -1;
		m = sscanf(p, "%10s %" SCNd64 " %10s \"%511[^\n\r\"]\" %" SCNd64,
		    access, &sectors, type, fname, &flat_off);
		if (m < 4 || strcmp(access, "RW") != 0)
			continue;
		if (!strcmp(type, "FLAT")) {
			if (m != 5 || flat_off < 0)
				return vmdk_bad_line(p);
		} else if (!strcmp(type, "VMFS")) {
			if (m != 4)
				return vmdk_bad_line(p);
			flat_off = 0;
		} else if (m != 4) {
			return vmdk_bad_line(p);
		}
		if (sectors <= 0 || (strcmp(type, "FLAT") && strcmp(type, "SPARSE") &&
		    strcmp(type, "VMFS") && strcmp(type, "VMFSSPARSE") &&
		    strcmp(type, "SESPARSE")))
			continue;
		if (vmdk_open_extent(img, path, type, sectors, fname, flat_off) < 0)
			return -1;
	}
	return 0;
}

static int
vmdk_open_text(struct img *img, const char *path, const char *buf)
{
	static const char *const types[] = { "monolithicFlat", "vmfs",
	    "vmfsSparse", "seSparse", "twoGbMaxExtentSparse",
	    "twoGbMaxExtentFlat", NULL };
	struct vmdk *s = img->priv;
	char ct[128];
	size_t i;
	int r;

	if (s->depth + 1 > VMDK_MAX_NESTING)
		return err_set(0, "%s: descriptors nested too deeply", path);
	if (vmdk_desc_value(buf, "createType", ct, sizeof(ct)) < 0)
		return err_set(0, "invalid VMDK image descriptor");
	for (i = 0; types[i] != NULL && strcmp(types[i], ct) != 0; i++)
		;
	if (types[i] == NULL)
		return err_set(0, "Unsupported image type '%s'", ct);
	free(s->create_type);
	s->create_type = xstrdup(ct);
	s->desc_offset = 0;
	s->depth++;
	r = vmdk_parse_extents(img, path, buf);
	s->depth--;
	return r;
}

/* The CID or parentCID in the descriptor at desc_offset; -1 if none. */
int
vmdk_read_cid(int fd, uint64_t desc_offset, bool parent, uint32_t *cid)
{
	char desc[VMDK_DESC_SIZE], *p;
	const char *name = parent ? "parentCID" : "CID";
	unsigned int v;

	if (io_pread_zero(fd, desc, sizeof(desc), desc_offset) < 0)
		return err_set(errno, "Could not read descriptor");
	desc[sizeof(desc) - 1] = '\0';
	*cid = 0xffffffff;
	if ((p = strstr(desc, name)) == NULL)
		return err_set(EINVAL, "no %s", name);
	p += strlen(name) + 1;
	if (sscanf(p, "%x", &v) != 1)
		return err_set(EINVAL, "no %s", name);
	*cid = v;
	return 0;
}

/* parentFileNameHint="NAME" names the backing file, always a vmdk. */
static int
vmdk_parent(struct img *img)
{
	struct vmdk *s = img->priv;
	char desc[VMDK_DESC_SIZE + 1], *p, *q;

	memset(desc, 0, sizeof(desc));
	if (io_pread_zero(img->fd, desc, VMDK_DESC_SIZE, s->desc_offset) < 0)
		return err_set(errno, "Could not read descriptor");
	if ((p = strstr(desc, "parentFileNameHint")) == NULL)
		return 0;
	p += strlen("parentFileNameHint") + 2;
	if ((q = strchr(p, '"')) == NULL || q - p > 4095)
		return err_set(EINVAL, "Could not open '%s'", img->filename);
	img->backing_file = xasprintf("%.*s", (int)(q - p), p);
	img->backing_fmt = xstrdup("vmdk");
	return 0;
}

static void
vmdk_close(struct img *img)
{
	struct vmdk *s = img->priv;
	size_t i;

	/* close cannot fail: a grain still assembling goes out as it can */
	for (i = 0; i < s->n; i++)
		(void)vmdk_pend_flush(&s->ext[i]);
	for (i = 0; i < s->n; i++)
		vmdk_free_extent(&s->ext[i]);
	free(s->ext);
	free(s->create_type);
}

static int
vmdk_open(struct img *img)
{
	struct vmdk *s = img->priv;
	uint8_t magic[4];
	char *buf;
	int r;

	/* a sparse extent's header, else a descriptor: read whole only then */
	if (io_pread_zero(img->fd, magic, sizeof(magic), 0) < 0)
		return err_set(errno, "Could not read from file");
	switch (get_be32(magic)) {
	case VMDK4_MAGIC:
	case VMDK3_MAGIC:
		r = vmdk_open_sparse(img, img->fd, false, img->filename, NULL);
		s->desc_offset = VMDK_SECTOR;
		break;
	default:
		if ((buf = vmdk_read_desc(img->fd, img->filename, 0)) == NULL)
			return -1;
		r = vmdk_open_text(img, img->path ? img->path : img->filename,
		    buf);
		free(buf);
		break;
	}
	if (r < 0 || vmdk_parent(img) < 0)
		return -1;
	/* qemu's open fails bare ("Invalid argument") without both CIDs */
	if (vmdk_read_cid(img->fd, s->desc_offset, false, &s->cid) < 0 ||
	    vmdk_read_cid(img->fd, s->desc_offset, true, &s->parent_cid) < 0)
		return err_set(err_errno(), "Could not open '%s'", img->filename);
	if (s->n == 0)
		return err_set(0, "%s: the descriptor names no extent",
		    img->filename);
	return 0;
}

static int
vmdk_info(struct img *img, struct img_info *info)
{
	struct vmdk *s = img->priv;
	struct vmdk_extent *e;
	struct jnode *d = jn_new_obj(), *arr, *x;
	size_t i;

	/*
	 * qemu's vmdk_get_info: extents of different kinds (flat or not,
	 * compressed or not, grain sizes) leave no cluster size and no dirty
	 * flag; a flat first extent has no cluster size.
	 */
	for (i = 1; i < s->n; i++)
		if (s->ext[i].flat != s->ext[0].flat ||
		    s->ext[i].compressed != s->ext[0].compressed ||
		    (!s->ext[0].flat &&
		    s->ext[i].cluster_sectors != s->ext[0].cluster_sectors))
			info->no_dirty_flag = true;
	if (!info->no_dirty_flag && !s->ext[0].flat)
		info->cluster_size = s->ext[0].cluster_sectors * VMDK_SECTOR;
	jn_str(d, "create-type", s->create_type ? s->create_type : "");
	jn_int(d, "cid", s->cid);
	jn_int(d, "parent-cid", s->parent_cid);
	arr = jn_arr(d, "extents");
	for (i = 0; i < s->n; i++) {
		e = &s->ext[i];
		x = jn_obj(arr, NULL);
		jn_str(x, "filename", e->path);
		jn_str(x, "format", e->type ? e->type : "");
		jn_int(x, "virtual-size", (int64_t)(e->sectors * VMDK_SECTOR));
		if (e->compressed)
			jn_bool(x, "compressed", true);
		if (e->l2_size)
			jn_int(x, "cluster-size",
			    (int64_t)(e->cluster_sectors * VMDK_SECTOR));
	}
	info->specific = d;
	return 0;
}

/* The descriptor and every extent file, each counted once. */
static int64_t
vmdk_actual_size(struct img *img)
{
	struct vmdk *s = img->priv;
	struct stat st;
	int64_t sum;
	size_t i;

	if (fstat(img->fd, &st) < 0)
		return -1;
	sum = (int64_t)st.st_blocks * 512;
	for (i = 0; i < s->n; i++) {
		if (!s->ext[i].own_fd)
			continue;
		if (fstat(s->ext[i].fd, &st) < 0)
			return -1;
		sum += (int64_t)st.st_blocks * 512;
	}
	return sum;
}

const struct fmt_ops vmdk_ops = {
	.name		= "vmdk",
	.priv_size	= sizeof(struct vmdk),
	.probe		= vmdk_probe,
	.open		= vmdk_open,
	.close		= vmdk_close,
	.create		= vmdk_create,
	.create_opts	= vmdk_create_opts,
	.read		= vmdk_read,
	.write		= vmdk_write,
	.write_zeroes	= vmdk_write_zeroes,
	.write_compressed = vmdk_write,
	.flush		= vmdk_flush,
	.block_status	= vmdk_block_status,
	.info		= vmdk_info,
	.check		= vmdk_check,
	.actual_size	= vmdk_actual_size,
	.backing_read_ok = vmdk_backing_read_ok,
};
