/*
 * measure -o FILE PROG [ARG...]: run PROG and append to FILE one line
 * "SECONDS TREE_KIB SELF_KIB EXIT CPU": wall time, the peak RSS of PROG and
 * whatever it waited for (wait4), PROG's own peak (VmHWM, polled), its exit
 * status and the CPU seconds (user + system) of PROG and what it waited for.
 * Built and used by tests/bench/run only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long
hwm(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmHWM: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char *argv[])
{
	struct timespec nap = { 0, 2000000 };
	struct rusage ru;
	long self = 0, h;
	double t0;
	pid_t pid, r;
	int status;
	FILE *out;

	if (argc < 4 || strcmp(argv[1], "-o") != 0) {
		fprintf(stderr, "usage: measure -o FILE PROG [ARG...]\n");
		return 2;
	}
	t0 = now();
	if ((pid = fork()) == 0) {
		execvp(argv[3], argv + 3);
		fprintf(stderr, "measure: %s: %s\n", argv[3], strerror(errno));
		_exit(127);
	}
	for (;;) {
		r = wait4(pid, &status, WNOHANG, &ru);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return 2;
		if ((h = hwm(pid)) > self)
			self = h;
		nanosleep(&nap, NULL);
	}
	if ((out = fopen(argv[2], "a")) == NULL)
		return 2;
	fprintf(out, "%.4f %ld %ld %d %.4f\n", now() - t0, ru.ru_maxrss,
	    self > 0 ? self : ru.ru_maxrss,
	    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
	    (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	fclose(out);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
