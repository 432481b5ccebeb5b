/*
 * The compression functions of MD5 (RFC 1321) and RIPEMD-160 (Dobbertin,
 * Bosselaers, Preneel: "RIPEMD-160: A Strengthened Version of RIPEMD"),
 * the little-endian Merkle-Damgard hashes LUKS may name.  lib/sha.c pads
 * and chains; declared in crypto.h.
 */
#include "crypto.h"
#include "int.h"

#define ROL32(x, n)	((x) << (n) | (x) >> (32 - (n)))

/* T[i] = floor(2^32 * abs(sin(i + 1))) */
static const uint32_t md5_t[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a,
	0xa8304613, 0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
	0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340,
	0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
	0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8,
	0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
	0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
	0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
	0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92,
	0xffeff47d, 0x85845dd1, 0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
	0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

/* The shift amounts of each round's four steps */
static const uint8_t md5_s[4][4] = {
	{ 7, 12, 17, 22 }, { 5, 9, 14, 20 },
	{ 4, 11, 16, 23 }, { 6, 10, 15, 21 },
};

void
md5_block(uint32_t *st, const uint8_t *p)
{
	uint32_t x[16], a = st[0], b = st[1], c = st[2], d = st[3], f, t;
	int i, k;

	for (i = 0; i < 16; i++)
		x[i] = get_le32(p + 4 * i);
	for (i = 0; i < 64; i++) {
		switch (i / 16) {
		case 0:
			f = (b & c) | (~b & d), k = i;
			break;
		case 1:
			f = (b & d) | (c & ~d), k = (5 * i + 1) & 15;
			break;
		case 2:
			f = b ^ c ^ d, k = (3 * i + 5) & 15;
			break;
		default:
			f = c ^ (b | ~d), k = (7 * i) & 15;
			break;
		}
		t = a + f + x[k] + md5_t[i];
		a = d, d = c, c = b;
		b += ROL32(t, md5_s[i / 16][i & 3]);
	}
	st[0] += a, st[1] += b, st[2] += c, st[3] += d;
}

/* RIPEMD-160: the message word and rotation of each step, left and right */
static const uint8_t rmd_r[2][80] = {
	{ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	  7, 4, 13, 1, 10, 6, 15, 3, 12, 0, 9, 5, 2, 14, 11, 8,
	  3, 10, 14, 4, 9, 15, 8, 1, 2, 7, 0, 6, 13, 11, 5, 12,
	  1, 9, 11, 10, 0, 8, 12, 4, 13, 3, 7, 15, 14, 5, 6, 2,
	  4, 0, 5, 9, 7, 12, 2, 10, 14, 1, 3, 8, 11, 6, 15, 13 },
	{ 5, 14, 7, 0, 9, 2, 11, 4, 13, 6, 15, 8, 1, 10, 3, 12,
	  6, 11, 3, 7, 0, 13, 5, 10, 14, 15, 8, 12, 4, 9, 1, 2,
	  15, 5, 1, 3, 7, 14, 6, 9, 11, 8, 12, 2, 10, 0, 4, 13,
	  8, 6, 4, 1, 3, 11, 15, 0, 5, 12, 2, 13, 9, 7, 10, 14,
	  12, 15, 10, 4, 1, 5, 8, 7, 6, 2, 13, 14, 0, 3, 9, 11 },
};
static const uint8_t rmd_s[2][80] = {
	{ 11, 14, 15, 12, 5, 8, 7, 9, 11, 13, 14, 15, 6, 7, 9, 8,
	  7, 6, 8, 13, 11, 9, 7, 15, 7, 12, 15, 9, 11, 7, 13, 12,
	  11, 13, 6, 7, 14, 9, 13, 15, 14, 8, 13, 6, 5, 12, 7, 5,
	  11, 12, 14, 15, 14, 15, 9, 8, 9, 14, 5, 6, 8, 6, 5, 12,
	  9, 15, 5, 11, 6, 8, 13, 12, 5, 12, 13, 14, 11, 8, 5, 6 },
	{ 8, 9, 9, 11, 13, 15, 15, 5, 7, 7, 8, 11, 14, 14, 12, 6,
	  9, 13, 15, 7, 12, 8, 9, 11, 7, 7, 12, 7, 6, 15, 13, 11,
	  9, 7, 15, 11, 8, 6, 6, 14, 12, 13, 5, 14, 13, 13, 7, 5,
	  15, 5, 8, 11, 14, 14, 6, 14, 6, 9, 12, 9, 12, 5, 15, 8,
	  8, 5, 12, 9, 12, 5, 14, 6, 8, 13, 6, 5, 15, 13, 11, 11 },
};
static const uint32_t rmd_k[2][5] = {
	{ 0x00000000, 0x5a827999, 0x6ed9eba1, 0x8f1bbcdc, 0xa953fd4e },
	{ 0x50a28be6, 0x5c4dd124, 0x6d703ef3, 0x7a6d76e9, 0x00000000 },
};

/* f_j: the left line takes them in order, the right in reverse */
static uint32_t
rmd_f(int j, uint32_t x, uint32_t y, uint32_t z)
{
	switch (j) {
	case 0:
		return x ^ y ^ z;
	case 1:
		return (x & y) | (~x & z);
	case 2:
		return (x | ~y) ^ z;
	case 3:
		return (x & z) | (y & ~z);
	default:
		return x ^ (y | ~z);
	}
}

void
ripemd160_block(uint32_t *st, const uint8_t *p)
{
	uint32_t x[16], v[2][5], t;
	int i, line, j;

	for (i = 0; i < 16; i++)
		x[i] = get_le32(p + 4 * i);
	for (line = 0; line < 2; line++) {
		for (i = 0; i < 5; i++)
			v[line][i] = st[i];
		for (i = 0; i < 80; i++) {
			uint32_t *a = v[line];

			j = i / 16;
			t = a[0] + rmd_f(line ? 4 - j : j, a[1], a[2], a[3]) +
			    x[rmd_r[line][i]] + rmd_k[line][j];
			t = ROL32(t, rmd_s[line][i]) + a[4];
			a[0] = a[4], a[4] = a[3], a[3] = ROL32(a[2], 10);
			a[2] = a[1], a[1] = t;
		}
	}
	t = st[1] + v[0][2] + v[1][3];
	st[1] = st[2] + v[0][3] + v[1][4];
	st[2] = st[3] + v[0][4] + v[1][0];
	st[3] = st[4] + v[0][0] + v[1][1];
	st[4] = st[0] + v[0][1] + v[1][2];
	st[0] = t;
}
