// The golden frames of the Rust crate, decoded and re-encoded byte for byte; and the
// checksum, varint and HMAC values of PROTOCOL.md.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { fromHex, toHex, utf8 } from '../src/bytes.js';
import { crc32c } from '../src/crc32c.js';
import { DecodeError, readVarint, writeVarint } from '../src/fields.js';
import { Flag, FrameReader, FramingError, encodeFrame, verifyTag } from '../src/frame.js';
import { importHmacKey } from '../src/hmac.js';
import { decodePacket, encodePacket } from '../src/packets.js';

const GOLDEN = new URL('../../../crates/switchboard-proto/tests/golden/frames.txt', import.meta.url);

function goldenEntries() {
  const text = readFileSync(GOLDEN, 'utf8');
  const entries = [];
  for (const block of text.split(/\n\s*\n/)) {
    const entry = {};
    for (const line of block.split('\n')) {
      if (line.startsWith('#') || line.trim() === '') continue;
      const at = line.indexOf(': ');
      assert.ok(at > 0, `a golden line without a field: ${line}`);
      entry[line.slice(0, at)] = line.slice(at + 2);
    }
    if (entry.name) entries.push(entry);
  }
  return entries;
}

async function decodeGolden(entry) {
  const reader = new FrameReader({ mac: entry.key !== undefined });
  reader.push(fromHex(entry.hex));
  const frame = reader.next();
  assert.ok(frame, `${entry.name}: a whole frame`);
  assert.equal(reader.buffered, 0, `${entry.name}: nothing left over`);
  assert.equal(frame.macMismatch, false);
  if (entry.key !== undefined) {
    assert.ok(await verifyTag(frame, await importHmacKey(entry.key)), `${entry.name}: tag verifies`);
  }
  return decodePacket(frame);
}

/** What each entry's `desc` says, checked on the decoded packet. */
const EXPECTED = {
  session_init: { type: 'SESSION_INIT', requestId: 1, name: 'alice', heartbeatMs: 5000 },
  session_ack: {
    type: 'SESSION_ACK',
    clientId: 42n,
    sessionId: '01900000-0000-7000-8000-000000000001',
    heartbeatMs: 5000,
    maxFrame: 8388608,
    maxBody: 67108864,
    software: 'switchboard/0.1.0',
  },
  session_init_token: { name: 'deploy', heartbeatMs: 0, credentials: utf8('s3cret-token') },
  session_init_password: { name: 'alice', user: 'alice', password: utf8('hunter2') },
  session_init_jwt: { name: 'svc', jwt: utf8('eyJhbGciOiJIUzI1NiJ9.e30.sig') },
  session_ack_user: { clientId: 42n, name: 'alice', user: 'alice' },
  publish: { type: 'PUBLISH', requestId: 2, channel: 'chat', contentType: 'text/plain', content: utf8('hi') },
  publish_ack: { type: 'PUBLISH_ACK', messageId: '01890a5d-ac96-774b-bcce-b302099a8057', seq: 1 },
  message: {
    type: 'MESSAGE',
    requestId: 0,
    channel: 'chat',
    seq: 1,
    time: 1700000000000000,
    senderId: 42n,
    senderName: 'alice',
    content: utf8('hi'),
  },
  error_not_found: { type: 'ERROR', requestId: 3, code: 101, message: 'no such channel: nope' },
  heartbeat_pong: { type: 'HEARTBEAT', flags: Flag.PONG },
  publish_hmac: { type: 'PUBLISH', requestId: 4, flags: Flag.MAC, channel: 'chat', content: utf8('hi') },
  relay: { type: 'RELAY', receivers: [7n, 8n, 9n], contentType: 'text/plain', content: utf8('psst') },
  subscribe: { type: 'SUBSCRIBE', channel: 'chat.>', lastN: 10 },
  publish_group_headers: {
    channel: 'friends',
    scope: 1,
    flags: Flag.NO_REPLY,
    headers: [
      ['lang', 'fr'],
      ['émoji', '🎉'],
    ],
    content: utf8('salut'),
  },
  chunk_last: { type: 'CHUNK', streamId: 1, flags: Flag.LAST, content: utf8(' world') },
  list_groups_page: { type: 'LIST_GROUPS', cursor: utf8('team'), limit: 50 },
  delete_channel: { type: 'DELETE_CHANNEL', channel: 'news' },
  group_list_partial: {
    type: 'GROUP_LIST',
    cursor: utf8('zoo'),
    records: [{ channel: 'zoo', description: 'animals', memberCount: 3 }],
  },
  event_group_deleted: { type: 'EVENT', kind: 6, scope: 1, channel: 'friends', time: 1700000000000000 },
  error_rate_limited: { type: 'ERROR', code: 111 },
  reload: { type: 'RELOAD', requestId: 5 },
  event_subscription_revoked: { type: 'EVENT', kind: 7, subscriptionId: 3n, channel: 'chat.*' },
};

test('every golden frame decodes to what it describes and encodes back byte for byte', async () => {
  const entries = goldenEntries();
  assert.ok(entries.length >= 23, `found ${entries.length} golden entries`);
  const described = entries.filter((entry) => EXPECTED[entry.name]).length;
  assert.equal(described, Object.keys(EXPECTED).length, 'every expectation has its golden entry');
  for (const entry of entries) {
    const packet = await decodeGolden(entry);
    // Entries added later are still checked byte for byte below.
    for (const [property, value] of Object.entries(EXPECTED[entry.name] ?? {})) {
      assert.deepEqual(packet[property], value, `${entry.name}: ${property}`);
    }
    const key = entry.key === undefined ? undefined : await importHmacKey(entry.key);
    const bytes = await encodeFrame(encodePacket(packet), key);
    assert.equal(toHex(bytes), entry.hex, `${entry.name} re-encoded`);
  }
});

test('the chunk digest is SHA-256 of the whole body', async () => {
  const entry = goldenEntries().find((e) => e.name === 'chunk_last');
  const packet = await decodeGolden(entry);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', utf8('hello world')));
  assert.deepEqual(packet.digest, digest);
});

test('a frame arriving one byte at a time is read once whole', async () => {
  const entry = goldenEntries().find((e) => e.name === 'message');
  const bytes = fromHex(entry.hex);
  const reader = new FrameReader();
  for (let i = 0; i < bytes.length - 1; i++) {
    reader.push(bytes.subarray(i, i + 1));
    assert.equal(reader.next(), null);
  }
  reader.push(bytes.subarray(bytes.length - 1));
  assert.equal(decodePacket(reader.next()).channel, 'chat');
});

test('corrupt frames are refused with the protocol code', () => {
  const bytes = fromHex(goldenEntries().find((e) => e.name === 'publish').hex);
  const cases = [
    [0, 'BAD_FRAME'], // sync
    [2, 'UNSUPPORTED_VERSION'],
    [25, 'BAD_FRAME'], // header CRC
    [bytes.length - 1, 'BAD_FRAME'], // content CRC
  ];
  for (const [at, code] of cases) {
    const corrupt = bytes.slice();
    corrupt[at] ^= 0x40;
    const reader = new FrameReader();
    reader.push(corrupt);
    assert.throws(() => reader.next(), (error) => error instanceof FramingError && error.code === code, `byte ${at}`);
  }
  const tooLong = bytes.slice();
  new DataView(tooLong.buffer).setUint32(12, 9 * 1024 * 1024);
  const reader = new FrameReader();
  reader.push(tooLong);
  assert.throws(() => reader.next(), (error) => error.code === 'FRAME_TOO_LARGE');
});

test('a tag made with another key does not verify', async () => {
  const entry = goldenEntries().find((e) => e.name === 'publish_hmac');
  const reader = new FrameReader({ mac: true });
  reader.push(fromHex(entry.hex));
  assert.equal(await verifyTag(reader.next(), await importHmacKey('another key')), false);
});

test('CRC32C check values', () => {
  assert.equal(crc32c(utf8('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  assert.equal(crc32c(utf8('hello')), 0x9a71bb4c);
  const long = new Uint8Array(1000).map((_, i) => (i * 31) & 0xff);
  assert.equal(crc32c(long.subarray(500), crc32c(long.subarray(0, 500))), crc32c(long));
});

test('varints of PROTOCOL.md', () => {
  const cases = [
    [0, '00'],
    [1, '01'],
    [127, '7f'],
    [128, '8001'],
    [300, 'ac02'],
    [10000, '904e'],
    [8388608, '80808004'],
    [2n ** 64n - 1n, 'ffffffffffffffffff01'],
  ];
  for (const [value, hex] of cases) {
    const out = [];
    writeVarint(out, value);
    assert.equal(toHex(Uint8Array.from(out)), hex);
    assert.equal(readVarint(fromHex(hex), 0).value, value);
  }
  assert.throws(() => readVarint(fromHex('ffffffffffffffffff02'), 0), DecodeError);
  assert.throws(() => readVarint(fromHex('8080'), 0), DecodeError);
});

test('the HMAC example of PROTOCOL.md', async () => {
  const frame = encodePacket({ type: 'PUBLISH', requestId: 1, channel: 'chat', contentType: 'text/plain', content: utf8('hello') });
  const bytes = await encodeFrame(frame, await importHmacKey('switchboard-test-key'));
  assert.ok(toHex(bytes).endsWith('a1ca549758626c9ede379c8c76585fd15acc9989e3f50ffcf179663577b3e68d'));
  assert.equal(toHex((await encodeFrame({ type: 0x03 })).subarray(20)), '2a40b47c');
});
