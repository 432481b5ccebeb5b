/* Numbers for people, as qemu prints them (util/cutils.c, block/qapi.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"

#include "human.h"

static const char *const iec_prefix[] = {
	"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
};

char *
human_size(uint64_t val, char *buf, size_t len)
{
	int i;

	/*
	 * frexp gives floor(log2(val * 1024 / 1000)) + 1: the correction
	 * moves to the next prefix once the integer part reaches 1000, so
	 * qemu prints "0.977 KiB" for 1000 bytes, never "1e+03 B".
	 */
	frexp((double)val / (1000.0 / 1024.0), &i);
	i = (i - 1) / 10 * 10;
	snprintf(buf, len, "%0.3g %sB", (double)val / (double)(1ULL << i),
	    iec_prefix[i / 10]);
	return buf;
}

void
human_snap_header(FILE *f)
{
	fprintf(f, "%-10s%-17s%8s%20s%13s%11s",
	    "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
}

void
human_snap_row(FILE *f, const struct human_snap *sn)
{
	char clock[128], icount[32] = "", date[64] = "", size[HUMAN_SIZE_LEN];
	uint64_t secs = sn->vm_clock_nsec / 1000000000;
	time_t t = (time_t)sn->date_sec;
	struct tm tm;

	if (localtime_r(&t, &tm) != NULL)
		strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(clock, sizeof(clock), "%02d:%02d:%02d.%03d",
	    (int)(secs / 3600), (int)((secs / 60) % 60), (int)(secs % 60),
	    (int)((sn->vm_clock_nsec / 1000000) % 1000));
	if (sn->icount != UINT64_MAX)
		snprintf(icount, sizeof(icount), "%lld", (long long)sn->icount);
	fprintf(f, "%-9s %-16s %8s%20s%13s%11s", sn->id, sn->name,
	    human_size(sn->vm_state_size, size, sizeof(size)), date, clock,
	    icount);
}

static const char *
type_name(enum opt_type t)
{
	switch (t) {
	case OPT_BOOL:
		return "bool (on/off)";
	case OPT_NUMBER:
		return "num";
	case OPT_SIZE:
		return "size";
	default:
		return "str";
	}
}

static int
line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void
human_opt_help(FILE *f, const struct opt_desc *const *d, size_t n)
{
	char **lines = xcalloc(n, sizeof(*lines)), *s;
	size_t i;
	int len;

	for (i = 0; i < n; i++) {
		s = xasprintf("  %s=<%s>", d[i]->name, type_name(d[i]->type));
		len = (int)strlen(s);
		if (d[i]->help != NULL) {
			lines[i] = xasprintf("%s%*s - %s", s,
			    len < 24 ? 24 - len : 0, "", d[i]->help);
			free(s);
		} else {
			lines[i] = s;
		}
	}
	qsort(lines, n, sizeof(*lines), line_cmp);
	for (i = 0; i < n; i++) {
		fprintf(f, "%s\n", lines[i]);
		free(lines[i]);
	}
	free(lines);
}
