/* qemu's quorum node below a format: copies of one file (formats/quorum.c). */
#ifndef IMG_QUORUM_H
#define IMG_QUORUM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lib/opt.h"

/* qemu's message where a quorum node should give a folder */
#define QUORUM_NO_DIR	"Cannot generate a base directory for quorum nodes"

/* A quorum node's options, checked (quorum_params). */
struct quorum_params {
	int		 n;		/* children */
	int		 threshold;	/* vote-threshold */
	bool		 fifo;		/* read-pattern=fifo */
	bool		 rewrite;	/* rewrite-corrupted=on */
	bool		 blkverify;	/* blkverify=on */
};

/*
 * The options of the quorum node whose keys are under pre ("file." below a
 * format, "" on top), checked in the order and words of qemu's
 * quorum_open.  0, or -1 with err_set.
 */
int		 quorum_params(const struct opt_list *o, const char *pre,
		    struct quorum_params *p);
/* Every key under pre is one a quorum node takes, in qemu's words if not. */
int		 quorum_check_keys(const struct opt_list *o, const char *pre);
/*
 * Votes (qemu's quorum_vote_error, quorum_get_vote_winner): the errno most
 * of the n children failed with (err[i] 0: child i did not fail); whether
 * two reads got the same bytes; the child whose read won the vote among n
 * (got[i] < 0: child i failed), *votes its count, -1 when all failed.
 */
int		 quorum_vote_error(const int *err, int n);
bool		 quorum_same(ssize_t na, const void *a, ssize_t nb,
		    const void *b);
int		 quorum_winner(int n, uint8_t *const *buf, const ssize_t *got,
		    int *votes);

/*
 * One read's vote: buf[i] holds child i's bytes (buf[0] is the caller's
 * buffer, the others allocated), got[i] how many it read or < 0 when it
 * failed with errno err[i].
 */
struct quorum_vote {
	int		 n;
	uint8_t		**buf;
	ssize_t		*got;
	int		*err;
};

void		 quorum_vote_new(struct quorum_vote *v, int n, void *first,
		    size_t len);
/*
 * Count the votes: the winner's index, with *votes its count and *ok how
 * many children read; -1 with errno when fewer than threshold read (their
 * errno) or agree (EIO).
 */
int		 quorum_vote_count(const struct quorum_vote *v, int threshold,
		    int *votes, int *ok);
/* The winner w's bytes into buf[0], the caller's buffer. */
void		 quorum_vote_take(struct quorum_vote *v, int w);
/* Whether child i read and lost to the winner w (rewrite-corrupted). */
bool		 quorum_vote_lost(const struct quorum_vote *v, int i, int w);
void		 quorum_vote_free(struct quorum_vote *v);

/*
 * Whether the file on fd[i] is the file of an earlier child: qemu's file
 * nodes of one quorum lock each other out of writing (its children share
 * no write), in its words for name.  0, or -1 with err_set.
 */
int		 quorum_twice(const int *fd, int i, const char *name);

/* Whether the options put a quorum node between the format and its files. */
bool		 quorum_file(const struct opt_list *o);
/*
 * Check the node's options and children as qemu: the first child's
 * file, or NULL with err_set.
 */
const char	*quorum_check(const struct opt_list *o);
struct quorum;

/*
 * The quorum node of options o, its first child open on fd: opens (and
 * locks, as qemu) the other children, checks that they are as long as the
 * first, and from then on every request made with lib/io.c's helpers on
 * fd reaches each child as qemu's quorum makes it.  NULL with err_set.
 */
struct quorum	*quorum_open(const struct opt_list *o, int fd, int flags,
		    bool metadata);
/* The children's fds (the first is the image's own); returns how many. */
int		 quorum_fds(const struct quorum *q, const int **fds);
/* Close the other children (not the first's fd); accepts NULL. */
void		 quorum_free(struct quorum *q);
/*
 * Whether a format fmt image on a quorum resizes from old to size bytes
 * with preallocation prealloc (IMG_PREALLOC_*) as qemu's would: its
 * quorum node cannot truncate, so raw and a preallocating qcow2 fail
 * (err_set, -1); 0 otherwise.
 */
int		 quorum_resize(const char *fmt, uint64_t old, uint64_t size,
		    int prealloc);
/* Disk bytes of the children but the first (qemu's disk size sums all). */
int64_t		 quorum_copies_size(const struct opt_list *o);
/*
 * qemu's json:{...} name for the image of format fmt, or for the quorum
 * node itself (fmt NULL); malloc'd.
 */
char		*quorum_name(const struct opt_list *o, const char *fmt);
/*
 * Into the JSON object q of a quorum node: its driver and the options
 * given under pre, typed as the json: name gave them.
 */
struct jnode;
void		 quorum_json_opts(struct jnode *q, const struct opt_list *o,
		    const char *pre);

struct img;
/*
 * qemu's quorum node on top (driver=quorum): an image over the n open
 * images kids (p's options; o its option list, for its json: name).
 * Takes the kids and the array, closing them on failure.  NULL with
 * err_set.
 */
struct img	*quorum_top(struct img **kids, const struct quorum_params *p,
		    const struct opt_list *o, int flags);

#endif
