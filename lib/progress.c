/*
 * Progress lines as qemu's util/qemu-progress.c prints them, float
 * arithmetic and all, so `-p` output matches qemu-img's byte for byte.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"

static struct {
	bool	 on;
	bool	 ended;
	float	 cur;
	float	 last;
	float	 min_skip;
} prog;
static volatile sig_atomic_t usr1;

static void
on_usr1(int sig)
{
	(void)sig;
	usr1 = 1;
}

/* qemu-img ends its progress line on every way out, errors too */
static void
end_at_exit(void)
{
	if (!prog.ended)
		progress_end();
}

void
progress_init(bool on, float min_skip)
{
	static bool registered;
	struct sigaction sa;

	if (on && !registered)
		registered = atexit(end_at_exit) == 0;
	prog.on = on;
	prog.ended = false;
	prog.min_skip = min_skip;
	prog.cur = prog.last = 0;
	if (on)
		return;
	memset(&sa, 0, sizeof(sa));
	sigfillset(&sa.sa_mask);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
}

void
progress_print(float delta, int max)
{
	float current = max == 0 ? delta : prog.cur + delta / 100 * max;

	if (current > 100)
		current = 100;
	prog.cur = current;
	if (current > prog.last + prog.min_skip ||
	    current < prog.last - prog.min_skip || current == 100 ||
	    current == 0) {
		prog.last = prog.cur;
		if (prog.on) {
			printf("    (%3.2f/100%%)\r", prog.cur);
			fflush(stdout);
		} else if (usr1) {
			fprintf(stderr, "    (%3.2f/100%%)\n", prog.cur);
			usr1 = 0;
		}
	}
}

void
progress_end(void)
{
	if (prog.on && !prog.ended)
		putchar('\n');
	prog.ended = true;
}
