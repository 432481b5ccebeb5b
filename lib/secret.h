/*
 * qemu's --object: user-creatable objects checked as qemu-img does, and
 * the secrets among them kept by id for the drivers that need a key.
 */
#ifndef IMG_SECRET_H
#define IMG_SECRET_H

#include <stddef.h>

/*
 * Add one --object definition ("TYPE,id=ID,..." or "qom-type=TYPE,...").
 * 0; 1 when def asks for help, with *help the text to print (malloc'd);
 * -1 with err_set in qemu's words.  A secret's data is read now, as qemu
 * does.
 */
int		 object_add(const char *def, char **help);
/*
 * The bytes of secret id (NUL-terminated too, *len without it), or NULL
 * with err_set ("No secret with id 'x'").
 */
const char	*secret_get(const char *id, size_t *len);
/* Same, for a passphrase: NULL too when the data is not valid UTF-8. */
const char	*secret_get_utf8(const char *id);
/* The definitions given so far, in order (for a pipeline's children). */
const char	*const *object_defs(size_t *n);
void		 object_free_all(void);
/*
 * For programs, as qemu-img's --object: add def, or print its help on
 * stdout and exit 0, or print the error and exit with status.
 */
void		 object_add_or_exit(const char *def, int status);

#endif
