/*
 * Extent maps, the text interface between programs: qemu-img map's JSON
 * (one object per line inside [ ]), JSON Lines (jq -c), or its human table.
 * See img-map(1).
 */
#ifndef IMG_MAP_H
#define IMG_MAP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct map_ext {
	uint64_t	 start;
	uint64_t	 length;
	int64_t		 depth;
	bool		 present;
	bool		 zero;
	bool		 data;
	bool		 has_offset;
	uint64_t	 offset;
	const char	*filename;	/* file holding the data (human form), may be NULL */
};

/* Print one extent as qemu-img map --output=json does ("[" before the first, "]\n" after last). */
void	map_print_json(FILE *f, const struct map_ext *e, bool first, bool last);
/* qemu-img's mergeable test: same flags and file, offsets contiguous. */
bool	map_mergeable(const struct map_ext *a, const struct map_ext *b);

struct map_reader;
struct map_reader *map_reader_new(FILE *f, const char *name);
/*
 * Next extent: 1, 0 at the end, -1 on a malformed line (err_set names the
 * map and line).  Human-form maps name only data extents; the reader
 * reports the gaps between them (not before the first) as zero extents.
 * Extents must be in ascending, non-overlapping order.
 */
int	map_read(struct map_reader *r, struct map_ext *e);
void	map_reader_free(struct map_reader *r);
/* map_read, and an extent past size bytes (of image) is an error too. */
int	map_read_within(struct map_reader *r, struct map_ext *e, uint64_t size,
	    const char *image);

/*
 * The stream contract (img-cat(1)): an extent carries bytes in a stream
 * exactly when it is data and does not read as zeroes.
 */
bool	map_carries_data(const struct map_ext *e);

#endif
