// A server whose frames are smaller than a streaming chunk: bodies over its max_frame go
// up and come back in chunks that fit its frames, live, fetched and replayed.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';

import { Client } from '../src/index.js';
import { nextWithin, startServer } from './support.js';

const MAX_FRAME = 16 * 1024;
let server;

before(async () => {
  server = await startServer({ args: ['--max-frame', '16KiB'] });
});

after(async () => {
  await server.stop();
});

const digest = (bytes) => createHash('sha256').update(bytes).digest('hex');

function body(length) {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31) % 251;
  return bytes;
}

test('bodies over a small max_frame are streamed both ways, live, fetched and replayed', async () => {
  const publisher = await Client.connect(server.url, { name: 'uploader' });
  const reader = await Client.connect(server.url, { name: 'downloader' });
  assert.equal(publisher.session.limits.maxFrame, MAX_FRAME);
  const live = (await reader.subscribe('small.frames'))[Symbol.asyncIterator]();

  const bodies = [body(100 * 1024), body(3 * 1024 * 1024)];
  const ids = [];
  for (const data of bodies) {
    const ack = await publisher.publish('small.frames', data, { contentType: 'application/octet-stream' });
    ids.push(ack.id);
    const { value: message } = await nextWithin(live, 20_000);
    assert.equal(message.id, ack.id);
    assert.equal(digest(message.body), digest(data), 'live: the body arrives whole');
  }

  for (const [index, id] of ids.entries()) {
    const fetched = await reader.getMessage('small.frames', id);
    assert.equal(digest(fetched.body), digest(bodies[index]), 'fetched: the body arrives whole');
  }

  const replay = await reader.subscribe('small.frames', { replay: { last: 2 } });
  const replayed = replay[Symbol.asyncIterator]();
  for (const [index, id] of ids.entries()) {
    const { value: message } = await nextWithin(replayed, 20_000);
    assert.equal(message.id, id);
    assert.equal(digest(message.body), digest(bodies[index]), 'replayed: the body arrives whole');
  }

  await replay.close();
  await publisher.close();
  await reader.close();
});
