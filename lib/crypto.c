/*
 * Crypto for encrypted images, on top of the block ciphers (lib/aes.c,
 * serpent.c, twofish.c, cast5.c) and hashes (lib/sha.c, md5.c): HMAC,
 * PBKDF2, the LUKS AF splitter (cryptsetup's docs/on-disk-format.pdf, 2.4),
 * the ECB/CBC/XTS modes and dm-crypt's IV generators, as qemu's crypto/.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "crypto.h"
#include "err.h"
#include "int.h"

static const char *const hash_names[HASH_NR] = {
	"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "ripemd160",
};
static const char *const cipher_names[CIPHER_NR] = {
	"aes-128", "aes-192", "aes-256", "des", "3des", "cast5-128",
	"serpent-128", "serpent-192", "serpent-256", "twofish-128",
	"twofish-192", "twofish-256", "sm4",
};
static const char *const mode_names[MODE_NR] = { "ecb", "cbc", "xts", "ctr" };
static const char *const ivgen_names[IVGEN_NR] = { "plain", "plain64", "essiv" };

static int
lookup(const char *const *names, int n, const char *name)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

const char *
crypto_hash_name(int alg)
{
	return alg >= 0 && alg < HASH_NR ? hash_names[alg] : "?";
}

int
crypto_hash_lookup(const char *name)
{
	return lookup(hash_names, HASH_NR, name);
}

bool
crypto_hash_supported(int alg)
{
	return alg >= 0 && alg < HASH_NR;
}

const char *
crypto_cipher_name(int alg)
{
	return cipher_names[alg];
}

int
crypto_cipher_lookup(const char *name)
{
	return lookup(cipher_names, CIPHER_NR, name);
}

bool
crypto_cipher_supported(int alg)
{
	return (alg >= CIPHER_AES_128 && alg <= CIPHER_AES_256) ||
	    (alg >= CIPHER_CAST5_128 && alg <= CIPHER_TWOFISH_256);
}

size_t
crypto_cipher_block_len(int alg)
{
	return alg == CIPHER_DES || alg == CIPHER_3DES ||
	    alg == CIPHER_CAST5_128 ? 8 : 16;
}

int
crypto_cipher_mode_check(int alg, int mode)
{
	if (mode == MODE_XTS && crypto_cipher_block_len(alg) != 16)
		return err_set(0, "Unsupported cipher mode %s",
		    crypto_mode_name(mode));
	return 0;
}

size_t
crypto_cipher_key_len(int alg)
{
	static const size_t len[CIPHER_NR] = {
		16, 24, 32, 8, 24, 16, 16, 24, 32, 16, 24, 32, 16,
	};

	return len[alg];
}

const char *
crypto_mode_name(int mode)
{
	return mode_names[mode];
}

int
crypto_mode_lookup(const char *name)
{
	return lookup(mode_names, MODE_NR, name);
}

const char *
crypto_ivgen_name(int ivgen)
{
	return ivgen_names[ivgen];
}

int
crypto_ivgen_lookup(const char *name)
{
	return lookup(ivgen_names, IVGEN_NR, name);
}

/* HMAC: the hash states after the padded key, so PBKDF2 hashes each once. */
struct hmac {
	struct crypto_hash	 in, out;
};

static void
hmac_init(struct hmac *m, int alg, const void *key, size_t keylen)
{
	uint8_t pad[HASH_MAX_BLOCK], kh[HASH_MAX_LEN];
	size_t bl = crypto_hash_block_len(alg), i;

	if (keylen > bl) {
		crypto_hash(alg, key, keylen, kh);
		key = kh;
		keylen = crypto_hash_len(alg);
	}
	memset(pad, 0, bl);
	memcpy(pad, key, keylen);
	for (i = 0; i < bl; i++)
		pad[i] ^= 0x36;
	crypto_hash_init(&m->in, alg);
	crypto_hash_update(&m->in, pad, bl);
	for (i = 0; i < bl; i++)
		pad[i] ^= 0x36 ^ 0x5c;
	crypto_hash_init(&m->out, alg);
	crypto_hash_update(&m->out, pad, bl);
	explicit_bzero(pad, sizeof(pad));
	explicit_bzero(kh, sizeof(kh));
}

/* HMAC of the concatenation of a and b (b may be NULL). */
static void
hmac_calc(const struct hmac *m, const void *a, size_t alen, const void *b,
    size_t blen, uint8_t *out)
{
	struct crypto_hash h = m->in;
	uint8_t inner[HASH_MAX_LEN];

	crypto_hash_update(&h, a, alen);
	if (b != NULL)
		crypto_hash_update(&h, b, blen);
	crypto_hash_final(&h, inner);
	h = m->out;
	crypto_hash_update(&h, inner, crypto_hash_len(m->in.alg));
	crypto_hash_final(&h, out);
}

void
crypto_hmac(int alg, const void *key, size_t keylen, const void *msg,
    size_t msglen, uint8_t *out)
{
	struct hmac m;

	hmac_init(&m, alg, key, keylen);
	hmac_calc(&m, msg, msglen, NULL, 0, out);
}

void
crypto_pbkdf2(int alg, const void *pass, size_t passlen, const void *salt,
    size_t saltlen, uint64_t iters, uint8_t *out, size_t outlen)
{
	size_t dl = crypto_hash_len(alg), k, j;
	uint8_t u[HASH_MAX_LEN], t[HASH_MAX_LEN], ctr[4];
	uint32_t block;
	uint64_t i;
	struct hmac m;

	hmac_init(&m, alg, pass, passlen);
	for (block = 1; outlen > 0; block++) {
		put_be32(ctr, block);
		hmac_calc(&m, salt, saltlen, ctr, 4, u);
		memcpy(t, u, dl);
		for (i = 1; i < iters; i++) {
			hmac_calc(&m, u, dl, NULL, 0, u);
			for (j = 0; j < dl; j++)
				t[j] ^= u[j];
		}
		k = MIN(dl, outlen);
		memcpy(out, t, k);
		out += k, outlen -= k;
	}
	explicit_bzero(&m, sizeof(m));
	explicit_bzero(t, sizeof(t));
	explicit_bzero(u, sizeof(u));
}

static uint64_t
thread_cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * qemu times runs until one takes over 500 ms; a run of 50 ms measures
 * the rate as well and keeps image creation quick.
 */
uint64_t
crypto_pbkdf2_count_iters(int alg, const void *pass, size_t passlen,
    const void *salt, size_t saltlen, size_t outlen)
{
	uint8_t out[512];
	uint64_t iters = 1 << 12, start, delta;

	outlen = MIN(outlen, sizeof(out));
	for (;;) {
		start = thread_cpu_ms();
		crypto_pbkdf2(alg, pass, passlen, salt, saltlen, iters, out,
		    outlen);
		delta = thread_cpu_ms() - start;
		if (delta == 0)
			iters *= 2;
		else if (delta > 50)
			break;
		else if (delta < 10)
			iters *= 10;
		else
			iters = iters * 100 / delta;
	}
	return iters * 1000 / delta;
}

/* The AF splitter's diffusion: hash each digest-sized piece with its index. */
static void
af_hash(int alg, size_t len, uint8_t *block)
{
	size_t dl = crypto_hash_len(alg), n, off;
	uint8_t iv[4], d[HASH_MAX_LEN];
	struct crypto_hash h;
	uint32_t i;

	for (i = 0, off = 0; off < len; i++, off += n) {
		n = MIN(dl, len - off);
		put_be32(iv, i);
		crypto_hash_init(&h, alg);
		crypto_hash_update(&h, iv, 4);
		crypto_hash_update(&h, block + off, n);
		crypto_hash_final(&h, d);
		memcpy(block + off, d, n);
	}
}

static void
xor_bytes(uint8_t *dst, const uint8_t *src, size_t n)
{
	while (n-- > 0)
		*dst++ ^= *src++;
}

int
crypto_afsplit_encode(int alg, size_t len, uint32_t stripes,
    const uint8_t *in, uint8_t *out)
{
	uint8_t *block = xcalloc(1, len);
	uint32_t i;

	if (crypto_random(out, len * (stripes - 1)) < 0) {
		free(block);
		return -1;
	}
	for (i = 0; i + 1 < stripes; i++) {
		xor_bytes(block, out + i * len, len);
		af_hash(alg, len, block);
	}
	for (i = 0; i < len; i++)
		out[(stripes - 1) * len + i] = in[i] ^ block[i];
	explicit_bzero(block, len);
	free(block);
	return 0;
}

void
crypto_afsplit_decode(int alg, size_t len, uint32_t stripes,
    const uint8_t *in, uint8_t *out)
{
	uint8_t *block = xcalloc(1, len);
	uint32_t i;

	for (i = 0; i + 1 < stripes; i++) {
		xor_bytes(block, in + (size_t)i * len, len);
		af_hash(alg, len, block);
	}
	for (i = 0; i < len; i++)
		out[i] = in[(size_t)(stripes - 1) * len + i] ^ block[i];
	explicit_bzero(block, len);
	free(block);
}

static void
block_set_key(struct block_key *k, int alg, const uint8_t *key, size_t len)
{
	k->alg = alg;
	switch (alg) {
	case CIPHER_CAST5_128:
		cast5_set_key(&k->u.cast5, key, len);
		break;
	case CIPHER_SERPENT_128:
	case CIPHER_SERPENT_192:
	case CIPHER_SERPENT_256:
		serpent_set_key(&k->u.serpent, key, len);
		break;
	case CIPHER_TWOFISH_128:
	case CIPHER_TWOFISH_192:
	case CIPHER_TWOFISH_256:
		twofish_set_key(&k->u.twofish, key, len);
		break;
	default:
		aes_set_key(&k->u.aes, key, len);
		break;
	}
}

/* n blocks of k's cipher, ECB (in may be out) */
static void
block_crypt(const struct block_key *k, bool enc, const uint8_t *in,
    uint8_t *out, size_t n)
{
	size_t bs = crypto_cipher_block_len(k->alg), i;

	for (i = 0; i < n; i++, in += bs, out += bs) {
		switch (k->alg) {
		case CIPHER_CAST5_128:
			(enc ? cast5_encrypt : cast5_decrypt)(&k->u.cast5, in,
			    out);
			break;
		case CIPHER_SERPENT_128:
		case CIPHER_SERPENT_192:
		case CIPHER_SERPENT_256:
			(enc ? serpent_encrypt : serpent_decrypt)(&k->u.serpent,
			    in, out);
			break;
		case CIPHER_TWOFISH_128:
		case CIPHER_TWOFISH_192:
		case CIPHER_TWOFISH_256:
			(enc ? twofish_encrypt : twofish_decrypt)(&k->u.twofish,
			    in, out);
			break;
		default:
			aes_crypt_blocks(&k->u.aes, enc, in, out, n);
			return;
		}
	}
}

int
crypto_cipher_init(struct crypto_cipher *c, int alg, int mode,
    const uint8_t *key, size_t keylen)
{
	size_t klen;

	memset(c, 0, sizeof(*c));
	if (!crypto_cipher_supported(alg))
		return err_set(0, "Unsupported cipher algorithm %s",
		    crypto_cipher_name(alg));
	klen = crypto_cipher_key_len(alg) * (mode == MODE_XTS ? 2 : 1);
	if (keylen != klen)
		return err_set(0, "Cipher key length %zu should be %zu",
		    keylen, klen);
	if (crypto_cipher_mode_check(alg, mode) < 0)
		return -1;
	c->alg = alg;
	c->mode = mode;
	klen = crypto_cipher_key_len(alg);
	block_set_key(&c->k1, alg, key, klen);
	if (mode == MODE_XTS)
		block_set_key(&c->k2, alg, key + klen, klen);
	return 0;
}

size_t
crypto_cipher_iv_len(const struct crypto_cipher *c)
{
	return c->mode == MODE_ECB ? 0 : crypto_cipher_block_len(c->alg);
}

/* CTR (SP 800-38A 6.5): the IV is a block-sized big-endian counter. */
static void
ctr_crypt(const struct crypto_cipher *c, uint8_t *iv, uint8_t *buf,
    size_t len)
{
	size_t bs = crypto_cipher_block_len(c->alg), n, i;
	uint8_t ks[512];
	int j;

	while (len > 0) {
		n = MIN(len, sizeof(ks));
		for (i = 0; i < n; i += bs) {
			memcpy(ks + i, iv, bs);
			for (j = (int)bs - 1; j >= 0 && ++iv[j] == 0; j--)
				;
		}
		block_crypt(&c->k1, true, ks, ks, DIV_ROUND_UP(n, bs));
		xor_bytes(buf, ks, n);
		buf += n, len -= n;
	}
}

/* Multiply the tweak by x in GF(2^128) (IEEE 1619 5.2). */
static void
xts_next(uint64_t *t)
{
	uint64_t carry = t[1] >> 63;

	t[1] = t[1] << 1 | t[0] >> 63;
	t[0] = t[0] << 1 ^ (carry ? 0x87 : 0);
}

/* XTS on whole 16-byte blocks, a 512-byte sector at a time through ECB. */
static void
xts_crypt(const struct crypto_cipher *c, bool enc, const uint8_t *iv,
    uint8_t *buf, size_t len)
{
	uint8_t tb[16], tw[512];
	uint64_t t[2];
	size_t n, i;

	block_crypt(&c->k2, true, iv, tb, 1);
	t[0] = get_le64(tb), t[1] = get_le64(tb + 8);
	while (len > 0) {
		n = MIN(len, sizeof(tw));
		for (i = 0; i < n; i += 16) {
			put_le64(tw + i, t[0]);
			put_le64(tw + i + 8, t[1]);
			xts_next(t);
		}
		xor_bytes(buf, tw, n);
		block_crypt(&c->k1, enc, buf, buf, n / 16);
		xor_bytes(buf, tw, n);
		buf += n, len -= n;
	}
}

void
crypto_cipher_encrypt(const struct crypto_cipher *c, uint8_t *iv,
    uint8_t *buf, size_t len)
{
	size_t bs = crypto_cipher_block_len(c->alg), i;

	switch (c->mode) {
	case MODE_ECB:
		block_crypt(&c->k1, true, buf, buf, len / bs);
		break;
	case MODE_CTR:
		ctr_crypt(c, iv, buf, len);
		break;
	case MODE_CBC:
		for (i = 0; i < len; i += bs) {
			xor_bytes(buf + i, iv, bs);
			block_crypt(&c->k1, true, buf + i, buf + i, 1);
			memcpy(iv, buf + i, bs);
		}
		break;
	default:
		xts_crypt(c, true, iv, buf, len);
		break;
	}
}

void
crypto_cipher_decrypt(const struct crypto_cipher *c, uint8_t *iv,
    uint8_t *buf, size_t len)
{
	size_t bs = crypto_cipher_block_len(c->alg), n, i;
	uint8_t save[512 + 16];

	switch (c->mode) {
	case MODE_ECB:
		block_crypt(&c->k1, false, buf, buf, len / bs);
		break;
	case MODE_CTR:
		ctr_crypt(c, iv, buf, len);
		break;
	case MODE_CBC:
		/* blocks decrypt independently: in runs, then chain */
		for (; len > 0; buf += n, len -= n) {
			n = MIN(len, sizeof(save) - 16);
			memcpy(save, iv, bs);
			memcpy(save + bs, buf, n);
			block_crypt(&c->k1, false, buf, buf, n / bs);
			for (i = 0; i < n; i++)
				buf[i] ^= save[i];
			memcpy(iv, save + n, bs);
		}
		break;
	default:
		xts_crypt(c, false, iv, buf, len);
		break;
	}
}

/* The sizes of cipheralg's family, smallest first (0: none). */
static int
essiv_family(int cipheralg, const char **name)
{
	if (cipheralg >= CIPHER_AES_128 && cipheralg <= CIPHER_AES_256)
		return *name = "AES", CIPHER_AES_128;
	if (cipheralg >= CIPHER_SERPENT_128 && cipheralg <= CIPHER_SERPENT_256)
		return *name = "Serpent", CIPHER_SERPENT_128;
	if (cipheralg >= CIPHER_TWOFISH_128 && cipheralg <= CIPHER_TWOFISH_256)
		return *name = "Twofish", CIPHER_TWOFISH_128;
	return -1;
}

int
crypto_essiv_cipher(int cipheralg, int hash)
{
	size_t dl = crypto_hash_len(hash);
	const char *name;
	int first, i;

	if (dl == crypto_cipher_key_len(cipheralg))
		return cipheralg;
	if ((first = essiv_family(cipheralg, &name)) < 0)
		return err_set(0, "Cipher %s not supported with essiv",
		    crypto_cipher_name(cipheralg));
	for (i = first; i < first + 3; i++)
		if (dl == crypto_cipher_key_len(i))
			return i;
	return err_set(0, "No %s cipher with key size %zu available", name,
	    dl);
}

int
crypto_ivgen_init(struct crypto_ivgen *g, int alg, int cipheralg, int hash,
    const uint8_t *key, size_t keylen)
{
	uint8_t salt[HASH_MAX_LEN];
	size_t n;

	memset(g, 0, sizeof(*g));
	g->alg = alg;
	if (alg != IVGEN_ESSIV)
		return 0;
	if (!crypto_cipher_supported(cipheralg))
		return err_set(0, "Unsupported cipher algorithm %s",
		    crypto_cipher_name(cipheralg));
	if (!crypto_hash_supported(hash))
		return err_set(0, "Unsupported hash algorithm %s",
		    crypto_hash_name(hash));
	crypto_hash(hash, key, keylen, salt);
	n = MIN(crypto_hash_len(hash), crypto_cipher_key_len(cipheralg));
	if (n != crypto_cipher_key_len(cipheralg))
		return err_set(0, "Cipher key length %zu should be %zu", n,
		    crypto_cipher_key_len(cipheralg));
	block_set_key(&g->essiv, cipheralg, salt, n);
	explicit_bzero(salt, sizeof(salt));
	return 0;
}

void
crypto_ivgen_calc(const struct crypto_ivgen *g, uint64_t sector,
    uint8_t *iv, size_t niv)
{
	uint8_t b[16] = { 0 };

	if (g->alg == IVGEN_PLAIN)
		sector &= 0xffffffff;
	put_le64(b, sector);
	if (g->alg == IVGEN_ESSIV)
		block_crypt(&g->essiv, true, b, b, 1);
	memcpy(iv, b, MIN(niv, sizeof(b)));
}

static void
sectors_crypt(const struct crypto_cipher *c, const struct crypto_ivgen *g,
    bool enc, size_t sector_size, uint64_t sector, uint8_t *buf, size_t len)
{
	uint8_t iv[16];
	size_t niv = crypto_cipher_iv_len(c), n;

	for (; len > 0; sector++, buf += n, len -= n) {
		n = MIN(len, sector_size);
		crypto_ivgen_calc(g, sector, iv, niv);
		(enc ? crypto_cipher_encrypt : crypto_cipher_decrypt)(c, iv,
		    buf, n);
	}
}

void
crypto_sectors_encrypt(const struct crypto_cipher *c,
    const struct crypto_ivgen *g, size_t sector_size, uint64_t sector,
    uint8_t *buf, size_t len)
{
	sectors_crypt(c, g, true, sector_size, sector, buf, len);
}

void
crypto_sectors_decrypt(const struct crypto_cipher *c,
    const struct crypto_ivgen *g, size_t sector_size, uint64_t sector,
    uint8_t *buf, size_t len)
{
	sectors_crypt(c, g, false, sector_size, sector, buf, len);
}

int
crypto_qcow_key(const char *password, struct crypto_cipher *c,
    struct crypto_ivgen *g)
{
	uint8_t key[16] = { 0 };
	int r;

	memcpy(key, password, MIN(strlen(password), sizeof(key)));
	r = crypto_cipher_init(c, CIPHER_AES_128, MODE_CBC, key, sizeof(key));
	if (r == 0)
		r = crypto_ivgen_init(g, IVGEN_PLAIN64, CIPHER_AES_128,
		    HASH_SHA256, key, sizeof(key));
	explicit_bzero(key, sizeof(key));
	return r;
}

int
crypto_random(void *buf, size_t len)
{
	uint8_t *p = buf;
	ssize_t r;

	while (len > 0) {
		r = getrandom(p, MIN(len, 1u << 20), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return err_set(errno, "Unable to read random bytes");
		p += r, len -= (size_t)r;
	}
	return 0;
}
