/* Option values: sizes with qemu's suffixes, -o key=value lists, --output. */
#ifndef IMG_OPT_H
#define IMG_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { OUT_HUMAN, OUT_JSON };

/*
 * qemu_strtosz: a number with an optional suffix B K M G T P E (any case,
 * powers of 1024; a fraction only with a suffix).  Returns 0, -1 for
 * garbage (-EINVAL), -2 when out of range (-ERANGE, above INT64_MAX).
 */
int	opt_size(const char *s, uint64_t *out);
/* Same, but a bare number is in units of `unit` (qemu_strtosz_MiB etc.). */
int	opt_size_unit(const char *s, uint64_t unit, uint64_t *out);
/*
 * qemu-img's cvtnum_full: a size named `name` ("image size") within
 * [min, max]; on error err_set()s qemu-img's one or two lines (the second
 * already carries the "PROG: " prefix).  0 or -1.
 */
int	opt_cvtnum(const char *name, const char *s, uint64_t min, uint64_t max,
	    uint64_t *out);
struct option;

/*
 * A program's hidden --long-options (longs) or --short-options, one per
 * line for bash completion (libnbd's copy/main.c): "--NAME" for each of
 * longopts but these two, "-C" for each option letter of the getopt string;
 * then exit(close_stdout()).  Like the die() family, for tools/ only.
 */
_Noreturn void	opt_print_options(const struct option *longopts,
		    const char *optstring, bool longs);
/*
 * getopt_long()'s errors (optstring led by ':') as qemu-img reports them:
 * c ':' is "missing argument for option", anything else "unrecognized
 * option", naming argv[optind - 1]; die_usage() exits 1.
 */
_Noreturn void	opt_usage_error(int c, char *const argv[]);

/* qemu's bdrv_parse_cache_mode: the OPT_CACHE_* bits of mode; -1 for an unknown one */
enum { OPT_CACHE_DIRECT = 1, OPT_CACHE_NO_FLUSH = 2, OPT_CACHE_WRITETHROUGH = 4 };
int	opt_cache_mode(const char *mode);

/*
 * A first item without "key=" is the value of key (QemuOpts'
 * implied_opt_name): s, or "key=s", malloc'd.
 */
char	*opt_implied_key(const char *s, const char *key);

/* "human" or "json"; -1 otherwise */
int	opt_output(const char *s);
/* qemu's on/off/yes/no/true/false; -1 otherwise */
int	opt_bool(const char *s);

/* A parsed -o list, in the order given; later keys override earlier. */
struct opt_kv {
	char	*key;
	char	*val;
};

struct opt_list {
	size_t		 n;
	struct opt_kv	*v;
};

/*
 * Append "k=v,k2=v2" (",," is a literal comma; a bare "k" means k=on).
 * Returns 0, or -1 with err_set (qemu's "Invalid parameter ..." wording).
 */
int		 opt_list_parse(struct opt_list *l, const char *s);
void		 opt_list_set(struct opt_list *l, const char *key, const char *val);
const char	*opt_list_get(const struct opt_list *l, const char *key);
bool		 opt_list_has_help(const struct opt_list *l);
void		 opt_list_free(struct opt_list *l);

/* A create/amend option a driver accepts, as QemuOptDesc. */
enum opt_type { OPT_STRING, OPT_BOOL, OPT_NUMBER, OPT_SIZE };

struct opt_desc {
	const char	*name;
	enum opt_type	 type;
	const char	*help;
	const char	*def;		/* default shown in "Formatting" lines, or NULL */
};

/*
 * qemu_opt_parse: check v against d's type.  0 with *val the value as a
 * driver takes it (on/off; numbers and sizes in decimal bytes, written to
 * buf), or -1 with err_set in qemu's words ("Parameter 'x' expects ...").
 */
int	opt_check(const struct opt_desc *d, const char *v, char *buf,
	    size_t size, const char **val);

#endif
