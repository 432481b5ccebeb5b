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

# is WANT tc ARGS...: the helper prints WANT
is() {
	local want=$1 got
	shift
	got=$(tc "$@") && [ "$got" = "$want" ] || { echo "tc $*: $got, want $want"; return 1; }
}

# rev HEX: the bytes in reverse order (the Serpent submission's notation)
rev() { echo "$1" | fold -w2 | tac | tr -d '\n'; }

@test "crypto: Serpent (submission ecb_vk/ecb_vt vectors 1, Biham's set 4), both ways" {
	local z16=00000000000000000000000000000000 k p c
	for k in 128:49AFBFAD9D5A34052CD8FFA5986BD2DD:10B5FFB720B8CB9002A1142B0BA2E94A \
	    192:E78E5402C7195568AC3678F7A3F60C66:B10B271BA25257E1294F2B51F076D0D9 \
	    256:ABED96E766BF28CBC0EBD21A82EF0819:DA5A7992B1B4AE6F8C004BC8A7DE5520; do
		local bits=${k%%:*} vk vt key0 key1
		vk=${k#*:} vk=${vk%:*} vt=${k##*:}
		key0=$(printf '0%.0s' $(seq $((bits / 4))))
		key1=8${key0:1}
		is "$(rev $vk | tr A-F a-f)" enc serpent-$bits ecb $(rev $key1) "" $z16
		is "$(rev $vt | tr A-F a-f)" enc serpent-$bits ecb $key0 "" $(rev 80000000000000000000000000000000)
		is $z16 dec serpent-$bits ecb $(rev $key1) "" $(rev $vk)
	done
	p=00112233445566778899aabbccddeeff
	is 563e2cf8740a27c164804560391e9b27 enc serpent-128 ecb 000102030405060708090a0b0c0d0e0f "" $p
	is 6ab816c82de53b93005008afa2246a02 enc serpent-192 ecb 000102030405060708090a0b0c0d0e0f1011121314151617 "" $p
	is 2868b7a2d28ecd5e4fdefac3c4330074 enc serpent-256 ecb 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f "" $p
	is 3e507730776b93fdea661235e1dd99f0 enc serpent-256 ecb 2bd6459f82c5b300952c49104881ff482bd6459f82c5b300952c49104881ff48 "" ea024714ad5c4d84ea024714ad5c4d84
	is $p dec serpent-256 ecb 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f "" 2868b7a2d28ecd5e4fdefac3c4330074
}

@test "crypto: Twofish (ecb_tbl.txt, the paper's appendix B), both ways" {
	local z16=00000000000000000000000000000000
	is 9f589f5cf6122c32b6bfec2f2ae8c35a enc twofish-128 ecb $z16 "" $z16
	is d491db16e7b1c39e86cb086b789f5419 enc twofish-128 ecb $z16 "" 9f589f5cf6122c32b6bfec2f2ae8c35a
	is 019f9809de1711858faac3a3ba20fbc3 enc twofish-128 ecb 9f589f5cf6122c32b6bfec2f2ae8c35a "" d491db16e7b1c39e86cb086b789f5419
	is 182b02d81497ea45f9daacdc29193a65 enc twofish-192 ecb 88b2b2706b105e36b446bb6d731a1e88efa71f788965bd44 "" 39da69d6ba4997d585b6dc073ca341b2
	is 6cb4561c40bf0a9705931cb6d408e7fa enc twofish-256 ecb d43bb7556ea32e46f2a282b7d45b4e0d57ff739d4dc92c1bd7fc01700cc8216f "" 90afe91bb288544f2c32dc239b2635e6
	is cfd1d2e5a9be9cdf501f13b892bd2248 enc twofish-192 ecb 0123456789abcdeffedcba98765432100011223344556677 "" $z16
	is 37527be0052334b89f0cfccae87cfa20 enc twofish-256 ecb 0123456789abcdeffedcba987654321000112233445566778899aabbccddeeff "" $z16
	is 90afe91bb288544f2c32dc239b2635e6 dec twofish-256 ecb d43bb7556ea32e46f2a282b7d45b4e0d57ff739d4dc92c1bd7fc01700cc8216f "" 6cb4561c40bf0a9705931cb6d408e7fa
	is $z16 dec twofish-128 ecb $z16 "" 9f589f5cf6122c32b6bfec2f2ae8c35a
}

@test "crypto: CAST-128 (RFC 2144 B.1, and the B.2 maintenance test)" {
	is 238b4fe5847e44b2 enc cast5-128 ecb 0123456712345678234567893456789a "" 0123456789abcdef
	is 0123456789abcdef dec cast5-128 ecb 0123456712345678234567893456789a "" 238b4fe5847e44b2
	run -0 tc cast5-maint 1000000
	[ "${lines[0]}" = eea9d0a249fd3ba6b3436fb89d6dca92 ]
	[ "${lines[1]}" = b2c95eb00c31ad7180ac05b8e83d696e ]
}

@test "crypto: modes over the 8-byte CAST-128 block: CBC chains, CTR counts 64 bits" {
	local k=0123456712345678234567893456789a iv=fffffffffffffffe p=0011223344556677 c1 c2
	# CBC: C1 = E(P1 ^ IV), C2 = E(P2 ^ C1)
	c1=$(tc enc cast5-128 ecb $k "" $(printf '%016x' $((0x$p ^ 0x$iv))))
	run -0 tc enc cast5-128 cbc $k $iv $p$p
	[ "${output:0:16}" = "$c1" ]
	c2=$(tc enc cast5-128 ecb $k "" $(printf '%016x' $((0x$p ^ 0x$c1))))
	[ "${output:16:16}" = "$c2" ]
	is $p$p dec cast5-128 cbc $k $iv $output
	# CTR: keystream E(IV), E(IV + 1), E(0) after the wrap
	run -0 tc enc cast5-128 ctr $k $iv 000000000000000000000000000000000000000000000000
	[ "$output" = "$(tc enc cast5-128 ecb $k "" fffffffffffffffeffffffffffffffff0000000000000000)" ]
	run -1 --separate-stderr tc enc cast5-128 xts $k$k 0000000000000000 0000000000000000
	[ "$stderr" = "test-crypto: Unsupported cipher mode xts" ]
}

@test "crypto: Serpent and Twofish in XTS, CBC and CTR decrypt what they encrypt" {
	local c k64 d=$P512
	k64=$(printf '%02x' $(seq 0 63))
	for c in serpent-128 serpent-192 serpent-256 twofish-128 twofish-192 twofish-256; do
		local n=$((${c#*-} / 4))
		run -0 tc sectors-enc $c xts plain64 sha256 ${k64:0:$((2 * n))} 7 $d
		[ "$output" != "$d" ]
		is $d sectors-dec $c xts plain64 sha256 ${k64:0:$((2 * n))} 7 $output
		run -0 tc sectors-enc $c cbc essiv sha256 ${k64:0:$n} 9 $d
		is $d sectors-dec $c cbc essiv sha256 ${k64:0:$n} 9 $output
		run -0 tc enc $c ctr ${k64:0:$n} 000102030405060708090a0b0c0d0e0f ${d:0:96}
		is ${d:0:96} dec $c ctr ${k64:0:$n} 000102030405060708090a0b0c0d0e0f $output
	done
}

@test "crypto: essiv sizes Serpent and Twofish to the digest as qemu, refuses CAST-128" {
	local d=${P512:0:64}
	# essiv: IV = E(hash(key), sector) with the cipher sized to the digest
	run -0 tc sectors-enc serpent-128 cbc essiv sha256 000102030405060708090a0b0c0d0e0f 0 $d
	iv=$(tc enc serpent-256 ecb $(tc hash sha256 000102030405060708090a0b0c0d0e0f) "" 00000000000000000000000000000000)
	[ "$output" = "$(tc enc serpent-128 cbc 000102030405060708090a0b0c0d0e0f $iv $d)" ]
	run -0 tc sectors-enc cast5-128 cbc essiv md5 000102030405060708090a0b0c0d0e0f 3 $d
	iv=$(tc enc cast5-128 ecb $(tc hash md5 000102030405060708090a0b0c0d0e0f) "" 0300000000000000)
	[ "$output" = "$(tc enc cast5-128 cbc 000102030405060708090a0b0c0d0e0f $iv $d)" ]
	run -1 --separate-stderr tc sectors-enc twofish-128 cbc essiv sha1 000102030405060708090a0b0c0d0e0f 7 $d
	[ "$stderr" = "test-crypto: No Twofish cipher with key size 20 available" ]
	run -1 --separate-stderr tc sectors-enc serpent-256 cbc essiv ripemd160 000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f 7 $d
	[ "$stderr" = "test-crypto: No Serpent cipher with key size 20 available" ]
	run -1 --separate-stderr tc sectors-enc cast5-128 cbc essiv sha256 000102030405060708090a0b0c0d0e0f 7 $d
	[ "$stderr" = "test-crypto: Cipher cast5-128 not supported with essiv" ]
}

# hexstr STRING: its bytes in hex
hexstr() { printf %s "$1" | xxd -p | tr -d '\n'; }

@test "crypto: MD5 (RFC 1321 A.5) and RIPEMD-160 (the paper's examples)" {
	local m
	while read -r m md5 rmd; do
		[ "$m" = '""' ] && m=
		is $md5 hash md5 "$(hexstr "$m")"
		is $rmd hash ripemd160 "$(hexstr "$m")"
	done <<-'EOF'
	"" d41d8cd98f00b204e9800998ecf8427e 9c1185a5c5e9fc54612808977ee8f548b2258d31
	a 0cc175b9c0f1b6a831c399e269772661 0bdc9d2d256b3ee9daae347be6f4dc835a467ffe
	abc 900150983cd24fb0d6963f7d28e17f72 8eb208f7e05d987a9b044a8e98c6b087f15a0bfc
	abcdefghijklmnopqrstuvwxyz c3fcd3d76192e4007dfb496cca67e13b f71c27109c692c1b56bbdceb5b9d2865b3708dbc
	ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 d174ab98d277d9f5a5611c2c9f419d9f b0e20b6e3116640286ed3a87a5713079b21f5189
	12345678901234567890123456789012345678901234567890123456789012345678901234567890 57edf4a22be3c955ac49da2e2107b67a 9b752e45573d4b39f4dbd3323cab82bf63326bfb
	EOF
	is f96b697d7cb7938d525a2f31aaf161d0 hash md5 "$(hexstr 'message digest')"
	is 5d0689ef49d2fae572b881b123a85ffa21595f36 hash ripemd160 "$(hexstr 'message digest')"
	is 12a053384a9c0c88e405a06c27dcf49ada62eb2b hash ripemd160 "$(hexstr abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq)"
}

@test "crypto: HMAC-MD5 (RFC 2202) and HMAC-RIPEMD160 (RFC 2286), cases 1, 2 and 6" {
	local jefe msg k80
	jefe=$(hexstr Jefe) msg=$(hexstr 'what do ya want for nothing?')
	k80=$(printf 'aa%.0s' $(seq 80))
	is 9294727a3638bb1c13f48ef8158bfc9d hmac md5 0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b $(hexstr 'Hi There')
	is 750c783e6ab0b503eaa86e310a5db738 hmac md5 $jefe $msg
	is 6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd hmac md5 $k80 "$(hexstr 'Test Using Larger Than Block-Size Key - Hash Key First')"
	is 24cb4bd67d20fc1a5d2ed7732dcc39377f0a5668 hmac ripemd160 0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b $(hexstr 'Hi There')
	is dda6c0213a485a9e24f4742064a7f033b43c4069 hmac ripemd160 $jefe $msg
	is 6466ca07ac5eac29e1bd523e5ada7605b791fd8b hmac ripemd160 $k80 "$(hexstr 'Test Using Larger Than Block-Size Key - Hash Key First')"
}

@test "crypto: PBKDF2 over MD5 and RIPEMD-160 as OpenSSL computes it (no published vectors)" {
	local pw salt
	pw=$(hexstr password) salt=$(hexstr salt)
	is f31afb6d931392daa5e3130f47f9a9b6e8e72029 pbkdf2 md5 $pw $salt 1 20
	is 15001f89b9c29ee6998c520d1a0629e893cc3f996a08d27060e4c33305bf0fb262e27c0c9745202f pbkdf2 md5 $pw $salt 4096 40
	is b725258b125e0bacb0e2307e34feb16a4d0d6aed pbkdf2 ripemd160 $pw $salt 1 20
	is 99a40d3fe4ee95869791d9faa24864562782762171480b620ca8bed3dafbbcac85d6a7c5b52f2f99 pbkdf2 ripemd160 $pw $salt 4096 40
}
