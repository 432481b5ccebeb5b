/*
 * AES (FIPS-197): portable T-table code, and AES-NI chosen at run time
 * where the CPU has it.  Declared in crypto.h.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AES_NI	1
#endif

static uint8_t sbox[256], inv_sbox[256];
static uint32_t te[4][256], td[4][256];
static bool use_ni;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static uint8_t
xtime(uint8_t x)
{
	return (uint8_t)(x << 1 ^ (x & 0x80 ? 0x1b : 0));
}

static uint8_t
gmul(uint8_t a, uint8_t b)
{
	uint8_t r = 0;

	while (b) {
		if (b & 1)
			r ^= a;
		a = xtime(a);
		b >>= 1;
	}
	return r;
}

static uint32_t
rotr8(uint32_t x)
{
	return x >> 8 | x << 24;
}

/* The S-box from the multiplicative inverse and the affine map (FIPS-197 5.1.1). */
static void
tables_init(void)
{
	uint8_t p = 1, q = 1, x, s;
	int i;

	do {
		p = p ^ (uint8_t)(p << 1) ^ (p & 0x80 ? 0x1b : 0);
		q ^= q << 1;
		q ^= q << 2;
		q ^= q << 4;
		q ^= q & 0x80 ? 0x09 : 0;
		x = q ^ (uint8_t)(q << 1 | q >> 7) ^ (uint8_t)(q << 2 | q >> 6) ^
		    (uint8_t)(q << 3 | q >> 5) ^ (uint8_t)(q << 4 | q >> 4);
		sbox[p] = x ^ 0x63;
	} while (p != 1);
	sbox[0] = 0x63;
	for (i = 0; i < 256; i++)
		inv_sbox[sbox[i]] = (uint8_t)i;
	for (i = 0; i < 256; i++) {
		s = sbox[i];
		te[0][i] = (uint32_t)gmul(s, 2) | (uint32_t)s << 8 |
		    (uint32_t)s << 16 | (uint32_t)gmul(s, 3) << 24;
		s = inv_sbox[i];
		td[0][i] = (uint32_t)gmul(s, 14) | (uint32_t)gmul(s, 9) << 8 |
		    (uint32_t)gmul(s, 13) << 16 | (uint32_t)gmul(s, 11) << 24;
	}
	for (i = 0; i < 256; i++) {
		te[1][i] = te[0][i] << 8 | te[0][i] >> 24;
		te[2][i] = te[1][i] << 8 | te[1][i] >> 24;
		te[3][i] = te[2][i] << 8 | te[2][i] >> 24;
		td[1][i] = td[0][i] << 8 | td[0][i] >> 24;
		td[2][i] = td[1][i] << 8 | td[1][i] >> 24;
		td[3][i] = td[2][i] << 8 | td[2][i] >> 24;
	}
#ifdef AES_NI
	use_ni = __builtin_cpu_supports("aes") &&
	    __builtin_cpu_supports("sse2") && getenv("IMG_NO_AESNI") == NULL;
#endif
}

bool
aes_hw(void)
{
	pthread_once(&tables_once, tables_init);
	return use_ni;
}

static uint32_t
sub_word(uint32_t w)
{
	return (uint32_t)sbox[w & 0xff] | (uint32_t)sbox[w >> 8 & 0xff] << 8 |
	    (uint32_t)sbox[w >> 16 & 0xff] << 16 |
	    (uint32_t)sbox[w >> 24] << 24;
}

/* InvMixColumns of a round-key word (little-endian column). */
static uint32_t
inv_mix(uint32_t w)
{
	return td[0][sbox[w & 0xff]] ^ td[1][sbox[w >> 8 & 0xff]] ^
	    td[2][sbox[w >> 16 & 0xff]] ^ td[3][sbox[w >> 24]];
}

/* Key expansion (FIPS-197 5.2); words hold columns little-endian. */
void
aes_set_key(struct aes_key *k, const uint8_t *key, size_t len)
{
	int nk = (int)(len / 4), n, i;
	uint32_t t, rcon = 1;

	pthread_once(&tables_once, tables_init);
	k->rounds = nk + 6;
	n = 4 * (k->rounds + 1);
	for (i = 0; i < nk; i++)
		k->ek[i] = get_le32(key + 4 * i);
	for (i = nk; i < n; i++) {
		t = k->ek[i - 1];
		if (i % nk == 0) {
			t = sub_word(rotr8(t)) ^ rcon;
			rcon = xtime((uint8_t)rcon);
		} else if (nk > 6 && i % nk == 4) {
			t = sub_word(t);
		}
		k->ek[i] = k->ek[i - nk] ^ t;
	}
	/* equivalent inverse cipher: reversed rounds, InvMixColumns inside */
	for (i = 0; i <= k->rounds; i++) {
		int j;

		for (j = 0; j < 4; j++) {
			t = k->ek[4 * (k->rounds - i) + j];
			k->dk[4 * i + j] = i == 0 || i == k->rounds ? t :
			    inv_mix(t);
		}
	}
}

#define B0(x)	((x) & 0xff)
#define B1(x)	((x) >> 8 & 0xff)
#define B2(x)	((x) >> 16 & 0xff)
#define B3(x)	((x) >> 24)

/*
 * One block through the T-tables: row r of column i comes from column
 * i + r * o (ShiftRows: o = 1; InvShiftRows: o = 3).
 */
static inline __attribute__((always_inline)) void
aes_crypt_sw(const uint32_t *rk, int rounds, uint32_t (*t)[256],
    const uint8_t *box, int o, const uint8_t *in, uint8_t *out)
{
	uint32_t s[4], n[4];
	int r, i;

	for (i = 0; i < 4; i++)
		s[i] = get_le32(in + 4 * i) ^ rk[i];
	for (r = 1; r < rounds; r++) {
		rk += 4;
#pragma GCC unroll 4
		for (i = 0; i < 4; i++)
			n[i] = t[0][B0(s[i])] ^ t[1][B1(s[(i + o) & 3])] ^
			    t[2][B2(s[(i + 2) & 3])] ^
			    t[3][B3(s[(i + 3 * o) & 3])] ^ rk[i];
		memcpy(s, n, sizeof(s));
	}
	rk += 4;
	for (i = 0; i < 4; i++)
		put_le32(out + 4 * i, ((uint32_t)box[B0(s[i])] |
		    (uint32_t)box[B1(s[(i + o) & 3])] << 8 |
		    (uint32_t)box[B2(s[(i + 2) & 3])] << 16 |
		    (uint32_t)box[B3(s[(i + 3 * o) & 3])] << 24) ^ rk[i]);
}

static void
aes_encrypt_sw(const struct aes_key *k, const uint8_t *in, uint8_t *out)
{
	aes_crypt_sw(k->ek, k->rounds, te, sbox, 1, in, out);
}

static void
aes_decrypt_sw(const struct aes_key *k, const uint8_t *in, uint8_t *out)
{
	aes_crypt_sw(k->dk, k->rounds, td, inv_sbox, 3, in, out);
}

#ifdef AES_NI
/*
 * n (1-4) blocks at once: the rounds of independent blocks overlap in the
 * pipeline, which is where AES-NI's speed comes from.
 */
__attribute__((target("aes,sse2"))) static void
aes_ni_crypt(const uint32_t *rk, int rounds, bool enc, const uint8_t *in,
    uint8_t *out, int n)
{
	__m128i b[4], key;
	int i, r;

	key = _mm_loadu_si128((const __m128i *)rk);
	for (i = 0; i < n; i++)
		b[i] = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(in +
		    16 * i)), key);
	for (r = 1; r < rounds; r++) {
		key = _mm_loadu_si128((const __m128i *)(rk + 4 * r));
		for (i = 0; i < n; i++)
			b[i] = enc ? _mm_aesenc_si128(b[i], key) :
			    _mm_aesdec_si128(b[i], key);
	}
	key = _mm_loadu_si128((const __m128i *)(rk + 4 * rounds));
	for (i = 0; i < n; i++) {
		b[i] = enc ? _mm_aesenclast_si128(b[i], key) :
		    _mm_aesdeclast_si128(b[i], key);
		_mm_storeu_si128((__m128i *)(out + 16 * i), b[i]);
	}
}
#endif

void
aes_encrypt(const struct aes_key *k, const uint8_t *in, uint8_t *out)
{
#ifdef AES_NI
	if (use_ni) {
		aes_ni_crypt(k->ek, k->rounds, true, in, out, 1);
		return;
	}
#endif
	aes_encrypt_sw(k, in, out);
}

void
aes_decrypt(const struct aes_key *k, const uint8_t *in, uint8_t *out)
{
#ifdef AES_NI
	if (use_ni) {
		aes_ni_crypt(k->dk, k->rounds, false, in, out, 1);
		return;
	}
#endif
	aes_decrypt_sw(k, in, out);
}

/* n blocks of 16 bytes (ECB), four at a time where the hardware can. */
void
aes_crypt_blocks(const struct aes_key *k, bool enc, const uint8_t *in,
    uint8_t *out, size_t n)
{
#ifdef AES_NI
	if (use_ni) {
		for (; n >= 4; n -= 4, in += 64, out += 64)
			aes_ni_crypt(enc ? k->ek : k->dk, k->rounds, enc, in,
			    out, 4);
		if (n > 0)
			aes_ni_crypt(enc ? k->ek : k->dk, k->rounds, enc, in,
			    out, (int)n);
		return;
	}
#endif
	for (; n > 0; n--, in += 16, out += 16)
		(enc ? aes_encrypt_sw : aes_decrypt_sw)(k, in, out);
}
