/*
 * The LUKS1 block of formats/luks.c inside another format's file, as
 * qemu's crypto/block-luks.c serves both (qcow2's encrypt.format=luks).
 */
#ifndef IMG_LUKS_H
#define IMG_LUKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/json.h"
#include "../lib/opt.h"

struct luks;

struct luks	*luks_block_new(void);
void		 luks_block_free(struct luks *l);	/* accepts NULL */
/*
 * Read and check the LUKS header at base in fd, and with a password (NULL:
 * header only, qemu's BDRV_O_NO_IO) unlock the master key.  0, or -1 with
 * err_set in qemu's words.
 */
int		 luks_block_load(struct luks *l, int fd, uint64_t base,
		    const char *password);
/* En/decrypt whole 512-byte sectors, the first numbered sector. */
void		 luks_block_crypt(const struct luks *l, bool enc, uint64_t sector,
		    uint8_t *buf, size_t len);
/*
 * A new block from create options without their prefix ("key-secret",
 * "cipher-alg", "iter-time" ...): checked and laid out, *len the bytes
 * its header takes.  NULL with err_set in qemu's words.
 */
struct luks	*luks_block_create(const struct opt_list *o, uint64_t *len);
/* Write its header at base in fd (a new master key in slot 0); unlocked. */
int		 luks_block_format(struct luks *l, int fd, uint64_t base);
/*
 * qemu-img amend's keyslot options without their prefix ("state",
 * "keyslot", ...); secret: the key-secret id the block was opened with.
 */
int		 luks_block_amend(struct luks *l, const struct opt_list *o,
		    bool force, const char *secret);
/* qemu's QCryptoBlockInfoLUKS members, into object d. */
void		 luks_block_info(const struct luks *l, struct jnode *d);

#endif
