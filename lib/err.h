/* Errors: lib/ and formats/ record one message and return -1; tools/ print and exit. */
#ifndef IMG_ERR_H
#define IMG_ERR_H

#include <stdarg.h>
#include <stddef.h>

#define PRINTF(f, a)	__attribute__((format(printf, f, a)))

void		 prog_init(const char *argv0);
const char	*prog_name(void);

/* Record a message (with ": strerror(errnum)" appended when errnum != 0); returns -1. */
int		 err_set(int errnum, const char *fmt, ...) PRINTF(2, 3);
/* Prefix the recorded message with "fmt: " (context added by a caller); returns -1. */
int		 err_prefix(const char *fmt, ...) PRINTF(1, 2);
/*
 * A message said as it is, without the program's name (what a pipeline
 * stage printed in qemu's own unprefixed words, as blkverify's mismatch):
 * die("%s", err_msg()) prints it alone.  Returns -1.
 */
int		 err_verbatim(const char *msg);
/* qemu's bare -errnum: the message is strerror(errnum) alone; returns -1 */
int		 err_bare(int errnum);
/*
 * Context for the recorded error, as qemu's error_setg_errno(errp, -ret, fmt):
 * "fmt: strerror" when it has an errno, else err_prefix(fmt).  Returns -1.
 */
int		 err_wrap(const char *fmt, ...) PRINTF(1, 2);
/* Drop a leading "fmt: " from the recorded message when it is there (undoes err_prefix). */
void		 err_unprefix(const char *fmt, ...) PRINTF(1, 2);
const char	*err_msg(void);
int		 err_errno(void);	/* errnum of the last err_set, or 0 */

_Noreturn void	 die(const char *fmt, ...) PRINTF(1, 2);
_Noreturn void	 die_errno(const char *fmt, ...) PRINTF(1, 2);
/* "PROG: msg" then "Try 'PROG --help' for more information", exit 1 (qemu-img's error_exit) */
_Noreturn void	 die_usage(const char *fmt, ...) PRINTF(1, 2);
void		 warn_msg(const char *fmt, ...) PRINTF(1, 2);
/* warn_msg with a va_list */
void		 vwarn_msg(const char *fmt, va_list ap) PRINTF(1, 0);
/* warn_msg("%s", line): a sink for img_close_report's lines (arg unused) */
void		 warn_line(const char *line, void *arg);
/*
 * A line of the block layer's own, without the program's name, on stderr
 * when qemu prints it (a corruption marked, a cluster not freed): the one
 * way formats/ speak other than through err_set.
 */
void		 notice(const char *fmt, ...) PRINTF(1, 2);
/* notice, then exit 1: a check of the block layer's that ends the process */
_Noreturn void	 die_notice(const char *fmt, ...) PRINTF(1, 2);
/* notice("%s", line), as a sink (arg unused) */
void		 notice_line(const char *line, void *arg);

/* Flush and close stdout; on error print "PROG: stdout: ..." and return 1, else 0. */
int		 close_stdout(void);
/* Flush stdout now, keeping a failure's errno for close_stdout to report. */
void		 flush_stdout(void);

void		*xmalloc(size_t n);
void		*xcalloc(size_t n, size_t size);
void		*xrealloc(void *p, size_t n);
char		*xstrdup(const char *s);
char		*xasprintf(const char *fmt, ...) PRINTF(1, 2);

#endif
