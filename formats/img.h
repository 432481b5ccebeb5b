/*
 * What programs see of an image: open by name (with probing), read, write,
 * zero and block status through the backing chain.  Programs call img_*,
 * never a driver's ops.
 */
#ifndef IMG_IMG_H
#define IMG_IMG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/json.h"
#include "../lib/map.h"
#include "../lib/opt.h"

enum {
	IMG_RDWR	= 1 << 0,	/* open for writing */
	IMG_SHARE	= 1 << 1,	/* -U: share with other users of the image */
	IMG_NO_BACKING	= 1 << 2,	/* don't open the backing chain */
	IMG_DIRECT	= 1 << 3,	/* cache=none: O_DIRECT */
	IMG_NO_PROBE_WARN = 1 << 4,	/* don't warn about a probed raw image */
	IMG_NO_FLUSH	= 1 << 5,	/* cache=unsafe: flushes write back, never fsync */
	IMG_TRUE_STATUS	= 1 << 6,	/* status says zero where qemu-img says data (ST_QEMU_DATA) */
	/* qemu's BDRV_O_CHECK: no repair of a dirty (lazy refcounts) image on
	 * a read-write open; the driver refuses it instead (img-check -r) */
	IMG_NO_REPAIR	= 1 << 7,
	/* qemu-img map's bdrv_skip_filters: block status passes filters
	 * (blkdebug above a format) without asking them */
	IMG_SKIP_FILTERS = 1 << 8,
	/* qemu's BDRV_O_NO_IO: headers only, no data (img-info of an
	 * encrypted image without its key) */
	IMG_NO_IO	= 1 << 10,
	/* reads skip what block status calls zero, even where a node
	 * compares every byte read (blkverify): qemu-img convert's reads */
	IMG_DATA_READS	= 1 << 11,
};

/* write_zeroes flags */
enum {
	IMG_ZERO_UNMAP	= 1 << 0,	/* may deallocate: reads still return zeroes */
};

#define IMG_MAX_CHAIN	256		/* backing chain depth cap */

struct fmt_ops;

struct img {
	const struct fmt_ops	*ops;
	void			*priv;		/* ops->priv_size bytes, the driver's */
	char			*filename;	/* as given */
	int			 fd;		/* the image file */
	int			 flags;
	bool			 probed;	/* format was guessed */
	uint64_t		 size;		/* virtual size in bytes */
	char			*backing_file;	/* as recorded in the image, or NULL */
	char			*backing_fmt;	/* as recorded, or NULL */
	char			*backing_path;	/* backing_file resolved against our folder */
	struct img		*backing;	/* the open backing image, or NULL */
	const struct opt_list	*open_opts;	/* json:/--image-opts options, during open */
	struct blkdebug		*blkdebug;	/* error injection on fd (blkdebug below the format) */
	/* the node below the format, named apart from filename: the file
	 * under blkdebug (relative names resolve against it), quorum's json: */
	char			*path;
	/* the node holding the data, where qemu-img map names it apart
	 * from filename (the blkdebug node below the format), or NULL */
	char			*data_name;
	bool			 no_dir;	/* no folder for relative names (quorum) */
	/* img_close_report's sink, while it closes */
	void			(*say)(const char *line, void *arg);
	void			*say_arg;
	int64_t			 copies_size;	/* disk bytes of further copies (quorum) */
	struct quorum		*quorum;	/* the copies of fd (quorum below the format) */
	struct blkverify	*blkverify;	/* fd's test image (blkverify node) */
};

/* An internal snapshot, as qemu's SnapshotInfo (img-info, img-snapshot -l). */
struct img_snapshot {
	char		*id;
	char		*name;
	uint64_t	 vm_state_size;
	int64_t		 date_sec;
	uint32_t	 date_nsec;
	uint64_t	 vm_clock_nsec;
	uint64_t	 icount;	/* UINT64_MAX: not recorded */
};

/* Everything img-info shows that only the driver knows. */
struct img_info {
	uint64_t	 cluster_size;	/* 0: the format has none */
	bool		 dirty;
	/* qemu's driver has no bdrv_get_info (null-co, parallels, bochs,
	 * cloop, dmg): info shows no "dirty-flag" */
	bool		 no_dirty_flag;
	bool		 encrypted;
	struct jnode	*specific;	/* "format-specific" data object, or NULL */
	/* malloc'd, as are each id and name; the caller frees them.  NULL: none */
	struct img_snapshot *snapshots;
	size_t		 nb_snapshots;
};

/*
 * Open filename as format fmt (NULL: probe).  Errors read as qemu-img's:
 * "Could not open 'x': ...".  The backing chain opens read-only unless
 * IMG_NO_BACKING.  Returns NULL with err_set.
 */
struct img	*img_open(const char *filename, const char *fmt, int flags);
void		 img_close(struct img *img);	/* accepts NULL */
/*
 * Close as qemu's bdrv_close does, for a program whose last flush is
 * qemu-img's (made at close; its failure is never the exit status): a
 * flush whose errors go unheard, then the driver's inactivation, whose
 * complaints reach say one line each as qemu's error_report prints them
 * ("Failed to flush the L2 table cache: No space left on device"; no
 * program name, no newline).  say may be NULL.  Returns the lines said.
 * Accepts NULL.
 */
int		 img_close_report(struct img *img,
		    void (*say)(const char *line, void *arg), void *arg);
/*
 * Open from qemu's --image-opts string ("driver=qcow2,file.filename=x").
 * img_open also takes qemu's "json:{...}" names, with the same keys.
 */
struct img	*img_open_image_opts(const char *spec, int flags);
/*
 * The same after qemu-img's checks of -U (IMG_SHARE) against the spec's
 * force-share and of force-share against IMG_RDWR, failing in its words.
 */
struct img	*img_open_image_opts_share(const char *spec, int flags);

/*
 * The protocol node a name opens that cannot be created (qemu's "Protocol
 * driver 'blkverify' does not support image creation"), or NULL.
 */
const char	*img_node_protocol(const char *filename);
/*
 * Whether reading img checks its bytes (a blkverify node below raw
 * compares every read): zero extents must be read too, not assumed.
 */
bool		 img_reads_checked(const struct img *img);
/* Read through the chain; ranges past a backing file's end read as zeroes. */
int		 img_read(struct img *img, uint64_t off, size_t len, void *buf);
int		 img_write(struct img *img, uint64_t off, size_t len, const void *buf);
int		 img_write_zeroes(struct img *img, uint64_t off, uint64_t len, int flags);
int		 img_write_compressed(struct img *img, uint64_t off, size_t len, const void *buf);
int		 img_discard(struct img *img, uint64_t off, uint64_t len);
int		 img_flush(struct img *img);
bool		 img_can_compress(const struct img *img);

/*
 * Block status of [off, off+len) through the chain, as qemu-img map's
 * get_block_status: e describes the first extent (e->length <= len).
 */
int		 img_status(struct img *img, uint64_t off, uint64_t len, struct map_ext *e);
/*
 * img_status as qemu-img convert --salvage asks it: a failing range is
 * retried shorter; 1 when one sector (IMG_SECTOR) at off fails even so: e
 * then says it is data, and err_msg()/err_errno() say why.
 */
#define IMG_SECTOR	512
int		 img_status_salvage(struct img *img, uint64_t off, uint64_t len,
		    struct map_ext *e);
/* Block status of this layer only (no chain): same fields, depth 0. */
int		 img_status_layer(struct img *img, uint64_t off, uint64_t len, struct map_ext *e);

/*
 * Where the bytes at [off, off+len) lie verbatim in an image file, through
 * the chain: 1 with *fd, *host and *n (the run, <= len) set, so callers can
 * splice or copy_file_range them; 0 with *n set when that run does not
 * (zeroes, compressed, past a backing file's end); -1 on error.
 */
int		 img_host_run(struct img *img, uint64_t off, uint64_t len, int *fd,
		    uint64_t *host, uint64_t *n);

/*
 * Where [off, off+len) may be written verbatim, so the caller can splice
 * bytes there: 1 with *fd, *host and *n (<= len) set; 0 when the bytes
 * must go through img_write (*n then says how many); -1 on error.
 */
int		 img_write_host(struct img *img, uint64_t off, uint64_t len,
		    int *fd, uint64_t *host, uint64_t *n);

int		 img_get_info(struct img *img, struct img_info *info);
/* A cache mode (qemu's -t/-T) as open flags: IMG_DIRECT, IMG_NO_FLUSH; -1: unknown */
int		 img_cache_flags(const char *mode);
/* img_get_info's cluster_size alone (0: none), without the snapshot table */
int		 img_cluster_size(struct img *img, uint64_t *cs);
/* Bytes the image's files take on disk (st_blocks), or -1. */
int64_t		 img_actual_size(struct img *img);
const char	*img_format(const struct img *img);

/* What img-measure reports. */
struct img_measure {
	uint64_t	 required;
	uint64_t	 fully_allocated;
	bool		 has_bitmaps;
	uint64_t	 bitmaps;
};

/*
 * Size a new fmt image would take with options o, for in's content or an
 * empty size-byte disk (in NULL).  Type-checks o first (qemu's messages).
 */
int		 img_measure(const char *fmt, const struct opt_list *o,
		    struct img *in, uint64_t size, struct img_measure *m);
/*
 * Check o's keys and typed values against fmt's create options, with
 * qemu's messages ("Invalid parameter 'x'", "Parameter 'x' expects ...").
 */
int		 img_opts_check(const char *fmt, const struct opt_list *o);
/* Whether img can carry persistent bitmaps, and their size in a new image. */
bool		 img_bitmaps_size(struct img *img, uint64_t cluster_size, uint64_t *size);

/* What img_check found, as qemu's BdrvCheckResult. */
enum {
	IMG_FIX_LEAKS	= 1 << 0,	/* -r leaks */
	IMG_FIX_ERRORS	= 1 << 1,	/* -r all (with IMG_FIX_LEAKS) */
};

struct img_check {
	int64_t		 corruptions, leaks, check_errors;
	int64_t		 corruptions_fixed, leaks_fixed;
	uint64_t	 image_end_offset;
	uint64_t	 total_clusters, allocated_clusters;
	uint64_t	 fragmented_clusters, compressed_clusters;
	/* Called with each problem line (no newline) as found; may be NULL. */
	void		(*note)(const char *line, void *arg);
	void		*note_arg;
};

/*
 * Check img's metadata, repairing what fix allows; img may be open
 * read-only (for fix the file is reopened for writing).  The counters in
 * res are zeroed first.  0, or -1 with err_set: the message is
 * IMG_CHECK_NOTSUP when the format has no check, else the check did not
 * complete (err_errno() says why).
 */
#define IMG_CHECK_NOTSUP	"This image format does not support checks"
int		 img_check(struct img *img, int fix, struct img_check *res);

/*
 * Record a new backing file (NULL: none) and format in img's header; the
 * open chain is not reopened.  On failure the message is the reason only
 * ("Operation not supported").
 */
int		 img_set_backing(struct img *img, const char *file, const char *fmt);

/* Make every range of img unallocated, so reads come from its backing file. */
int		 img_make_empty(struct img *img);

/* Create a new image; o holds -o options plus backing_file/backing_fmt. */
int		 img_create(const char *filename, const char *fmt, uint64_t size,
		    const struct opt_list *o);
/* The create options of a format (for -o help and the "Formatting" line), or NULL. */
const struct opt_desc *img_create_opts(const char *fmt);
bool		 img_format_known(const char *fmt);
/* qemu's bdrv_find_format: a format img has, or one of qemu's other drivers */
bool		 img_driver_known(const char *name);
/* Whether a new image of format fmt reads as zeroes (LUKS: no). */
bool		 img_format_zero_init(const char *fmt);
/* Names of all formats, NULL-terminated. */
const char	*const *img_format_names(void);

/*
 * The image in top's backing chain (below top) that is the file `name`, by
 * realpath, or when by_name also by the name as the chain spells it (qemu's
 * bdrv_find_backing_image); NULL when none is.  *depth, unless depth is
 * NULL, is its depth: 1 for top's backing file.
 */
struct img	*img_chain_find(struct img *top, const char *name, bool by_name,
		    int *depth);

/* Resolve a backing name against the folder of the image that names it (caller frees). */
char		*img_backing_path(const char *image, const char *backing);

/* Preallocation of a grown area (qemu's PreallocMode), for img_resize. */
enum { IMG_PREALLOC_OFF, IMG_PREALLOC_METADATA, IMG_PREALLOC_FALLOC,
	IMG_PREALLOC_FULL };

/*
 * Resize img (open read-write) to size bytes, as qemu's bdrv_co_truncate:
 * "offset(N) exceeds maximum(M)" past BDRV_MAX_LENGTH, else the driver's
 * words.  0 or -1 with err_set.
 */
int		 img_resize(struct img *img, uint64_t size, int prealloc);
/* The internal snapshots (none: *sn NULL, *n 0); free with img_snapshots_free. */
int		 img_snapshot_list(struct img *img, struct img_snapshot **sn,
		    size_t *n);
void		 img_snapshots_free(struct img_snapshot *sn, size_t n);
/*
 * Create, apply (by id or name) or delete (by id or name) an internal
 * snapshot; img open read-write.  On failure the message is the reason
 * only, as qemu's Error (the caller adds "Could not ... snapshot 'x': ").
 */
int		 img_snapshot_create(struct img *img, const struct img_snapshot *sn);
int		 img_snapshot_apply(struct img *img, const char *name);
int		 img_snapshot_delete(struct img *img, const char *name);
/*
 * qemu-img's -l SNAPSHOT_PARAM: "snapshot.id=X,snapshot.name=Y" or a bare
 * id or name; img must be open read-only.  The message is the reason only
 * (callers prefix "Failed to load snapshot: ").
 */
int		 img_snapshot_load(struct img *img, const char *param);
/* Change the -o options o of an open read-write image (qemu-img amend). */
int		 img_amend(struct img *img, const struct opt_list *o, bool force);
/* Whether img's format can amend options at all. */
bool		 img_can_amend(const struct img *img);
/* The options format fmt can amend (sorted for help by the caller), or NULL. */
const struct opt_desc *img_amend_opts(const char *fmt);

/* img-bitmap's actions on one persistent dirty bitmap (qemu-img bitmap). */
enum { IMG_BM_ADD, IMG_BM_REMOVE, IMG_BM_CLEAR, IMG_BM_ENABLE, IMG_BM_DISABLE,
	IMG_BM_MERGE };

struct img_bitmap_act {
	int		 act;
	const char	*src;		/* IMG_BM_MERGE: the source bitmap */
};

/*
 * Apply n actions in order to bitmap name of img (open read-write); merge
 * sources are bitmaps of src (NULL: img); granularity 0: the default.
 * What succeeded before a failure is kept, as in qemu.  0, or -1 with
 * err_set (qemu's reason alone) and *failed the failing action's index.
 */
int		 img_bitmap(struct img *img, const char *name,
		    const struct img_bitmap_act *acts, size_t n,
		    uint64_t granularity, struct img *src, size_t *failed);

#endif
