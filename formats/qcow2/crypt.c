/*
 * qcow2 encryption, reading: docs/interop/qcow2.txt "crypt_method" and the
 * "Full disk encryption header pointer" extension.  AES (1): AES-128-CBC,
 * the passphrase's first 16 bytes as key, IVs from guest sectors; LUKS
 * (2): a LUKS1 header in the image's clusters, IVs from host sectors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/crypto.h"
#include "../../lib/err.h"
#include "../../lib/int.h"
#include "../../lib/io.h"
#include "../../lib/opt.h"
#include "../../lib/secret.h"
#include "../luks.h"
#include "qcow2.h"

struct qcow2_crypt {
	struct luks	*luks;		/* crypt_method 2 */
	struct crypto_cipher c;		/* crypt_method 1 */
	struct crypto_ivgen g;
	bool		 unlocked;
	char		*secret;	/* the encrypt.key-secret id */
};

/*
 * The key from encrypt.key-secret, unless opened for info (IMG_NO_IO):
 * qemu's qcow2_update_options_prepare then qcrypto_block_open.
 */
int
qcow2_crypt_open(struct img *img)
{
	struct qcow2 *s = img->priv;
	const char *id = img->open_opts ?
	    opt_list_get(img->open_opts, "encrypt.key-secret") : NULL;
	const char *password = NULL;
	struct qcow2_crypt *k;

	if (s->crypt_method == 0)
		return 0;
	if (s->crypt_method == 2 && s->crypt_hdr_off == 0)
		return err_set(0, "Could not read encryption header: "
		    "no CRYPTO header extension");
	if (!(img->flags & IMG_NO_IO)) {
		if (id == NULL)
			return err_set(0, "Parameter 'encrypt.key-secret' is "
			    "required for cipher");
		if ((password = secret_get_utf8(id)) == NULL)
			return -1;
	}
	k = s->crypt = xcalloc(1, sizeof(*k));
	if (s->crypt_method == 2) {
		k->luks = luks_block_new();
		if (luks_block_load(k->luks, img->fd, s->crypt_hdr_off,
		    password) < 0)
			return -1;
	} else if (password != NULL &&
	    crypto_qcow_key(password, &k->c, &k->g) < 0) {
		return -1;
	}
	k->unlocked = password != NULL;
	if (id != NULL) {
		k->secret = xstrdup(id);
		fmt_json_name(img, "encrypt.key-secret", id);
	}
	return 0;
}

void
qcow2_crypt_close(struct img *img)
{
	struct qcow2 *s = img->priv;

	if (s->crypt == NULL)
		return;
	luks_block_free(s->crypt->luks);
	free(s->crypt->secret);
	explicit_bzero(s->crypt, sizeof(*s->crypt));
	free(s->crypt);
	s->crypt = NULL;
}

/* The "encrypt" member of qcow2's format-specific info. */
void
qcow2_crypt_info(struct img *img, struct jnode *d)
{
	struct qcow2 *s = img->priv;
	struct jnode *e;

	if (s->crypt == NULL)
		return;
	e = jn_obj(d, "encrypt");
	jn_str(e, "format", s->crypt_method == 2 ? "luks" : "aes");
	if (s->crypt->luks != NULL)
		luks_block_info(s->crypt->luks, e);
}

/*
 * Read n bytes of a data cluster at host (guest offset off) and decrypt
 * them; whole sectors are read around a partial one.
 */
int
qcow2_crypt_read(struct img *img, uint64_t host, uint64_t off, uint8_t *p,
    uint64_t n)
{
	struct qcow2 *s = img->priv;
	struct qcow2_crypt *k = s->crypt;
	uint64_t head = off & 511, len = ROUND_UP(head + n, 512), sector;
	uint8_t *b;

	if (!k->unlocked)
		return err_set(0, "Parameter 'encrypt.key-secret' is required "
		    "for cipher");
	b = xmalloc(len);
	if (io_pread_zero(qcow2_dfd(img), b, len, host - head) < 0) {
		free(b);
		return err_set(errno, "%s: Could not read data at %#llx",
		    img->filename, (unsigned long long)host);
	}
	/* LUKS numbers sectors on the host, the old AES in the guest */
	sector = (s->crypt_method == 2 ? host : off) / 512;
	if (k->luks != NULL)
		luks_block_crypt(k->luks, false, sector, b, len);
	else
		crypto_sectors_decrypt(&k->c, &k->g, 512, sector, b, len);
	memcpy(p, b + head, n);
	free(b);
	return 0;
}

/*
 * Encrypt len bytes (whole sectors) in place, bound for host at guest
 * offset off: qemu's qcow2_co_encrypt, LUKS IVs from the host sector
 * (crypt_physical_offset), AES ones from the guest sector.
 */
int
qcow2_crypt_encrypt(struct img *img, uint64_t host, uint64_t off, uint8_t *p,
    uint64_t len)
{
	struct qcow2 *s = img->priv;
	struct qcow2_crypt *k = s->crypt;

	if (!k->unlocked)
		return err_set(0, "Parameter 'encrypt.key-secret' is required "
		    "for cipher");
	if (k->luks != NULL)
		luks_block_crypt(k->luks, true, host / 512, p, len);
	else
		crypto_sectors_encrypt(&k->c, &k->g, 512, off / 512, p, len);
	return 0;
}

/* The create options under "encrypt." without their prefix (but format). */
static void
strip_prefix(const struct opt_list *o, struct opt_list *out)
{
	size_t i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < o->n; i++)
		if (strncmp(o->v[i].key, "encrypt.", 8) == 0 &&
		    strcmp(o->v[i].key, "encrypt.format") != 0)
			opt_list_set(out, o->v[i].key + 8, o->v[i].val);
}

/*
 * The encryption a create asks for (0 none, 1 aes, 2 luks) and what qemu
 * checks of it before writing: the format, the options, the secret.
 */
int
qcow2_crypt_create_check(const struct opt_list *o, uint32_t *method)
{
	const char *f = opt_list_get(o, "encrypt.format"), *id;
	struct opt_list e;
	struct luks *l;
	uint64_t len;
	size_t i;

	*method = 0;
	if (f == NULL) {
		f = opt_list_get(o, "encryption");
		f = f != NULL && strcmp(f, "on") == 0 ? "aes" : NULL;
	}
	for (i = 0; f == NULL && i < o->n; i++)
		if (strncmp(o->v[i].key, "encrypt.", 8) == 0)
			return err_set(0, "Parameter 'encrypt.format' is "
			    "missing");
	if (f == NULL)
		return 0;
	if (strcmp(f, "aes") != 0 && strcmp(f, "luks") != 0)
		return err_set(0, "Parameter 'format' does not accept value "
		    "'%s'", f);
	*method = strcmp(f, "aes") == 0 ? 1 : 2;
	for (i = 0; *method == 1 && i < o->n; i++)
		if (strncmp(o->v[i].key, "encrypt.", 8) == 0 &&
		    strcmp(o->v[i].key, "encrypt.format") != 0 &&
		    strcmp(o->v[i].key, "encrypt.key-secret") != 0)
			return err_set(0, "Parameter '%s' is unexpected",
			    o->v[i].key);
	if ((id = opt_list_get(o, "encrypt.key-secret")) == NULL)
		return err_set(0, "Parameter 'encrypt.key-secret' is required "
		    "for cipher");
	if (*method == 1)
		return secret_get_utf8(id) == NULL ? -1 : 0;
	strip_prefix(o, &e);
	l = luks_block_create(&e, &len);
	opt_list_free(&e);
	luks_block_free(l);
	return l == NULL ? -1 : 0;
}

/*
 * The keys of a new image (qcow2_set_up_encryption); for LUKS its header
 * in new zeroed clusters, *off and *len for the CRYPTO extension.
 */
int
qcow2_crypt_create(struct img *img, const struct opt_list *o,
    uint32_t method, uint64_t *off, uint64_t *len)
{
	struct qcow2 *s = img->priv;
	struct qcow2_crypt *k = s->crypt = xcalloc(1, sizeof(*s->crypt));
	const char *password = secret_get_utf8(opt_list_get(o,
	    "encrypt.key-secret"));
	struct opt_list e;
	uint64_t n, end;

	*off = *len = 0;
	if (password == NULL)
		return -1;
	if (method == 1)
		return (k->unlocked = crypto_qcow_key(password, &k->c,
		    &k->g) == 0) ? 0 : -1;
	strip_prefix(o, &e);
	k->luks = luks_block_create(&e, len);
	opt_list_free(&e);
	if (k->luks == NULL)
		return -1;
	n = DIV_ROUND_UP(*len, s->cluster_size);
	if ((*off = qcow2_alloc_clusters(img, n)) == 0)
		return -1;
	/* bdrv_pwrite_zeroes: the clusters are allocated, not holes */
	end = *off + n * s->cluster_size;
	if (io_fallocate(img->fd, FALLOC_FL_ZERO_RANGE, (off_t)*off,
	    (off_t)(end - *off)) < 0 && io_extend(img->fd, end) < 0)
		return err_set(errno, "Could not resize file");
	s->file_size = MAX(s->file_size, end);
	if (luks_block_format(k->luks, img->fd, *off) < 0)
		return -1;
	k->unlocked = true;
	return 0;
}

/* qemu-img amend's encrypt.* options: LUKS keyslots (qcrypto_block_amend_options). */
int
qcow2_crypt_amend(struct img *img, const struct opt_list *o, bool force)
{
	struct qcow2 *s = img->priv;
	struct opt_list e;
	int r;

	if (s->crypt == NULL)
		return err_set(0, "Can't amend encryption options - "
		    "encryption not present");
	if (s->crypt->luks == NULL)
		return err_set(0, "Only LUKS encryption options can be "
		    "amended");
	strip_prefix(o, &e);
	r = luks_block_amend(s->crypt->luks, &e, force, s->crypt->secret);
	opt_list_free(&e);
	return r;
}

/* The clusters a LUKS header takes in a new image (qcow2_measure). */
int
qcow2_crypt_measure(const struct opt_list *o, uint64_t cs, uint64_t *len)
{
	const char *f = opt_list_get(o, "encrypt.format");
	struct opt_list e;
	struct luks *l;

	*len = 0;
	if (f == NULL || strcmp(f, "luks") != 0)
		return 0;
	if (opt_list_get(o, "encrypt.key-secret") == NULL)
		return err_set(0, "Parameter 'encrypt.key-secret' is required "
		    "for cipher");
	strip_prefix(o, &e);
	l = luks_block_create(&e, len);
	opt_list_free(&e);
	luks_block_free(l);
	if (l == NULL)
		return -1;
	*len = ROUND_UP(*len, cs);
	return 0;
}
