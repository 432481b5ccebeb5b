#!/usr/bin/env bats
# lib/crypto against published vectors, through bin/test-crypto (tests/test-crypto.c);
# every cipher vector runs on AES-NI (where the CPU has it) and the portable AES.

load helpers
bats_require_minimum_version 1.5.0

tc() { "$IMG_BIN/test-crypto" "$@"; }
# IMG_NO_SHANI=1 likewise forces the portable SHA-256

# both AES paths give want: both tc ARGS...
both() {
	local want=$1 got
	shift
	got=$(tc "$@") && [ "$got" = "$want" ] || { echo "hw: $got"; return 1; }
	got=$(IMG_NO_AESNI=1 tc "$@") && [ "$got" = "$want" ] ||
	    { echo "sw: $got"; return 1; }
}

# 512 bytes 00 01 .. ff 00 01 .. ff (IEEE 1619 vector 4's plaintext)
P512=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff

@test "crypto: the test helper is built" {
	[ -x "$IMG_BIN/test-crypto" ]
	run -0 tc hw
	[[ $output == [01] ]]
}

@test "crypto: AES-128/192/256 encrypt and decrypt (FIPS-197 appendix C)" {
	local pt=00112233445566778899aabbccddeeff
	both 69c4e0d86a7b0430d8cdb78070b4c55a enc aes-128 ecb 000102030405060708090a0b0c0d0e0f "" $pt
	both dda97ca4864cdfe06eaf70a0ec0d7191 enc aes-192 ecb 000102030405060708090a0b0c0d0e0f1011121314151617 "" $pt
	both 8ea2b7ca516745bfeafc49904b496089 enc aes-256 ecb 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f "" $pt
	both $pt dec aes-128 ecb 000102030405060708090a0b0c0d0e0f "" 69c4e0d86a7b0430d8cdb78070b4c55a
	both $pt dec aes-192 ecb 000102030405060708090a0b0c0d0e0f1011121314151617 "" dda97ca4864cdfe06eaf70a0ec0d7191
	both $pt dec aes-256 ecb 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f "" 8ea2b7ca516745bfeafc49904b496089
}

@test "crypto: ECB, CBC and CTR (NIST SP 800-38A F.1.1, F.2.1, F.2.5, F.5.1)" {
	local p=6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710
	local iv=000102030405060708090a0b0c0d0e0f k=2b7e151628aed2a6abf7158809cf4f3c
	local k256=603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4
	both 3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4 enc aes-128 ecb $k "" $p
	both 7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7 enc aes-128 cbc $k $iv $p
	both $p dec aes-128 cbc $k $iv 7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7
	both f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b enc aes-256 cbc $k256 $iv $p
	both 874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee enc aes-128 ctr $k f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff $p
	both $p dec aes-128 ctr $k f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff 874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee
	both $p dec aes-256 cbc $k256 $iv f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b
}

@test "crypto: XTS-AES (IEEE 1619-2007 vectors 1, 2, 4)" {
	local z=0000000000000000000000000000000000000000000000000000000000000000
	both 917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e enc aes-128 xts $z 00000000000000000000000000000000 $z
	both $z dec aes-128 xts $z 00000000000000000000000000000000 917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e
	both c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0 enc aes-128 xts 1111111111111111111111111111111122222222222222222222222222222222 33333333330000000000000000000000 4444444444444444444444444444444444444444444444444444444444444444
	local v4=27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89cc78cf7f5e543445f8333d8fa7f56000005279fa5d8b5e4ad40e736ddb4d35412328063fd2aab53e5ea1e0a9f332500a5df9487d07a5c92cc512c8866c7e860ce93fdf166a24912b422976146ae20ce846bb7dc9ba94a767aaef20c0d61ad02655ea92dc4c4e41a8952c651d33174be51a10c421110e6d81588ede82103a252d8a750e8768defffed9122810aaeb99f9172af82b604dc4b8e51bcb08235a6f4341332e4ca60482a4ba1a03b3e65008fc5da76b70bf1690db4eae29c5f1badd03c5ccf2a55d705ddcd86d449511ceb7ec30bf12b1fa35b913f9f747a8afd1b130e94bff94effd01a91735ca1726acd0b197c4e5b03393697e126826fb6bbde8ecc1e08298516e2c9ed03ff3c1b7860f6de76d4cecd94c8119855ef5297ca67e9f3e7ff72b1e99785ca0a7e7720c5b36dc6d72cac9574c8cbbc2f801e23e56fd344b07f22154beba0f08ce8891e643ed995c94d9a69c9f1b5f499027a78572aeebd74d20cc39881c213ee770b1010e4bea718846977ae119f7a023ab58cca0ad752afe656bb3c17256a9f6e9bf19fdd5a38fc82bbe872c5539edb609ef4f79c203ebb140f2e583cb2ad15b4aa5b655016a8449277dbd477ef2c8d6c017db738b18deb4a427d1923ce3ff262735779a418f20a282df920147beabe421ee5319d0568
	both $v4 enc aes-128 xts 2718281828459045235360287471352631415926535897932384626433832795 00000000000000000000000000000000 $P512
	both $P512 dec aes-128 xts 2718281828459045235360287471352631415926535897932384626433832795 00000000000000000000000000000000 $v4
}

@test "crypto: a wrong key length is refused in qemu's words" {
	run -1 --separate-stderr tc enc aes-256 xts 00112233 00000000000000000000000000000000 00000000000000000000000000000000
	[ "$stderr" = "test-crypto: Cipher key length 4 should be 64" ]
}

@test "crypto: sectors take plain, plain64 and essiv IVs (dm-crypt)" {
	local k64 d=$P512$P512
	k64=$(printf '%02x' $(seq 0 63))
	# IVs from the sector number: little-endian, plain keeps 32 bits
	run -0 tc sectors-enc aes-256 xts plain64 sha256 $k64 5 ${d:0:1024}
	[ "$output" = "$(tc enc aes-256 xts $k64 05000000000000000000000000000000 ${d:0:1024})" ]
	run -0 tc sectors-enc aes-256 xts plain sha256 $k64 $((2**32 + 5)) ${d:0:1024}
	[ "$output" = "$(tc enc aes-256 xts $k64 05000000000000000000000000000000 ${d:0:1024})" ]
	run -0 tc sectors-enc aes-256 xts plain64 sha256 $k64 $((2**32 + 5)) ${d:0:1024}
	[ "$output" = "$(tc enc aes-256 xts $k64 05000000010000000000000000000000 ${d:0:1024})" ]
	# essiv: IV = AES-256(sha256(key), sector); two sectors, CBC
	run -0 tc sectors-enc aes-128 cbc essiv sha256 000102030405060708090a0b0c0d0e0f 7 $d
	[ "$(echo "$output" | xxd -r -p | sha256sum)" = "10c89033dd92c19d87ff3ff0392140224141d97148aa6b52e89af88cb33ef228  -" ]
	both $d sectors-dec aes-128 cbc essiv sha256 000102030405060708090a0b0c0d0e0f 7 $output
	run -1 --separate-stderr tc sectors-enc aes-128 cbc essiv sha1 000102030405060708090a0b0c0d0e0f 7 $d
	[ "$stderr" = "test-crypto: No AES cipher with key size 20 available" ]
}

sha_vectors() {
	run -0 tc hash sha1 616263
	[ "$output" = a9993e364706816aba3e25717850c26c9cd0d89d ]
	run -0 tc hash sha224 616263
	[ "$output" = 23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7 ]
	run -0 tc hash sha256 616263
	[ "$output" = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad ]
	run -0 tc hash sha384 616263
	[ "$output" = cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7 ]
	run -0 tc hash sha512 616263
	[ "$output" = ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f ]
	run -0 tc hash sha256 ""
	[ "$output" = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 ]
	local m448 m896
	m448=$(printf abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq | xxd -p | tr -d '\n')
	m896=$(printf abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu | xxd -p | tr -d '\n')
	run -0 tc hash sha1 $m448
	[ "$output" = 84983e441c3bd26ebaae4aa1f95129e5e54670f1 ]
	run -0 tc hash sha256 $m448
	[ "$output" = 248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1 ]
	run -0 tc hash sha512 $m896
	[ "$output" = 8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909 ]
	run -0 tc hash sha384 $m896
	[ "$output" = 09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712fcc7c71a557e2db966c3e9fa91746039 ]
}

@test "crypto: SHA-1 and SHA-2 (FIPS 180-4 examples), SHA extensions and portable" {
	sha_vectors
	IMG_NO_SHANI=1 sha_vectors
}

@test "crypto: HMAC (RFC 2202, RFC 4231 test cases 1 and 6)" {
	run -0 tc hmac sha1 0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b 4869205468657265
	[ "$output" = b617318655057264e28bc0b6fb378c8ef146be00 ]
	run -0 tc hmac sha256 0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b 4869205468657265
	[ "$output" = b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7 ]
	run -0 tc hmac sha512 0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b 4869205468657265
	[ "$output" = 87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854 ]
	# a 131-byte key is hashed first
	local k131 msg
	k131=$(printf 'aa%.0s' $(seq 131))
	msg=$(printf 'Test Using Larger Than Block-Size Key - Hash Key First' | xxd -p | tr -d '\n')
	run -0 tc hmac sha256 $k131 $msg
	[ "$output" = 60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54 ]
}

pbkdf2_vectors() {
	local pw salt
	pw=$(printf password | xxd -p) salt=$(printf salt | xxd -p)
	run -0 tc pbkdf2 sha1 $pw $salt 1 20
	[ "$output" = 0c60c80f961f0e71f3a9b524af6012062fe037a6 ]
	run -0 tc pbkdf2 sha1 $pw $salt 2 20
	[ "$output" = ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957 ]
	run -0 tc pbkdf2 sha1 $pw $salt 4096 20
	[ "$output" = 4b007901b765489abead49d926f721d065a429c1 ]
	run -0 tc pbkdf2 sha1 $(printf passwordPASSWORDpassword | xxd -p | tr -d '\n') $(printf saltSALTsaltSALTsaltSALTsaltSALTsalt | xxd -p | tr -d '\n') 4096 25
	[ "$output" = 3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038 ]
	run -0 tc pbkdf2 sha1 7061737300776f7264 7361006c74 4096 16
	[ "$output" = 56fa6aa75548099dcc37d7f03425e0c3 ]
	run -0 tc pbkdf2 sha256 $(printf passwd | xxd -p) $salt 1 64
	[ "$output" = 55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783 ]
	run -0 tc pbkdf2 sha256 $(printf Password | xxd -p) $(printf NaCl | xxd -p) 80000 64
	[ "$output" = 4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d ]
}

@test "crypto: PBKDF2 (RFC 6070 with SHA-1, RFC 7914 with SHA-256), SHA extensions and portable" {
	pbkdf2_vectors
	IMG_NO_SHANI=1 pbkdf2_vectors
}

@test "crypto: the AF splitter merges what it split, and needs every stripe" {
	local key=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
	run -0 tc afsplit sha256 4000 $key
	[ "$output" = $key ]
	run -0 tc afsplit sha1 3 $key
	[ "$output" = $key ]
	# one stripe: the key itself; two: the hash-diffused first stripe xor the key
	run -0 tc afmerge sha256 1 $key
	[ "$output" = $key ]
	run -0 tc afmerge sha256 2 ${key}${key}
	[ "$output" != $key ]
}

@test "crypto: 64 MiB of XTS-AES-256 sectors decrypt in well under a second with AES-NI" {
	[ "$(tc hw)" = 1 ] || skip "no AES-NI on this CPU"
	[[ $IMG_BIN != *asan* ]] || skip "sanitizer build"
	run -0 tc speed aes-256 xts 64
	[ "$output" -ge 128 ]
}
