/* Spawning our programs and wiring pipelines between them. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "io.h"
#include "proc.h"

/*
 * Pipe buffers to ask for, largest first: 4 MiB needs CAP_SYS_RESOURCE
 * (past /proc/sys/fs/pipe-max-size), 1 MiB is the unprivileged limit.
 * A stage then moves a whole 1-4 MiB buffer per write and the two sides
 * of a pipe seldom wait for each other.
 */
static const int pipe_sizes[] = { 4 << 20, 1 << 20 };

#define STDERR_MAX	(64u << 10)	/* the part of a stage's stderr we keep */

extern char **environ;

char *
proc_path(const char *prog)
{
	char buf[PATH_MAX], *slash, *path;
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);

	if (n > 0) {
		buf[n] = '\0';
		if ((slash = strrchr(buf, '/')) != NULL) {
			*slash = '\0';
			path = xasprintf("%s/%s", buf, prog);
			if (access(path, X_OK) == 0)
				return path;
			free(path);
		}
	}
	return xstrdup(prog);
}

void
proc_arg(struct proc *p, const char *arg)
{
	size_t n = 0;

	while (p->argv != NULL && p->argv[n] != NULL)
		n++;
	p->argv = xrealloc(p->argv, (n + 2) * sizeof(*p->argv));
	p->argv[n] = xstrdup(arg);
	p->argv[n + 1] = NULL;
}

void
proc_argf(struct proc *p, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		die("out of memory");
	va_end(ap);
	proc_arg(p, s);
	free(s);
}

int
proc_pipe(int fds[2])
{
	size_t i;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return err_set(errno, "pipe");
	for (i = 0; i < sizeof(pipe_sizes) / sizeof(pipe_sizes[0]); i++)
		if (fcntl(fds[1], F_SETPIPE_SZ, pipe_sizes[i]) >= 0)
			break;
	return 0;
}

static int
spawn(struct proc *p, const char *path, posix_spawn_file_actions_t *fa,
    posix_spawnattr_t *attr)
{
	int r;

	if (strchr(path, '/') != NULL)
		r = posix_spawn(&p->pid, path, fa, attr, p->argv, environ);
	else
		r = posix_spawnp(&p->pid, path, fa, attr, p->argv, environ);
	if (r == ENOENT)
		return err_set(0, "%s: not installed next to %s or on PATH",
		    p->argv[0], prog_name());
	if (r != 0)
		return err_set(r, "%s", path);
	return 0;
}

int
proc_start(struct proc *p)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t def;
	char *path;
	int r;

	p->pid = 0;
	p->done = false;
	p->err = memfd_create(p->argv[0], MFD_CLOEXEC);
	if (p->err < 0)
		return err_set(errno, "memfd_create");
	if (setenv("IMG_PROG", prog_name(), 1) < 0)
		return err_set(errno, "setenv");
	posix_spawn_file_actions_init(&fa);
	if (p->in >= 0)
		posix_spawn_file_actions_adddup2(&fa, p->in, STDIN_FILENO);
	if (p->out >= 0)
		posix_spawn_file_actions_adddup2(&fa, p->out, STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, p->err, STDERR_FILENO);
	/* dup2 onto itself clears close-on-exec: this child alone gets it */
	if (p->keep >= 0)
		posix_spawn_file_actions_adddup2(&fa, p->keep, p->keep);
	/* a stage must die of SIGPIPE when its reader has gone, even if we ignore it */
	posix_spawnattr_init(&attr);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	posix_spawnattr_setsigdefault(&attr, &def);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
	path = proc_path(p->argv[0]);
	r = spawn(p, path, &fa, &attr);
	free(path);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return r;
}

void
proc_wait(struct proc *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i].pid <= 0 || p[i].done)
			continue;
		while (waitpid(p[i].pid, &p[i].status, 0) < 0) {
			if (errno != EINTR) {
				/* not ours to reap: say it vanished */
				p[i].status = 127 << 8;
				break;
			}
		}
		p[i].done = true;
	}
}

char *
proc_stderr(const struct proc *p)
{
	char *buf = xmalloc(STDERR_MAX + 1);
	ssize_t n = p->err >= 0 ? io_pread(p->err, buf, STDERR_MAX, 0) : 0;

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static bool
failed(const struct proc *p)
{
	return p->pid > 0 && p->done && p->status != 0;
}

static bool
broken_pipe(const struct proc *p)
{
	return WIFSIGNALED(p->status) && WTERMSIG(p->status) == SIGPIPE;
}

/* Whether a line of s starts with our "PROG: " (len: strlen(PROG)). */
static bool
ours(const char *s, size_t len)
{
	for (; s != NULL; s = strchr(s, '\n'), s = s ? s + 1 : NULL)
		if (strncmp(s, prog_name(), len) == 0 &&
		    strncmp(s + len, ": ", 2) == 0)
			return true;
	return false;
}

/* The stage's own message as ours: trailing newlines and its "PROG: " go. */
static int
take_message(const struct proc *p)
{
	char *msg = proc_stderr(p), *s = msg;
	size_t len = strlen(prog_name()), n;

	n = strlen(s);
	while (n > 0 && s[n - 1] == '\n')
		s[--n] = '\0';
	if (*s != '\0' && !ours(s, len) && WIFEXITED(p->status) &&
	    WEXITSTATUS(p->status) == 1) {
		/* not our words (qemu's own, as blkverify's): as they are */
		err_verbatim(s);
		free(msg);
		return -1;
	}
	if (strncmp(s, prog_name(), len) == 0 && strncmp(s + len, ": ", 2) == 0)
		s += len + 2;
	if (*s != '\0')
		err_set(0, "%s", s);
	else
		err_set(0, "%s exited with status %d", p->argv[0],
		    WEXITSTATUS(p->status));
	free(msg);
	return -1;
}

int
proc_check(const struct proc *p, size_t n)
{
	const struct proc *bad = NULL;
	size_t i;

	for (i = 0; i < n && bad == NULL; i++)
		if (failed(&p[i]) && !broken_pipe(&p[i]))
			bad = &p[i];
	for (i = 0; i < n && bad == NULL; i++)
		if (failed(&p[i]))
			bad = &p[i];
	if (bad == NULL)
		return 0;
	if (WIFSIGNALED(bad->status))
		return err_set(0, "%s was killed by signal %d (%s)",
		    bad->argv[0], WTERMSIG(bad->status),
		    strsignal(WTERMSIG(bad->status)));
	return take_message(bad);
}

void
proc_free(struct proc *p)
{
	size_t i;

	if (p->err >= 0)
		close(p->err);
	p->err = -1;
	for (i = 0; p->argv != NULL && p->argv[i] != NULL; i++)
		free(p->argv[i]);
	free(p->argv);
	p->argv = NULL;
}

/* Where splice cannot go (to is no pipe nor file), copy. */
static ssize_t
copy_some(int from, int to)
{
	static char buf[1 << 16];
	ssize_t n = read(from, buf, sizeof(buf));

	if (n > 0 && io_write(to, buf, (size_t)n) < 0)
		return -1;
	return n;
}

int
proc_relay(int from, int to, void (*cb)(uint64_t, void *), void *arg)
{
	uint64_t total = 0;
	bool can_splice = true;
	ssize_t n;

	for (;;) {
		n = can_splice ? splice(from, NULL, to, NULL, 4 << 20,
		    SPLICE_F_MOVE) : copy_some(from, to);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && can_splice && errno == EINVAL) {
			can_splice = false;
			continue;
		}
		if (n < 0)
			return err_set(errno, "pipe");
		if (n == 0)
			return 0;
		total += (uint64_t)n;
		if (cb != NULL)
			cb(total, arg);
	}
}
