/*
 * Crypto for encrypted images: AES (FIPS-197), Serpent, Twofish and
 * CAST-128 (RFC 2144) in ECB, CBC, CTR and XTS (IEEE 1619) modes, the
 * plain/plain64/essiv IV generators of dm-crypt, MD5 (RFC 1321), SHA-1
 * and SHA-2 (FIPS 180-4), RIPEMD-160, HMAC (RFC 2104), PBKDF2 (RFC 8018)
 * and the LUKS anti-forensic splitter.  Names are qemu's
 * (QCryptoHashAlgorithm etc.).
 */
#ifndef IMG_CRYPTO_H
#define IMG_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hashes, in qemu's QCryptoHashAlgorithm order. */
enum { HASH_MD5, HASH_SHA1, HASH_SHA224, HASH_SHA256, HASH_SHA384,
	HASH_SHA512, HASH_RIPEMD160, HASH_NR };

#define HASH_MAX_LEN	64
#define HASH_MAX_BLOCK	128

struct crypto_hash {
	int		 alg;
	uint64_t	 len;			/* bytes hashed so far */
	size_t		 fill;			/* bytes waiting in buf */
	union {
		uint32_t s32[8];
		uint64_t s64[8];
	} st;
	uint8_t		 buf[HASH_MAX_BLOCK];
};

/* qemu's name of alg ("sha256"), and back: -1 for an unknown name. */
const char	*crypto_hash_name(int alg);
int		 crypto_hash_lookup(const char *name);
/* Whether img implements alg (all of them now). */
bool		 crypto_hash_supported(int alg);
size_t		 crypto_hash_len(int alg);
size_t		 crypto_hash_block_len(int alg);

void	crypto_hash_init(struct crypto_hash *h, int alg);
void	crypto_hash_update(struct crypto_hash *h, const void *p, size_t n);
void	crypto_hash_final(struct crypto_hash *h, uint8_t *out);
void	crypto_hash(int alg, const void *p, size_t n, uint8_t *out);
void	crypto_hmac(int alg, const void *key, size_t keylen, const void *msg,
	    size_t msglen, uint8_t *out);
/* PBKDF2-HMAC-alg: outlen bytes of key into out. */
void	crypto_pbkdf2(int alg, const void *pass, size_t passlen,
	    const void *salt, size_t saltlen, uint64_t iters, uint8_t *out,
	    size_t outlen);
/*
 * PBKDF2 iterations per second on this machine for these inputs, measured
 * as qemu's qcrypto_pbkdf2_count_iters does (thread CPU time).
 */
uint64_t crypto_pbkdf2_count_iters(int alg, const void *pass, size_t passlen,
	    const void *salt, size_t saltlen, size_t outlen);

/* LUKS AF splitter: in (len bytes) to out (len * stripes bytes) and back. */
int	crypto_afsplit_encode(int alg, size_t len, uint32_t stripes,
	    const uint8_t *in, uint8_t *out);
void	crypto_afsplit_decode(int alg, size_t len, uint32_t stripes,
	    const uint8_t *in, uint8_t *out);

/* Ciphers and modes, in qemu's QCryptoCipherAlgorithm/Mode order. */
enum { CIPHER_AES_128, CIPHER_AES_192, CIPHER_AES_256, CIPHER_DES,
	CIPHER_3DES, CIPHER_CAST5_128, CIPHER_SERPENT_128,
	CIPHER_SERPENT_192, CIPHER_SERPENT_256, CIPHER_TWOFISH_128,
	CIPHER_TWOFISH_192, CIPHER_TWOFISH_256, CIPHER_SM4, CIPHER_NR };
enum { MODE_ECB, MODE_CBC, MODE_XTS, MODE_CTR, MODE_NR };
enum { IVGEN_PLAIN, IVGEN_PLAIN64, IVGEN_ESSIV, IVGEN_NR };

const char	*crypto_cipher_name(int alg);	/* "aes-256" */
int		 crypto_cipher_lookup(const char *name);
/* Whether img implements alg (not des, 3des, sm4). */
bool		 crypto_cipher_supported(int alg);
size_t		 crypto_cipher_key_len(int alg);
/* 16, or 8 for cast5-128 (and the DES ciphers). */
size_t		 crypto_cipher_block_len(int alg);
/*
 * Whether alg works in mode, as qemu's nettle backend: 0, or -1 with
 * err_set "Unsupported cipher mode xts" (XTS takes a 16-byte block).
 */
int		 crypto_cipher_mode_check(int alg, int mode);
const char	*crypto_mode_name(int mode);
int		 crypto_mode_lookup(const char *name);
const char	*crypto_ivgen_name(int ivgen);
int		 crypto_ivgen_lookup(const char *name);

struct aes_key {
	uint32_t	 ek[60];	/* encryption round keys */
	uint32_t	 dk[60];	/* decryption round keys (equivalent inverse) */
	int		 rounds;
};

void	aes_set_key(struct aes_key *k, const uint8_t *key, size_t len);
void	aes_encrypt(const struct aes_key *k, const uint8_t *in, uint8_t *out);
void	aes_decrypt(const struct aes_key *k, const uint8_t *in, uint8_t *out);
/* n 16-byte blocks, ECB (in may be out). */
void	aes_crypt_blocks(const struct aes_key *k, bool enc, const uint8_t *in,
	    uint8_t *out, size_t n);
/* Whether the AES-NI path is in use (for tests and benchmarks). */
bool	aes_hw(void);

struct serpent_key {
	uint32_t	 k[132];	/* 33 round keys */
};

void	serpent_set_key(struct serpent_key *k, const uint8_t *key, size_t len);
void	serpent_encrypt(const struct serpent_key *k, const uint8_t *in,
	    uint8_t *out);
void	serpent_decrypt(const struct serpent_key *k, const uint8_t *in,
	    uint8_t *out);

struct twofish_key {
	uint32_t	 k[40];		/* whitening and round subkeys */
	uint32_t	 s[4][256];	/* key-dependent S-boxes times MDS */
};

void	twofish_set_key(struct twofish_key *k, const uint8_t *key, size_t len);
void	twofish_encrypt(const struct twofish_key *k, const uint8_t *in,
	    uint8_t *out);
void	twofish_decrypt(const struct twofish_key *k, const uint8_t *in,
	    uint8_t *out);

struct cast5_key {
	uint32_t	 km[16];	/* masking subkeys */
	uint8_t		 kr[16];	/* rotation subkeys */
};

/* 8-byte blocks; keys of up to 16 bytes (shorter ones zero-padded). */
void	cast5_set_key(struct cast5_key *k, const uint8_t *key, size_t len);
void	cast5_encrypt(const struct cast5_key *k, const uint8_t *in,
	    uint8_t *out);
void	cast5_decrypt(const struct cast5_key *k, const uint8_t *in,
	    uint8_t *out);

/* Compression functions of the little-endian hashes (lib/md5.c). */
void	md5_block(uint32_t *st, const uint8_t *p);
void	ripemd160_block(uint32_t *st, const uint8_t *p);

/* The key schedule of any block cipher img has. */
struct block_key {
	int		 alg;
	union {
		struct aes_key		aes;
		struct serpent_key	serpent;
		struct twofish_key	twofish;
		struct cast5_key	cast5;
	} u;
};

struct crypto_cipher {
	int		 alg, mode;
	struct block_key k1, k2;	/* XTS: data key, tweak key */
};

/*
 * Key a cipher (XTS takes two keys of alg's length).  0, or -1 with
 * err_set in qemu's words when alg, mode or keylen will not do.
 */
int	crypto_cipher_init(struct crypto_cipher *c, int alg, int mode,
	    const uint8_t *key, size_t keylen);
/* Length of the IV the mode takes: a block (8 or 16), 0 for ECB. */
size_t	crypto_cipher_iv_len(const struct crypto_cipher *c);
/* En/decrypt len bytes (a multiple of 16) in place; iv is updated (CBC). */
void	crypto_cipher_encrypt(const struct crypto_cipher *c, uint8_t *iv,
	    uint8_t *buf, size_t len);
void	crypto_cipher_decrypt(const struct crypto_cipher *c, uint8_t *iv,
	    uint8_t *buf, size_t len);

struct crypto_ivgen {
	int		 alg;
	struct block_key essiv;
};

/*
 * An IV generator for a data key: essiv encrypts the sector number with
 * cipheralg keyed by the hash of key (cipheralg sized to the digest, as
 * dm-crypt).  0, or -1 with err_set.
 */
int	crypto_ivgen_init(struct crypto_ivgen *g, int alg, int cipheralg,
	    int hash, const uint8_t *key, size_t keylen);
void	crypto_ivgen_calc(const struct crypto_ivgen *g, uint64_t sector,
	    uint8_t *iv, size_t niv);
/*
 * dm-crypt's quirk: the size of cipheralg (AES, Serpent, Twofish) that
 * ESSIV uses for hash.  -1 with err_set.
 */
int	crypto_essiv_cipher(int cipheralg, int hash);

/*
 * En/decrypt len bytes of whole sector_size sectors in place, the first
 * being sector number sector (qcrypto_block_*crypt_helper).
 */
void	crypto_sectors_encrypt(const struct crypto_cipher *c,
	    const struct crypto_ivgen *g, size_t sector_size, uint64_t sector,
	    uint8_t *buf, size_t len);
void	crypto_sectors_decrypt(const struct crypto_cipher *c,
	    const struct crypto_ivgen *g, size_t sector_size, uint64_t sector,
	    uint8_t *buf, size_t len);

/*
 * The legacy qcow/qcow2 AES key (crypto/block-qcow.c): the passphrase's
 * first 16 bytes, zero-padded; AES-128-CBC with plain64 IVs.  0 or -1.
 */
int	crypto_qcow_key(const char *password, struct crypto_cipher *c,
	    struct crypto_ivgen *g);

/* Random bytes for keys and salts (getrandom).  0, or -1 with err_set. */
int	crypto_random(void *buf, size_t len);

#endif
