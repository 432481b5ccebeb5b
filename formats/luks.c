/*
 * LUKS1 encrypted images as qemu writes them (crypto/block-luks.c, after
 * cryptsetup's docs/on-disk-format.pdf 1.2.1): a 592-byte header, eight
 * key slots of AF-split key material, then the payload in 512-byte sectors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/crypto.h"
#include "../lib/err.h"
#include "../lib/int.h"
#include "../lib/io.h"
#include "../lib/secret.h"
#include "fmt.h"
#include "luks.h"

#define LUKS_HDR_SIZE		592
#define LUKS_SLOTS		8
#define LUKS_SALT_LEN		32
#define LUKS_DIGEST_LEN		20
#define LUKS_UUID_LEN		40
#define LUKS_STRIPES		4000
#define LUKS_SECTOR		512
#define LUKS_SLOT_OFFSET	4096	/* key material starts here, aligned so */
#define LUKS_MIN_SLOT_ITERS	1000
#define LUKS_MIN_MK_ITERS	1000
#define LUKS_ERASE_ITERATIONS	40
#define LUKS_DEFAULT_ITER_TIME	2000
#define LUKS_SLOT_ENABLED	0x00AC71F3
#define LUKS_SLOT_DISABLED	0x0000DEAD
#define LUKS_IO_CHUNK		(1u << 20)

/* header field offsets */
#define H_VERSION	6
#define H_CIPHER	8
#define H_MODE		40
#define H_HASH		72
#define H_PAYLOAD	104
#define H_KEYBYTES	108
#define H_MKDIGEST	112
#define H_MKSALT	132
#define H_MKITERS	164
#define H_UUID		168
#define H_SLOTS		208
#define SLOT_SIZE	48

static const uint8_t luks_magic[6] = { 'L', 'U', 'K', 'S', 0xba, 0xbe };

struct luks_slot {
	uint32_t	 active, iters, key_offset, stripes;	/* sectors */
	uint8_t		 salt[LUKS_SALT_LEN];
};

struct luks {
	uint8_t		 hdr[LUKS_HDR_SIZE];
	struct luks_slot slot[LUKS_SLOTS];
	uint32_t	 key_bytes, mk_iters;
	uint64_t	 payload;		/* bytes */
	int		 cipher, mode, ivgen, ivhash, hash, ivcipher;
	bool		 unlocked;
	int		 fd;			/* the file holding the header */
	uint64_t	 base;			/* where in it (qcow2: a cluster) */
	char		*secret;		/* key-secret id it was opened with */
	const char	*new_password;		/* luks_block_create's */
	uint64_t	 iter_time;
	struct crypto_cipher c;
	struct crypto_ivgen g;
};

/* The algorithms of an image or a create request. */
struct luks_algs {
	int	 cipher, mode, ivgen, ivhash, hash;
};

static int
luks_probe(const uint8_t *buf, size_t len, const char *filename)
{
	(void)filename;
	return len >= H_CIPHER && memcmp(buf, luks_magic, 6) == 0 &&
	    get_be16(buf + H_VERSION) == 1 ? 100 : 0;
}

static void
decode_slots(struct luks *l)
{
	const uint8_t *p;
	int i;

	l->key_bytes = get_be32(l->hdr + H_KEYBYTES);
	l->mk_iters = get_be32(l->hdr + H_MKITERS);
	l->payload = (uint64_t)get_be32(l->hdr + H_PAYLOAD) * LUKS_SECTOR;
	for (i = 0; i < LUKS_SLOTS; i++) {
		p = l->hdr + H_SLOTS + SLOT_SIZE * i;
		l->slot[i].active = get_be32(p);
		l->slot[i].iters = get_be32(p + 4);
		memcpy(l->slot[i].salt, p + 8, LUKS_SALT_LEN);
		l->slot[i].key_offset = get_be32(p + 40);
		l->slot[i].stripes = get_be32(p + 44);
	}
}

static void
encode_slots(struct luks *l)
{
	uint8_t *p;
	int i;

	put_be32(l->hdr + H_MKITERS, l->mk_iters);
	for (i = 0; i < LUKS_SLOTS; i++) {
		p = l->hdr + H_SLOTS + SLOT_SIZE * i;
		put_be32(p, l->slot[i].active);
		put_be32(p + 4, l->slot[i].iters);
		memcpy(p + 8, l->slot[i].salt, LUKS_SALT_LEN);
		put_be32(p + 40, l->slot[i].key_offset);
		put_be32(p + 44, l->slot[i].stripes);
	}
}

/* Sectors a slot's key material takes, rounded to the 4 KiB header (cryptsetup). */
static uint64_t
material_sectors(uint32_t key_bytes, uint32_t stripes)
{
	uint64_t n = DIV_ROUND_UP((uint64_t)key_bytes * stripes, LUKS_SECTOR);

	return ROUND_UP(n, LUKS_SLOT_OFFSET / LUKS_SECTOR);
}

/* qcrypto_block_luks_check_header, as Debian's 7.2 has it */
static int
check_header(const struct luks *l)
{
	static const char *const field[3] = { "cipher name", "cipher mode",
	    "hash spec" };
	uint64_t s1, e1, s2, e2, pay = l->payload / LUKS_SECTOR;
	uint64_t hs = LUKS_SLOT_OFFSET / LUKS_SECTOR;
	int i, j;

	for (i = 0; i < 3; i++)
		if (memchr(l->hdr + H_CIPHER + 32 * i, '\0', 32) == NULL)
			return err_set(0, "LUKS header %s is not NUL terminated",
			    field[i]);
	if (pay < hs)
		return err_set(0, "LUKS payload is overlapping with the header");
	if (l->mk_iters == 0)
		return err_set(0, "LUKS key iteration count is zero");
	for (i = 0; i < LUKS_SLOTS; i++) {
		s1 = l->slot[i].key_offset;
		e1 = s1 + material_sectors(l->key_bytes, l->slot[i].stripes);
		if (l->slot[i].stripes != LUKS_STRIPES)
			return err_set(0, "Keyslot %d is corrupted (stripes %d != %d)",
			    i, (int)l->slot[i].stripes, LUKS_STRIPES);
		if (l->slot[i].active != LUKS_SLOT_DISABLED &&
		    l->slot[i].active != LUKS_SLOT_ENABLED)
			return err_set(0, "Keyslot %d state (active/disable) is corrupted",
			    i);
		if (l->slot[i].active == LUKS_SLOT_ENABLED &&
		    l->slot[i].iters == 0)
			return err_set(0, "Keyslot %d iteration count is zero", i);
		if (s1 < hs)
			return err_set(0, "Keyslot %d is overlapping with the LUKS header",
			    i);
		if (e1 > pay)
			return err_set(0, "Keyslot %d is overlapping with the encrypted payload",
			    i);
		for (j = i + 1; j < LUKS_SLOTS; j++) {
			s2 = l->slot[j].key_offset;
			e2 = s2 + material_sectors(l->key_bytes,
			    l->slot[j].stripes);
			if (e1 > s2 && e2 > s1)
				return err_set(0, "Keyslots %d and %d are overlapping in the header",
				    i, j);
		}
	}
	return 0;
}

static int
name_lookup(int (*fn)(const char *), const char *name, const char *what)
{
	int v = fn(name);

	if (v < 0)
		return err_set(0, "%s '%s' not supported", what, name);
	return v;
}

/* "aes" and a key length to aes-256 etc. (XTS keys are two). */
static int
cipher_from_name(const char *name, int mode, uint32_t key_bytes)
{
	char buf[40];
	int alg;

	if (mode == MODE_XTS)
		key_bytes /= 2;
	snprintf(buf, sizeof(buf), "%s-%u", name, key_bytes * 8);
	if ((alg = crypto_cipher_lookup(buf)) < 0 ||
	    (strcmp(name, "cast5") == 0 && key_bytes != 16))
		return err_set(0, "Algorithm '%s' with key size %u bytes not supported",
		    name, key_bytes);
	return alg;
}

/* qcrypto_block_luks_parse_header: "<mode>-<ivgen>[:<ivhash>]" and names */
static int
parse_header(struct luks *l)
{
	char name[33], mode[33], hash[33], *iv, *ivh;

	memcpy(name, l->hdr + H_CIPHER, 32);
	memcpy(mode, l->hdr + H_MODE, 32);
	memcpy(hash, l->hdr + H_HASH, 32);
	name[32] = mode[32] = hash[32] = '\0';
	if ((iv = strchr(mode, '-')) == NULL)
		return err_set(0, "Unexpected cipher mode string format '%s'",
		    mode);
	*iv++ = '\0';
	l->ivhash = 0;
	if ((ivh = strchr(iv, ':')) != NULL) {
		*ivh++ = '\0';
		if ((l->ivhash = name_lookup(crypto_hash_lookup, ivh,
		    "Hash algorithm")) < 0)
			return -1;
	}
	if ((l->mode = name_lookup(crypto_mode_lookup, mode, "Cipher mode")) < 0 ||
	    (l->cipher = cipher_from_name(name, l->mode, l->key_bytes)) < 0 ||
	    (l->hash = name_lookup(crypto_hash_lookup, hash,
	    "Hash algorithm")) < 0 ||
	    (l->ivgen = name_lookup(crypto_ivgen_lookup, iv,
	    "IV generator")) < 0)
		return -1;
	l->ivcipher = l->cipher;
	if (l->ivgen == IVGEN_ESSIV) {
		if (ivh == NULL)
			return err_set(0, "Missing IV generator hash specification");
		if ((l->ivcipher = crypto_essiv_cipher(l->cipher, l->ivhash)) < 0)
			return -1;
	}
	return 0;
}

/*
 * What qemu's cipher backend refuses of the algorithms its LUKS names:
 * XTS on the 64-bit block of cast5-128.
 */
static int
check_supported(const struct luks *l)
{
	return crypto_cipher_mode_check(l->cipher, l->mode);
}

/* A key slot's cipher and IVs, keyed by key (the slot key or the master key). */
static int
key_cipher(const struct luks *l, const uint8_t *key, struct crypto_cipher *c,
    struct crypto_ivgen *g)
{
	if (crypto_cipher_init(c, l->cipher, l->mode, key, l->key_bytes) < 0 ||
	    crypto_ivgen_init(g, l->ivgen, l->ivcipher, l->ivhash, key,
	    l->key_bytes) < 0)
		return -1;
	return 0;
}

/* Forget a slot key, its cipher and the key material (then freed). */
static void
wipe(uint8_t *key, struct crypto_cipher *c, uint8_t *split, size_t len)
{
	explicit_bzero(key, 64);
	explicit_bzero(c, sizeof(*c));
	explicit_bzero(split, len);
	free(split);
}

/*
 * qcrypto_block_luks_load_key: 1 when password opens slot i (the master
 * key in mk), 0 when it does not or the slot is off, -1 on error.
 */
static int
load_key(struct luks *l, int i, const char *password, uint8_t *mk)
{
	const struct luks_slot *s = &l->slot[i];
	uint8_t key[64], digest[LUKS_DIGEST_LEN], *split;
	struct crypto_cipher c;
	struct crypto_ivgen g;
	size_t len;
	int r = -1;

	if (s->active != LUKS_SLOT_ENABLED)
		return 0;
	len = (size_t)l->key_bytes * s->stripes;
	if ((split = malloc(len)) == NULL)
		return err_set(ENOMEM, "Keyslot %d", i);
	crypto_pbkdf2(l->hash, password, strlen(password), s->salt,
	    LUKS_SALT_LEN, s->iters, key, l->key_bytes);
	if (io_pread_zero(l->fd, split, len,
	    l->base + (uint64_t)s->key_offset * LUKS_SECTOR) < 0) {
		err_set(errno, "Could not read encryption header");
		goto out;
	}
	if (key_cipher(l, key, &c, &g) < 0)
		goto out;
	crypto_sectors_decrypt(&c, &g, LUKS_SECTOR, 0, split, len);
	crypto_afsplit_decode(l->hash, l->key_bytes, s->stripes, split, mk);
	crypto_pbkdf2(l->hash, mk, l->key_bytes, l->hdr + H_MKSALT,
	    LUKS_SALT_LEN, l->mk_iters, digest, LUKS_DIGEST_LEN);
	r = memcmp(digest, l->hdr + H_MKDIGEST, LUKS_DIGEST_LEN) == 0;
out:
	wipe(key, &c, split, len);
	return r;
}

static int
find_key(struct luks *l, const char *password, uint8_t *mk)
{
	int i, r;

	for (i = 0; i < LUKS_SLOTS; i++)
		if ((r = load_key(l, i, password, mk)) != 0)
			return r < 0 ? -1 : i;
	return err_set(0, "Invalid password, cannot unlock any keyslot");
}

static int
unlock(struct luks *l, const char *password)
{
	uint8_t mk[64];
	int r;

	if (check_supported(l) < 0 || find_key(l, password, mk) < 0)
		return -1;
	r = key_cipher(l, mk, &l->c, &l->g);
	explicit_bzero(mk, sizeof(mk));
	l->unlocked = r == 0;
	return r;
}

int
luks_block_load(struct luks *l, int fd, uint64_t base, const char *password)
{
	ssize_t n;

	l->fd = fd;
	l->base = base;
	if ((n = io_pread(fd, l->hdr, LUKS_HDR_SIZE, base)) < 0)
		return err_set(errno, "Could not read encryption header");
	if (n < LUKS_HDR_SIZE)
		memset(l->hdr + n, 0, LUKS_HDR_SIZE - (size_t)n);
	if (memcmp(l->hdr, luks_magic, 6) != 0)
		return err_set(0, "Volume is not in LUKS format");
	if (get_be16(l->hdr + H_VERSION) != 1)
		return err_set(0, "LUKS version %u is not supported",
		    get_be16(l->hdr + H_VERSION));
	decode_slots(l);
	if (check_header(l) < 0 || parse_header(l) < 0)
		return -1;
	return password != NULL ? unlock(l, password) : 0;
}

struct luks *
luks_block_new(void)
{
	return xcalloc(1, sizeof(struct luks));
}

void
luks_block_free(struct luks *l)
{
	if (l == NULL)
		return;
	explicit_bzero(l, sizeof(*l));
	free(l);
}

void
luks_block_crypt(const struct luks *l, bool enc, uint64_t sector,
    uint8_t *buf, size_t len)
{
	(enc ? crypto_sectors_encrypt : crypto_sectors_decrypt)(&l->c, &l->g,
	    LUKS_SECTOR, sector, buf, len);
}

static int
luks_open(struct img *img)
{
	struct luks *l = img->priv;
	const char *id = img->open_opts ?
	    opt_list_get(img->open_opts, "key-secret") : NULL;
	const char *password = NULL;
	uint64_t fsize;

	/* qemu looks the secret up before it reads anything */
	if (!(img->flags & IMG_NO_IO)) {
		if (id == NULL)
			return err_set(0, "Parameter 'key-secret' is required for cipher");
		if ((password = secret_get_utf8(id)) == NULL)
			return -1;
	}
	if (luks_block_load(l, img->fd, 0, password) < 0)
		return -1;
	if (id != NULL) {
		l->secret = xstrdup(id);
		fmt_json_name(img, "key-secret", id);	/* as qemu names it */
	}
	if (fmt_file_size(img, &fsize) < 0)
		return -1;
	if (l->payload > fsize)
		return err_set(0, "Could not refresh total sector count: Input/output error");
	/* bdrv_getlength counts whole sectors */
	img->size = ROUND_UP(fsize - l->payload, LUKS_SECTOR);
	return 0;
}

static void
luks_close(struct img *img)
{
	struct luks *l = img->priv;

	explicit_bzero(&l->c, sizeof(l->c));
	explicit_bzero(&l->g, sizeof(l->g));
	free(l->secret);
}

static int
need_key(struct img *img)
{
	struct luks *l = img->priv;

	if (!l->unlocked)
		return err_set(0, "Parameter 'key-secret' is required for cipher");
	return 0;
}

/*
 * Sector-aligned I/O through a bounce buffer: data is never encrypted in
 * the caller's buffer (qemu's block_crypto_co_preadv does the same).
 */
static int
luks_read(struct img *img, uint64_t off, size_t len, void *buf)
{
	struct luks *l = img->priv;
	uint64_t start, end, n;
	uint8_t *b, *out = buf;

	if (need_key(img) < 0)
		return -1;
	b = io_alloc(LUKS_IO_CHUNK);
	while (len > 0) {
		start = ROUND_DOWN(off, LUKS_SECTOR);
		end = MIN(ROUND_UP(off + len, LUKS_SECTOR),
		    start + LUKS_IO_CHUNK);
		if (io_pread_zero(img->fd, b, end - start, l->payload + start) < 0) {
			free(b);
			return err_set(errno, "%s: read error", img->filename);
		}
		crypto_sectors_decrypt(&l->c, &l->g, LUKS_SECTOR,
		    start / LUKS_SECTOR, b, end - start);
		n = MIN(end - off, len);
		memcpy(out, b + (off - start), n);
		out += n, off += n, len -= n;
	}
	free(b);
	return 0;
}

static int
luks_write(struct img *img, uint64_t off, size_t len, const void *buf)
{
	struct luks *l = img->priv;
	const uint8_t *in = buf;
	uint64_t start, end, n;
	uint8_t *b;

	if (need_key(img) < 0)
		return -1;
	b = io_alloc(LUKS_IO_CHUNK);
	while (len > 0) {
		start = ROUND_DOWN(off, LUKS_SECTOR);
		end = MIN(ROUND_UP(off + len, LUKS_SECTOR),
		    start + LUKS_IO_CHUNK);
		n = MIN(end - off, len);
		/* a partial sector at either end: read, modify, write */
		if ((off != start || n != end - start) &&
		    luks_read(img, start, end - start, b) < 0)
			goto fail;
		memcpy(b + (off - start), in, n);
		crypto_sectors_encrypt(&l->c, &l->g, LUKS_SECTOR,
		    start / LUKS_SECTOR, b, end - start);
		if (io_pwrite(img->fd, b, end - start, l->payload + start) < 0) {
			err_set(errno, "%s: write error", img->filename);
			goto fail;
		}
		in += n, off += n, len -= n;
	}
	free(b);
	return 0;
fail:
	free(b);
	return -1;
}

static int
luks_flush(struct img *img)
{
	return fmt_sync(img);
}

static void
uuid_str(const uint8_t *hdr, char *out)
{
	memcpy(out, hdr + H_UUID, LUKS_UUID_LEN);
	out[LUKS_UUID_LEN] = '\0';
}

/* qcrypto_block_luks_get_info, in the key order qemu's QDict prints */
void
luks_block_info(const struct luks *l, struct jnode *d)
{
	struct jnode *slots, *s;
	char uuid[LUKS_UUID_LEN + 1];
	int i;

	uuid_str(l->hdr, uuid);
	jn_str(d, "cipher-alg", crypto_cipher_name(l->cipher));
	jn_str(d, "cipher-mode", crypto_mode_name(l->mode));
	jn_str(d, "ivgen-alg", crypto_ivgen_name(l->ivgen));
	if (l->ivgen == IVGEN_ESSIV)
		jn_str(d, "ivgen-hash-alg", crypto_hash_name(l->ivhash));
	jn_str(d, "hash-alg", crypto_hash_name(l->hash));
	jn_int(d, "payload-offset", (int64_t)l->payload);
	jn_int(d, "master-key-iters", l->mk_iters);
	jn_str(d, "uuid", uuid);
	slots = jn_arr(d, "slots");
	for (i = 0; i < LUKS_SLOTS; i++) {
		s = jn_obj(slots, NULL);
		jn_bool(s, "active", l->slot[i].active == LUKS_SLOT_ENABLED);
		if (l->slot[i].active == LUKS_SLOT_ENABLED) {
			jn_int(s, "iters", l->slot[i].iters);
			jn_int(s, "stripes", l->slot[i].stripes);
		}
		jn_int(s, "key-offset",
		    (int64_t)l->slot[i].key_offset * LUKS_SECTOR);
	}
}

static int
luks_info(struct img *img, struct img_info *info)
{
	info->encrypted = true;
	info->specific = jn_new_obj();
	luks_block_info(img->priv, info->specific);
	return 0;
}

/* Options as qemu's QAPI enums take them: unknown names in its words. */
static int
enum_opt(const struct opt_list *o, const char *key, int (*fn)(const char *),
    int def)
{
	const char *v = opt_list_get(o, key);
	int r;

	if (v == NULL)
		return def;
	if ((r = fn(v)) < 0)
		return err_set(0, "Parameter '%s' does not accept value '%s'",
		    key, v);
	return r;
}

/* Debian's qemu has no CONFIG_CRYPTO_SM4: sm4 is not in its QAPI enum */
static int
cipher_opt_lookup(const char *name)
{
	int alg = crypto_cipher_lookup(name);

	return alg == CIPHER_SM4 ? -1 : alg;
}

static int
create_algs(const struct opt_list *o, struct luks_algs *a)
{
	if ((a->cipher = enum_opt(o, "cipher-alg", cipher_opt_lookup,
	    CIPHER_AES_256)) < 0 ||
	    (a->mode = enum_opt(o, "cipher-mode", crypto_mode_lookup,
	    MODE_XTS)) < 0 ||
	    (a->ivgen = enum_opt(o, "ivgen-alg", crypto_ivgen_lookup,
	    IVGEN_PLAIN64)) < 0 ||
	    (a->hash = enum_opt(o, "hash-alg", crypto_hash_lookup,
	    HASH_SHA256)) < 0)
		return -1;
	/* a hash for plain IVs is kept (dm-crypt ignores it); -1: none */
	a->ivhash = a->ivgen == IVGEN_ESSIV ? HASH_SHA256 : -1;
	if (opt_list_get(o, "ivgen-hash-alg") != NULL &&
	    (a->ivhash = enum_opt(o, "ivgen-hash-alg", crypto_hash_lookup,
	    0)) < 0)
		return -1;
	return 0;
}

/* What qemu checks before it writes anything: the algorithms, the secret. */
static int
create_check(const struct opt_list *o, struct luks_algs *a,
    const char **password)
{
	const char *id = opt_list_get(o, "key-secret");

	if (create_algs(o, a) < 0)
		return -1;
	if (id == NULL)
		return err_set(0, "Parameter 'key-secret' is required for cipher");
	if ((*password = secret_get_utf8(id)) == NULL)
		return -1;
	return 0;
}

/* The header and slot layout of a new image (qcrypto_block_luks_create). */
static int
layout(struct luks *l, const struct luks_algs *a)
{
	const char *name = crypto_cipher_name(a->cipher);
	uint64_t msec;
	int i;

	memset(l, 0, sizeof(*l));
	/* the ciphers of qemu's LUKS name table are those img has */
	if (!crypto_cipher_supported(a->cipher))
		return err_set(0, "Algorithm '%s' not supported", name);
	l->cipher = a->cipher, l->mode = a->mode, l->ivgen = a->ivgen;
	l->ivhash = a->ivhash < 0 ? 0 : a->ivhash, l->hash = a->hash;
	memcpy(l->hdr, luks_magic, 6);
	put_be16(l->hdr + H_VERSION, 1);
	/* "aes-256" is "aes" in the header: the key length says the rest */
	snprintf((char *)l->hdr + H_CIPHER, 32, "%.*s",
	    (int)strcspn(name, "-"), name);
	if (a->ivhash >= 0)
		snprintf((char *)l->hdr + H_MODE, 32, "%s-%s:%s",
		    crypto_mode_name(a->mode), crypto_ivgen_name(a->ivgen),
		    crypto_hash_name(a->ivhash));
	else
		snprintf((char *)l->hdr + H_MODE, 32, "%s-%s",
		    crypto_mode_name(a->mode), crypto_ivgen_name(a->ivgen));
	snprintf((char *)l->hdr + H_HASH, 32, "%s", crypto_hash_name(a->hash));
	l->ivcipher = a->cipher;
	if (a->ivgen == IVGEN_ESSIV &&
	    (l->ivcipher = crypto_essiv_cipher(a->cipher, a->ivhash)) < 0)
		return -1;
	l->key_bytes = (uint32_t)crypto_cipher_key_len(a->cipher) *
	    (a->mode == MODE_XTS ? 2 : 1);
	put_be32(l->hdr + H_KEYBYTES, l->key_bytes);
	msec = material_sectors(l->key_bytes, LUKS_STRIPES);
	for (i = 0; i < LUKS_SLOTS; i++) {
		l->slot[i].active = LUKS_SLOT_DISABLED;
		l->slot[i].stripes = LUKS_STRIPES;
		l->slot[i].key_offset = (uint32_t)(LUKS_SLOT_OFFSET /
		    LUKS_SECTOR + i * msec);
	}
	l->payload = LUKS_SLOT_OFFSET + LUKS_SLOTS * msec * LUKS_SECTOR;
	put_be32(l->hdr + H_PAYLOAD, (uint32_t)(l->payload / LUKS_SECTOR));
	return 0;
}

/* PBKDF2 iterations for iter_time ms (qemu: count_iters * ms / 1000) */
static int
scale_iters(uint64_t per_sec, uint64_t iter_time, uint64_t div, uint64_t min,
    uint32_t *out)
{
	uint64_t n;

	if (iter_time != 0 && per_sec > UINT64_MAX / iter_time)
		return err_set(ERANGE, "PBKDF iterations %llu too large to scale",
		    (unsigned long long)per_sec);
	n = per_sec * iter_time / 1000 / div;
	if (n > UINT32_MAX)
		return err_set(ERANGE, "PBKDF iterations %llu larger than %u",
		    (unsigned long long)n, UINT32_MAX);
	*out = (uint32_t)MAX(n, min);
	return 0;
}

/* qcrypto_block_luks_store_key: password into slot i, header written too. */
static int
store_key(int fd, struct luks *l, int i, const char *password,
    const uint8_t *mk, uint64_t iter_time)
{
	struct luks_slot *s = &l->slot[i];
	size_t len = (size_t)l->key_bytes * s->stripes;
	uint8_t key[64], *split = xmalloc(len);
	struct crypto_cipher c;
	struct crypto_ivgen g;
	int r = -1;

	if (crypto_random(s->salt, LUKS_SALT_LEN) < 0 ||
	    scale_iters(crypto_pbkdf2_count_iters(l->hash, password,
	    strlen(password), s->salt, LUKS_SALT_LEN, l->key_bytes), iter_time,
	    1, LUKS_MIN_SLOT_ITERS, &s->iters) < 0)
		goto out;
	crypto_pbkdf2(l->hash, password, strlen(password), s->salt,
	    LUKS_SALT_LEN, s->iters, key, l->key_bytes);
	if (key_cipher(l, key, &c, &g) < 0 ||
	    crypto_afsplit_encode(l->hash, l->key_bytes, s->stripes, mk,
	    split) < 0)
		goto out;
	crypto_sectors_encrypt(&c, &g, LUKS_SECTOR, 0, split, len);
	if (io_pwrite(fd, split, len,
	    l->base + (uint64_t)s->key_offset * LUKS_SECTOR) < 0) {
		err_set(errno, "Could not write encryption header");
		goto out;
	}
	s->active = LUKS_SLOT_ENABLED;
	encode_slots(l);
	if (io_pwrite(fd, l->hdr, LUKS_HDR_SIZE, l->base) < 0) {
		err_set(errno, "Could not write encryption header");
		goto out;
	}
	r = 0;
out:
	wipe(key, &c, split, len);
	return r;
}

static void
uuid_gen(uint8_t *out)
{
	uint8_t u[16];
	char s[LUKS_UUID_LEN];

	if (crypto_random(u, sizeof(u)) < 0)
		memset(u, 0, sizeof(u));
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	snprintf(s, sizeof(s), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5],
	    u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
	memcpy(out, s, strlen(s));
}

/* The master key, its digest and slot 0, into the header of fd. */
static int
format(int fd, struct luks *l, const char *password, uint64_t iter_time)
{
	uint8_t mk[64];
	int r = -1;

	uuid_gen(l->hdr + H_UUID);
	if (crypto_random(l->hdr + H_MKSALT, LUKS_SALT_LEN) < 0 ||
	    crypto_random(mk, l->key_bytes) < 0)
		goto out;
	if (scale_iters(crypto_pbkdf2_count_iters(l->hash, mk, l->key_bytes,
	    l->hdr + H_MKSALT, LUKS_SALT_LEN, LUKS_DIGEST_LEN), iter_time, 8,
	    LUKS_MIN_MK_ITERS, &l->mk_iters) < 0)
		goto out;
	crypto_pbkdf2(l->hash, mk, l->key_bytes, l->hdr + H_MKSALT,
	    LUKS_SALT_LEN, l->mk_iters, l->hdr + H_MKDIGEST, LUKS_DIGEST_LEN);
	r = store_key(fd, l, 0, password, mk, iter_time);
	/* the new key serves the writes that follow (qcow2's) */
	if (r == 0 && (r = key_cipher(l, mk, &l->c, &l->g)) == 0)
		l->unlocked = true;
out:
	explicit_bzero(mk, sizeof(mk));
	return r;
}

static int
iter_time_opt(const struct opt_list *o, uint64_t *ms)
{
	const char *v = opt_list_get(o, "iter-time");
	char *end;

	*ms = LUKS_DEFAULT_ITER_TIME;
	if (v == NULL)
		return 0;
	errno = 0;
	*ms = strtoull(v, &end, 0);
	if (*v == '\0' || *end != '\0' || errno != 0)
		return err_set(0, "Parameter 'iter-time' expects a number");
	return 0;
}

static int
preallocate(int fd, const char *mode, uint64_t size)
{
	static const uint8_t zeroes[65536];
	uint64_t off, n;
	int r;

	if (ftruncate(fd, (off_t)size) < 0)
		return err_set(errno, "Could not resize file");
	if (strcmp(mode, "falloc") == 0 &&
	    (r = posix_fallocate(fd, 0, (off_t)size)) != 0)
		return err_set(r, "Could not preallocate data for the new file");
	if (strcmp(mode, "full") == 0)
		for (off = 0; off < size; off += n) {
			n = MIN(size - off, sizeof(zeroes));
			if (io_pwrite(fd, zeroes, n, off) < 0)
				return err_set(errno, "Could not write zeros for preallocation");
		}
	return 0;
}

static int
luks_create(const char *filename, uint64_t size, const struct opt_list *o)
{
	const char *pre = opt_list_get(o, "preallocation"), *password;
	struct luks_algs a;
	struct luks *l;
	uint64_t ms;
	int fd, r = -1;

	/* metadata is off for a LUKS image, as in qemu */
	if (pre == NULL || strcmp(pre, "metadata") == 0)
		pre = "off";
	if (strcmp(pre, "off") && strcmp(pre, "falloc") && strcmp(pre, "full"))
		return err_set(0, "%s: invalid parameter value: %s", filename,
		    pre);
	if (iter_time_opt(o, &ms) < 0 || create_algs(o, &a) < 0)
		return err_prefix("%s", filename);
	l = xcalloc(1, sizeof(*l));
	if (create_check(o, &a, &password) < 0 || layout(l, &a) < 0 ||
	    check_supported(l) < 0) {
		/*
		 * qemu has made the file by now, and removes it on failure,
		 * one that was there before too (iotest 282)
		 */
		(void)unlink(filename);
		free(l);
		return err_prefix("%s", filename);
	}
	fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		free(l);
		return err_set(errno, "%s: Could not create '%s'", filename,
		    filename);
	}
	/* qemu takes the size as given: the last sector may be partial */
	if (preallocate(fd, pre, l->payload + size) == 0)
		r = format(fd, l, password, ms);
	if (close(fd) < 0 && r == 0)
		r = err_set(errno, "%s", filename);
	if (r < 0) {
		err_prefix("%s", filename);
		(void)unlink(filename);
	}
	explicit_bzero(l, sizeof(*l));
	free(l);
	return r;
}

struct luks *
luks_block_create(const struct opt_list *o, uint64_t *len)
{
	struct luks_algs a;
	struct luks *l;
	const char *password;
	uint64_t ms;

	if (iter_time_opt(o, &ms) < 0)
		return NULL;
	l = luks_block_new();
	if (create_check(o, &a, &password) < 0 || layout(l, &a) < 0 ||
	    check_supported(l) < 0) {
		luks_block_free(l);
		return NULL;
	}
	l->new_password = password;
	l->iter_time = ms;
	*len = l->payload;
	return l;
}

int
luks_block_format(struct luks *l, int fd, uint64_t base)
{
	l->fd = fd;
	l->base = base;
	return format(fd, l, l->new_password, l->iter_time);
}

static int
luks_measure(const struct opt_list *o, struct img *in, uint64_t size,
    struct img_measure *m)
{
	const char *password;
	struct luks_algs a;
	struct luks *l;
	int r;

	if (create_check(o, &a, &password) < 0)
		return -1;
	l = xcalloc(1, sizeof(*l));
	if ((r = layout(l, &a)) == 0 && (r = check_supported(l)) == 0) {
		m->required = l->payload + (in ? in->size : size);
		m->fully_allocated = m->required;
	}
	free(l);
	return r;
}

static int
luks_resize(struct img *img, uint64_t size, int prealloc)
{
	struct luks *l = img->priv;
	uint64_t cur = l->payload + img->size, want = l->payload + size;
	int r;

	if (size % LUKS_SECTOR != 0)
		return err_set(0, "The new size must be a multiple of 512");
	if (prealloc != IMG_PREALLOC_OFF && want < cur)
		return err_set(0, "Cannot use preallocation for shrinking files");
	if (prealloc == IMG_PREALLOC_METADATA)
		return err_set(0, "Unsupported preallocation mode: metadata");
	if (io_ftruncate(img->fd, (off_t)want) < 0)
		return err_set(errno, "Could not resize file");
	if (prealloc == IMG_PREALLOC_FALLOC && want > cur &&
	    (r = posix_fallocate(img->fd, (off_t)cur, (off_t)(want - cur))) != 0)
		return err_set(r, "Could not preallocate new data");
	if (prealloc == IMG_PREALLOC_FULL && want > cur) {
		static const uint8_t zeroes[65536];
		uint64_t off, n;

		for (off = cur; off < want; off += n) {
			n = MIN(want - off, sizeof(zeroes));
			if (io_pwrite(img->fd, zeroes, n, off) < 0)
				return err_set(errno, "Could not write zeros for preallocation");
		}
	}
	img->size = size;
	return 0;
}

/* The keyslot options of qemu-img amend (QCryptoBlockAmendOptionsLUKS). */
struct luks_amend {
	bool		 active;
	int		 keyslot;		/* -1: not given */
	const char	*old_secret, *new_secret, *secret;
	const char	*iter_time;
};

static int
active_slots(const struct luks *l)
{
	int i, n = 0;

	for (i = 0; i < LUKS_SLOTS; i++)
		n += l->slot[i].active == LUKS_SLOT_ENABLED;
	return n;
}

/* qcrypto_block_luks_erase_key: header first, then the material, 40 times */
static int
erase_key(struct luks *l, int i)
{
	struct luks_slot *s = &l->slot[i];
	size_t len = (size_t)l->key_bytes * s->stripes, k;
	uint8_t *garbage;
	int r = 0;

	memset(s->salt, 0, LUKS_SALT_LEN);
	s->iters = 0;
	s->active = LUKS_SLOT_DISABLED;
	encode_slots(l);
	if (io_pwrite(l->fd, l->hdr, LUKS_HDR_SIZE, l->base) < 0)
		r = err_set(errno, "Could not write encryption header");
	garbage = xcalloc(1, len);
	for (k = 0; k < LUKS_ERASE_ITERATIONS; k++) {
		if (crypto_random(garbage, len) < 0 && k > 0)
			break;
		if (io_pwrite(l->fd, garbage, len,
		    l->base + (uint64_t)s->key_offset * LUKS_SECTOR) < 0) {
			r = err_set(errno, "Could not write encryption header");
			break;
		}
	}
	free(garbage);
	return r;
}

static int
amend_add(struct luks *l, const struct luks_amend *a, bool force,
    const char *secret)
{
	const char *old, *new, *id = a->secret ? a->secret : secret;
	uint64_t ms = LUKS_DEFAULT_ITER_TIME;
	uint8_t mk[64];
	int slot = a->keyslot, r;

	if (a->new_secret == NULL)
		return err_set(0, "'new-secret' is required to activate a keyslot");
	if (a->old_secret != NULL)
		return err_set(0, "'old-secret' must not be given when activating keyslots");
	if (a->iter_time != NULL)
		ms = strtoull(a->iter_time, NULL, 10);
	if (slot < 0) {
		for (slot = 0; slot < LUKS_SLOTS &&
		    l->slot[slot].active == LUKS_SLOT_ENABLED; slot++)
			;
		if (slot == LUKS_SLOTS)
			return err_set(0, "Can't add a keyslot - all keyslots are in use");
	}
	if (!force && l->slot[slot].active == LUKS_SLOT_ENABLED)
		return err_set(0, "Refusing to overwrite active keyslot %d - please erase it first",
		    slot);
	if (id == NULL)
		return err_set(0, "Parameter 'key-secret' is required for cipher");
	if ((old = secret_get_utf8(id)) == NULL || find_key(l, old, mk) < 0 ||
	    (new = secret_get_utf8(a->new_secret)) == NULL) {
		explicit_bzero(mk, sizeof(mk));
		return -1;
	}
	r = store_key(l->fd, l, slot, new, mk, ms);
	explicit_bzero(mk, sizeof(mk));
	return r;
}

static int
amend_erase_one(struct luks *l, const struct luks_amend *a, bool force,
    const char *old)
{
	uint8_t mk[64];
	int slot = a->keyslot, r;

	if (old != NULL) {
		r = load_key(l, slot, old, mk);
		explicit_bzero(mk, sizeof(mk));
		if (r < 0)
			return -1;
		if (r == 0)
			return err_set(0, "Given keyslot %d doesn't contain the given old password for erase operation",
			    slot);
	}
	if (!force && l->slot[slot].active != LUKS_SLOT_ENABLED)
		return err_set(0, "Given keyslot %d is already erased (inactive) ",
		    slot);
	if (!force && active_slots(l) == 1)
		return err_set(0, "Attempt to erase the only active keyslot %d which will erase all the data in the image irreversibly - refusing operation",
		    slot);
	return erase_key(l, slot);
}

static int
amend_erase(struct luks *l, const struct luks_amend *a, bool force)
{
	const char *old = NULL;
	bool match[LUKS_SLOTS];
	uint8_t mk[64];
	int i, r, n = 0;

	if (a->new_secret != NULL)
		return err_set(0, "'new-secret' must not be given when erasing keyslots");
	if (a->iter_time != NULL)
		return err_set(0, "'iter-time' must not be given when erasing keyslots");
	if (a->secret != NULL)
		return err_set(0, "'secret' must not be given when erasing keyslots");
	if (a->old_secret != NULL &&
	    (old = secret_get_utf8(a->old_secret)) == NULL)
		return -1;
	if (a->keyslot >= 0)
		return amend_erase_one(l, a, force, old);
	if (old == NULL)
		return err_set(0, "To erase keyslot(s), either explicit keyslot index or the password currently contained in them must be given");
	for (i = 0; i < LUKS_SLOTS; i++) {
		r = load_key(l, i, old, mk);
		explicit_bzero(mk, sizeof(mk));
		if (r < 0)
			return -1;
		match[i] = r == 1;
		n += r;
	}
	if (n == 0)
		return err_set(0, "No keyslots match given (old) password for erase operation");
	if (!force && n == active_slots(l))
		return err_set(0, "All the active keyslots match the (old) password that was given and erasing them will erase all the data in the image irreversibly - refusing operation");
	for (i = 0; i < LUKS_SLOTS; i++)
		if (match[i] && erase_key(l, i) < 0)
			return -1;
	return 0;
}

/* The options as qemu's QAPI visitor takes them, in its words. */
static int
amend_parse(const struct opt_list *o, struct luks_amend *a)
{
	const char *v;
	char *end;
	long n;
	size_t i;

	memset(a, 0, sizeof(*a));
	a->keyslot = -1;
	for (i = 0; i < o->n; i++)
		if (strcmp(o->v[i].key, "state") && strcmp(o->v[i].key, "keyslot") &&
		    strcmp(o->v[i].key, "old-secret") &&
		    strcmp(o->v[i].key, "new-secret") &&
		    strcmp(o->v[i].key, "iter-time") &&
		    strcmp(o->v[i].key, "secret"))
			return err_set(0, "Invalid parameter '%s'", o->v[i].key);
	if ((v = opt_list_get(o, "state")) == NULL)
		return err_set(0, "Parameter 'state' is missing");
	if (strcmp(v, "active") && strcmp(v, "inactive"))
		return err_set(0, "Parameter 'state' does not accept value '%s'", v);
	a->active = strcmp(v, "active") == 0;
	if ((v = opt_list_get(o, "keyslot")) != NULL) {
		errno = 0;
		n = strtol(v, &end, 0);
		if (*v == '\0' || *end != '\0' || errno != 0)
			return err_set(0, "Parameter 'keyslot' expects a number");
		if (n < 0 || n >= LUKS_SLOTS)
			return err_set(0, "Invalid keyslot %ld specified, must be between 0 and %d",
			    n, LUKS_SLOTS - 1);
		a->keyslot = (int)n;
	}
	a->old_secret = opt_list_get(o, "old-secret");
	a->new_secret = opt_list_get(o, "new-secret");
	a->secret = opt_list_get(o, "secret");
	a->iter_time = opt_list_get(o, "iter-time");
	return 0;
}

int
luks_block_amend(struct luks *l, const struct opt_list *o, bool force,
    const char *secret)
{
	struct luks_amend a;

	if (amend_parse(o, &a) < 0)
		return -1;
	return a.active ? amend_add(l, &a, force, secret) :
	    amend_erase(l, &a, force);
}

static int
luks_amend(struct img *img, const struct opt_list *o, bool force)
{
	struct luks *l = img->priv;

	if (need_key(img) < 0)
		return -1;
	return luks_block_amend(l, o, force, l->secret);
}

static const struct opt_desc luks_amend_opts[] = {
	{ "state", OPT_STRING,
	    "Select new state of affected keyslots (active/inactive)", NULL },
	{ "keyslot", OPT_NUMBER, "Select a single keyslot to modify explicitly",
	    NULL },
	{ "old-secret", OPT_STRING,
	    "Select all keyslots that match this password", NULL },
	{ "new-secret", OPT_STRING,
	    "New secret to set in the matching keyslots. Empty string to erase",
	    NULL },
	{ "iter-time", OPT_NUMBER, "Time to spend in PBKDF in milliseconds",
	    NULL },
	{ NULL, 0, NULL, NULL },
};

static const struct opt_desc luks_create_opts[] = {
	{ "size", OPT_SIZE, "Virtual disk size", NULL },
	{ "key-secret", OPT_STRING,
	    "ID of the secret that provides the keyslot passphrase", NULL },
	{ "cipher-alg", OPT_STRING, "Name of encryption cipher algorithm", NULL },
	{ "cipher-mode", OPT_STRING, "Name of encryption cipher mode", NULL },
	{ "ivgen-alg", OPT_STRING, "Name of IV generator algorithm", NULL },
	{ "ivgen-hash-alg", OPT_STRING, "Name of IV generator hash algorithm",
	    NULL },
	{ "hash-alg", OPT_STRING, "Name of encryption hash algorithm", NULL },
	{ "iter-time", OPT_NUMBER, "Time to spend in PBKDF in milliseconds",
	    NULL },
	{ "preallocation", OPT_STRING,
	    "Preallocation mode (allowed values: off, falloc, full)", NULL },
	{ NULL, 0, NULL, NULL },
};

const struct fmt_ops luks_ops = {
	.name		= "luks",
	.priv_size	= sizeof(struct luks),
	.no_zero_init	= true,		/* zeroes on disk decrypt to noise */
	.probe		= luks_probe,
	.open		= luks_open,
	.close		= luks_close,
	.create		= luks_create,
	.create_opts	= luks_create_opts,
	.read		= luks_read,
	.write		= luks_write,
	.flush		= luks_flush,
	.info		= luks_info,
	.measure	= luks_measure,
	.resize		= luks_resize,
	.amend		= luks_amend,
	.amend_opts	= luks_amend_opts,
};
