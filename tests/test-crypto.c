/*
 * Drives lib/crypto for tests/crypto.bats (as git's t/helper/test-tool):
 * arguments in hex, the result in hex on stdout.
 *   test-crypto hash ALG HEX
 *   test-crypto hmac ALG KEY MSG
 *   test-crypto pbkdf2 ALG PASS SALT ITERS LEN
 *   test-crypto enc|dec CIPHER MODE KEY IV DATA
 *   test-crypto sectors-enc|sectors-dec CIPHER MODE IVGEN IVHASH KEY SECTOR DATA
 *   test-crypto afsplit ALG STRIPES KEY	(prints the key decoded again)
 *   test-crypto afmerge ALG STRIPES SPLIT
 *   test-crypto speed CIPHER MODE MIB	(MiB/s of sector decryption)
 *   test-crypto hw				(1 when AES-NI is used)
 *   test-crypto cast5-maint N		(RFC 2144 B.2, N rounds: a and b)
 * IMG_NO_AESNI=1 in the environment forces the portable AES.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/crypto.h"
#include "../lib/err.h"

static uint8_t *
unhex(const char *s, size_t *n)
{
	size_t len = strlen(s) / 2, i;
	uint8_t *p = xmalloc(len + 1);
	unsigned v;

	for (i = 0; i < len; i++) {
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			die("bad hex: %s", s);
		p[i] = (uint8_t)v;
	}
	*n = len;
	return p;
}

static void
hex(const uint8_t *p, size_t n)
{
	while (n-- > 0)
		printf("%02x", *p++);
	putchar('\n');
}

static int
lookup(int (*fn)(const char *), const char *name)
{
	int v = fn(name);

	if (v < 0)
		die("unknown name %s", name);
	return v;
}

static void
cipher(char **av, bool enc)
{
	struct crypto_cipher c;
	size_t kn, ivn, n;
	uint8_t *key = unhex(av[2], &kn), *iv = unhex(av[3], &ivn),
	    *buf = unhex(av[4], &n);

	if (crypto_cipher_init(&c, lookup(crypto_cipher_lookup, av[0]),
	    lookup(crypto_mode_lookup, av[1]), key, kn) < 0)
		die("%s", err_msg());
	(enc ? crypto_cipher_encrypt : crypto_cipher_decrypt)(&c, iv, buf, n);
	hex(buf, n);
	free(key), free(iv), free(buf);
}

static void
sectors(char **av, bool enc)
{
	struct crypto_cipher c;
	struct crypto_ivgen g;
	int alg = lookup(crypto_cipher_lookup, av[0]);
	int mode = lookup(crypto_mode_lookup, av[1]);
	int iv = lookup(crypto_ivgen_lookup, av[2]);
	int h = lookup(crypto_hash_lookup, av[3]), ivc = alg;
	size_t kn, n;
	uint8_t *key = unhex(av[4], &kn), *buf = unhex(av[6], &n);

	if (iv == IVGEN_ESSIV && (ivc = crypto_essiv_cipher(alg, h)) < 0)
		die("%s", err_msg());
	if (crypto_cipher_init(&c, alg, mode, key, kn) < 0 ||
	    crypto_ivgen_init(&g, iv, ivc, h, key, kn) < 0)
		die("%s", err_msg());
	(enc ? crypto_sectors_encrypt : crypto_sectors_decrypt)(&c, &g, 512,
	    strtoull(av[5], NULL, 0), buf, n);
	hex(buf, n);
	free(key), free(buf);
}

static void
speed(char **av)
{
	struct crypto_cipher c;
	struct crypto_ivgen g;
	uint8_t key[64] = { 1 }, *buf;
	size_t mib = strtoul(av[2], NULL, 0), n = 1 << 20, i;
	int alg = lookup(crypto_cipher_lookup, av[0]);
	int mode = lookup(crypto_mode_lookup, av[1]);
	struct timespec a, b;
	double s;

	if (crypto_cipher_init(&c, alg, mode, key, crypto_cipher_key_len(alg) *
	    (mode == MODE_XTS ? 2 : 1)) < 0 ||
	    crypto_ivgen_init(&g, IVGEN_PLAIN64, alg, HASH_SHA256, key, 32) < 0)
		die("%s", err_msg());
	buf = xcalloc(1, n);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (i = 0; i < mib; i++)
		crypto_sectors_decrypt(&c, &g, 512, i * 2048, buf, n);
	clock_gettime(CLOCK_MONOTONIC, &b);
	s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	printf("%.0f\n", (double)mib / s);
	free(buf);
}

/* RFC 2144 B.2: a and b encrypt each other's halves, n times. */
static void
cast5_maint(unsigned long n)
{
	static const uint8_t init[16] = { 0x01, 0x23, 0x45, 0x67, 0x12, 0x34,
	    0x56, 0x78, 0x23, 0x45, 0x67, 0x89, 0x34, 0x56, 0x78, 0x9a };
	uint8_t a[16], b[16];
	struct cast5_key k;

	memcpy(a, init, 16), memcpy(b, init, 16);
	while (n-- > 0) {
		cast5_set_key(&k, b, 16);
		cast5_encrypt(&k, a, a), cast5_encrypt(&k, a + 8, a + 8);
		cast5_set_key(&k, a, 16);
		cast5_encrypt(&k, b, b), cast5_encrypt(&k, b + 8, b + 8);
	}
	hex(a, 16), hex(b, 16);
}

int
main(int argc, char *argv[])
{
	uint8_t out[4096], *a, *b;
	size_t an, bn, n;
	int alg;

	prog_init(argv[0]);
	if (argc < 2)
		die("usage: test-crypto CMD ARGS");
	if (!strcmp(argv[1], "hw") && argc == 2) {
		printf("%d\n", aes_hw());
	} else if (!strcmp(argv[1], "hash") && argc == 4) {
		alg = lookup(crypto_hash_lookup, argv[2]);
		a = unhex(argv[3], &an);
		crypto_hash(alg, a, an, out);
		hex(out, crypto_hash_len(alg));
		free(a);
	} else if (!strcmp(argv[1], "hmac") && argc == 5) {
		alg = lookup(crypto_hash_lookup, argv[2]);
		a = unhex(argv[3], &an), b = unhex(argv[4], &bn);
		crypto_hmac(alg, a, an, b, bn, out);
		hex(out, crypto_hash_len(alg));
		free(a), free(b);
	} else if (!strcmp(argv[1], "pbkdf2") && argc == 7) {
		alg = lookup(crypto_hash_lookup, argv[2]);
		a = unhex(argv[3], &an), b = unhex(argv[4], &bn);
		n = strtoul(argv[6], NULL, 0);
		if (n > sizeof(out))
			die("too long");
		crypto_pbkdf2(alg, a, an, b, bn, strtoull(argv[5], NULL, 0),
		    out, n);
		hex(out, n);
		free(a), free(b);
	} else if ((!strcmp(argv[1], "enc") || !strcmp(argv[1], "dec")) &&
	    argc == 7) {
		cipher(argv + 2, argv[1][0] == 'e');
	} else if (!strncmp(argv[1], "sectors-", 8) && argc == 9) {
		sectors(argv + 2, argv[1][8] == 'e');
	} else if (!strcmp(argv[1], "afsplit") && argc == 5) {
		uint32_t stripes = (uint32_t)strtoul(argv[3], NULL, 0);

		alg = lookup(crypto_hash_lookup, argv[2]);
		a = unhex(argv[4], &an);
		b = xmalloc(an * stripes);
		if (crypto_afsplit_encode(alg, an, stripes, a, b) < 0)
			die("%s", err_msg());
		memset(a, 0, an);
		crypto_afsplit_decode(alg, an, stripes, b, a);
		hex(a, an);
		free(a), free(b);
	} else if (!strcmp(argv[1], "afmerge") && argc == 5) {
		uint32_t stripes = (uint32_t)strtoul(argv[3], NULL, 0);

		alg = lookup(crypto_hash_lookup, argv[2]);
		a = unhex(argv[4], &an);
		crypto_afsplit_decode(alg, an / stripes, stripes, a, out);
		hex(out, an / stripes);
		free(a);
	} else if (!strcmp(argv[1], "cast5-maint") && argc == 3) {
		cast5_maint(strtoul(argv[2], NULL, 0));
	} else if (!strcmp(argv[1], "speed") && argc == 5) {
		speed(argv + 2);
	} else {
		die("usage: test-crypto CMD ARGS");
	}
	return close_stdout();
}
