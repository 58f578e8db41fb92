/*
 * SHA-384 from FIPS 180-4 (August 2015), written for this guest.
 *
 * SHA-384 is SHA-512 (section 6.4) with the initial hash value of section 5.3.4 and the output
 * truncated to the leftmost 384 bits (section 6.5). Functions Ch, Maj, Sigma0/1 and sigma0/1 are
 * section 4.1.3; the constants K are section 4.2.3; padding is section 5.1.2.
 */
#include "guest.h"

static const u64 K[80] = {
	0x428a2f98d728ae22ULL, 0x7137449123ef65cdULL, 0xb5c0fbcfec4d3b2fULL, 0xe9b5dba58189dbbcULL,
	0x3956c25bf348b538ULL, 0x59f111f1b605d019ULL, 0x923f82a4af194f9bULL, 0xab1c5ed5da6d8118ULL,
	0xd807aa98a3030242ULL, 0x12835b0145706fbeULL, 0x243185be4ee4b28cULL, 0x550c7dc3d5ffb4e2ULL,
	0x72be5d74f27b896fULL, 0x80deb1fe3b1696b1ULL, 0x9bdc06a725c71235ULL, 0xc19bf174cf692694ULL,
	0xe49b69c19ef14ad2ULL, 0xefbe4786384f25e3ULL, 0x0fc19dc68b8cd5b5ULL, 0x240ca1cc77ac9c65ULL,
	0x2de92c6f592b0275ULL, 0x4a7484aa6ea6e483ULL, 0x5cb0a9dcbd41fbd4ULL, 0x76f988da831153b5ULL,
	0x983e5152ee66dfabULL, 0xa831c66d2db43210ULL, 0xb00327c898fb213fULL, 0xbf597fc7beef0ee4ULL,
	0xc6e00bf33da88fc2ULL, 0xd5a79147930aa725ULL, 0x06ca6351e003826fULL, 0x142929670a0e6e70ULL,
	0x27b70a8546d22ffcULL, 0x2e1b21385c26c926ULL, 0x4d2c6dfc5ac42aedULL, 0x53380d139d95b3dfULL,
	0x650a73548baf63deULL, 0x766a0abb3c77b2a8ULL, 0x81c2c92e47edaee6ULL, 0x92722c851482353bULL,
	0xa2bfe8a14cf10364ULL, 0xa81a664bbc423001ULL, 0xc24b8b70d0f89791ULL, 0xc76c51a30654be30ULL,
	0xd192e819d6ef5218ULL, 0xd69906245565a910ULL, 0xf40e35855771202aULL, 0x106aa07032bbd1b8ULL,
	0x19a4c116b8d2d0c8ULL, 0x1e376c085141ab53ULL, 0x2748774cdf8eeb99ULL, 0x34b0bcb5e19b48a8ULL,
	0x391c0cb3c5c95a63ULL, 0x4ed8aa4ae3418acbULL, 0x5b9cca4f7763e373ULL, 0x682e6ff3d6b2b8a3ULL,
	0x748f82ee5defb2fcULL, 0x78a5636f43172f60ULL, 0x84c87814a1f0ab72ULL, 0x8cc702081a6439ecULL,
	0x90befffa23631e28ULL, 0xa4506cebde82bde9ULL, 0xbef9a3f7b2c67915ULL, 0xc67178f2e372532bULL,
	0xca273eceea26619cULL, 0xd186b8c721c0c207ULL, 0xeada7dd6cde0eb1eULL, 0xf57d4f7fee6ed178ULL,
	0x06f067aa72176fbaULL, 0x0a637dc5a2c898a6ULL, 0x113f9804bef90daeULL, 0x1b710b35131c471bULL,
	0x28db77f523047d84ULL, 0x32caab7b40c72493ULL, 0x3c9ebe0a15c9bebcULL, 0x431d67c49c100d4cULL,
	0x4cc5d4becb3e42b6ULL, 0x597f299cfc657e2aULL, 0x5fcb6fab3ad6faecULL, 0x6c44198c4a475817ULL,
};

/* Section 5.3.4: SHA-384 initial hash value. */
static const u64 H384[8] = {
	0xcbbb9d5dc1059ed8ULL, 0x629a292a367cd507ULL, 0x9159015a3070dd17ULL, 0x152fecd8f70e5939ULL,
	0x67332667ffc00b31ULL, 0x8eb44a8768581511ULL, 0xdb0c2e0d64f98fa7ULL, 0x47b5481dbefa4fa4ULL,
};

static inline u64 rotr(u64 x, unsigned n) { return (x >> n) | (x << (64 - n)); }

static u64 load_be64(const u8 *p)
{
	u64 v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Section 6.4.2: process one 1024-bit message block. */
static void compress(struct sha512_state *s, const u8 *block)
{
	u64 w[80];
	for (int t = 0; t < 16; t++)
		w[t] = load_be64(block + 8 * t);
	for (int t = 16; t < 80; t++) {
		u64 s0 = rotr(w[t - 15], 1) ^ rotr(w[t - 15], 8) ^ (w[t - 15] >> 7);
		u64 s1 = rotr(w[t - 2], 19) ^ rotr(w[t - 2], 61) ^ (w[t - 2] >> 6);
		w[t] = s1 + w[t - 7] + s0 + w[t - 16];
	}
	u64 a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
	u64 e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
	for (int t = 0; t < 80; t++) {
		u64 S1 = rotr(e, 14) ^ rotr(e, 18) ^ rotr(e, 41);
		u64 ch = (e & f) ^ (~e & g);
		u64 t1 = h + S1 + ch + K[t] + w[t];
		u64 S0 = rotr(a, 28) ^ rotr(a, 34) ^ rotr(a, 39);
		u64 maj = (a & b) ^ (a & c) ^ (b & c);
		u64 t2 = S0 + maj;
		h = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	s->h[0] += a;
	s->h[1] += b;
	s->h[2] += c;
	s->h[3] += d;
	s->h[4] += e;
	s->h[5] += f;
	s->h[6] += g;
	s->h[7] += h;
}

/*
 * SHA-384 of `size` bytes at `data`. The launcher's ranges are whole pages, so every block but
 * the padding comes straight from guest memory; the tail is handled generally anyway.
 */
void sha384_range(const u8 *data, u32 size, u8 out[48])
{
	struct sha512_state s;
	for (int i = 0; i < 8; i++)
		s.h[i] = H384[i];
	u32 left = size;
	const u8 *p = data;
	while (left >= 128) {
		compress(&s, p);
		p += 128;
		left -= 128;
	}
	/* Section 5.1.2: append 1, zeros, and the 128-bit big-endian length in bits. */
	u8 block[256];
	u32 n = 0;
	for (; n < left; n++)
		block[n] = p[n];
	block[n++] = 0x80;
	u32 total = n + 16 <= 128 ? 128 : 256;
	while (n < total - 8)
		block[n++] = 0;
	u64 bits = (u64)size << 3;
	for (int i = 7; i >= 0; i--)
		block[n++] = (u8)(bits >> (8 * i));
	compress(&s, block);
	if (total == 256)
		compress(&s, block + 128);
	for (int i = 0; i < 6; i++)
		for (int j = 0; j < 8; j++)
			out[8 * i + j] = (u8)(s.h[i] >> (56 - 8 * j));
}
