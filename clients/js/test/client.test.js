// Every operation of the client end to end, against a real server over WebSocket.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Client, SwitchboardError } from '../src/index.js';
import { nextWithin, rejectsWith, startServer } from './support.js';

let server;
const clients = [];

async function connect(name, options = {}) {
  const client = await Client.connect(server.url, { name, ...options });
  clients.push(client);
  return client;
}

before(async () => {
  server = await startServer();
});

after(async () => {
  await Promise.all(clients.map((client) => client.close()));
  await server.stop();
});

test('a session: its info, identity and close', async () => {
  const client = await Client.connect(server.url, { name: 'sessions' });
  const { session } = client;
  assert.equal(typeof session.clientId, 'bigint');
  assert.ok(session.clientId > 0n);
  assert.match(session.sessionId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.equal(session.name, 'sessions');
  assert.equal(session.user, null);
  assert.equal(session.heartbeatMs, 5000);
  assert.equal(session.limits.maxFrame, 8 * 1024 * 1024);
  assert.ok(session.limits.maxBody >= session.limits.maxFrame);
  assert.match(session.serverSoftware, /^switchboard\//);
  const identity = await client.identity();
  assert.equal(identity.clientId, session.clientId);
  assert.equal(identity.name, 'sessions');
  assert.equal(identity.sessionId, session.sessionId);
  assert.ok(identity.connectedSinceUs > 1_600_000_000_000_000);
  await client.close();
  await client.closed;
  await rejectsWith(assert, client.identity(), 'CLOSED', 0);
});

test('publish, then a live subscriber receives it with its metadata', async () => {
  const alice = await connect('alice-live');
  const bob = await connect('bob-live');
  const subscription = await bob.subscribe('live.news');
  assert.equal(subscription.replayCount, 0);
  const ack = await alice.publish('live.news', 'hello', { headers: { lang: 'en', 'x-émoji': '🎉' } });
  assert.equal(ack.channel, 'live.news');
  assert.equal(ack.seq, 1);
  assert.match(ack.id, /^[0-9a-f-]{36}$/);
  assert.ok(Math.abs(ack.timestampUs / 1000 - Date.now()) < 60_000);
  const iterator = subscription[Symbol.asyncIterator]();
  const { value: message } = await nextWithin(iterator);
  assert.equal(message.channel, 'live.news');
  assert.equal(message.seq, 1);
  assert.equal(message.id, ack.id);
  assert.equal(message.text(), 'hello');
  assert.equal(message.contentType, 'text/plain');
  assert.deepEqual(message.headers, [
    ['lang', 'en'],
    ['x-émoji', '🎉'],
  ]);
  assert.deepEqual(message.from, { clientId: alice.session.clientId, name: 'alice-live' });
  assert.equal(message.replay, false);
  assert.ok(message.timestampUs >= ack.timestampUs);
  await subscription.close();
  assert.equal((await iterator.next()).done, true);
});

test('bodies as bytes, buffers, blobs and JSON', async () => {
  const client = await connect('bodies');
  const subscription = await client.subscribe('bodies.*');
  const iterator = subscription[Symbol.asyncIterator]();
  await client.publish('bodies.bytes', Uint8Array.of(0, 1, 255));
  await client.publish('bodies.buffer', Uint8Array.of(7, 8).buffer, { contentType: 'application/x-test' });
  await client.publish('bodies.blob', new Blob(['{"a":1}'], { type: 'application/json' }));
  const bytes = (await nextWithin(iterator)).value;
  assert.deepEqual(bytes.body, Uint8Array.of(0, 1, 255));
  assert.equal(bytes.contentType, '');
  const buffer = (await nextWithin(iterator)).value;
  assert.deepEqual(buffer.body, Uint8Array.of(7, 8));
  assert.equal(buffer.contentType, 'application/x-test');
  const blob = (await nextWithin(iterator)).value;
  assert.equal(blob.contentType, 'application/json');
  assert.deepEqual(blob.json(), { a: 1 });
  await subscription.close();
});

test('replay: last n, since a seq, since a time, all', async () => {
  const client = await connect('replayer');
  const acks = [];
  for (let i = 1; i <= 5; i++) acks.push(await client.publish('replay.log', `m${i}`));
  const texts = async (replay, count) => {
    const subscription = await client.subscribe('replay.log', { replay });
    assert.equal(subscription.replayCount, count);
    const iterator = subscription[Symbol.asyncIterator]();
    const out = [];
    for (let i = 0; i < count; i++) {
      const { value } = await nextWithin(iterator);
      assert.equal(value.replay, true);
      out.push(value.text());
    }
    await subscription.close();
    return out;
  };
  assert.deepEqual(await texts({ last: 2 }, 2), ['m4', 'm5']);
  assert.deepEqual(await texts({ sinceSeq: 3 }, 3), ['m3', 'm4', 'm5']);
  assert.deepEqual(await texts('all', 5), ['m1', 'm2', 'm3', 'm4', 'm5']);
  const fourth = await client.history('replay.log', { sinceSeq: 4, limit: 1 });
  // Milliseconds with a fraction: the exact microsecond of the fourth message.
  const fromTime = await texts({ sinceTime: fourth[0].timestampUs / 1000 }, 2);
  assert.deepEqual(fromTime, ['m4', 'm5']);
});

test('a replay is followed by live messages, without a gap or a duplicate', async () => {
  const client = await connect('gapless');
  await client.publish('gapless.a', 'old');
  const subscription = await client.subscribe('gapless.a', { replay: 'all' });
  await client.publish('gapless.a', 'new');
  const iterator = subscription[Symbol.asyncIterator]();
  assert.equal((await nextWithin(iterator)).value.text(), 'old');
  const live = (await nextWithin(iterator)).value;
  assert.equal(live.text(), 'new');
  assert.equal(live.replay, false);
  await subscription.close();
});

test('wildcards and hashtags route each live message once to each matching subscription', async () => {
  const publisher = await connect('router-pub');
  const reader = await connect('router-sub');
  const star = await reader.subscribe('route.*');
  const rest = await reader.subscribe('route.>');
  const tag = await reader.subscribe('#Rust');
  const both = await reader.subscribe(['route.a', 'route.*']);
  const next = (subscription) => nextWithin(subscription[Symbol.asyncIterator]()).then((r) => r.value.text());
  await publisher.publish('route.a.b', 'deep');
  await publisher.publish('route.a', 'I like #rust');
  await publisher.publish('elsewhere', 'more #RUST here');
  assert.equal(await next(star), 'I like #rust');
  assert.equal(await next(rest), 'deep');
  assert.equal(await next(rest), 'I like #rust');
  assert.equal(await next(tag), 'I like #rust');
  assert.equal(await next(tag), 'more #RUST here');
  // Matched by both of its patterns, delivered once.
  assert.equal(await next(both), 'I like #rust');
  await publisher.publish('route.z', 'marker');
  assert.equal(await next(both), 'marker');
  for (const subscription of [star, rest, tag, both]) await subscription.close();
});

test('history, latest and one message by id', async () => {
  const client = await connect('historian');
  const acks = [];
  for (let i = 1; i <= 4; i++) acks.push(await client.publish('hist.a', `h${i}`));
  const texts = (messages) => messages.map((message) => message.text());
  assert.deepEqual(texts(await client.history('hist.a')), ['h1', 'h2', 'h3', 'h4']);
  assert.deepEqual(texts(await client.history('hist.a', { last: 2 })), ['h3', 'h4']);
  assert.deepEqual(texts(await client.history('hist.a', { sinceSeq: 2, limit: 2 })), ['h2', 'h3']);
  const all = await client.history('hist.a');
  assert.ok(all.every((message) => message.replay));
  assert.equal((await client.latest('hist.a')).text(), 'h4');
  assert.equal(await client.latest('hist.nothing'), null);
  const second = await client.getMessage('hist.a', acks[1].id);
  assert.equal(second.text(), 'h2');
  assert.equal(second.seq, 2);
  await rejectsWith(assert, client.getMessage('hist.a', '01900000-0000-7000-8000-000000000001'), 'NOT_FOUND', 101);
  await rejectsWith(assert, client.history('hist.never'), 'NOT_FOUND', 101);
});

test('messages by hashtag', async () => {
  const client = await connect('tagger');
  await client.publish('tags.a', 'first #JsTest');
  await client.publish('tags.b', 'nothing here');
  await client.publish('tags.c', 'second #jstest');
  const messages = await client.tagMessages('#jstest');
  assert.deepEqual(
    messages.map((message) => [message.channel, message.text()]),
    [
      ['tags.a', 'first #JsTest'],
      ['tags.c', 'second #jstest'],
    ],
  );
  assert.deepEqual((await client.tagMessages('jstest', { last: 1 })).map((m) => m.channel), ['tags.c']);
});

test('channels: create with options, list, refusals, delete', async () => {
  const client = await connect('channeler');
  const info = await client.createChannel('opts.short', { maxChars: 5, maxHistory: 3, slowConsumer: 'drop-oldest' });
  assert.equal(info.name, 'opts.short');
  assert.equal(info.maxChars, 5);
  assert.equal(info.maxHistory, 3);
  assert.equal(info.slowConsumer, 'drop-oldest');
  assert.equal(info.messages, 0);
  // The same options again find the channel; others are refused.
  assert.equal((await client.createChannel('opts.short', { maxChars: 5 })).name, 'opts.short');
  await rejectsWith(assert, client.createChannel('opts.short', { maxChars: 6 }), 'ALREADY_EXISTS', 102);
  await rejectsWith(assert, client.publish('opts.short', 'too long'), 'TOO_MANY_CHARACTERS', 104);
  for (let i = 0; i < 5; i++) await client.publish('opts.short', `x${i}`);
  const listed = (await client.channels()).find((channel) => channel.name === 'opts.short');
  assert.equal(listed.messages, 3);
  assert.equal(listed.firstSeq, 3);
  assert.equal(listed.lastSeq, 5);
  await rejectsWith(assert, client.createChannel('bad name'), 'INVALID_ARGUMENT', 100);
  await rejectsWith(assert, client.publish('a..b', 'x'), 'INVALID_ARGUMENT', 100);
  await client.deleteChannel('opts.short');
  assert.equal((await client.channels()).some((channel) => channel.name === 'opts.short'), false);
  await rejectsWith(assert, client.deleteChannel('opts.short'), 'NOT_FOUND', 101);
});

test('deleting a channel ends the subscriptions that name it', async () => {
  const client = await connect('deleter');
  await client.publish('doomed', 'x');
  const exact = await client.subscribe('doomed');
  await client.deleteChannel('doomed');
  await assert.rejects(nextWithin(exact[Symbol.asyncIterator]()), (error) => error.code === 'NOT_FOUND');
});

test('many publishes in flight at once are numbered in the order sent', async () => {
  const client = await connect('pipeliner');
  const acks = await Promise.all(Array.from({ length: 200 }, (_, i) => client.publish('pipe.line', `p${i}`)));
  assert.deepEqual(
    acks.map((ack) => ack.seq),
    Array.from({ length: 200 }, (_, i) => i + 1),
  );
  const history = await client.history('pipe.line', { last: 3 });
  assert.deepEqual(history.map((message) => message.text()), ['p197', 'p198', 'p199']);
});

test('groups: create, join, members, post, feed, history, leave', async () => {
  const ann = await connect('ann');
  const ben = await connect('ben');
  await ann.createGroup('crew', 'the crew');
  await rejectsWith(assert, ann.createGroup('crew'), 'ALREADY_EXISTS', 102);
  const feed = ben.groupFeed();
  const events = feed[Symbol.asyncIterator]();
  await ann.joinGroup('crew');
  await ben.joinGroup('crew');
  const joined = (await nextWithin(events)).value;
  assert.deepEqual([joined.group, joined.kind, joined.member], ['crew', 'join', 'ben']);
  const listed = (await ann.groups()).find((group) => group.name === 'crew');
  assert.deepEqual(listed, { name: 'crew', description: 'the crew', members: 2 });
  const members = await ann.groupMembers('crew');
  assert.deepEqual(
    members.map((member) => [member.name, member.online]),
    [
      ['ann', true],
      ['ben', true],
    ],
  );
  const ack = await ann.post('crew', 'ahoy');
  assert.equal(ack.seq, 1);
  const posted = (await nextWithin(events)).value;
  assert.equal(posted.kind, 'message');
  assert.equal(posted.group, 'crew');
  assert.equal(posted.message.text(), 'ahoy');
  assert.equal(posted.message.scope, 'group');
  assert.deepEqual(posted.message.from, { clientId: ann.session.clientId, name: 'ann' });
  const history = await ben.groupMessages('crew', { sinceTime: new Date(0) });
  assert.deepEqual(history.map((message) => message.text()), ['ahoy']);
  await ann.leaveGroup('crew');
  const left = (await nextWithin(events)).value;
  assert.deepEqual([left.kind, left.member], ['leave', 'ann']);
  await rejectsWith(assert, ann.post('crew', 'still here?'), 'FORBIDDEN', 106);
  await rejectsWith(assert, ann.groupMessages('crew'), 'FORBIDDEN', 106);
  await rejectsWith(assert, ann.joinGroup('no-such-group'), 'NOT_FOUND', 101);
  feed.close();
  assert.equal((await events.next()).done, true);
});

test('relay to clients by id, received in the direct feed', async () => {
  const sender = await connect('relay-sender');
  const receiver = await connect('relay-receiver');
  const direct = receiver.directFeed();
  const listed = await sender.clients();
  const entry = listed.find((client) => client.name === 'relay-receiver');
  assert.equal(entry.clientId, receiver.session.clientId);
  assert.ok(entry.connectedSinceUs > 0);
  assert.equal(listed.some((client) => client.clientId === sender.session.clientId), false);
  const results = await sender.relay([receiver.session.clientId, 999_999], 'psst');
  assert.deepEqual(results, [
    { clientId: receiver.session.clientId, status: 'delivered' },
    { clientId: 999_999n, status: 'unknown' },
  ]);
  const { value } = await nextWithin(direct[Symbol.asyncIterator]());
  assert.deepEqual(value.from, { clientId: sender.session.clientId, name: 'relay-sender' });
  assert.equal(value.text(), 'psst');
  assert.equal(value.contentType, 'text/plain');
  await rejectsWith(assert, sender.relay([], 'nobody'), 'INVALID_ARGUMENT', 100);
  const tooMany = Array.from({ length: 256 }, (_, i) => i + 1);
  await rejectsWith(assert, sender.relay(tooMany, 'everyone'), 'TOO_MANY_RECEIVERS', 105);
  direct.close();
});

test('stats, and admin operations refused without the admin token', async () => {
  const client = await connect('statistician');
  const stats = await client.stats();
  const published = stats.find((stat) => stat.name === 'messages_published');
  assert.equal(typeof published.value, 'number');
  await rejectsWith(assert, client.stopServer(), 'FORBIDDEN', 106);
  await rejectsWith(assert, client.reloadServer(), 'FORBIDDEN', 106);
  // The session goes on after a refusal.
  assert.equal((await client.identity()).name, 'statistician');
});

test('heartbeats keep an idle session open', async () => {
  const client = await connect('idler', { heartbeatMs: 250 });
  assert.equal(client.session.heartbeatMs, 250);
  // The server closes a session silent for 3 intervals; this one stays quiet for 8. The
  // time waited is what is under test; intervals of 250 ms let a busy machine delay a
  // heartbeat by half a second without closing the session.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  assert.equal((await client.identity()).name, 'idler');
});

test('the errors are SwitchboardErrors with the protocol codes', async () => {
  const client = await connect('errors');
  const error = await client.getMessage('no.such.channel', '01900000-0000-7000-8000-000000000001').catch((e) => e);
  assert.ok(error instanceof SwitchboardError);
  assert.ok(error instanceof Error);
  assert.equal(error.code, 'NOT_FOUND');
  assert.equal(error.number, 101);
  assert.ok(error.message.length > 0);
  await rejectsWith(assert, client.subscribe('a.>.c'), 'INVALID_ARGUMENT', 100);
  await rejectsWith(assert, client.subscribe(['ok.fine', 'not ok']), 'INVALID_ARGUMENT', 100);
});
