// Pub/sub throughput of the JavaScript client under Node: one publisher and one
// subscriber, each its own session over WebSocket, 1 KiB bodies by default.
//
//   node --experimental-websocket bench/pubsub.mjs [--url ws://HOST:PORT/ws]
//        [--count 100000] [--size 1024] [--window 256]
//
// Without --url it starts a server (SWITCHBOARD_BIN, else target/debug/switchboard:
// build with --release for figures worth comparing) on port 0 with history in memory.
// Publishes are acknowledged; --window of them are in flight at once.

import { parseArgs } from 'node:util';

import { Client } from '../src/index.js';
import { startServer } from '../test/support.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    count: { type: 'string', default: '100000' },
    size: { type: 'string', default: '1024' },
    window: { type: 'string', default: '256' },
  },
});
const count = Number(values.count);
const size = Number(values.size);
const window = Number(values.window);
for (const [name, value] of Object.entries({ count, size, window })) {
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer`);
}

const thousands = (n) => Math.round(n).toLocaleString('en-US');
const server = values.url ? null : await startServer();
const url = values.url ?? server.url;

try {
  const publisher = await Client.connect(url, { name: 'bench-pub' });
  const subscriber = await Client.connect(url, { name: 'bench-sub' });
  const channel = `bench.js.${Date.now()}`;
  const subscription = await subscriber.subscribe(channel);
  const body = new Uint8Array(size).fill(0x61);

  let received = 0;
  let receivedAt = 0;
  const receiving = (async () => {
    for await (const message of subscription) {
      if (message.body.length !== size) throw new Error(`a body of ${message.body.length} bytes`);
      if (++received === count) {
        receivedAt = performance.now();
        break;
      }
    }
  })();

  const start = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      await publisher.publish(channel, body, { contentType: 'application/octet-stream' });
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, count) }, worker));
  const publishedAt = performance.now();
  await receiving;

  const pubSeconds = (publishedAt - start) / 1000;
  const subSeconds = (receivedAt - start) / 1000;
  const sizeText = size % 1024 === 0 ? `${size / 1024} KiB` : `${size} B`;
  console.log(`pubsub (JavaScript client, WebSocket, Node ${process.versions.node}) ${server ? 'server started here' : `server ${url}`}`);
  console.log(`  1 publisher, 1 subscriber, ${sizeText} bodies, ${thousands(count)} messages, ${window} in flight`);
  console.log(`\n  ${''.padEnd(10)} ${'messages'.padStart(13)} ${'msgs/s'.padStart(13)} ${'MB/s'.padStart(10)} ${'seconds'.padStart(9)}`);
  const row = (label, seconds) =>
    console.log(
      `  ${label.padEnd(10)} ${thousands(count).padStart(13)} ${thousands(count / seconds).padStart(13)} ${((count * size) / seconds / 1e6).toFixed(2).padStart(10)} ${seconds.toFixed(3).padStart(9)}`,
    );
  row('published', pubSeconds);
  row('received', subSeconds);

  await subscription.close();
  await publisher.close();
  await subscriber.close();
} finally {
  await server?.stop();
}
