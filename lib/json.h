/*
 * A small JSON tree printed as QEMU prints its QObjects: object members in
 * QDict's hash order (so output matches qemu-img's byte for byte), the
 * pretty form with 4-space indents, and qemu-img's human "key: value" dump.
 */
#ifndef IMG_JSON_H
#define IMG_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum jn_type { JN_OBJ, JN_ARR, JN_STR, JN_INT, JN_UINT, JN_BOOL, JN_DOUBLE };

struct jnode {
	enum jn_type	 type;
	char		*key;		/* member name inside an object, else NULL */
	char		*s;
	int64_t		 i;
	uint64_t	 u;
	double		 d;
	bool		 b;
	unsigned	 seq;		/* insertion order inside the parent */
	struct jnode	*child, *last, *next;
};

struct jnode	*jn_new_obj(void);
struct jnode	*jn_new_arr(void);
/* Add a member to an object (key) or an element to an array (key NULL). */
struct jnode	*jn_obj(struct jnode *parent, const char *key);
struct jnode	*jn_arr(struct jnode *parent, const char *key);
void		 jn_str(struct jnode *parent, const char *key, const char *v);
void		 jn_int(struct jnode *parent, const char *key, int64_t v);
void		 jn_uint(struct jnode *parent, const char *key, uint64_t v);
void		 jn_bool(struct jnode *parent, const char *key, bool v);
void		 jn_double(struct jnode *parent, const char *key, double v);
/* Take ownership of child and add it under key. */
void		 jn_add(struct jnode *parent, const char *key, struct jnode *child);
const struct jnode *jn_get(const struct jnode *obj, const char *key);
void		 jn_free(struct jnode *n);

/*
 * Parse one JSON value (objects, arrays, strings, numbers, true, false,
 * null as the string "null"); NULL with err_set on bad input, in QEMU's
 * words ("JSON parse error, ...").  Depth and size are bounded.
 */
struct jnode	*json_parse(const char *s);

/* qobject_to_json(_pretty): no trailing newline. */
void		 json_print(FILE *f, const struct jnode *n, bool pretty);
/* qemu-img's dump_qobject at the given indent level (4 spaces each). */
void		 json_dump_human(FILE *f, const struct jnode *n, int indent);
/* Members of an object in the order QEMU's QDict iterates them. */
size_t		 jn_members(const struct jnode *obj, const struct jnode ***out);

#endif
