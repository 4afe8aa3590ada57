// Bodies larger than a frame: streamed in chunks to the server and back, with progress.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';

import { Client } from '../src/index.js';
import { nextWithin, rejectsWith, startServer } from './support.js';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server.stop();
});

function bigBody(length) {
  const body = new Uint8Array(length);
  let state = 12345;
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    body[i] = state >>> 24;
  }
  return body;
}

const digest = (bytes) => createHash('sha256').update(bytes).digest('hex');

test('a body over the frame limit is streamed both ways, with progress', async () => {
  const publisher = await Client.connect(server.url, { name: 'uploader' });
  const reader = await Client.connect(server.url, { name: 'downloader' });
  const maxFrame = publisher.session.limits.maxFrame;
  const body = bigBody(maxFrame + 1024 * 1024 + 17);
  const received = [];
  const subscription = await reader.subscribe('big.files', {
    onProgress: (bytes, total) => received.push([bytes, total]),
  });

  const sent = [];
  const ack = await publisher.publish('big.files', body, {
    contentType: 'application/octet-stream',
    onProgress: (bytes, total) => sent.push([bytes, total]),
  });
  assert.equal(ack.seq, 1);
  assert.ok(sent.length >= 2, `progress reported ${sent.length} times`);
  assert.deepEqual(sent.at(-1), [body.length, body.length]);
  for (let i = 1; i < sent.length; i++) assert.ok(sent[i][0] > sent[i - 1][0]);

  const { value: live } = await nextWithin(subscription[Symbol.asyncIterator](), 30_000);
  assert.equal(live.id, ack.id);
  assert.equal(live.body.length, body.length);
  assert.equal(digest(live.body), digest(body));
  assert.ok(received.length >= 2, `download progress reported ${received.length} times`);
  assert.deepEqual(received.at(-1), [body.length, body.length]);

  // A small message published after the big one is not lost behind it.
  await publisher.publish('big.files', 'small');
  assert.equal((await nextWithin(subscription[Symbol.asyncIterator]())).value.text(), 'small');

  const fetched = [];
  const history = await reader.history('big.files', { onProgress: (bytes) => fetched.push(bytes) });
  assert.equal(history.length, 2);
  assert.equal(digest(history[0].body), digest(body));
  assert.equal(history[1].text(), 'small');
  assert.equal(fetched.at(-1), body.length);
  const byId = await reader.getMessage('big.files', ack.id);
  assert.equal(digest(byId.body), digest(body));

  await subscription.close();
  await publisher.close();
  await reader.close();
});

test('a streamed body over the channel limit is refused with TOO_LARGE', async () => {
  const client = await Client.connect(server.url, { name: 'limited' });
  await client.createChannel('big.capped', { maxBody: 9 * 1024 * 1024 });
  const body = new Uint8Array(10 * 1024 * 1024);
  await rejectsWith(assert, client.publish('big.capped', body), 'TOO_LARGE', 103);
  // The session goes on.
  assert.equal((await client.publish('big.capped', 'fits')).seq, 1);
  await client.close();
});
