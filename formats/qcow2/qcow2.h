/*
 * qcow2 driver internals, private to formats/qcow2/: on-disk constants from
 * docs/interop/qcow2.txt, the open image's state, and the helpers the
 * folder's files share.
 */
#ifndef IMG_QCOW2_H
#define IMG_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../lib/int.h"
#include "../fmt.h"

#define QCOW2_MAGIC		0x514649fbu	/* "QFI\xfb" */
#define QCOW2_V2_HEADER		72
#define QCOW2_V3_HEADER		104
#define QCOW2_OUR_HEADER	112	/* v3 with compression_type, padded to 8 */

/* qemu's implementation limits (block/qcow2.h); we refuse what it refuses */
#define QCOW2_MIN_CLUSTER_BITS	9
#define QCOW2_MAX_CLUSTER_BITS	21
#define QCOW2_MAX_L1_BYTES	(32u << 20)
#define QCOW2_MAX_RT_BYTES	(8u << 20)
#define QCOW2_MAX_SNAPSHOTS	65536
#define QCOW2_SNAPSHOT_ENTRY	40	/* fixed part of a snapshot table entry */
#define QCOW2_MAX_BACKING_NAME	1023
#define QCOW2_MAX_FMT_NAME	15	/* bs->backing_format holds 16 bytes */
#define QCOW2_MAX_BITMAPS	65535
#define QCOW2_MAX_BITMAP_DIR	(1024u * QCOW2_MAX_BITMAPS)
#define QCOW2_SECTOR		512u	/* compressed sizes count these */

#define QCOW2_INCOMPAT_DIRTY	(1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT	(1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2	(1ull << 4)
#define QCOW2_INCOMPAT_KNOWN	0x1full
#define QCOW2_COMPAT_LAZY	(1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS	(1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_RAW (1ull << 1)

#define QCOW2_EXT_END		0x00000000u
#define QCOW2_EXT_BACKING_FMT	0xe2792acau
#define QCOW2_EXT_FEATURES	0x6803f857u
#define QCOW2_EXT_BITMAPS	0x23852875u
#define QCOW2_EXT_CRYPTO	0x0537be77u
#define QCOW2_EXT_DATA_FILE	0x44415441u
#define QCOW2_FEATURES_EXT	(8 + 8 * 48)	/* qemu's feature name table */

#define QCOW2_COMPRESS_ZLIB	0
#define QCOW2_COMPRESS_ZSTD	1

#define QCOW2_OFLAG_COPIED	(1ull << 63)
#define QCOW2_OFLAG_COMPRESSED	(1ull << 62)
#define QCOW2_OFLAG_ZERO	(1ull << 0)
#define QCOW2_L1E_OFFSET	0x00fffffffffffe00ull
#define QCOW2_L2E_OFFSET	0x00fffffffffffe00ull
#define QCOW2_RTE_OFFSET	0xfffffffffffffe00ull
#define QCOW2_MAX_HOST		(1ull << 56)	/* host offsets fit in 56 bits */

/* What one guest cluster (or subcluster) is, as qemu's QCow2SubclusterType. */
enum qcow2_type {
	QCOW2_UNALLOC,		/* read from the backing file */
	QCOW2_UNALLOC_ALLOC,	/* extended L2: host cluster, unallocated subcluster */
	QCOW2_ZERO,		/* zero flag, no host cluster */
	QCOW2_ZERO_ALLOC,	/* zero flag on a preallocated host cluster */
	QCOW2_NORMAL,
	QCOW2_COMPRESSED,
};

/* A bounded LRU of whole cluster-sized tables (L2 tables, refcount blocks). */
struct qcow2_centry {
	uint64_t		 off;		/* host offset; 0: slot free */
	uint8_t			*data;		/* one cluster, on-disk byte order */
	bool			 dirty;
	struct qcow2_centry	*prev, *next;	/* LRU list, most recent first */
	struct qcow2_centry	*hnext;		/* hash chain */
};

struct qcow2_cache {
	struct img		*img;
	const char		*what;		/* "L2 table", for messages */
	size_t			 max;
	size_t			 n;
	size_t			 ndirty;
	struct qcow2_centry	*ents;
	struct qcow2_centry	**hash;
	size_t			 nhash;		/* power of two */
	struct qcow2_centry	*head, *tail;
	struct qcow2_cache	*depends;	/* flush this one first */
};

struct qcow2 {
	int		 version;
	unsigned	 cluster_bits;
	uint64_t	 cluster_size;
	unsigned	 l2_bits;		/* log2 of entries per L2 table */
	bool		 extl2;
	unsigned	 sc_bits;		/* log2 of the subcluster size */
	unsigned	 refcount_order;
	unsigned	 rb_bits;		/* log2 of entries per refcount block */
	uint64_t	 incompat, compat, autoclear;
	uint32_t	 header_length;
	unsigned	 compression;
	unsigned	 csize_shift;
	uint64_t	 csize_mask, coff_mask;
	uint32_t	 crypt_method;
	uint64_t	 crypt_hdr_off;		/* LUKS header (CRYPTO extension) */
	uint64_t	 crypt_hdr_len;
	struct qcow2_crypt *crypt;		/* keys of an encrypted image */

	uint64_t	 l1_offset;
	uint32_t	 l1_size;
	uint64_t	*l1;			/* host byte order */
	uint8_t		*l1_dirty;		/* one flag per L1 entry */
	bool		 any_l1_dirty;

	uint64_t	 rt_offset;
	uint32_t	 rt_clusters;
	uint64_t	 rt_size;		/* entries */
	uint64_t	*rt;			/* host byte order */
	bool		 rt_dirty;		/* table moved or changed */
	bool		 header_dirty;		/* refcount table fields */

	uint64_t	 snapshots_offset;
	uint32_t	 nb_snapshots;
	uint32_t	 nb_bitmaps;
	uint64_t	 bm_dir_offset, bm_dir_size;
	char		*data_file;		/* as the header names it */
	bool		 has_data;		/* data clusters live in data_fd */
	bool		 data_missing;		/* opened for info without it */
	int		 data_fd;
	char		*data_path;		/* data_file resolved, for map */
	uint64_t	 data_size;		/* data file size, as we grew it */

	struct qcow2_cache l2_cache, rb_cache;
	uint64_t	 file_size;		/* at open, plus what we appended */
	uint64_t	 alloc_end;		/* past every cluster in use or reserved */
	uint64_t	 free_index;		/* first cluster that may be free */
	uint64_t	 free_byte;		/* compressed packing: next free byte, or 0 */
	int		 prealloc;		/* metadata preallocation: -1 unknown */
	bool		 write_ready;
	bool		 guest_written;		/* since the last node flush */
	bool		 lazy_dirty;
	bool		 fatal;			/* marked corrupt: no more writes */
	void		*bm_track;		/* bitmap.c: bitmaps recording writes */		/* we set the dirty bit (lazy refcounts) */
	bool		 opened;		/* open done: messages name the file */		/* first-write header updates done */

	struct qcow2_free {
		uint64_t off, len;
	}		*frees;			/* references to drop after L2 write-back */
	size_t		 nfree, free_cap;
	/* a queued drop may free a cluster (not only unshare one): the
	 * next allocation reuses it, as qemu's, after a write-back */
	bool		 frees_reclaim;

	uint64_t	 zc_off;		/* last decompressed cluster (L2 entry) */
	uint8_t		*zc_buf;
	bool		 zc_valid;
};

/* cache.c */
void	 qcow2_cache_init(struct qcow2_cache *c, struct img *img,
	    const char *what, size_t max, struct qcow2_cache *depends);
void	 qcow2_cache_free(struct qcow2_cache *c);
/* A table's bytes (on-disk order), read on a miss; NULL with err_set. */
uint8_t	*qcow2_cache_get(struct qcow2_cache *c, uint64_t off);
/* A table at off that starts zeroed (freshly allocated); marked dirty. */
uint8_t	*qcow2_cache_get_empty(struct qcow2_cache *c, uint64_t off);
void	 qcow2_cache_dirty(struct qcow2_cache *c, uint64_t off);
void	 qcow2_cache_drop(struct qcow2_cache *c, uint64_t off);
/* Write every dirty table (dependencies first); no fsync of its own. */
int	 qcow2_cache_write(struct qcow2_cache *c);

/* refcount.c */
/* Entry i of a refcount block of 2^order-bit entries becomes v. */
void	 qcow2_rb_set(uint8_t *rb, unsigned order, uint64_t i, uint64_t v);
int	 qcow2_refcount_get(struct img *img, uint64_t cluster, uint64_t *rc);
/* Add delta (+1/-1) to the refcounts of the clusters in [off, off+len). */
int	 qcow2_refcount_update(struct img *img, uint64_t off, uint64_t len,
	    int delta);
/* n contiguous new clusters at the end of the file, refcount 1; 0 on error. */
uint64_t qcow2_alloc_clusters(struct img *img, uint64_t n);
/* len bytes for compressed data, packed as qemu packs them; 0 on error. */
uint64_t qcow2_alloc_bytes(struct img *img, uint64_t len);
/* Drop one reference to whatever an L2 entry points at (deferred). */
int	 qcow2_free_entry(struct img *img, uint64_t entry);
int	 qcow2_defer_free(struct img *img, uint64_t off, uint64_t len);
/* The same for a reference a snapshot shares (no COPIED flag): it frees nothing */
int	 qcow2_defer_unshare(struct img *img, uint64_t off, uint64_t len);
int	 qcow2_apply_frees(struct img *img);
/* The host bytes an L2 entry holds (len 0: none). */
void	 qcow2_entry_range(const struct qcow2 *s, uint64_t entry,
	    uint64_t *off, uint64_t *len);
int	 qcow2_refcount_flush(struct img *img);
/* A new refcount table covering [start, start + additional clusters) at
 * start (qemu's qcow2_refcount_area); *end: past the new structures. */
int	 qcow2_refcount_area(struct img *img, uint64_t start,
	    uint64_t additional, uint64_t *end);
int	 qcow2_detect_prealloc(struct img *img);

/* bitmap.c */
int	 qcow2_bitmap_info(struct img *img, struct jnode *data);
/* Mark enabled bitmaps in use: writes are not tracked in them. */
int	 qcow2_bitmaps_in_use(struct img *img);
/* Load the bitmaps to record writes in; write them back at close. */
int	 qcow2_bitmaps_track(struct img *img);
void	 qcow2_bitmaps_dirty(struct img *img, uint64_t off, uint64_t len);
int	 qcow2_bitmaps_store(struct img *img);
/* Resize: refuse inconsistent bitmaps; then fit the bitmaps to img->size. */
int	 qcow2_bitmaps_resize_ok(struct img *img);
void	 qcow2_bitmaps_resized(struct img *img);
void	 qcow2_bitmaps_drop(struct img *img);
/* img_bitmap: add, remove, clear, enable, disable, merge. */
int	 qcow2_bitmap(struct img *img, const char *name,
	    const struct img_bitmap_act *acts, size_t n, uint64_t granularity,
	    struct img *src, size_t *failed);

/* cluster.c */
/* The L2 table for L1 index l1i (*l2 NULL, *l2off 0: none). */
int	 qcow2_l2_lookup(struct img *img, uint64_t l1i, uint64_t *l2off,
	    uint8_t **l2);
/* Set an entry and, with extended L2, its subcluster bitmap. */
void	 qcow2_set_entry(const struct qcow2 *s, uint8_t *l2, uint64_t i,
	    uint64_t e, uint64_t bm);
/* The L2 table writes under L1 index l1i go to (allocated or copied). */
int	 qcow2_l2_for_write(struct img *img, uint64_t l1i, uint64_t *l2off);
enum qcow2_type qcow2_entry_type(const struct qcow2 *s, uint64_t entry,
	    uint64_t bitmap, unsigned sc);
int	 qcow2_block_status(struct img *img, uint64_t off, uint64_t len,
	    struct fmt_status *st);
int	 qcow2_read(struct img *img, uint64_t off, size_t len, void *buf);
/* backing_read_ok: qemu's read_backing_aio event, never a refusal. */
int	 qcow2_backing_read(struct img *img);
int	 qcow2_write(struct img *img, uint64_t off, size_t len, const void *buf);
int	 qcow2_write_host(struct img *img, uint64_t off, uint64_t len, int *fd,
	     uint64_t *host, uint64_t *n);
int	 qcow2_write_zeroes(struct img *img, uint64_t off, uint64_t len,
	    int flags);
int	 qcow2_discard(struct img *img, uint64_t off, uint64_t len);

/* compress.c */
/* whole compressed clusters of one read, decompressed together */
struct qcow2_zbatch {
	uint64_t	*ents;		/* their L2 entries */
	uint8_t		**dst;		/* where each goes */
	size_t		 n, cap;
};
int	 qcow2_read_compressed(struct img *img, uint64_t off, uint64_t len,
	    uint8_t *p, struct qcow2_zbatch *b);
int	 qcow2_zbatch_run(struct img *img, struct qcow2_zbatch *b);
void	 qcow2_zbatch_free(struct qcow2_zbatch *b);
int	 qcow2_write_compressed(struct img *img, uint64_t off, size_t len,
	    const void *buf);
/* Compress a cluster; returns the size, 0 if it does not shrink, -1 on error. */
long	 qcow2_compress(const struct qcow2 *s, uint8_t *dst, size_t dstlen,
	    const uint8_t *src, size_t srclen);

/* check.c */
int	 qcow2_check(struct img *img, int fix, struct img_check *res);
/* qemu's repair of a dirty image opened for writing; note may be NULL. */
int	 qcow2_repair_dirty(struct img *img, void (*note)(const char *, void *),
	    void *arg);

/* corrupt.c: qemu's QCOW2_OL_* groups a write may be allowed to overlap */
enum {
	QCOW2_OL_HEADER		= 1 << 0,
	QCOW2_OL_ACTIVE_L1	= 1 << 1,
	QCOW2_OL_ACTIVE_L2	= 1 << 2,
	QCOW2_OL_RT		= 1 << 3,
	QCOW2_OL_RB		= 1 << 4,
	QCOW2_OL_SNAPSHOTS	= 1 << 5,
};
/* Metadata corruption found: marks an image open for writing corrupt. -1. */
int	 qcow2_corrupt(struct img *img, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* qemu's overlap check before writing [off, off+len), but groups ign. */
int	 qcow2_pre_write(struct img *img, uint64_t off, uint64_t len,
	    unsigned ign);

/* resize.c */
int	 qcow2_resize(struct img *img, uint64_t size, int prealloc);
/* falloc/full preallocation of [old, size) as qemu's truncate lays it out;
 * alloc: mark subclusters allocated (a backing file must not show). */
int	 qcow2_prealloc_run(struct img *img, uint64_t old, uint64_t size,
	    int mode, bool alloc);
/* Make table (n entries, taken over) the active L1, at new clusters. */
int	 qcow2_replace_l1(struct img *img, uint64_t *table, uint32_t n);
/* snapshot.c */
int	 qcow2_snapshot_list(struct img *img, struct img_snapshot **sn,
	    size_t *n);
int	 qcow2_snapshot_create(struct img *img, const struct img_snapshot *sn);
int	 qcow2_snapshot_apply(struct img *img, const char *name);
int	 qcow2_snapshot_delete(struct img *img, const char *name);
int	 qcow2_snapshot_load(struct img *img, const char *id, const char *name,
	    bool by_either);
uint64_t *qcow2_read_l1(struct img *img, uint64_t off, uint32_t n);
int	 qcow2_l1_errno(const char *msg);
int	 qcow2_snapshot_l1s(struct img *img, uint64_t **offs, uint32_t **sizes,
	    uint32_t *n);
int	 qcow2_snapshot_upgrade(struct img *img);
int	 qcow2_snapshot_downgrade_ok(struct img *img);
/* amend.c */
extern const struct opt_desc qcow2_amend_opts[];
int	 qcow2_amend(struct img *img, const struct opt_list *o, bool force);

/* qcow2.c */
int	 qcow2_flush(struct img *img);
/* The dirty L1 entries (no fsync). */
int	 qcow2_write_l1(struct img *img);
/* qemu's bdrv_flush of the node: qcow2_flush with flush_to_os/_to_disk. */
int	 qcow2_flush_node(struct img *img);
/* The first write's header work: refuse corrupt images, clear autoclear bits. */
int	 qcow2_prepare_write(struct img *img);
/* Write the header's incompatible feature bits (and fsync). */
int	 qcow2_set_incompat(struct img *img, uint64_t bits);
int	 qcow2_pwrite(struct img *img, const void *buf, size_t len,
	    uint64_t off, const char *what);
int	 qcow2_pread_meta(struct img *img, void *buf, size_t len, uint64_t off,
	    const char *what);
/* fdatasync the image file (even under IMG_NO_FLUSH: ordering). 0 or -1. */
int	 qcow2_fsync(struct img *img);
/* A header extension at p: magic, length, data padded to 8; its size. */
size_t	 qcow2_put_ext(uint8_t *p, uint32_t magic, const void *data,
	    uint32_t len);
/* qemu's feature name table extension at p: QCOW2_FEATURES_EXT bytes. */
size_t	 qcow2_put_features(uint8_t *p);

/* The file guest data clusters live in: the external data file or ours. */
static inline int
qcow2_dfd(const struct img *img)
{
	const struct qcow2 *s = img->priv;

	return s->has_data ? s->data_fd : img->fd;
}

/*
 * Whether a (non-compressed) entry has a host cluster: offset 0 is one in
 * an external data file when COPIED says so, as in qemu.
 */
static inline bool
qcow2_entry_host(const struct qcow2 *s, uint64_t e)
{
	return (e & QCOW2_L2E_OFFSET) != 0 || (s->has_data &&
	    (e & QCOW2_OFLAG_COPIED) && !(e & QCOW2_OFLAG_COMPRESSED));
}

/* A write needs new clusters here (qemu's cluster_needs_new_alloc). */
static inline bool
qcow2_needs_alloc(const struct qcow2 *s, uint64_t e)
{
	return (e & QCOW2_OFLAG_COMPRESSED) || !(e & QCOW2_OFLAG_COPIED) ||
	    !qcow2_entry_host(s, e);
}

static inline uint64_t
qcow2_l2_entries(const struct qcow2 *s)
{
	return (uint64_t)1 << s->l2_bits;
}

/* Bytes of guest disk one L2 table maps. */
static inline uint64_t
qcow2_l2_span(const struct qcow2 *s)
{
	return (uint64_t)1 << (s->cluster_bits + s->l2_bits);
}

static inline uint64_t
qcow2_l2_entry(const struct qcow2 *s, const uint8_t *l2, uint64_t i)
{
	return get_be64(l2 + (i << (s->extl2 ? 4 : 3)));
}

static inline uint64_t
qcow2_l2_bitmap(const struct qcow2 *s, const uint8_t *l2, uint64_t i)
{
	return s->extl2 ? get_be64(l2 + (i << 4) + 8) : 0;
}

static inline void
qcow2_l2_set(const struct qcow2 *s, uint8_t *l2, uint64_t i, uint64_t entry)
{
	put_be64(l2 + (i << (s->extl2 ? 4 : 3)), entry);
}

/* crypt.c: encrypted images */
int	qcow2_crypt_open(struct img *img);
int	qcow2_crypt_encrypt(struct img *img, uint64_t host, uint64_t off,
	    uint8_t *p, uint64_t len);
int	qcow2_crypt_amend(struct img *img, const struct opt_list *o,
	    bool force);
int	qcow2_crypt_measure(const struct opt_list *o, uint64_t cs,
	    uint64_t *len);
int	qcow2_crypt_create_check(const struct opt_list *o, uint32_t *method);
int	qcow2_crypt_create(struct img *img, const struct opt_list *o,
	    uint32_t method, uint64_t *off, uint64_t *len);
void	qcow2_crypt_close(struct img *img);
void	qcow2_crypt_info(struct img *img, struct jnode *d);
int	qcow2_crypt_read(struct img *img, uint64_t host, uint64_t off,
	    uint8_t *p, uint64_t n);

#endif
