/*
 * SHA-1, SHA-224/256, SHA-384/512 (FIPS 180-4), and the padding of MD5
 * and RIPEMD-160 (lib/md5.c), whose lengths and words are little-endian.
 * Declared in crypto.h.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SHA_NI	1
#endif

static const uint32_t k256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint64_t k512[80] = {
	0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f,
	0xe9b5dba58189dbbc, 0x3956c25bf348b538, 0x59f111f1b605d019,
	0x923f82a4af194f9b, 0xab1c5ed5da6d8118, 0xd807aa98a3030242,
	0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
	0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235,
	0xc19bf174cf692694, 0xe49b69c19ef14ad2, 0xefbe4786384f25e3,
	0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65, 0x2de92c6f592b0275,
	0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
	0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f,
	0xbf597fc7beef0ee4, 0xc6e00bf33da88fc2, 0xd5a79147930aa725,
	0x06ca6351e003826f, 0x142929670a0e6e70, 0x27b70a8546d22ffc,
	0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
	0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6,
	0x92722c851482353b, 0xa2bfe8a14cf10364, 0xa81a664bbc423001,
	0xc24b8b70d0f89791, 0xc76c51a30654be30, 0xd192e819d6ef5218,
	0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
	0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99,
	0x34b0bcb5e19b48a8, 0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb,
	0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3, 0x748f82ee5defb2fc,
	0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
	0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915,
	0xc67178f2e372532b, 0xca273eceea26619c, 0xd186b8c721c0c207,
	0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178, 0x06f067aa72176fba,
	0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
	0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc,
	0x431d67c49c100d4c, 0x4cc5d4becb3e42b6, 0x597f299cfc657e2a,
	0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
};

static const uint32_t iv1[5] = {
	0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0,
};
static const uint32_t iv224[8] = {
	0xc1059ed8, 0x367cd507, 0x3070dd17, 0xf70e5939, 0xffc00b31,
	0x68581511, 0x64f98fa7, 0xbefa4fa4,
};
static const uint32_t iv256[8] = {
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f,
	0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};
static const uint64_t iv384[8] = {
	0xcbbb9d5dc1059ed8, 0x629a292a367cd507, 0x9159015a3070dd17,
	0x152fecd8f70e5939, 0x67332667ffc00b31, 0x8eb44a8768581511,
	0xdb0c2e0d64f98fa7, 0x47b5481dbefa4fa4,
};
static const uint64_t iv512[8] = {
	0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b,
	0xa54ff53a5f1d36f1, 0x510e527fade682d1, 0x9b05688c2b3e6c1f,
	0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
};

#define ROL32(x, n)	((x) << (n) | (x) >> (32 - (n)))
#define ROR32(x, n)	((x) >> (n) | (x) << (32 - (n)))
#define ROR64(x, n)	((x) >> (n) | (x) << (64 - (n)))

static void
sha1_block(uint32_t *s, const uint8_t *p)
{
	uint32_t w[80], a, b, c, d, e, f, k, t;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = get_be32(p + 4 * i);
	for (; i < 80; i++) {
		t = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
		w[i] = ROL32(t, 1);
	}
	a = s[0], b = s[1], c = s[2], d = s[3], e = s[4];
	for (i = 0; i < 80; i++) {
		if (i < 20)
			f = (b & c) | (~b & d), k = 0x5a827999;
		else if (i < 40)
			f = b ^ c ^ d, k = 0x6ed9eba1;
		else if (i < 60)
			f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
		else
			f = b ^ c ^ d, k = 0xca62c1d6;
		t = ROL32(a, 5) + f + e + k + w[i];
		e = d, d = c, c = ROL32(b, 30), b = a, a = t;
	}
	s[0] += a, s[1] += b, s[2] += c, s[3] += d, s[4] += e;
}

static void
sha256_block(uint32_t *s, const uint8_t *p)
{
	uint32_t w[64], v[8], t1, t2, s0, s1;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = get_be32(p + 4 * i);
	for (; i < 64; i++) {
		s0 = ROR32(w[i - 15], 7) ^ ROR32(w[i - 15], 18) ^ w[i - 15] >> 3;
		s1 = ROR32(w[i - 2], 17) ^ ROR32(w[i - 2], 19) ^ w[i - 2] >> 10;
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	memcpy(v, s, sizeof(v));
	for (i = 0; i < 64; i++) {
		t1 = v[7] + (ROR32(v[4], 6) ^ ROR32(v[4], 11) ^ ROR32(v[4], 25)) +
		    ((v[4] & v[5]) ^ (~v[4] & v[6])) + k256[i] + w[i];
		t2 = (ROR32(v[0], 2) ^ ROR32(v[0], 13) ^ ROR32(v[0], 22)) +
		    ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
		memmove(v + 1, v, 7 * sizeof(v[0]));
		v[4] += t1;
		v[0] = t1 + t2;
	}
	for (i = 0; i < 8; i++)
		s[i] += v[i];
}

#ifdef SHA_NI
static bool use_ni;
static pthread_once_t ni_once = PTHREAD_ONCE_INIT;

static void
ni_init(void)
{
	use_ni = __builtin_cpu_supports("sha") &&
	    __builtin_cpu_supports("sse4.1") && getenv("IMG_NO_SHANI") == NULL;
}

/*
 * One block with the SHA extensions: the state as ABEF/CDGH, four rounds
 * per step, the schedule by sha256msg1/msg2 (Intel's SHA-NI white paper).
 */
__attribute__((target("sha,sse4.1"))) static void
sha256_block_ni(uint32_t *s, const uint8_t *p)
{
	const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL,
	    0x0405060700010203ULL);
	__m128i st0, st1, tmp, m, w[4], save0, save1;
	int i;

	tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)s), 0xb1);
	st1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(s + 4)),
	    0x1b);
	st0 = _mm_alignr_epi8(tmp, st1, 8);
	st1 = _mm_blend_epi16(st1, tmp, 0xf0);
	save0 = st0, save1 = st1;
	for (i = 0; i < 16; i++) {
		if (i < 4) {
			w[i] = _mm_shuffle_epi8(_mm_loadu_si128(
			    (const __m128i *)(p + 16 * i)), mask);
		} else {
			tmp = _mm_sha256msg1_epu32(w[i & 3], w[(i + 1) & 3]);
			tmp = _mm_add_epi32(tmp, _mm_alignr_epi8(w[(i + 3) & 3],
			    w[(i + 2) & 3], 4));
			w[i & 3] = _mm_sha256msg2_epu32(tmp, w[(i + 3) & 3]);
		}
		m = _mm_add_epi32(w[i & 3],
		    _mm_loadu_si128((const __m128i *)(k256 + 4 * i)));
		st1 = _mm_sha256rnds2_epu32(st1, st0, m);
		st0 = _mm_sha256rnds2_epu32(st0, st1, _mm_shuffle_epi32(m, 0x0e));
	}
	st0 = _mm_add_epi32(st0, save0);
	st1 = _mm_add_epi32(st1, save1);
	tmp = _mm_shuffle_epi32(st0, 0x1b);
	st1 = _mm_shuffle_epi32(st1, 0xb1);
	_mm_storeu_si128((__m128i *)s, _mm_blend_epi16(tmp, st1, 0xf0));
	_mm_storeu_si128((__m128i *)(s + 4), _mm_alignr_epi8(st1, tmp, 8));
}
#endif

static void
sha512_block(uint64_t *s, const uint8_t *p)
{
	uint64_t w[80], v[8], t1, t2, s0, s1;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = get_be64(p + 8 * i);
	for (; i < 80; i++) {
		s0 = ROR64(w[i - 15], 1) ^ ROR64(w[i - 15], 8) ^ w[i - 15] >> 7;
		s1 = ROR64(w[i - 2], 19) ^ ROR64(w[i - 2], 61) ^ w[i - 2] >> 6;
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	memcpy(v, s, sizeof(v));
	for (i = 0; i < 80; i++) {
		t1 = v[7] + (ROR64(v[4], 14) ^ ROR64(v[4], 18) ^ ROR64(v[4], 41)) +
		    ((v[4] & v[5]) ^ (~v[4] & v[6])) + k512[i] + w[i];
		t2 = (ROR64(v[0], 28) ^ ROR64(v[0], 34) ^ ROR64(v[0], 39)) +
		    ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
		memmove(v + 1, v, 7 * sizeof(v[0]));
		v[4] += t1;
		v[0] = t1 + t2;
	}
	for (i = 0; i < 8; i++)
		s[i] += v[i];
}

static size_t
block_len(int alg)
{
	return alg == HASH_SHA384 || alg == HASH_SHA512 ? 128 : 64;
}

void
crypto_hash_init(struct crypto_hash *h, int alg)
{
#ifdef SHA_NI
	pthread_once(&ni_once, ni_init);
#endif
	memset(h, 0, sizeof(*h));
	h->alg = alg;
	switch (alg) {
	case HASH_MD5:
		memcpy(h->st.s32, iv1, 4 * sizeof(iv1[0]));
		break;
	case HASH_SHA1:
	case HASH_RIPEMD160:
		memcpy(h->st.s32, iv1, sizeof(iv1));
		break;
	case HASH_SHA224:
		memcpy(h->st.s32, iv224, sizeof(iv224));
		break;
	case HASH_SHA256:
		memcpy(h->st.s32, iv256, sizeof(iv256));
		break;
	case HASH_SHA384:
		memcpy(h->st.s64, iv384, sizeof(iv384));
		break;
	default:
		memcpy(h->st.s64, iv512, sizeof(iv512));
		break;
	}
}

static void
hash_block(struct crypto_hash *h, const uint8_t *p)
{
	if (h->alg == HASH_SHA1)
		sha1_block(h->st.s32, p);
	else if (h->alg == HASH_MD5)
		md5_block(h->st.s32, p);
	else if (h->alg == HASH_RIPEMD160)
		ripemd160_block(h->st.s32, p);
#ifdef SHA_NI
	else if ((h->alg == HASH_SHA224 || h->alg == HASH_SHA256) && use_ni)
		sha256_block_ni(h->st.s32, p);
#endif
	else if (h->alg == HASH_SHA224 || h->alg == HASH_SHA256)
		sha256_block(h->st.s32, p);
	else
		sha512_block(h->st.s64, p);
}

void
crypto_hash_update(struct crypto_hash *h, const void *data, size_t n)
{
	const uint8_t *p = data;
	size_t bl = block_len(h->alg), k;

	h->len += n;
	if (h->fill > 0) {
		k = MIN(n, bl - h->fill);
		memcpy(h->buf + h->fill, p, k);
		h->fill += k, p += k, n -= k;
		if (h->fill < bl)
			return;
		hash_block(h, h->buf);
		h->fill = 0;
	}
	for (; n >= bl; n -= bl, p += bl)
		hash_block(h, p);
	memcpy(h->buf, p, n);
	h->fill = n;
}

void
crypto_hash_final(struct crypto_hash *h, uint8_t *out)
{
	size_t bl = block_len(h->alg), lenpos = bl - (bl == 128 ? 16 : 8), i;
	uint64_t bits = h->len * 8;
	bool le = h->alg == HASH_MD5 || h->alg == HASH_RIPEMD160;

	h->buf[h->fill++] = 0x80;
	if (h->fill > lenpos) {
		memset(h->buf + h->fill, 0, bl - h->fill);
		hash_block(h, h->buf);
		h->fill = 0;
	}
	memset(h->buf + h->fill, 0, bl - h->fill);
	if (le)
		put_le64(h->buf + bl - 8, bits);
	else
		put_be64(h->buf + bl - 8, bits);
	hash_block(h, h->buf);
	for (i = 0; i < crypto_hash_len(h->alg); i += bl == 128 ? 8 : 4) {
		if (le)
			put_le32(out + i, h->st.s32[i / 4]);
		else if (bl == 128)
			put_be64(out + i, h->st.s64[i / 8]);
		else
			put_be32(out + i, h->st.s32[i / 4]);
	}
}

void
crypto_hash(int alg, const void *p, size_t n, uint8_t *out)
{
	struct crypto_hash h;

	crypto_hash_init(&h, alg);
	crypto_hash_update(&h, p, n);
	crypto_hash_final(&h, out);
}

size_t
crypto_hash_len(int alg)
{
	static const size_t len[HASH_NR] = { 16, 20, 28, 32, 48, 64, 20 };

	return alg >= 0 && alg < HASH_NR ? len[alg] : 0;
}

size_t
crypto_hash_block_len(int alg)
{
	return block_len(alg);
}
