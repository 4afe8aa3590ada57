// The plain-JavaScript SHA-256 and HMAC used where Web Crypto is missing, checked against
// Node's, and the golden HMAC frame tagged through them.

import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { test } from 'node:test';

import { toHex, utf8 } from '../src/bytes.js';
import { encodeFrame } from '../src/frame.js';
import { importHmacKey } from '../src/hmac.js';
import { encodePacket } from '../src/packets.js';
import { hmacSha256Sync, sha256Pieces, sha256Sync } from '../src/sha256.js';

test('SHA-256 of every length around the block boundaries, whole and in pieces', () => {
  const data = Uint8Array.from({ length: 300 }, (_, i) => (i * 37 + 11) & 0xff);
  for (let length = 0; length <= 300; length++) {
    const bytes = data.subarray(0, length);
    const expected = createHash('sha256').update(bytes).digest('hex');
    assert.equal(toHex(sha256Sync(bytes)), expected, `length ${length}`);
    const cut = Math.floor(length / 3);
    assert.equal(toHex(sha256Pieces([bytes.subarray(0, cut), bytes.subarray(cut, cut + 1), bytes.subarray(cut + 1)])), expected);
  }
  assert.equal(toHex(sha256Sync(utf8('abc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('HMAC-SHA256 with short and long keys', () => {
  const message = utf8('the message');
  for (const key of [utf8('k'), utf8('switchboard-test-key'), new Uint8Array(64).fill(1), new Uint8Array(100).fill(7)]) {
    assert.equal(toHex(hmacSha256Sync(key, message)), createHmac('sha256', key).update(message).digest('hex'));
  }
});

test('the HMAC example of PROTOCOL.md without Web Crypto', async () => {
  const key = await importHmacKey('switchboard-test-key', { webCrypto: false });
  assert.ok(key.raw, 'the plain-JavaScript key');
  const frame = encodePacket({ type: 'PUBLISH', requestId: 1, channel: 'chat', contentType: 'text/plain', content: utf8('hello') });
  const bytes = await encodeFrame(frame, key);
  assert.ok(toHex(bytes).endsWith('a1ca549758626c9ede379c8c76585fd15acc9989e3f50ffcf179663577b3e68d'));
});
