/*
 * Spawning our programs and wiring them into pipelines (composed commands
 * such as img-convert: img-map, then img-cat | img-write).
 */
#ifndef IMG_PROC_H
#define IMG_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * One stage.  The caller fills argv (argv[0] is the program's name, say
 * "img-cat"), in and out; proc_start() fills the rest.
 */
struct proc {
	char	**argv;		/* NULL-terminated */
	int	  in;		/* becomes the child's stdin; -1: ours */
	int	  out;		/* becomes the child's stdout; -1: ours */
	pid_t	  pid;		/* 0 until started, again 0 once reaped */
	int	  status;	/* wait status, once reaped */
	bool	  done;		/* reaped */
	int	  err;		/* memfd holding what the child wrote to stderr */
	int	  keep;		/* inherited under its own number; -1: none */
};

#define PROC_INIT	{ .argv = NULL, .in = -1, .out = -1, .err = -1, .keep = -1 }

/*
 * Where our program prog lives: next to /proc/self/exe when there, so a
 * build runs its own siblings, else the bare name for a PATH search.
 * The caller frees.
 */
char	*proc_path(const char *prog);

/*
 * Start p: the child runs with IMG_PROG=prog_name() (so its messages carry
 * the composed command's name), SIGPIPE at its default and stderr captured
 * for proc_check().  Our other descriptors should be close-on-exec; one
 * that is not is inherited (a map handed over as /dev/fd/N).  0, or -1
 * with err_set.
 */
int	 proc_start(struct proc *p);

/* Reap the started stages among p[0..n-1]. */
void	 proc_wait(struct proc *p, size_t n);

/*
 * After proc_wait: 0 when every stage exited 0.  Otherwise -1 with one
 * message (err_set) for the stage at fault: the first, in pipeline order,
 * that failed other than by a broken pipe (a broken pipe only follows a
 * failure downstream).  Its own message is taken, less its "PROG: "
 * prefix; a death by signal or a silent failure is described.
 */
int	 proc_check(const struct proc *p, size_t n);

/*
 * What p wrote to stderr (warnings of a stage that succeeded, for the
 * caller to pass on), NUL-terminated; the caller frees.
 */
char	*proc_stderr(const struct proc *p);

/* Close p's descriptors and free its argv; reaps nothing. */
void	 proc_free(struct proc *p);

/* argv helpers: a growing NULL-terminated vector of malloc'd strings. */
void	 proc_arg(struct proc *p, const char *arg);
void	 proc_argf(struct proc *p, const char *fmt, ...)
	     __attribute__((format(printf, 2, 3)));

/*
 * A pipe whose ends are close-on-exec, grown as large as we may (bigger
 * buffers mean fewer context switches between the stages).  0 or -1.
 */
int	 proc_pipe(int fds[2]);

/*
 * Move everything from pipe `from` to descriptor `to` (splice, no copy),
 * calling cb(total bytes so far, arg) after each move.  Returns 0 at EOF;
 * -1 with err_set on an error (EPIPE: the reader went away).  SIGPIPE must
 * be ignored by the caller.
 */
int	 proc_relay(int from, int to, void (*cb)(uint64_t, void *), void *arg);

#endif
