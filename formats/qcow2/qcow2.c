/* qcow2 placeholder until the driver lands: probes, then refuses. */
#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../fmt.h"

static int
qcow2_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	return len >= 8 && get_be32(buf) == 0x514649fb && get_be32(buf + 4) >= 2 ?
	    100 : 0;
}

static int
qcow2_open(struct img *img)
{
	(void)img;
	return err_set(0, "qcow2 is not supported yet");
}

const struct fmt_ops qcow2_ops = {
	.name	= "qcow2",
	.probe	= qcow2_probe,
	.open	= qcow2_open,
};
