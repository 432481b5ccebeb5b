/* The format driver interface: one struct fmt_ops per format (formats/list.c). */
#ifndef IMG_FMT_H
#define IMG_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "img.h"

/* block_status flags, as QEMU's BDRV_BLOCK_* */
enum {
	ST_DATA		= 1 << 0,	/* reads come from this layer's data */
	ST_ZERO		= 1 << 1,	/* reads as zeroes */
	ST_OFFSET	= 1 << 2,	/* host offset valid (st->offset in st->file) */
	ST_ALLOC	= 1 << 3,	/* allocated in this layer (implied by DATA/ZERO) */
	/*
	 * qemu's driver has no block status, so qemu-img reports this range
	 * as data without an offset; the other flags say what it really is.
	 * The generic layer shows qemu's view unless IMG_TRUE_STATUS.
	 */
	ST_QEMU_DATA	= 1 << 4,
};

struct fmt_status {
	uint64_t	 len;		/* extent length, > 0 and <= the length asked */
	unsigned	 flags;		/* ST_* ; none: unallocated here, ask the backing file */
	uint64_t	 offset;	/* host offset when ST_OFFSET */
	const char	*file;		/* file holding the data; NULL means img->filename */
	bool		 has_fd;	/* with file: fd is that file, open */
	int		 fd;
	/* the data must be read through the driver, which may refuse it
	 * (a misaligned qcow cluster): never spliced or mapped */
	bool		 via_driver;
};

struct fmt_ops {
	const char	*name;
	size_t		 priv_size;	/* bytes the generic layer allocates as img->priv */
	bool		 nofile;	/* opens no file (null-co): img->fd stays -1 */
	/* a new image does not read as zeroes (qemu's bdrv_has_zero_init 0) */
	bool		 no_zero_init;
	/*
	 * close writes everything back itself, as qemu's bdrv_close flushes
	 * and inactivates (saying what failed with fmt_say): img_close_report
	 * need not flush first
	 */
	bool		 close_flushes;
	/*
	 * the disk is the file's bytes (raw): where a node below compares
	 * what is read (blkverify), a read is one request on the file, holes
	 * and all, as qemu's raw passes it on
	 */
	bool		 whole_reads;

	/* Score 0-100 for the first len bytes of a file; NULL: never probed. */
	int	(*probe)(const uint8_t *buf, size_t len, const char *filename);
	/*
	 * Read the headers of img->fd; set img->size and, when the image has
	 * one, img->backing_file/backing_fmt (malloc'd).  0, or -1 with
	 * err_set (the caller adds "Could not open 'x': ").
	 */
	int	(*open)(struct img *img);
	/* Free what open allocated (not img->priv itself). May be NULL. */
	void	(*close)(struct img *img);
	/*
	 * Create filename holding a size-byte disk; o holds the -o options
	 * (validated against create_opts) and backing_file/backing_fmt.
	 * Prints nothing.  0 or -1 with err_set.
	 */
	int	(*create)(const char *filename, uint64_t size,
		    const struct opt_list *o);
	const struct opt_desc *create_opts;	/* ends with { NULL }; order = qemu's */

	/* Read this layer's data in a range block_status called ST_DATA. */
	int	(*read)(struct img *img, uint64_t off, size_t len, void *buf);
	/* Write (allocating as needed, copying from the backing file for COW). */
	int	(*write)(struct img *img, uint64_t off, size_t len, const void *buf);
	/* Make a range read as zeroes; NULL: the generic layer writes zero buffers. */
	int	(*write_zeroes)(struct img *img, uint64_t off, uint64_t len, int flags);
	/* Write whole clusters compressed; NULL: the format cannot. */
	int	(*write_compressed)(struct img *img, uint64_t off, size_t len,
		    const void *buf);
	/* Drop a range (it may then read from the backing file). May be NULL. */
	int	(*discard)(struct img *img, uint64_t off, uint64_t len);
	/* Make writes durable: metadata caches, then fsync. May be NULL. */
	int	(*flush)(struct img *img);
	/* Describe this layer from off (at most len bytes) in st. NULL: all data. */
	int	(*block_status)(struct img *img, uint64_t off, uint64_t len,
		    struct fmt_status *st);
	/* Fill what img-info shows beyond the generic fields. May be NULL. */
	int	(*info)(struct img *img, struct img_info *info);
	/*
	 * Size of a new image of this format with create options o, holding
	 * in's content (in != NULL) or an empty size-byte disk.  Options were
	 * type-checked by the caller.  NULL: "does not support size measurement".
	 */
	int	(*measure)(const struct opt_list *o, struct img *in, uint64_t size,
		    struct img_measure *m);
	/*
	 * Whether img can carry persistent dirty bitmaps, and the bytes its
	 * bitmaps would take in a new image of cluster_size.  NULL: cannot.
	 */
	bool	(*bitmaps_size)(struct img *img, uint64_t cluster_size,
		    uint64_t *size);
	/*
	 * Record a new backing file name and format (file NULL: none) in the
	 * image's header.  NULL: "Operation not supported".
	 */
	int	(*set_backing)(struct img *img, const char *file, const char *fmt);
	/* Drop everything this layer holds (reads fall through). NULL: discard all. */
	int	(*make_empty)(struct img *img);
	/*
	 * Check the metadata as qemu's bdrv_co_check does, repairing what fix
	 * (IMG_FIX_*) allows: counts go to res (zeroed by the caller), each
	 * problem line to res->note as it is found.  For fix, img->fd is open
	 * for writing even though img was opened read-only (a dirty or corrupt
	 * image cannot be opened otherwise).  0, or -1 with err_set when the
	 * check could not complete (err_errno() says why).  NULL: the format
	 * does not support checks.
	 */
	int	(*check)(struct img *img, int fix, struct img_check *res);
	/*
	 * Change the virtual size to size bytes, img open read-write.
	 * Growing preallocates the new area as prealloc says (IMG_PREALLOC_*);
	 * shrinking drops whatever lies past the new end.  The generic layer
	 * has checked size against qemu's BDRV_MAX_LENGTH.  0, or -1 with
	 * err_set in qemu's words.  NULL: the format cannot be resized.
	 */
	int	(*resize)(struct img *img, uint64_t size, int prealloc);
	/*
	 * The internal snapshots in table order: *sn is a malloc'd array of
	 * *n entries (each id and name malloc'd; img_snapshots_free frees
	 * them).  0 or -1 with err_set.  NULL: the format has none.
	 */
	int	(*snapshot_list)(struct img *img, struct img_snapshot **sn,
		    size_t *n);
	/*
	 * Snapshot the active layer as sn (name, date, vm clock; the driver
	 * picks a new id), img open read-write.  0 or -1 with err_set (the
	 * reason alone; the caller says what failed).  NULL: not supported.
	 */
	int	(*snapshot_create)(struct img *img, const struct img_snapshot *sn);
	/* Make the snapshot named or numbered name the active layer.  As above. */
	int	(*snapshot_apply)(struct img *img, const char *name);
	/* Delete the snapshot numbered or named name.  As above. */
	int	(*snapshot_delete)(struct img *img, const char *name);
	/*
	 * Show a snapshot's disk instead of the active one, img open
	 * read-only (qemu's bdrv_snapshot_load_tmp): by id and/or name, or
	 * with by_either, id tried as an id then as a name.  NULL: "does not
	 * support temporarily loading internal snapshots".
	 */
	int	(*snapshot_load)(struct img *img, const char *id, const char *name,
		    bool by_either);
	/*
	 * Change the image's options o (keys of create_opts; the driver says
	 * which it cannot change, in qemu's words), img open read-write;
	 * force is --force.  0 or -1 with err_set.  NULL: "Format driver
	 * 'x' does not support option amendment".
	 */
	int	(*amend)(struct img *img, const struct opt_list *o, bool force);
	/* The options amend takes, for "-o help"; ends with { NULL }. */
	const struct opt_desc *amend_opts;
	/*
	 * Bytes all the image's files take on disk (st_blocks), for a format
	 * whose data lives in more files than img->fd (vmdk extents); -1 on
	 * error.  NULL: img->fd's.
	 */
	int64_t	(*actual_size)(struct img *img);
	/*
	 * Whether a read may fall through to the backing file (vmdk: only
	 * while the backing file's CID is the image's parentCID).  0, or -1
	 * with err_set.  NULL: always.
	 */
	int	(*backing_read_ok)(struct img *img);
	/*
	 * A filter node (blkdebug above a format): img->backing is the image
	 * it passes requests to, at the same depth.  Asked first about each
	 * read and block status on img (IO_READ, IO_BLOCK_STATUS, ...): 0, or
	 * -1 with err_set.  NULL: not a filter.
	 */
	int	(*filter)(struct img *img, int type, uint64_t off, uint64_t len);
	/* img_bitmap's work (img.h).  NULL: the format has no bitmaps. */
	/*
	 * Where [off, off+len) may be written verbatim in an image file, so
	 * a caller can splice bytes straight there: 1 with *fd, *host and *n
	 * (<= len) set, anything that needs (allocation) done; 0 with *n set
	 * when that run must go through ->write; -1 on error.  May be NULL.
	 */
	int	(*write_host)(struct img *img, uint64_t off, uint64_t len,
		    int *fd, uint64_t *host, uint64_t *n);
	int	(*bitmap)(struct img *img, const char *name,
		    const struct img_bitmap_act *acts, size_t n,
		    uint64_t granularity, struct img *src, size_t *failed);
};

const struct fmt_ops	*fmt_find(const char *name);
/* The best-scoring format for these first bytes (raw if nothing scores). */
const struct fmt_ops	*fmt_probe(const uint8_t *buf, size_t len, const char *filename);

extern const struct fmt_ops *const fmt_list[];

/* Helpers for drivers. */
int	fmt_file_size(struct img *img, uint64_t *size);
/*
 * The image file at host offset `host`, as SEEK_DATA/SEEK_HOLE see it: the
 * first *n bytes (1 to len) are data (*zero false) or a hole (*zero true,
 * as is all past the end of the file); a file system without SEEK_DATA is
 * all data.  Data ends at the end of the file at the latest.  0, or -1 with
 * err_set when the file's size is unknown (*n = len, *zero true).
 */
int	fmt_file_status(struct img *img, uint64_t host, uint64_t len,
	    uint64_t *n, bool *zero);
/*
 * Read n bytes at off from img's backing file into p, zeroes where it has
 * none or past its end (qemu's short backing files).  0 or -1.
 */
int	fmt_read_backing(struct img *img, uint64_t off, uint64_t n, uint8_t *p);
/*
 * Name img as qemu does when it was opened with a strong runtime option
 * (an encryption key-secret): json:{"driver": FMT, "file": {...}, key: val}.
 */
void	fmt_json_name(struct img *img, const char *key, const char *val);
/*
 * Open a node's child image as the generic layer opens an image: by name
 * (o NULL), else from its options o (keys relative to the child), with
 * its own backing chain.  Errors without img_open's "Could not open"
 * prefix.  NULL with err_set.
 */
struct img *img_open_child(const char *name, const struct opt_list *o,
	    int flags);
/* fdatasync the image file, unless it was opened IMG_NO_FLUSH. 0 or -1. */
int	fmt_sync(struct img *img);
/*
 * During img_close_report: one line of what closing could not do, as
 * qemu's error_report says it (no program name, no newline).
 */
void	fmt_say(struct img *img, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

#endif
