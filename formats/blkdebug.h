/*
 * blkdebug: qemu's error injection (block/blkdebug.c, docs/devel/blkdebug):
 * rules from a config file or options fail requests after named events.
 */
#ifndef IMG_BLKDEBUG_H
#define IMG_BLKDEBUG_H

#include <stdbool.h>
#include <stdint.h>

#include "img.h"

/* qemu's BlkdebugEvent, in its order (qapi/block-core.json) */
enum blkdbg_event {
	BLKDBG_L1_UPDATE, BLKDBG_L1_GROW_ALLOC_TABLE, BLKDBG_L1_GROW_WRITE_TABLE,
	BLKDBG_L1_GROW_ACTIVATE_TABLE, BLKDBG_L2_LOAD, BLKDBG_L2_UPDATE,
	BLKDBG_L2_UPDATE_COMPRESSED, BLKDBG_L2_ALLOC_COW_READ,
	BLKDBG_L2_ALLOC_WRITE, BLKDBG_READ_AIO, BLKDBG_READ_BACKING_AIO,
	BLKDBG_READ_COMPRESSED, BLKDBG_WRITE_AIO, BLKDBG_WRITE_COMPRESSED,
	BLKDBG_VMSTATE_LOAD, BLKDBG_VMSTATE_SAVE, BLKDBG_COW_READ,
	BLKDBG_COW_WRITE, BLKDBG_REFTABLE_LOAD, BLKDBG_REFTABLE_GROW,
	BLKDBG_REFTABLE_UPDATE, BLKDBG_REFBLOCK_LOAD, BLKDBG_REFBLOCK_UPDATE,
	BLKDBG_REFBLOCK_UPDATE_PART, BLKDBG_REFBLOCK_ALLOC,
	BLKDBG_REFBLOCK_ALLOC_HOOKUP, BLKDBG_REFBLOCK_ALLOC_WRITE,
	BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS, BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE,
	BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE, BLKDBG_CLUSTER_ALLOC,
	BLKDBG_CLUSTER_ALLOC_BYTES, BLKDBG_CLUSTER_FREE, BLKDBG_FLUSH_TO_OS,
	BLKDBG_FLUSH_TO_DISK, BLKDBG_PWRITEV_RMW_HEAD,
	BLKDBG_PWRITEV_RMW_AFTER_HEAD, BLKDBG_PWRITEV_RMW_TAIL,
	BLKDBG_PWRITEV_RMW_AFTER_TAIL, BLKDBG_PWRITEV, BLKDBG_PWRITEV_ZERO,
	BLKDBG_PWRITEV_DONE, BLKDBG_EMPTY_IMAGE_PREPARE,
	BLKDBG_L1_SHRINK_WRITE_TABLE, BLKDBG_L1_SHRINK_FREE_L2_CLUSTERS,
	BLKDBG_COR_WRITE, BLKDBG_CLUSTER_ALLOC_SPACE, BLKDBG_NONE,
	BLKDBG__MAX
};

struct blkdebug;
struct jnode;
struct opt_list;

/*
 * The json: name being opened (set around its open by the generic layer),
 * so names built from its options keep their numbers and booleans.
 */
extern const struct jnode *blkdbg_json;
/* The blkdebug node under prefix as its json: name shows it, always. */
struct jnode *blkdbg_node_json(const struct opt_list *o, const char *prefix);
/* The member of blkdbg_json a flattened key names, or NULL. */
const struct jnode *blkdbg_json_member(const char *key);

/* key=val into obj as member name, typed as blkdbg_json has key. */
void	blkdbg_member(struct jnode *obj, const char *name, const char *key,
	    const char *val);

/* "json:" and j printed as qemu prints a node's options; frees j. */
char	*blkdbg_json_name(struct jnode *j);

/* Every blkdebug node open in this process; NULL: none, events cost a test. */
extern struct blkdebug *blkdbg_list;

void	blkdbg_fire(int fd, enum blkdbg_event ev);
/* The request alignment of the blkdebug node on fd (its align), else 1. */
uint64_t blkdbg_align(int fd);

/* qemu's BLKDBG_EVENT(bs->file, ev): a driver reached event ev on fd. */
static inline void
blkdbg_event(int fd, enum blkdbg_event ev)
{
	if (blkdbg_list != NULL)
		blkdbg_fire(fd, ev);
}

/*
 * The blkdebug node whose options are the keys of o under prefix ("file."
 * below a format, "" above one): rules from its config file and its
 * inject-error/set-state lists, limits; event "none" fires.  NULL with
 * err_set in qemu's words.
 */
struct blkdebug	*blkdbg_new(const struct opt_list *o, const char *prefix);
/* Below a format: requests on fd (the image file) meet the rules.  0. */
int		 blkdbg_attach(struct blkdebug *b, int fd);
void		 blkdbg_free(struct blkdebug *b);	/* accepts NULL */
/* Whether key (relative to a blkdebug node) is one of blkdebug's options. */
bool		 blkdbg_key(const char *key);
/* The file a blkdebug node names (image.filename or x-image), or NULL. */
const char	*blkdbg_file(const struct opt_list *o, const char *prefix);
/*
 * "blkdebug:CONFIG:FILE" from a "blkdebug:" file name: the options qemu's
 * blkdebug_parse_filename makes of it, under prefix, into o.  0 or -1.
 */
int		 blkdbg_parse_name(const char *name, const char *prefix,
		    struct opt_list *o);
/*
 * qemu's name for an image opened with options o whose blkdebug node sits
 * under prefix: "blkdebug:CONFIG:FILE" when the options say no more,
 * else json:{...} of them (malloc'd).
 */
char		*blkdbg_name(const struct opt_list *o, const char *prefix,
		    const char *fmt);
/* The name of the blkdebug node under prefix itself, as blkdbg_name's. */
char		*blkdbg_node_name(const struct opt_list *o, const char *prefix);
/*
 * Above a format: wrap child (opened from the "image." options) in a
 * blkdebug filter img, which takes ownership of both.  NULL with err_set.
 */
struct img	*blkdbg_filter(struct blkdebug *b, struct img *child,
		    const struct opt_list *o, int flags);

extern const struct fmt_ops blkdebug_ops;

#endif
