// Failures of the connection itself: a server that stops answering (TIMEOUT) and one
// that goes away (CLOSED), seen by requests, subscriptions, feeds and `closed`.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Client } from '../src/index.js';
import { readFileSync } from 'node:fs';

import { rejectsWith, startServer } from './support.js';

/** Waits until the kernel reports the process stopped (state T). */
async function waitUntilStopped(server) {
  for (let i = 0; i < 200; i++) {
    const stat = readFileSync(`/proc/${server.pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('the server did not stop');
}

test('a request without an answer fails with TIMEOUT, and the session goes on', { skip: process.platform !== 'linux' && 'stops the server with SIGSTOP, watched in /proc' }, async () => {
  const server = await startServer();
  try {
    const client = await Client.connect(server.url, { name: 'patient', requestTimeoutMs: 300 });
    server.signal('SIGSTOP');
    await waitUntilStopped(server);
    try {
      await rejectsWith(assert, client.identity(), 'TIMEOUT', 0);
    } finally {
      server.signal('SIGCONT');
    }
    assert.equal((await client.identity()).name, 'patient');
    await client.close();
  } finally {
    await server.stop();
  }
});

test('a server that goes away ends requests, subscriptions, feeds and closed with CLOSED', { skip: process.platform !== 'linux' && 'stops the server with SIGSTOP, watched in /proc' }, async () => {
  const server = await startServer();
  try {
    const client = await Client.connect(server.url, { name: 'abandoned' });
    const subscription = await client.subscribe('gone.>');
    const feed = client.directFeed();
    const reading = subscription[Symbol.asyncIterator]().next();
    const feeding = feed[Symbol.asyncIterator]().next();
    server.signal('SIGSTOP');
    await waitUntilStopped(server);
    const pending = client.stats();
    server.signal('SIGKILL');
    server.signal('SIGCONT');
    await rejectsWith(assert, pending, 'CLOSED', 0);
    await rejectsWith(assert, reading, 'CLOSED', 0);
    await rejectsWith(assert, feeding, 'CLOSED', 0);
    await rejectsWith(assert, client.closed, 'CLOSED', 0);
    await rejectsWith(assert, client.publish('gone.x', 'late'), 'CLOSED', 0);
  } finally {
    await server.stop();
  }
});
