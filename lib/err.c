/* Error recording, program name and the die() family. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

static char progname[256] = "img";
static char errbuf[4096];
static int errnum_last;
static bool verbatim;	/* errbuf is said as it is (err_verbatim) */

void
prog_init(const char *argv0)
{
	const char *env = getenv("IMG_PROG");
	const char *p;

	/* The dispatcher tells a sub-program the name the user typed. */
	if (env != NULL && *env != '\0') {
		snprintf(progname, sizeof(progname), "%s", env);
		unsetenv("IMG_PROG");
		return;
	}
	if (argv0 == NULL)
		return;
	p = strrchr(argv0, '/');
	snprintf(progname, sizeof(progname), "%s", p ? p + 1 : argv0);
}

const char *
prog_name(void)
{
	return progname;
}

int
err_set(int errnum, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	verbatim = false;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	n = strlen(errbuf);
	if (errnum != 0 && n < sizeof(errbuf))
		snprintf(errbuf + n, sizeof(errbuf) - n, ": %s",
		    strerror(errnum));
	errnum_last = errnum;
	return -1;
}

int
err_bare(int errnum)
{
	verbatim = false;
	snprintf(errbuf, sizeof(errbuf), "%s", strerror(errnum));
	errnum_last = errnum;
	return -1;
}

int
err_verbatim(const char *msg)
{
	snprintf(errbuf, sizeof(errbuf), "%s", msg);
	errnum_last = 0;
	verbatim = true;
	return -1;
}

int
err_prefix(const char *fmt, ...)
{
	char old[sizeof(errbuf)];
	va_list ap;
	size_t n;

	memcpy(old, errbuf, sizeof(old));
	verbatim = false;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	n = strlen(errbuf);
	if (n + 2 < sizeof(errbuf)) {
		memcpy(errbuf + n, ": ", 3);
		strncat(errbuf + n + 2, old, sizeof(errbuf) - n - 3);
	}
	return -1;
}

int
err_wrap(const char *fmt, ...)
{
	char ctx[sizeof(errbuf)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	if (errnum_last != 0)
		return err_set(errnum_last, "%s", ctx);
	return err_prefix("%s", ctx);
}

void
err_unprefix(const char *fmt, ...)
{
	char pre[sizeof(errbuf)];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	n = strlen(pre);
	if (strncmp(errbuf, pre, n) == 0 && errbuf[n] == ':' && errbuf[n + 1] == ' ')
		memmove(errbuf, errbuf + n + 2, strlen(errbuf + n + 2) + 1);
}

const char *
err_msg(void)
{
	return errbuf[0] ? errbuf : "unknown error";
}

int
err_errno(void)
{
	return errnum_last;
}

static void
vmsg(const char *fmt, va_list ap, int errnum)
{
	/* no fflush(stdout): as qemu-img, errors pass buffered output (2>&1 order) */
	fprintf(stderr, "%s: ", progname);
	vfprintf(stderr, fmt, ap);
	if (errnum)
		fprintf(stderr, ": %s", strerror(errnum));
	fputc('\n', stderr);
}

void
die(const char *fmt, ...)
{
	char buf[sizeof(errbuf)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (verbatim && strcmp(buf, errbuf) == 0) {
		fprintf(stderr, "%s\n", buf);
		exit(1);
	}
	va_start(ap, fmt);
	vmsg(fmt, ap, 0);
	va_end(ap);
	exit(1);
}

void
die_errno(const char *fmt, ...)
{
	int e = errno;
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap, e);
	va_end(ap);
	exit(1);
}

void
die_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap, 0);
	va_end(ap);
	fprintf(stderr, "Try '%s --help' for more information\n", progname);
	exit(1);
}

void
warn_msg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(fmt, ap, 0);
	va_end(ap);
}

void
vwarn_msg(const char *fmt, va_list ap)
{
	vmsg(fmt, ap, 0);
}

void
warn_line(const char *line, void *arg)
{
	(void)arg;
	warn_msg("%s", line);
}

static void
vnotice(const char *fmt, va_list ap)
{
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void
notice(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vnotice(fmt, ap);
	va_end(ap);
}

void
die_notice(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vnotice(fmt, ap);
	va_end(ap);
	exit(1);
}

void
notice_line(const char *line, void *arg)
{
	(void)arg;
	notice("%s", line);
}

static int stdout_errno;	/* the first failed flush's errno */

void
flush_stdout(void)
{
	if (fflush(stdout) != 0 && stdout_errno == 0)
		stdout_errno = errno;
}

int
close_stdout(void)
{
	int bad = ferror(stdout), r;

	errno = 0;
	r = fclose(stdout);
	if (r != 0 && stdout_errno == 0)
		stdout_errno = errno;
	if (r != 0 || bad) {
		fprintf(stderr, "%s: stdout: %s\n", progname,
		    strerror(stdout_errno ? stdout_errno : EIO));
		return 1;
	}
	return 0;
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory");
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		die("out of memory");
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		die("out of memory");
	return p;
}

char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		die("out of memory");
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (r < 0)
		die("out of memory");
	return p;
}
