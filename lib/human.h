/*
 * Numbers for people, printed as qemu-img prints them: size_to_str's
 * "64 MiB", "1.26 MiB", "0 B", the snapshot table of bdrv_snapshot_dump and
 * the "-o help" option list.
 */
#ifndef IMG_HUMAN_H
#define IMG_HUMAN_H

#include <stddef.h>
#include <stdio.h>

#include "opt.h"
#include <stdint.h>

#define HUMAN_SIZE_LEN	32	/* room for any human_size() result */

/* qemu's size_to_str: three significant digits, IEC prefix; returns buf. */
char	*human_size(uint64_t val, char *buf, size_t len);

/* One snapshot as bdrv_snapshot_dump shows it. */
struct human_snap {
	const char	*id;
	const char	*name;
	uint64_t	 vm_state_size;
	int64_t		 date_sec;	/* shown in local time */
	uint64_t	 vm_clock_nsec;
	uint64_t	 icount;	/* UINT64_MAX: none */
};

/* The table header and one row, without a trailing newline (as qemu). */
void	human_snap_header(FILE *f);
void	human_snap_row(FILE *f, const struct human_snap *sn);

/*
 * qemu_opts_print_help: one "  name=<type>  - help" line per option, the
 * name part padded to 24 columns, lines sorted.
 */
void	human_opt_help(FILE *f, const struct opt_desc *const *d, size_t n);

#endif
