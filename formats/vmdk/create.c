/*
 * vmdk create: the subformats qemu makes, laid out as qemu lays them out
 * (grain directory, redundant directory, preallocated grain tables), with
 * qemu's descriptor text.  VMware "Virtual Disk Format 1.1".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "vmdk.h"

#define VMDK_GRAIN_SECTORS	128		/* 64 KiB grains */
#define VMDK_SPLIT_BYTES	(2ull << 30)	/* twoGbMaxExtent* extent size */
#define VMDK_GT_SECTORS		4		/* 512 entries of 4 bytes */

enum { SUB_SPARSE, SUB_FLAT, SUB_SPLIT_SPARSE, SUB_SPLIT_FLAT, SUB_STREAM };

static const char *const vmdk_subformats[] = { "monolithicSparse",
	"monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
	"streamOptimized", NULL };
static const char *const vmdk_adapters[] = { "ide", "buslogic", "lsilogic",
	"legacyESX", NULL };

struct vmdk_new {
	const char	*filename;
	int		 sub;
	bool		 compat6, zeroed;
	const char	*adapter, *hw, *tools, *backing;
	uint32_t	 parent_cid;
	uint64_t	 sectors;
};

static int
vmdk_index(const char *const *l, const char *v)
{
	int i;

	for (i = 0; l[i] != NULL; i++)
		if (strcmp(l[i], v) == 0)
			return i;
	return -1;
}

/* Header, redundant GD + tables, GD + tables, then the grains. */
static int
vmdk_init_sparse_file(int fd, uint64_t cap, bool compress, bool zeroed)
{
	uint8_t h[VMDK_SECTOR] = { 0 }, *gd;
	uint64_t grains, gt_count, gd_sectors, rgd, gdo, grain_off, i, t;
	uint32_t flags = VMDK4_FLAG_NL_DETECT | VMDK4_FLAG_RGD;
	int r;

	/* qemu counts grains in 32 bits: past 256 TiB its tables wrap, ours too */
	grains = (uint32_t)DIV_ROUND_UP(cap, VMDK_GRAIN_SECTORS);
	gt_count = DIV_ROUND_UP(grains, VMDK_MAX_GTES);
	gd_sectors = DIV_ROUND_UP(gt_count * 4, VMDK_SECTOR);
	rgd = 1 + 20;
	gdo = rgd + gd_sectors + VMDK_GT_SECTORS * gt_count;
	grain_off = ROUND_UP(gdo + gd_sectors + VMDK_GT_SECTORS * gt_count,
	    VMDK_GRAIN_SECTORS);
	if (compress)
		flags |= VMDK4_FLAG_COMPRESS | VMDK4_FLAG_MARKER;
	if (zeroed)
		flags |= VMDK4_FLAG_ZERO_GRAIN;
	put_be32(h, VMDK4_MAGIC);
	put_le32(h + 4, compress ? 3 : zeroed ? 2 : 1);
	put_le32(h + 8, flags);
	put_le64(h + 12, cap);
	put_le64(h + 20, VMDK_GRAIN_SECTORS);
	put_le64(h + 28, 1);
	put_le64(h + 36, 20);
	put_le32(h + 44, VMDK_MAX_GTES);
	put_le64(h + 48, rgd);
	put_le64(h + 56, gdo);
	put_le64(h + 64, grain_off);
	memcpy(h + 73, "\n \r\n", 4);
	put_le16(h + 77, compress ? VMDK4_COMPRESS_DEFLATE : 0);
	if (io_pwrite(fd, h, VMDK_HDR_SIZE, 0) < 0 ||
	    ftruncate(fd, (off_t)(grain_off * VMDK_SECTOR)) < 0)
		return -1;
	if (gt_count == 0)
		return 0;
	gd = xcalloc(gd_sectors, VMDK_SECTOR);
	for (i = 0, t = rgd + gd_sectors; i < gt_count; i++, t += VMDK_GT_SECTORS)
		put_le32(gd + 4 * i, (uint32_t)t);
	r = io_pwrite(fd, gd, gd_sectors * VMDK_SECTOR, rgd * VMDK_SECTOR);
	for (i = 0, t = gdo + gd_sectors; r == 0 && i < gt_count;
	    i++, t += VMDK_GT_SECTORS)
		put_le32(gd + 4 * i, (uint32_t)t);
	if (r == 0)
		r = io_pwrite(fd, gd, gd_sectors * VMDK_SECTOR, gdo * VMDK_SECTOR);
	free(gd);
	return r;
}

/* An extent file of cap sectors: flat (first block written) or sparse. */
static int
vmdk_make_extent(const char *path, uint64_t cap, const struct vmdk_new *n)
{
	static const uint8_t first[4096];
	int fd, r;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "Could not create '%s'", path);
	if (n->sub == SUB_FLAT || n->sub == SUB_SPLIT_FLAT) {
		r = ftruncate(fd, (off_t)(cap * VMDK_SECTOR));
		/* qemu's file driver writes a new file's first block */
		if (r == 0 && cap > 0)
			r = io_pwrite(fd, first, cap * VMDK_SECTOR < sizeof(first) ?
			    VMDK_SECTOR : sizeof(first), 0);
	} else {
		r = vmdk_init_sparse_file(fd, cap, n->sub == SUB_STREAM, n->zeroed);
	}
	if (r < 0) {
		err_set(errno, "Could not write '%s'", path);
		close(fd);
		return -1;
	}
	if (close(fd) < 0)
		return err_set(errno, "%s", path);
	return 0;
}

static char *
vmdk_desc_text(const struct vmdk_new *n, const char *extents)
{
	uint32_t cid, heads = strcmp(n->adapter, "ide") == 0 ? 16 : 255;
	char *parent = n->backing ?
	    xasprintf("parentFileNameHint=\"%s\"", n->backing) : xstrdup("");
	const char *hw = n->hw ? n->hw : n->compat6 ? "6" : "4";
	char *d;

	if (getrandom(&cid, sizeof(cid), 0) != sizeof(cid))
		cid = (uint32_t)getpid() * 2654435761u;
	d = xasprintf("# Disk DescriptorFile\n"
	    "version=1\n"
	    "CID=%" PRIx32 "\n"
	    "parentCID=%" PRIx32 "\n"
	    "createType=\"%s\"\n"
	    "%s\n"
	    "# Extent description\n"
	    "%s\n"
	    "# The Disk Data Base\n"
	    "#DDB\n"
	    "\n"
	    "ddb.virtualHWVersion = \"%s\"\n"
	    "ddb.geometry.cylinders = \"%" PRIu64 "\"\n"
	    "ddb.geometry.heads = \"%" PRIu32 "\"\n"
	    "ddb.geometry.sectors = \"63\"\n"
	    "ddb.adapterType = \"%s\"\n"
	    "ddb.toolsVersion = \"%s\"\n",
	    cid, n->parent_cid, vmdk_subformats[n->sub], parent, extents, hw,
	    n->sectors / (heads * 63), heads, n->adapter, n->tools);
	free(parent);
	return d;
}

/* The extent files, named after the image; their descriptor lines. */
static int
vmdk_make_extents(const struct vmdk_new *n, char **lines, char ***made)
{
	const char *slash = strrchr(n->filename, '/'), *base, *dot;
	bool flat = n->sub == SUB_FLAT || n->sub == SUB_SPLIT_FLAT;
	bool split = n->sub == SUB_SPLIT_FLAT || n->sub == SUB_SPLIT_SPARSE;
	uint64_t left = n->sectors, cap, split_sec = VMDK_SPLIT_BYTES / VMDK_SECTOR;
	char *name, *path, *line;
	size_t i, nmade = 0;
	int dirlen;

	base = slash ? slash + 1 : n->filename;
	dirlen = (int)(base - n->filename);
	dot = strrchr(base, '.');
	if (dot == NULL)
		dot = base + strlen(base);
	*lines = xstrdup("");
	*made = xcalloc(left / split_sec + 2, sizeof(char *));
	for (i = 1; i == 1 || left > 0; i++) {
		cap = split ? MIN(left, split_sec) : left;
		if (split)
			name = xasprintf("%.*s-%c%03zu%s", (int)(dot - base), base,
			    flat ? 'f' : 's', i, dot);
		else if (flat)
			name = xasprintf("%.*s-flat%s", (int)(dot - base), base, dot);
		else
			name = xstrdup(base);
		line = xasprintf(flat ? "%sRW %" PRIu64 " FLAT \"%s\" 0\n" :
		    "%sRW %" PRIu64 " SPARSE \"%s\"\n", *lines, cap, name);
		free(*lines);
		*lines = line;
		path = xasprintf("%.*s%s", dirlen, n->filename, name);
		free(name);
		if (vmdk_make_extent(path, cap, n) < 0) {
			free(path);
			return -1;
		}
		(*made)[nmade++] = path;
		left -= cap;
		if (!split)
			break;
	}
	return 0;
}

static int
vmdk_write_desc(const struct vmdk_new *n, const char *desc)
{
	bool embedded = n->sub == SUB_SPARSE || n->sub == SUB_STREAM;
	int fd;

	fd = open(n->filename, O_WRONLY | O_CREAT | (embedded ? 0 : O_TRUNC) |
	    O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(errno, "Could not create '%s'", n->filename);
	if (io_pwrite(fd, desc, strlen(desc), embedded ? VMDK_SECTOR : 0) < 0) {
		err_set(errno, "Could not write description");
		close(fd);
		return -1;
	}
	if (close(fd) < 0)
		return err_set(errno, "%s", n->filename);
	return 0;
}

/* The backing file must be a vmdk; its CID becomes our parentCID. */
static int
vmdk_new_backing(struct vmdk_new *n, const char *fmt)
{
	struct img *b;
	char *path;
	int r = 0;

	n->parent_cid = 0xffffffff;
	if (n->backing == NULL)
		return 0;
	if (fmt != NULL && strcmp(fmt, "vmdk") != 0)
		return err_set(0, "backing_file must be a vmdk image");
	path = img_backing_path(n->filename, n->backing);
	b = img_open(path, NULL, IMG_NO_BACKING | IMG_SHARE);
	if (b == NULL) {
		/* qemu names the file that failed once */
		err_unprefix("Could not open '%s'", path);
		free(path);
		return -1;
	}
	free(path);
	if (strcmp(img_format(b), "vmdk") != 0)
		r = err_set(0, "backing_file must be a vmdk image");
	else if (vmdk_read_cid(b->fd, ((struct vmdk *)b->priv)->desc_offset,
	    false, &n->parent_cid) < 0)
		r = err_set(0, "Failed to read parent CID");
	img_close(b);
	return r;
}

static int
vmdk_new_opts(struct vmdk_new *n, const struct opt_list *o)
{
	const char *v;

	n->adapter = opt_list_get(o, "adapter_type");
	n->hw = opt_list_get(o, "hwversion");
	n->tools = opt_list_get(o, "toolsversion");
	n->backing = opt_list_get(o, "backing_file");
	if (n->backing != NULL && n->backing[0] == '\0')
		n->backing = NULL;
	n->compat6 = (v = opt_list_get(o, "compat6")) && opt_bool(v) == 1;
	n->zeroed = (v = opt_list_get(o, "zeroed_grain")) && opt_bool(v) == 1;
	if (n->adapter == NULL)
		n->adapter = "ide";
	if (n->tools == NULL)
		n->tools = "2147483647";
	if (n->hw != NULL && strcmp(n->hw, "undefined") == 0)
		n->hw = NULL;
	if (vmdk_index(vmdk_adapters, n->adapter) < 0)
		return err_set(0, "invalid parameter value: %s", n->adapter);
	v = opt_list_get(o, "subformat");
	if ((n->sub = vmdk_index(vmdk_subformats, v ? v : "monolithicSparse")) < 0)
		return err_set(0, "invalid parameter value: %s", v);
	if (n->compat6 && n->hw != NULL)
		return err_set(0, "compat6 cannot be enabled with hwversion set");
	if (n->zeroed && (n->sub == SUB_FLAT || n->sub == SUB_SPLIT_FLAT))
		return err_set(0, "Flat image can't enable zeroed grain");
	return vmdk_new_backing(n, opt_list_get(o, "backing_fmt"));
}

int
vmdk_create(const char *filename, uint64_t size, const struct opt_list *o)
{
	struct vmdk_new n = { .filename = filename };
	char *lines = NULL, *desc = NULL, **made = NULL;
	size_t i;
	int r = -1;

	n.sectors = DIV_ROUND_UP(size, VMDK_SECTOR);
	if (vmdk_new_opts(&n, o) < 0) {
		err_prefix("%s", filename);
		return -1;
	}
	if (vmdk_make_extents(&n, &lines, &made) == 0) {
		desc = vmdk_desc_text(&n, lines);
		r = vmdk_write_desc(&n, desc);
	}
	for (i = 0; made != NULL && made[i] != NULL; i++) {
		if (r < 0 && strcmp(made[i], filename) != 0)
			unlink(made[i]);
		free(made[i]);
	}
	free(made);
	free(lines);
	free(desc);
	if (r < 0)
		err_prefix("%s", filename);
	return r;
}

const struct opt_desc vmdk_create_opts[] = {
	{ "size", OPT_SIZE, "Virtual disk size", NULL },
	{ "adapter_type", OPT_STRING, "Virtual adapter type, can be one of ide "
	    "(default), lsilogic, buslogic or legacyESX", NULL },
	{ "backing_file", OPT_STRING, "File name of a base image", NULL },
	{ "backing_fmt", OPT_STRING, "Must be 'vmdk' if present", NULL },
	{ "compat6", OPT_BOOL, "VMDK version 6 image", "off" },
	{ "hwversion", OPT_STRING, "VMDK hardware version", "undefined" },
	{ "subformat", OPT_STRING, "VMDK flat extent format, can be one of "
	    "{monolithicSparse (default) | monolithicFlat | "
	    "twoGbMaxExtentSparse | twoGbMaxExtentFlat | streamOptimized} ",
	    NULL },
	{ "toolsversion", OPT_STRING, "VMware guest tools version", NULL },
	{ "zeroed_grain", OPT_BOOL, "Enable efficient zero writes using the "
	    "zeroed-grain GTE feature", NULL },
	{ NULL, 0, NULL, NULL },
};
