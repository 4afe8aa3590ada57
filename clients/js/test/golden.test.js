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

const SESSION = {
  clientId: 42n,
  sessionId: '01900000-0000-7000-8000-000000000001',
  heartbeatMs: 5000,
  maxFrame: 8388608,
  maxBody: 67108864,
  software: 'switchboard/0.1.0',
};
const MESSAGE_ID = '01890a5d-ac96-774b-bcce-b302099a8057';
const TIME_US = 1700000000000000;
const HELLO_WORLD_SHA256 = new Uint8Array(await crypto.subtle.digest('SHA-256', utf8('hello world')));

/**
 * What each entry's `desc` says, written out here from the words (not from any encoder):
 * the whole decoded packet, every property of it, must be this.
 */
const EXPECTED = {
  session_init: { type: 'SESSION_INIT', flags: 0, requestId: 1, name: 'alice', heartbeatMs: 5000 },
  session_ack: { type: 'SESSION_ACK', flags: 0, requestId: 1, ...SESSION },
  session_init_token: {
    type: 'SESSION_INIT',
    flags: 0,
    requestId: 1,
    name: 'deploy',
    heartbeatMs: 0,
    credentials: utf8('s3cret-token'),
  },
  session_init_password: {
    type: 'SESSION_INIT',
    flags: 0,
    requestId: 1,
    name: 'alice',
    heartbeatMs: 0,
    user: 'alice',
    password: utf8('hunter2'),
  },
  session_init_jwt: {
    type: 'SESSION_INIT',
    flags: 0,
    requestId: 1,
    name: 'svc',
    heartbeatMs: 0,
    jwt: utf8('eyJhbGciOiJIUzI1NiJ9.e30.sig'),
  },
  session_ack_user: { type: 'SESSION_ACK', flags: 0, requestId: 1, ...SESSION, name: 'alice', user: 'alice' },
  publish_batch: {
    type: 'PUBLISH',
    flags: 0x0060,
    requestId: 0x80000005,
    headers: [],
    channel: 'chat',
    contentType: 'text/plain',
    content: Uint8Array.of(0, 0, 0, 2, ...utf8('hi'), 0, 0, 0, 5, ...utf8('there')),
  },
  publish: {
    type: 'PUBLISH',
    flags: 0,
    requestId: 2,
    headers: [],
    channel: 'chat',
    contentType: 'text/plain',
    content: utf8('hi'),
  },
  publish_ack: { type: 'PUBLISH_ACK', flags: 0, requestId: 2, messageId: MESSAGE_ID, seq: 1 },
  message: {
    type: 'MESSAGE',
    flags: 0,
    requestId: 0,
    headers: [],
    channel: 'chat',
    messageId: MESSAGE_ID,
    seq: 1,
    time: TIME_US,
    senderId: 42n,
    senderName: 'alice',
    contentType: 'text/plain',
    content: utf8('hi'),
  },
  error_not_found: { type: 'ERROR', flags: 0, requestId: 3, code: 101, message: 'no such channel: nope' },
  heartbeat_pong: { type: 'HEARTBEAT', flags: Flag.PONG, requestId: 0 },
  publish_hmac: {
    type: 'PUBLISH',
    flags: Flag.MAC,
    requestId: 4,
    headers: [],
    channel: 'chat',
    contentType: 'text/plain',
    content: utf8('hi'),
  },
  relay: {
    type: 'RELAY',
    flags: 0,
    requestId: 5,
    receivers: [7n, 8n, 9n],
    contentType: 'text/plain',
    content: utf8('psst'),
  },
  subscribe: { type: 'SUBSCRIBE', flags: 0, requestId: 6, channel: 'chat.>', lastN: 10 },
  publish_group_headers: {
    type: 'PUBLISH',
    flags: Flag.NO_REPLY,
    requestId: 7,
    headers: [
      ['lang', 'fr'],
      ['émoji', '🎉'],
    ],
    channel: 'friends',
    scope: 1,
    content: utf8('salut'),
  },
  chunk_last: {
    type: 'CHUNK',
    flags: Flag.LAST,
    requestId: 8,
    streamId: 1,
    digest: HELLO_WORLD_SHA256,
    content: utf8(' world'),
  },
  list_groups_page: { type: 'LIST_GROUPS', flags: 0, requestId: 9, cursor: utf8('team'), limit: 50 },
  delete_channel: { type: 'DELETE_CHANNEL', flags: 0, requestId: 9, channel: 'news' },
  group_list_partial: {
    type: 'GROUP_LIST',
    flags: 0,
    requestId: 9,
    cursor: utf8('zoo'),
    records: [{ channel: 'zoo', description: 'animals', memberCount: 3 }],
  },
  event_group_deleted: {
    type: 'EVENT',
    flags: 0,
    requestId: 0,
    kind: 6,
    scope: 1,
    channel: 'friends',
    time: TIME_US,
  },
  error_rate_limited: {
    type: 'ERROR',
    flags: 0,
    requestId: 4,
    code: 111,
    message: 'publish rate of 10 per second (burst 20) reached; retry in 120 ms',
  },
  reload: { type: 'RELOAD', flags: 0, requestId: 5 },
  event_subscription_revoked: {
    type: 'EVENT',
    flags: 0,
    requestId: 0,
    kind: 7,
    channel: 'chat.*',
    subscriptionId: 3n,
    time: TIME_US,
  },
};

test('every golden frame decodes to what it describes and encodes back byte for byte', async () => {
  const entries = goldenEntries();
  assert.ok(entries.length >= 23, `found ${entries.length} golden entries`);
  const named = entries.map((entry) => entry.name);
  assert.deepEqual(new Set(named).size, named.length, 'golden names are unique');
  // Both ways: a frame added to the file needs its description written out here.
  assert.deepEqual(named.toSorted(), Object.keys(EXPECTED).toSorted(), 'every golden entry has its expectation');
  for (const entry of entries) {
    const packet = await decodeGolden(entry);
    assert.deepEqual({ ...packet }, EXPECTED[entry.name], `${entry.name} decoded`);
    const key = entry.key === undefined ? undefined : await importHmacKey(entry.key);
    const bytes = await encodeFrame(encodePacket(packet), key);
    assert.equal(toHex(bytes), entry.hex, `${entry.name} re-encoded`);
    // Encoded from the expectation alone, not from what was decoded.
    const fromWords = await encodeFrame(encodePacket(structuredClone(EXPECTED[entry.name])), key);
    assert.equal(toHex(fromWords), entry.hex, `${entry.name} encoded from its description`);
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
