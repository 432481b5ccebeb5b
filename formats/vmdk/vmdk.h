/*
 * vmdk, private to the folder: VMware's "Virtual Disk Format 1.1" (hosted
 * sparse extents, stream-optimized extents, descriptor files).
 */
#ifndef IMG_VMDK_H
#define IMG_VMDK_H

#include <stdbool.h>
#include <stdint.h>

#include "../fmt.h"

#define VMDK4_MAGIC		0x4b444d56u	/* "KDMV" read big-endian */
#define VMDK3_MAGIC		0x434f5744u	/* "COWD" */
#define VMDK_SECTOR		512
#define VMDK_HDR_SIZE		79	/* magic + header fields we read */

#define VMDK4_FLAG_NL_DETECT	(1u << 0)
#define VMDK4_FLAG_RGD		(1u << 1)
#define VMDK4_FLAG_ZERO_GRAIN	(1u << 2)
#define VMDK4_FLAG_COMPRESS	(1u << 16)
#define VMDK4_FLAG_MARKER	(1u << 17)
#define VMDK4_COMPRESS_DEFLATE	1
#define VMDK4_GD_AT_END		UINT64_MAX

#define VMDK_GTE_ZEROED		1	/* grain table entry of a zeroed grain */
#define VMDK_SE_CONST_MAGIC	0xcafebabeull
#define VMDK_SE_VOLATILE_MAGIC	0xcafecafeull
#define VMDK_SE_VERSION		0x0000000200000001ull
#define VMDK_MARKER_EOS		0
#define VMDK_MARKER_FOOTER	3

#define VMDK_DESC_SIZE		(20 * VMDK_SECTOR)	/* what qemu rewrites */
#define VMDK_DESC_MAX		((1u << 20) - 1)	/* descriptor bytes read */
/* qemu's limits: a grain over 1 GiB or a GD over 32 Mi entries is corrupt */
#define VMDK_MAX_GRAIN_SECTORS	0x200000
#define VMDK_MAX_L1		(32u * 1024 * 1024)
#define VMDK_MAX_GTES		512
#define VMDK3_GTES		4096	/* a COWD grain table's fixed size */
#define VMDK_GT_CACHE		64	/* grain tables cached per extent */

struct vmdk_gt {
	uint64_t	 off;		/* byte offset of the table; 0: empty slot */
	uint64_t	*e;		/* entries, decoded from 32 or 64 bits */
};

struct vmdk_extent {
	char		*path;		/* as opened: the descriptor's folder + name */
	char		*type;		/* "FLAT", "SPARSE"...; NULL: monolithic */
	int		 fd;
	bool		 own_fd;
	bool		 flat, compressed, marker, zero_grain;
	bool		 sesparse;	/* ESXi seSparse: 64-bit tables, read-only */
	uint64_t	 se_gt_off;	/* seSparse: sector of the grain tables */
	uint64_t	 se_grain_off;	/* seSparse: sector of the grains */
	uint64_t	*se_l1;		/* seSparse: raw grain directory */
	uint32_t	 version;
	uint64_t	 sectors;	/* virtual size of this extent */
	uint64_t	 end_sector;	/* sum of the sizes up to this one */
	uint64_t	 flat_start;	/* byte offset of a flat extent's data */
	uint64_t	 cluster_sectors;
	uint32_t	 l2_size;	/* entries per grain table */
	uint32_t	 l1_size;	/* grain directory entries */
	uint64_t	 l1_entry_sectors;
	uint64_t	 l1_off, l1_backup_off;	/* bytes; backup 0: none */
	uint32_t	*l1, *l1_backup;
	uint64_t	 next_cluster_sector;
	struct vmdk_gt	 gt[VMDK_GT_CACHE];
	uint8_t		*pend;		/* stream grain being assembled, or NULL */
	uint64_t	 pend_off;	/* its guest offset */
};

struct vmdk {
	struct vmdk_extent *ext;
	size_t		 n;
	char		*create_type;
	uint32_t	 cid, parent_cid;
	uint64_t	 desc_offset;
	bool		 cid_updated;
	int		 depth;		/* descriptor nesting while opening */
};

/* vmdk.c */
int	vmdk_read_cid(int fd, uint64_t desc_offset, bool parent, uint32_t *cid);
/* io.c */
struct vmdk_extent *vmdk_find_extent(struct vmdk *s, uint64_t sector);
void	vmdk_gt_free(struct vmdk_extent *e);
/* Write out a stream grain still being assembled. 0 or -1. */
int	vmdk_pend_flush(struct vmdk_extent *e);
int	vmdk_read(struct img *img, uint64_t off, size_t len, void *buf);
int	vmdk_write(struct img *img, uint64_t off, size_t len, const void *buf);
int	vmdk_write_zeroes(struct img *img, uint64_t off, uint64_t len, int flags);
int	vmdk_block_status(struct img *img, uint64_t off, uint64_t len,
	    struct fmt_status *st);
int	vmdk_check(struct img *img, int fix, struct img_check *res);
int	vmdk_flush(struct img *img);
int	vmdk_backing_read_ok(struct img *img);
/* create.c */
int	vmdk_create(const char *filename, uint64_t size, const struct opt_list *o);
extern const struct opt_desc vmdk_create_opts[];

#endif
