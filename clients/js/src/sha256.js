/**
 * SHA-256 and HMAC-SHA256 in plain JavaScript, for pages without Web Crypto: browsers
 * give `crypto.subtle` only to secure contexts (https, localhost), and a console opened
 * over plain http from another machine still needs streamed bodies' digests and HMAC
 * tags. `hmac.js` prefers Web Crypto and falls back to these.
 *
 * @module
 */

const K = Uint32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const INITIAL = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

const rotr = (x, n) => (x >>> n) | (x << (32 - n));

function compress(state, words, block, at) {
  for (let i = 0; i < 16; i++) {
    words[i] = (block[at + 4 * i] << 24) | (block[at + 4 * i + 1] << 16) | (block[at + 4 * i + 2] << 8) | block[at + 4 * i + 3];
  }
  for (let i = 16; i < 64; i++) {
    const w15 = words[i - 15];
    const w2 = words[i - 2];
    const s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >>> 3);
    const s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >>> 10);
    words[i] = (words[i - 16] + s0 + words[i - 7] + s1) | 0;
  }
  let [a, b, c, d, e, f, g, h] = state;
  for (let i = 0; i < 64; i++) {
    const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + words[i]) | 0;
    const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0;
  state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0;
  state[7] = (state[7] + h) | 0;
}

/**
 * The SHA-256 digest of the pieces, taken as one message.
 * @param {Uint8Array[]} pieces
 * @returns {Uint8Array} 32 bytes
 */
export function sha256Pieces(pieces) {
  const state = Int32Array.from(INITIAL);
  const words = new Int32Array(64);
  const block = new Uint8Array(64);
  let filled = 0;
  let length = 0;
  for (const piece of pieces) {
    length += piece.length;
    let at = 0;
    if (filled > 0) {
      const take = Math.min(64 - filled, piece.length);
      block.set(piece.subarray(0, take), filled);
      filled += take;
      at = take;
      if (filled < 64) continue;
      compress(state, words, block, 0);
      filled = 0;
    }
    for (; at + 64 <= piece.length; at += 64) compress(state, words, piece, at);
    block.set(piece.subarray(at), 0);
    filled = piece.length - at;
  }
  // Padding: 0x80, zeros, then the length in bits as a big-endian u64.
  block[filled++] = 0x80;
  if (filled > 56) {
    block.fill(0, filled);
    compress(state, words, block, 0);
    filled = 0;
  }
  block.fill(0, filled);
  const bits = length * 8;
  const view = new DataView(block.buffer);
  view.setUint32(56, Math.floor(bits / 2 ** 32));
  view.setUint32(60, bits >>> 0);
  compress(state, words, block, 0);
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  state.forEach((word, i) => outView.setInt32(4 * i, word));
  return out;
}

/** SHA-256 of one byte array. */
export function sha256Sync(bytes) {
  return sha256Pieces([bytes]);
}

/**
 * HMAC-SHA256 (RFC 2104) of `message` under `key`.
 * @param {Uint8Array} key
 * @param {Uint8Array} message
 */
export function hmacSha256Sync(key, message) {
  const block = new Uint8Array(64);
  block.set(key.length > 64 ? sha256Sync(key) : key);
  const inner = block.map((byte) => byte ^ 0x36);
  const outer = block.map((byte) => byte ^ 0x5c);
  return sha256Pieces([outer, sha256Pieces([inner, message])]);
}
