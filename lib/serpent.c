/*
 * Serpent (Anderson, Biham, Knudsen: "Serpent: A Proposal for the Advanced
 * Encryption Standard"), in its bitslice description: the four 32-bit
 * words of a block, little-endian as Linux and nettle (hence LUKS) take
 * them.  Declared in crypto.h.
 */
#include <string.h>

#include "crypto.h"
#include "int.h"

#define ROL32(x, n)	((x) << (n) | (x) >> (32 - (n)))
#define ROR32(x, n)	((x) >> (n) | (x) << (32 - (n)))
#define PHI		0x9e3779b9u

/*
 * The S-boxes S0..S7 of the paper, bit 0 of the input nibble from word 0:
 * each output bit as the XOR of the monomials of its algebraic normal form
 * (m5 = x0 & x2: the bits of the monomial's number), derived from
 *   S0: 3 8 15 1 10 6 5 11 14 13 4 2 7 0 9 12
 *   S1: 15 12 2 7 9 0 5 10 1 11 14 8 6 13 3 4
 *   S2: 8 6 7 9 3 12 10 15 13 1 14 4 0 11 5 2
 *   S3: 0 15 11 8 12 9 6 3 13 1 2 4 10 7 5 14
 *   S4: 1 15 8 3 12 0 11 6 2 5 4 10 9 14 7 13
 *   S5: 15 5 2 11 4 10 9 12 0 3 14 8 13 6 7 1
 *   S6: 7 2 12 5 8 4 6 11 14 9 1 15 13 3 10 0
 *   S7: 1 13 15 0 14 8 2 11 7 4 12 10 9 3 5 6
 * and their inverses (ibox).  No table is indexed by data.
 */
#define MONOMIALS(x)							\
	uint32_t m1 = (x)[0], m2 = (x)[1], m4 = (x)[2], m8 = (x)[3];	\
	uint32_t m3 = m1 & m2, m5 = m1 & m4, m6 = m2 & m4, m7 = m3 & m4; \
	uint32_t m9 = m1 & m8, m10 = m2 & m8, m11 = m3 & m8;		\
	uint32_t m12 = m4 & m8, m13 = m5 & m8, m14 = m6 & m8;		\
	uint32_t m15 = m7 & m8;						\
	(void)m1, (void)m2, (void)m3, (void)m4, (void)m5, (void)m6,	\
	(void)m7, (void)m8, (void)m9, (void)m10, (void)m11, (void)m12,	\
	(void)m13, (void)m14, (void)m15

static inline void
sbox0(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = ~(m1 ^ m3 ^ m4 ^ m5 ^ m6 ^ m7 ^ m8 ^ m13 ^ m14);
	x[1] = ~(m1 ^ m5 ^ m6 ^ m7 ^ m10 ^ m13 ^ m14);
	x[2] = m2 ^ m3 ^ m5 ^ m7 ^ m8 ^ m10 ^ m14;
	x[3] = m1 ^ m2 ^ m4 ^ m8 ^ m9;
}

static inline void
sbox1(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = ~(m1 ^ m2 ^ m6 ^ m9 ^ m12 ^ m13 ^ m14);
	x[1] = ~(m1 ^ m3 ^ m4 ^ m5 ^ m8 ^ m10 ^ m11 ^ m13 ^ m14);
	x[2] = ~(m2 ^ m3 ^ m4 ^ m8);
	x[3] = ~(m2 ^ m5 ^ m8 ^ m9 ^ m11 ^ m13 ^ m14);
}

static inline void
sbox2(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = m2 ^ m4 ^ m5 ^ m8;
	x[1] = m1 ^ m2 ^ m4 ^ m6 ^ m7 ^ m9 ^ m11 ^ m12 ^ m13;
	x[2] = m1 ^ m2 ^ m6 ^ m8 ^ m10 ^ m11 ^ m12 ^ m13;
	x[3] = ~(m1 ^ m2 ^ m4 ^ m7 ^ m10);
}

static inline void
sbox3(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = m1 ^ m2 ^ m6 ^ m8 ^ m9 ^ m12 ^ m13 ^ m14;
	x[1] = m1 ^ m2 ^ m5 ^ m9 ^ m11 ^ m12 ^ m13;
	x[2] = m1 ^ m3 ^ m4 ^ m7 ^ m8 ^ m10 ^ m11;
	x[3] = m1 ^ m2 ^ m3 ^ m4 ^ m5 ^ m7 ^ m8 ^ m12 ^ m13;
}

static inline void
sbox4(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = ~(m2 ^ m3 ^ m4 ^ m8 ^ m9 ^ m10);
	x[1] = m1 ^ m5 ^ m6 ^ m8 ^ m10 ^ m12 ^ m13 ^ m14;
	x[2] = m1 ^ m3 ^ m4 ^ m6 ^ m7 ^ m10 ^ m11 ^ m12 ^ m14;
	x[3] = m1 ^ m2 ^ m4 ^ m6 ^ m9 ^ m10 ^ m11;
}

static inline void
sbox5(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = ~(m2 ^ m3 ^ m4 ^ m8 ^ m9 ^ m10);
	x[1] = ~(m1 ^ m3 ^ m4 ^ m8 ^ m10 ^ m11 ^ m12);
	x[2] = ~(m2 ^ m5 ^ m8 ^ m11 ^ m12 ^ m13 ^ m14);
	x[3] = ~(m1 ^ m2 ^ m4 ^ m7 ^ m8 ^ m9 ^ m13);
}

static inline void
sbox6(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = ~(m1 ^ m2 ^ m4 ^ m5 ^ m6 ^ m7 ^ m8 ^ m11 ^ m14);
	x[1] = ~(m2 ^ m4 ^ m9);
	x[2] = ~(m1 ^ m3 ^ m4 ^ m6 ^ m7 ^ m10 ^ m11 ^ m12 ^ m14);
	x[3] = m2 ^ m3 ^ m4 ^ m5 ^ m7 ^ m8 ^ m12 ^ m14;
}

static inline void
sbox7(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = ~(m3 ^ m4 ^ m9 ^ m10 ^ m12 ^ m13 ^ m14);
	x[1] = m2 ^ m3 ^ m4 ^ m5 ^ m6 ^ m8 ^ m9 ^ m11 ^ m13;
	x[2] = m1 ^ m2 ^ m4 ^ m7 ^ m8 ^ m9 ^ m10 ^ m11 ^ m14;
	x[3] = m1 ^ m2 ^ m4 ^ m5 ^ m7 ^ m9;
}

static inline void
ibox0(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = ~(m3 ^ m4 ^ m6 ^ m9 ^ m10 ^ m11 ^ m12 ^ m13 ^ m14);
	x[1] = m1 ^ m2 ^ m4 ^ m5 ^ m10 ^ m13 ^ m14;
	x[2] = ~(m1 ^ m2 ^ m3 ^ m4 ^ m8);
	x[3] = ~(m1 ^ m6 ^ m8 ^ m11 ^ m12 ^ m13 ^ m14);
}

static inline void
ibox1(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = ~(m1 ^ m2 ^ m3 ^ m7 ^ m10 ^ m13 ^ m14);
	x[1] = m2 ^ m4 ^ m7 ^ m8 ^ m9 ^ m10 ^ m13 ^ m14;
	x[2] = ~(m1 ^ m2 ^ m5 ^ m6 ^ m7 ^ m8 ^ m13);
	x[3] = m1 ^ m4 ^ m8 ^ m10;
}

static inline void
ibox2(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = m1 ^ m2 ^ m4 ^ m6 ^ m10;
	x[1] = m2 ^ m3 ^ m4 ^ m9 ^ m11 ^ m12 ^ m13;
	x[2] = ~(m1 ^ m3 ^ m4 ^ m8 ^ m9 ^ m10 ^ m11 ^ m13);
	x[3] = ~(m3 ^ m6 ^ m7 ^ m8 ^ m13);
}

static inline void
ibox3(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = m1 ^ m4 ^ m6 ^ m8 ^ m9 ^ m10 ^ m14;
	x[1] = m2 ^ m4 ^ m6 ^ m7 ^ m8 ^ m9 ^ m13 ^ m14;
	x[2] = m3 ^ m5 ^ m6 ^ m9 ^ m10 ^ m11 ^ m12 ^ m13;
	x[3] = m1 ^ m2 ^ m4 ^ m5 ^ m7 ^ m9 ^ m11 ^ m12;
}

static inline void
ibox4(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = ~(m1 ^ m2 ^ m4 ^ m8 ^ m9 ^ m11 ^ m12 ^ m13);
	x[1] = m3 ^ m4 ^ m5 ^ m8 ^ m9 ^ m13;
	x[2] = ~(m1 ^ m2 ^ m3 ^ m4 ^ m5 ^ m7 ^ m8 ^ m10 ^ m11);
	x[3] = m2 ^ m3 ^ m4 ^ m9 ^ m11 ^ m12;
}

static inline void
ibox5(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = m1 ^ m6 ^ m8 ^ m11;
	x[1] = m1 ^ m2 ^ m5 ^ m6 ^ m7 ^ m8 ^ m9 ^ m11;
	x[2] = m1 ^ m3 ^ m4 ^ m10 ^ m11 ^ m13;
	x[3] = ~(m2 ^ m3 ^ m4 ^ m7 ^ m9);
}

static inline void
ibox6(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = ~(m1 ^ m3 ^ m5 ^ m6 ^ m7 ^ m8 ^ m11 ^ m14);
	x[1] = ~(m2 ^ m4 ^ m5 ^ m8);
	x[2] = ~(m1 ^ m2 ^ m6 ^ m10 ^ m11 ^ m12 ^ m14);
	x[3] = ~(m2 ^ m3 ^ m4 ^ m6 ^ m7 ^ m8 ^ m9 ^ m11 ^ m12 ^ m14);
}

static inline void
ibox7(uint32_t *x)
{
	MONOMIALS(x);
	x[0] = ~(m1 ^ m2 ^ m6 ^ m10 ^ m11 ^ m12 ^ m14);
	x[1] = ~(m1 ^ m4 ^ m6 ^ m8 ^ m9 ^ m10 ^ m13 ^ m14);
	x[2] = m2 ^ m5 ^ m8 ^ m11 ^ m12 ^ m13;
	x[3] = m3 ^ m4 ^ m7 ^ m9 ^ m10 ^ m11;
}


/* The linear transformation between rounds, and its inverse. */
static inline void
lt(uint32_t *x)
{
	x[0] = ROL32(x[0], 13);
	x[2] = ROL32(x[2], 3);
	x[1] ^= x[0] ^ x[2];
	x[3] ^= x[2] ^ x[0] << 3;
	x[1] = ROL32(x[1], 1);
	x[3] = ROL32(x[3], 7);
	x[0] ^= x[1] ^ x[3];
	x[2] ^= x[3] ^ x[1] << 7;
	x[0] = ROL32(x[0], 5);
	x[2] = ROL32(x[2], 22);
}

static inline void
ilt(uint32_t *x)
{
	x[2] = ROR32(x[2], 22);
	x[0] = ROR32(x[0], 5);
	x[2] ^= x[3] ^ x[1] << 7;
	x[0] ^= x[1] ^ x[3];
	x[3] = ROR32(x[3], 7);
	x[1] = ROR32(x[1], 1);
	x[3] ^= x[2] ^ x[0] << 3;
	x[1] ^= x[0] ^ x[2];
	x[2] = ROR32(x[2], 3);
	x[0] = ROR32(x[0], 13);
}

static void (*const sbox[8])(uint32_t *) = {
	sbox0, sbox1, sbox2, sbox3, sbox4, sbox5, sbox6, sbox7,
};

/*
 * The key, padded with a 1 bit to 256 bits, makes 132 prekeys; round key
 * i is S((3 - i) mod 8) of four of them.
 */
void
serpent_set_key(struct serpent_key *k, const uint8_t *key, size_t len)
{
	uint32_t w[140], t;
	uint8_t pad[32] = { 0 };
	int i;

	memcpy(pad, key, len);
	if (len < 32)
		pad[len] = 1;
	for (i = 0; i < 8; i++)
		w[i] = get_le32(pad + 4 * i);
	for (i = 8; i < 140; i++) {
		t = w[i - 8] ^ w[i - 5] ^ w[i - 3] ^ w[i - 1] ^ PHI ^
		    (uint32_t)(i - 8);
		w[i] = ROL32(t, 11);
	}
	for (i = 0; i < 33; i++) {
		memcpy(k->k + 4 * i, w + 8 + 4 * i, 16);
		sbox[(3 - i) & 7](k->k + 4 * i);
	}
	explicit_bzero(w, sizeof(w));
	explicit_bzero(pad, sizeof(pad));
}

static void
load(uint32_t *x, const uint8_t *in)
{
	int i;

	for (i = 0; i < 4; i++)
		x[i] = get_le32(in + 4 * i);
}

static void
store(uint8_t *out, const uint32_t *x)
{
	int i;

	for (i = 0; i < 4; i++)
		put_le32(out + 4 * i, x[i]);
}

static inline void
mix(uint32_t *x, const uint32_t *k)
{
	x[0] ^= k[0], x[1] ^= k[1], x[2] ^= k[2], x[3] ^= k[3];
}

void
serpent_encrypt(const struct serpent_key *k, const uint8_t *in, uint8_t *out)
{
	uint32_t x[4];
	int r;

	load(x, in);
	for (r = 0; r < 32; r += 8) {
		mix(x, k->k + 4 * r), sbox0(x), lt(x);
		mix(x, k->k + 4 * (r + 1)), sbox1(x), lt(x);
		mix(x, k->k + 4 * (r + 2)), sbox2(x), lt(x);
		mix(x, k->k + 4 * (r + 3)), sbox3(x), lt(x);
		mix(x, k->k + 4 * (r + 4)), sbox4(x), lt(x);
		mix(x, k->k + 4 * (r + 5)), sbox5(x), lt(x);
		mix(x, k->k + 4 * (r + 6)), sbox6(x), lt(x);
		mix(x, k->k + 4 * (r + 7)), sbox7(x);
		if (r < 24)		/* the last round mixes K32 instead */
			lt(x);
	}
	mix(x, k->k + 128);
	store(out, x);
}

void
serpent_decrypt(const struct serpent_key *k, const uint8_t *in, uint8_t *out)
{
	uint32_t x[4];
	int r;

	load(x, in);
	mix(x, k->k + 128);
	for (r = 24; r >= 0; r -= 8) {
		if (r < 24)
			ilt(x);
		ibox7(x), mix(x, k->k + 4 * (r + 7));
		ilt(x), ibox6(x), mix(x, k->k + 4 * (r + 6));
		ilt(x), ibox5(x), mix(x, k->k + 4 * (r + 5));
		ilt(x), ibox4(x), mix(x, k->k + 4 * (r + 4));
		ilt(x), ibox3(x), mix(x, k->k + 4 * (r + 3));
		ilt(x), ibox2(x), mix(x, k->k + 4 * (r + 2));
		ilt(x), ibox1(x), mix(x, k->k + 4 * (r + 1));
		ilt(x), ibox0(x), mix(x, k->k + 4 * r);
	}
	store(out, x);
}
