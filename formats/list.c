/* Every format driver img knows, in probing order. */
#include <stddef.h>
#include <string.h>

#include "fmt.h"

extern const struct fmt_ops raw_ops, qcow2_ops, null_ops;
extern const struct fmt_ops vmdk_ops;
extern const struct fmt_ops vdi_ops, vpc_ops;
extern const struct fmt_ops qed_ops, qcow_ops, parallels_ops;
extern const struct fmt_ops bochs_ops, cloop_ops, dmg_ops;
extern const struct fmt_ops vhdx_ops, luks_ops;
/* found by name but neither listed nor probed: a protocol node */
extern const struct fmt_ops blkverify_ops;

const struct fmt_ops *const fmt_list[] = {
	&qcow2_ops,
	&raw_ops,
	&null_ops,
	&vmdk_ops,
	&vdi_ops, &vpc_ops,
	&qed_ops, &qcow_ops, &parallels_ops,
	&bochs_ops, &cloop_ops, &dmg_ops,
	&vhdx_ops, &luks_ops,
	NULL,
};

const struct fmt_ops *
fmt_find(const char *name)
{
	size_t i;

	for (i = 0; fmt_list[i] != NULL; i++)
		if (strcmp(fmt_list[i]->name, name) == 0)
			return fmt_list[i];
	return strcmp(name, "blkverify") == 0 ? &blkverify_ops : NULL;
}
