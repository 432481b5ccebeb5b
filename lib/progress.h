/* Progress as qemu's util/qemu-progress.c prints it ("    (12.34/100%)\r"). */
#ifndef IMG_PROGRESS_H
#define IMG_PROGRESS_H

#include <stdbool.h>

/* on: print to stdout; off: SIGUSR1 prints one line on stderr. */
void	progress_init(bool on, float min_skip);
/* qemu_progress_print: max 0 sets delta as the value, else adds delta% of max. */
void	progress_print(float delta, int max);
void	progress_end(void);

#endif
