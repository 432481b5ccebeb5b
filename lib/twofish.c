/*
 * Twofish (Schneier et al.: "Twofish: A 128-Bit Block Cipher", 1998):
 * the q permutations from their 4-bit tables (4.3.5), the MDS and RS
 * matrices (4.3.2, 4.3.4), key-dependent S-boxes folded into four
 * 256-entry tables at key setup.  Declared in crypto.h.
 */
#include <pthread.h>
#include <string.h>

#include "crypto.h"
#include "int.h"

#define ROL32(x, n)	((x) << (n) | (x) >> (32 - (n)))
#define ROR32(x, n)	((x) >> (n) | (x) << (32 - (n)))

/* The t0..t3 nibble tables of q0 and q1 */
static const uint8_t qt[2][4][16] = {
	{ { 8, 1, 7, 13, 6, 15, 3, 2, 0, 11, 5, 9, 14, 12, 10, 4 },
	  { 14, 12, 11, 8, 1, 2, 3, 5, 15, 4, 10, 6, 7, 0, 9, 13 },
	  { 11, 10, 5, 14, 6, 13, 9, 0, 12, 8, 15, 3, 2, 4, 7, 1 },
	  { 13, 7, 15, 4, 1, 2, 6, 14, 9, 11, 3, 0, 8, 5, 12, 10 } },
	{ { 2, 8, 11, 13, 15, 7, 6, 14, 3, 1, 9, 4, 0, 10, 12, 5 },
	  { 1, 14, 2, 11, 4, 12, 3, 7, 6, 13, 10, 5, 15, 9, 0, 8 },
	  { 4, 12, 7, 5, 1, 6, 9, 10, 0, 14, 13, 8, 2, 11, 3, 15 },
	  { 11, 9, 5, 1, 12, 3, 13, 14, 6, 4, 7, 15, 2, 0, 8, 10 } },
};

static const uint8_t mds[4][4] = {
	{ 0x01, 0xef, 0x5b, 0x5b }, { 0x5b, 0xef, 0xef, 0x01 },
	{ 0xef, 0x5b, 0x01, 0xef }, { 0xef, 0x01, 0xef, 0x5b },
};

static const uint8_t rs[4][8] = {
	{ 0x01, 0xa4, 0x55, 0x87, 0x5a, 0x58, 0xdb, 0x9e },
	{ 0xa4, 0x56, 0x82, 0xf3, 0x1e, 0xc6, 0x68, 0xe5 },
	{ 0x02, 0xa1, 0xfc, 0xc1, 0x47, 0xae, 0x3d, 0x19 },
	{ 0xa4, 0x55, 0x87, 0x5a, 0x58, 0xdb, 0x9e, 0x03 },
};

static uint8_t q[2][256];
static uint32_t mdsmul[4][256];	/* column j of MDS times a byte */
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

/* a * b in GF(2^8) modulo poly */
static uint8_t
gf_mul(uint8_t a, uint8_t b, unsigned poly)
{
	unsigned r = 0, x = a;

	for (; b != 0; b >>= 1) {
		if (b & 1)
			r ^= x;
		x <<= 1;
		if (x & 0x100)
			x ^= poly;
	}
	return (uint8_t)r;
}

static uint8_t
ror4(uint8_t x)
{
	return (uint8_t)((x >> 1 | x << 3) & 0xf);
}

static void
tables_init(void)
{
	uint8_t a, b;
	int n, x, j;

	for (n = 0; n < 2; n++)
		for (x = 0; x < 256; x++) {
			a = (uint8_t)(x >> 4), b = x & 0xf;
			a ^= b, b = (a ^ b) ^ ror4(b) ^ ((a ^ b) << 3 & 0xf);
			a = qt[n][0][a], b = qt[n][1][b];
			a ^= b, b = (a ^ b) ^ ror4(b) ^ ((a ^ b) << 3 & 0xf);
			a = qt[n][2][a], b = qt[n][3][b];
			q[n][x] = (uint8_t)(b << 4 | a);
		}
	for (j = 0; j < 4; j++)
		for (x = 0; x < 256; x++)
			for (n = 0; n < 4; n++)
				mdsmul[j][x] |= (uint32_t)gf_mul(mds[n][j],
				    (uint8_t)x, 0x169) << (8 * n);
}

/* The q chain of byte j of h (figure 2) for key words l[0..n-1]. */
static uint8_t
hbyte(int j, uint8_t y, const uint32_t *l, int n)
{
	/* q0 or q1 at each stage, from the last key word to the first */
	static const uint8_t order[4][5] = {
		{ 1, 1, 0, 0, 1 }, { 0, 1, 1, 0, 0 },
		{ 0, 0, 0, 1, 1 }, { 1, 0, 1, 1, 0 },
	};
	int i;

	for (i = n - 1; i >= 0; i--)
		y = q[order[j][3 - i]][y] ^ (uint8_t)(l[i] >> (8 * j));
	return q[order[j][4]][y];
}

static uint32_t
h(uint32_t x, const uint32_t *l, int n)
{
	int j;
	uint32_t z = 0;

	for (j = 0; j < 4; j++)
		z ^= mdsmul[j][hbyte(j, (uint8_t)(x >> (8 * j)), l, n)];
	return z;
}

void
twofish_set_key(struct twofish_key *k, const uint8_t *key, size_t len)
{
	uint32_t me[4], mo[4], s[4], a, b;
	int n = (int)(len / 8), i, j, c;
	uint8_t v;

	pthread_once(&tables_once, tables_init);
	for (i = 0; i < n; i++) {
		me[i] = get_le32(key + 8 * i);
		mo[i] = get_le32(key + 8 * i + 4);
		/* S is in reverse order: S_{k-1} first */
		s[n - 1 - i] = 0;
		for (j = 0; j < 4; j++) {
			v = 0;
			for (c = 0; c < 8; c++)
				v ^= gf_mul(rs[j][c], key[8 * i + c], 0x14d);
			s[n - 1 - i] |= (uint32_t)v << (8 * j);
		}
	}
	for (i = 0; i < 20; i++) {
		a = h(0x02020202u * (uint32_t)i, me, n);
		b = h(0x02020202u * (uint32_t)i + 0x01010101u, mo, n);
		b = ROL32(b, 8);
		k->k[2 * i] = a + b;
		b = a + 2 * b;
		k->k[2 * i + 1] = ROL32(b, 9);
	}
	for (j = 0; j < 4; j++)
		for (i = 0; i < 256; i++)
			k->s[j][i] = mdsmul[j][hbyte(j, (uint8_t)i, s, n)];
	explicit_bzero(me, sizeof(me));
	explicit_bzero(mo, sizeof(mo));
	explicit_bzero(s, sizeof(s));
}

static inline uint32_t
g(const struct twofish_key *k, uint32_t x)
{
	return k->s[0][x & 0xff] ^ k->s[1][x >> 8 & 0xff] ^
	    k->s[2][x >> 16 & 0xff] ^ k->s[3][x >> 24];
}

/* Round r: F of (a, b) into (c, d). */
static inline void
round_enc(const struct twofish_key *k, int r, uint32_t a, uint32_t b,
    uint32_t *c, uint32_t *d)
{
	uint32_t t0 = g(k, a), t1 = g(k, ROL32(b, 8));

	*c = ROR32(*c ^ (t0 + t1 + k->k[2 * r + 8]), 1);
	*d = ROL32(*d, 1) ^ (t0 + 2 * t1 + k->k[2 * r + 9]);
}

static inline void
round_dec(const struct twofish_key *k, int r, uint32_t a, uint32_t b,
    uint32_t *c, uint32_t *d)
{
	uint32_t t0 = g(k, a), t1 = g(k, ROL32(b, 8));

	*c = ROL32(*c, 1) ^ (t0 + t1 + k->k[2 * r + 8]);
	*d = ROR32(*d ^ (t0 + 2 * t1 + k->k[2 * r + 9]), 1);
}

void
twofish_encrypt(const struct twofish_key *k, const uint8_t *in, uint8_t *out)
{
	uint32_t a = get_le32(in) ^ k->k[0], b = get_le32(in + 4) ^ k->k[1];
	uint32_t c = get_le32(in + 8) ^ k->k[2];
	uint32_t d = get_le32(in + 12) ^ k->k[3];
	int r;

	for (r = 0; r < 16; r += 2) {
		round_enc(k, r, a, b, &c, &d);
		round_enc(k, r + 1, c, d, &a, &b);
	}
	/* the last swap is undone */
	put_le32(out, c ^ k->k[4]);
	put_le32(out + 4, d ^ k->k[5]);
	put_le32(out + 8, a ^ k->k[6]);
	put_le32(out + 12, b ^ k->k[7]);
}

void
twofish_decrypt(const struct twofish_key *k, const uint8_t *in, uint8_t *out)
{
	uint32_t c = get_le32(in) ^ k->k[4], d = get_le32(in + 4) ^ k->k[5];
	uint32_t a = get_le32(in + 8) ^ k->k[6];
	uint32_t b = get_le32(in + 12) ^ k->k[7];
	int r;

	for (r = 14; r >= 0; r -= 2) {
		round_dec(k, r + 1, c, d, &a, &b);
		round_dec(k, r, a, b, &c, &d);
	}
	put_le32(out, a ^ k->k[0]);
	put_le32(out + 4, b ^ k->k[1]);
	put_le32(out + 8, c ^ k->k[2]);
	put_le32(out + 12, d ^ k->k[3]);
}
