/*
 * qemu's blkverify node (block/blkverify.c): a raw reference file and a
 * test image read side by side, their bytes compared (formats/blkverify.c).
 */
#ifndef IMG_BLKVERIFY_H
#define IMG_BLKVERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/opt.h"

struct blkverify;
struct img;

/*
 * Where options o put a blkverify node: "" when o's driver is blkverify,
 * "file." when it sits below the format, else NULL.
 */
const char	*blkverify_prefix(const struct opt_list *o);
/*
 * "blkverify:RAW:TEST": the options qemu's blkverify_parse_filename makes
 * of it, under "file." (below a probed or named format), into o.  0 or -1.
 */
int		 blkverify_parse_name(const char *name, struct opt_list *o);
/*
 * The raw reference file the node under prefix names (x-raw or
 * raw.filename), or NULL with err_set in qemu's words.
 */
const char	*blkverify_raw(const struct opt_list *o, const char *prefix);
/*
 * The node under prefix in o, its raw file open on fd: opens the test
 * image (its own chain; flags as the node's), checks what options are
 * left, and from then on every request made with lib/io.c's helpers on
 * fd reaches both as qemu's blkverify makes it: a read that differs
 * prints qemu's message and exits 1, as qemu does.  NULL with err_set.
 */
struct blkverify *blkverify_open(const struct opt_list *o, const char *prefix,
		    int fd, int flags);
void		 blkverify_free(struct blkverify *b);	/* accepts NULL */
/*
 * The image above the node is open with flags: from now on, under
 * IMG_DATA_READS (qemu-img convert's reads), the first mismatch fails its
 * read (EIO) so the program can read qemu-img's pieces again one by one;
 * the next mismatch prints and exits.
 */
void		 blkverify_opened(struct blkverify *b, int flags);
/* The node's length: its test image's. */
uint64_t	 blkverify_size(const struct blkverify *b);
/* qemu's name for the node, "blkverify:RAW:TEST" (malloc'd). */
char		*blkverify_name(const struct blkverify *b);
/* The raw file's name, as map's File column shows it (malloc'd). */
char		*blkverify_raw_name(const struct blkverify *b);

/* driver=blkverify at the top: the node is the image. */
extern const struct fmt_ops blkverify_ops;

#endif
