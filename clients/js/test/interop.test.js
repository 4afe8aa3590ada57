// The JavaScript client and the Rust CLI on one server: the CLI speaks TCP, the client
// WebSocket, and each receives what the other publishes or relays.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';

import { Client } from '../src/index.js';
import { BIN, cli, nextWithin, startServer } from './support.js';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server.stop();
});

/** A CLI process whose stdout is read line by line. */
function spawnCli(args) {
  const child = spawn(BIN, ['--server', server.tcp, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, lines, exited, stderr: () => stderr };
}

test('a message published with the CLI arrives in a JavaScript subscription', async () => {
  const client = await Client.connect(server.url, { name: 'js-reader' });
  const subscription = await client.subscribe('interop.from-cli');
  await cli(['--server', server.tcp, '--name', 'rust-cli', 'pub', 'interop.from-cli', 'hello from #rust', '--header', 'k=v']);
  const { value } = await nextWithin(subscription[Symbol.asyncIterator]());
  assert.equal(value.text(), 'hello from #rust');
  assert.equal(value.from.name, 'rust-cli');
  assert.match(value.contentType, /^text\/plain/);
  assert.deepEqual(value.headers, [['k', 'v']]);
  await subscription.close();
  await client.close();
});

test('messages published with JavaScript arrive in a CLI subscription, replayed and live', async () => {
  const client = await Client.connect(server.url, { name: 'js-writer' });
  await client.publish('interop.from-js', 'first', { headers: [['lang', 'js']] });
  const sub = spawnCli(['--json', 'sub', 'interop.from-js', '--last', '1', '--count', '2']);
  try {
    const replayed = JSON.parse((await nextWithin(sub.lines, 10_000)).value);
    assert.equal(replayed.payload, 'first');
    assert.equal(replayed.replay, true);
    assert.equal(replayed.from, 'js-writer');
    // The CLI is subscribed now: the next one arrives live.
    await client.publish('interop.from-js', JSON.stringify({ live: true }), { contentType: 'application/json' });
    const live = JSON.parse((await nextWithin(sub.lines, 10_000)).value);
    assert.equal(live.seq, 2);
    assert.ok(!live.replay);
    assert.equal(live.content_type, 'application/json');
    assert.equal(await sub.exited, 0, sub.stderr());
  } finally {
    sub.child.kill();
  }
  await client.close();
});

test('a relay from JavaScript reaches a CLI listener, and one from the CLI reaches JavaScript', async () => {
  const client = await Client.connect(server.url, { name: 'js-relay' });
  const direct = client.directFeed();
  const listener = spawnCli(['--name', 'cli-listener', 'listen']);
  try {
    const firstLine = (await nextWithin(listener.lines, 10_000)).value;
    const listenerId = BigInt(/(\d+)/.exec(firstLine)[1]);
    const results = await client.relay([listenerId], 'to the cli');
    assert.deepEqual(results, [{ clientId: listenerId, status: 'delivered' }]);
    const received = (await nextWithin(listener.lines, 10_000)).value;
    assert.match(received, /to the cli/);

    await cli(['--server', server.tcp, '--name', 'cli-relay', 'relay', '--to', String(client.session.clientId), 'to the js']);
    const { value } = await nextWithin(direct[Symbol.asyncIterator]());
    assert.equal(value.text(), 'to the js');
    assert.equal(value.from.name, 'cli-relay');
  } finally {
    listener.child.kill();
    direct.close();
  }
  await client.close();
});
