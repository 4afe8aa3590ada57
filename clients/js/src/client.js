/**
 * The client: one session over a WebSocket, with pipelined requests, heartbeats,
 * subscriptions routed by pattern, group and direct feeds, and bodies larger than a
 * frame streamed in chunks both ways.
 *
 * Every request gets a fresh non-zero request id and a pending entry that the frames
 * answering it settle; pushes (request id 0) go to subscriptions and feeds. Frames are
 * read in order: with an HMAC key, each tag is checked before the next frame is looked
 * at, so a message never overtakes another.
 *
 * @module
 */

import { bodyBytes } from './bytes.js';
import { SwitchboardError } from './errors.js';
import {
  DEFAULT_MAX_FRAME,
  Flag,
  FrameReader,
  FramingError,
  VERSION,
  encodeFrame,
  encodeFrameBody,
  preface,
  verifyTag,
} from './frame.js';
import { importHmacKey, sha256 } from './hmac.js';
import { InboundStreams } from './inbound.js';
import { DirectMessage, Message, channelInfo, publishAck, relayStatus, slowConsumerValue } from './message.js';
import { decodePacket, encodePacket } from './packets.js';
import { AsyncQueue } from './queue.js';
import { Pattern, messageHashtags } from './subject.js';
import { Subscription } from './subscription.js';

const SOFTWARE = 'switchboard-js/0.1.0';
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** The most a streamed body's chunk carries, when the server's max_frame is not smaller. */
const CHUNK_BYTES = 1024 * 1024;
/** Bytes queued on the socket before an upload waits for them to drain. */
const UPLOAD_BUFFERED_BYTES = 4 * 1024 * 1024;
/** Bytes queued in one turn past which they are sent at once rather than at its end. */
const COALESCE_BYTES = 256 * 1024;

const EVENT = Object.freeze({
  MEMBER_JOINED: 1,
  MEMBER_LEFT: 2,
  SKIPPED: 3,
  SUBSCRIPTION_CLOSED: 4,
  CHANNEL_DELETED: 5,
  GROUP_DELETED: 6,
  SUBSCRIPTION_REVOKED: 7,
  EPOCH_CHANGED: 8,
});

const SCOPE = Object.freeze({ CHANNEL: 0, GROUP: 1, TAG: 2 });

/** Only `Client.connect` makes clients. */
const CONSTRUCT = Symbol('construct');

/** Microseconds since the epoch of a Date or a number of milliseconds. */
function micros(time) {
  const ms = time instanceof Date ? time.getTime() : Number(time);
  if (!Number.isFinite(ms) || ms < 0) throw new TypeError(`not a time: ${time}`);
  return Math.round(ms * 1000);
}

function normalizeHeaders(headers) {
  if (headers === undefined) return [];
  const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
  return pairs.map(([name, value]) => [String(name), String(value)]);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Client {
  #ws;
  #reader;
  #macKey;
  #options;
  #timeoutMs;
  #pending = new Map();
  #nextRequestId = 1;
  #nextStreamId = 1;
  #sendChain = Promise.resolve();
  #prefaceRead = false;
  #draining = false;
  /** Settles when the frames received so far have been read. */
  #drained = Promise.resolve();
  #lastSent = 0;
  /** Bytes written this turn of the event loop, sent together by `#flushOutgoing`. */
  #outgoing = [];
  #outgoingBytes = 0;
  #flushQueued = false;
  #lastReceived = 0;
  #heartbeat = null;
  /** subscription id (as a string) -> { pattern, subscription } */
  #routes = new Map();
  #groupFeeds = new Set();
  #directFeeds = new Set();
  /** The server's streamed bodies being received. */
  #inbound = new InboundStreams();
  #ended = null;
  #userClosed = false;
  #endedNormally = false;
  #settleClosed;

  /** @internal use `Client.connect` */
  constructor(token, macKey, options) {
    if (token !== CONSTRUCT) throw new TypeError('use Client.connect(url, options)');
    this.#macKey = macKey;
    this.#options = options;
    this.#timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#reader = new FrameReader({ mac: macKey !== undefined });
    /** @type {import('./index.d.ts').SessionInfo} */
    this.session = null;
    this.closed = new Promise((resolve, reject) => {
      this.#settleClosed = { resolve, reject };
    });
    // Nobody need wait on `closed`: its rejection must not count as unhandled.
    this.closed.catch(() => {});
  }

  /**
   * Opens a session: the WebSocket, the prefaces, SESSION_INIT with the credentials.
   * Rejects with the server's refusal (AUTH_FAILED, BAD_MAC, ...) or CLOSED / TIMEOUT.
   *
   * @param {string | URL} url `ws://host:port/ws` (http:// and https:// are taken as ws:// and wss://)
   * @param {import('./index.d.ts').ConnectOptions} [options]
   */
  static async connect(url, options = {}) {
    const WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketImpl !== 'function') {
      throw new TypeError('no WebSocket here: pass options.WebSocket (Node 20: run with --experimental-websocket)');
    }
    const kinds = [options.token !== undefined, options.user !== undefined || options.password !== undefined, options.jwt !== undefined];
    if (kinds.filter(Boolean).length > 1) throw new TypeError('give one kind of credentials: token, user and password, or jwt');
    if (options.password !== undefined && options.user === undefined) throw new TypeError('a password needs its user');
    const macKey = options.hmacKey === undefined ? undefined : await importHmacKey(options.hmacKey);
    const client = new Client(CONSTRUCT, macKey, options);
    await client.#open(String(url).replace(/^http(s?):/, 'ws$1:'), WebSocketImpl);
    return client;
  }

  async #open(url, WebSocketImpl) {
    const ws = new WebSocketImpl(url);
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    ws.onmessage = (event) => this.#receive(event.data);
    ws.onclose = (event) => {
      const reason = event.reason ? `: ${event.reason}` : '';
      const error = SwitchboardError.closed(`the connection closed (${event.code}${reason})`);
      // Frames that arrived before the close are read first: they may say why.
      this.#drained.then(() => this.#shutdown(error));
    };
    ws.onerror = () => {
      // A close event follows with what there is to say.
    };
    const options = this.#options;
    const init = {
      type: 'SESSION_INIT',
      name: options.name ?? options.user ?? 'js-client',
      heartbeatMs: options.heartbeatMs ?? 0,
      credentials: options.token,
      software: options.software ?? SOFTWARE,
      user: options.user,
      password: options.password,
      jwt: options.jwt,
    };
    const opened = new Promise((resolve, reject) => {
      ws.onopen = () => {
        this.#write(preface());
        // SESSION_INIT goes right after the preface, without waiting for the server's.
        this.#request(init, (packet, settle) => {
          if (packet.type !== 'SESSION_ACK') return settle.reject(unexpected(packet));
          settle.resolve(packet);
        }).then(resolve, reject);
      };
      this.closed.catch(reject);
    });
    let ack;
    try {
      ack = await opened;
    } catch (error) {
      this.#shutdown(error);
      ws.close();
      throw error;
    }
    this.session = {
      clientId: ack.clientId,
      sessionId: ack.sessionId,
      name: ack.name || init.name,
      user: ack.user || null,
      heartbeatMs: ack.heartbeatMs,
      limits: { maxFrame: ack.maxFrame || DEFAULT_MAX_FRAME, maxBody: ack.maxBody },
      serverSoftware: ack.software,
    };
    this.#reader.maxContent = Math.max(DEFAULT_MAX_FRAME, this.session.limits.maxFrame);
    this.#startHeartbeat(ack.heartbeatMs);
  }

  // ---- channels ----------------------------------------------------------------

  /**
   * Publishes a message; a body larger than the frame limit is streamed in chunks.
   * @returns {Promise<{ channel: string, seq: number, id: string, timestampUs: number }>}
   */
  publish(channel, body, options = {}) {
    return this.#publish(channel, SCOPE.CHANNEL, body, options);
  }

  /** Subscribes to one pattern or several; the subscription iterates their messages. */
  async subscribe(patternOrPatterns, options = {}) {
    const patterns = Array.isArray(patternOrPatterns) ? patternOrPatterns : [patternOrPatterns];
    if (patterns.length === 0) throw new TypeError('subscribe to at least one pattern');
    const replay = replayFields(options.replay);
    const subscription = new Subscription(this, patterns);
    subscription.onProgress = options.onProgress;
    const subscribed = patterns.map((pattern) => this.#subscribeOne(subscription, pattern, replay, options.onProgress));
    const outcomes = await Promise.allSettled(subscribed);
    const failed = outcomes.find((outcome) => outcome.status === 'rejected');
    if (failed) {
      await subscription.close().catch(() => {});
      throw failed.reason;
    }
    return subscription;
  }

  #subscribeOne(subscription, pattern, replay, onProgress) {
    let remaining = 0;
    return this.#request({ type: 'SUBSCRIBE', channel: pattern, ...replay }, (packet, settle) => {
      if (packet.type === 'SUBSCRIBE_ACK') {
        subscription.ids.push(packet.subscriptionId);
        subscription.replayCount += packet.count;
        // From its ACK on, the subscription takes live messages.
        this.#routes.set(String(packet.subscriptionId), { pattern: new Pattern(pattern), subscription });
        remaining = packet.count;
        if (remaining === 0) settle.resolve();
      } else if (packet.type === 'MESSAGE') {
        const { message, ready } = this.#receiveMessage(packet, onProgress);
        subscription._queue.push(message, ready);
        if (--remaining <= 0) settle.resolve();
      } else {
        settle.reject(unexpected(packet));
      }
    });
  }

  /** @internal */
  async _unsubscribe(subscription) {
    const ids = subscription.ids.filter((id) => this.#routes.get(String(id))?.subscription === subscription);
    for (const id of ids) this.#routes.delete(String(id));
    if (this.#ended) return;
    await Promise.all(
      ids.map((id) =>
        this.#request({ type: 'UNSUBSCRIBE', subscriptionId: id }, expectOk).catch((error) => {
          // Already gone on the server (closed by it, or the connection ended).
          if (error.code !== 'NOT_FOUND' && error.code !== 'CLOSED') throw error;
        }),
      ),
    );
  }

  /**
   * Messages of a channel's history, oldest first.
   * `last`: the newest n; `sinceSeq` / `sinceTime` (Date or ms): from there on, at most `limit`.
   */
  history(channel, options = {}) {
    return this.#fetch(channel, SCOPE.CHANNEL, options);
  }

  /** The newest message of a channel, or null when there is none. */
  async latest(channel) {
    try {
      return await this.#getMessage({ type: 'GET_MESSAGE', channel });
    } catch (error) {
      if (error.code === 'NOT_FOUND') return null;
      throw error;
    }
  }

  /** One message by id (NOT_FOUND when it is not held). */
  getMessage(channel, id) {
    return this.#getMessage({ type: 'GET_MESSAGE', channel, messageId: String(id) });
  }

  /** Recent channel messages carrying a hashtag (with or without its '#'). */
  tagMessages(tag, options = {}) {
    return this.#fetch(String(tag).replace(/^#/, ''), SCOPE.TAG, options);
  }

  /** Every channel, with its counts and options. */
  async channels() {
    return (await this.#listAll({ type: 'LIST_CHANNELS' }, 'CHANNEL_LIST')).map(channelInfo);
  }

  /** Creates a channel (or finds it, when it exists with the same options). */
  async createChannel(name, options = {}) {
    const packet = await this.#request(
      {
        type: 'CREATE_CHANNEL',
        channel: name,
        history: options.maxHistory,
        maxBytes: options.maxBody,
        maxChars: options.maxChars,
        maxAgeMs: options.maxAge,
        maxTotalBytes: options.maxTotalBytes,
        slowConsumer: slowConsumerValue(options.slowConsumer),
      },
      expectType('CHANNEL_INFO'),
    );
    return channelInfo(packet);
  }

  /** Deletes a channel with its history. */
  async deleteChannel(name) {
    await this.#request({ type: 'DELETE_CHANNEL', channel: name }, expectOk);
  }

  // ---- groups ------------------------------------------------------------------

  async groups() {
    const records = await this.#listAll({ type: 'LIST_GROUPS' }, 'GROUP_LIST');
    return records.map((record) => ({ name: record.channel, description: record.description ?? '', members: record.memberCount ?? 0 }));
  }

  async createGroup(name, description = '') {
    await this.#request({ type: 'CREATE_GROUP', channel: name, description }, expectOk);
  }

  async joinGroup(name) {
    await this.#request({ type: 'JOIN_GROUP', channel: name }, expectOk);
  }

  async leaveGroup(name) {
    await this.#request({ type: 'LEAVE_GROUP', channel: name }, expectOk);
  }

  async deleteGroup(name) {
    await this.#request({ type: 'DELETE_GROUP', channel: name }, expectOk);
  }

  /** The members of a group: user names, and whether a session of theirs is connected. */
  async groupMembers(name) {
    const records = await this.#listAll({ type: 'GROUP_MEMBERS', channel: name }, 'MEMBER_LIST');
    return records.map((record) => ({ name: record.name, user: record.name, online: record.online ?? false }));
  }

  /** Posts to a group (members only); as `publish`. */
  post(group, body, options = {}) {
    return this.#publish(group, SCOPE.GROUP, body, options);
  }

  /** A group's history (members only), oldest first. */
  groupMessages(group, options = {}) {
    return this.#fetch(group, SCOPE.GROUP, options);
  }

  /**
   * The live messages and membership events of the groups this session's user is a
   * member of: `{ group, kind: 'message' | 'join' | 'leave' | 'deleted', message?, member? }`.
   */
  groupFeed() {
    return this.#feed(this.#groupFeeds);
  }

  // ---- clients and direct messages ---------------------------------------------

  /** The other connected clients. */
  async clients() {
    const records = await this.#listAll({ type: 'LIST_CLIENTS' }, 'CLIENT_LIST');
    return records.map((record) => ({
      clientId: record.clientId,
      name: record.name,
      user: null,
      connectedSinceUs: record.connectedSince ?? 0,
    }));
  }

  /** Relays a body to 1..255 connected clients: per receiver, delivered, unknown or dropped. */
  async relay(clientIds, body, options = {}) {
    const receivers = (Array.isArray(clientIds) ? clientIds : [clientIds]).map((id) => BigInt(id));
    const { bytes, impliedType } = await bodyBytes(body);
    const packet = await this.#request(
      { type: 'RELAY', receivers, contentType: options.contentType ?? impliedType, content: bytes },
      expectType('RELAY_RESULT'),
    );
    return packet.records.map((record) => ({ clientId: record.clientId, status: relayStatus(record.status) }));
  }

  /** Bodies relayed to this session by other clients. */
  directFeed() {
    return this.#feed(this.#directFeeds);
  }

  // ---- administration and the session ------------------------------------------

  async identity() {
    const packet = await this.#request({ type: 'IDENTIFY' }, expectType('IDENTITY'));
    return {
      clientId: packet.clientId,
      name: packet.name,
      sessionId: packet.sessionId,
      connectedSinceUs: packet.connectedSince ?? 0,
    };
  }

  /** The server's counters, `[{ name, value }]`. */
  async stats() {
    const packet = await this.#request({ type: 'STATS' }, expectType('STATS_REPLY'));
    return packet.records.map(({ name, value }) => ({ name, value }));
  }

  /** Asks the server to shut down (admin only); it then ends every session. */
  async stopServer() {
    await this.#request({ type: 'STOP' }, expectOk);
  }

  /** Asks the server to read its configuration again (admin only). */
  async reloadServer() {
    await this.#request({ type: 'RELOAD' }, expectOk);
  }

  /** Ends the session (DISCONNECT NORMAL) and closes the connection. */
  async close() {
    if (this.#ended) return;
    this.#userClosed = true;
    try {
      await this.#send({ type: 'DISCONNECT', code: 0, message: 'client closing' });
    } catch {
      // The connection is already going.
    }
    const closing = new Promise((resolve) => {
      const previous = this.#ws.onclose;
      this.#ws.onclose = (event) => {
        previous(event);
        resolve();
      };
    });
    this.#flushOutgoing();
    this.#ws.close(1000);
    await Promise.race([closing, sleep(1000)]);
    this.#shutdown(SwitchboardError.closed());
  }

  // ---- requests ----------------------------------------------------------------

  /**
   * Sends a request and settles with its answer. `onPacket(packet, settle)` sees every
   * frame answering it but ERROR (which rejects) and calls `settle.resolve` or
   * `settle.reject` when the answer is complete. The timeout counts from the last
   * activity; `manual.deferTimeout` starts it only when `manual.startTimeout()` is called.
   */
  #request(packet, onPacket, manual) {
    return new Promise((resolve, reject) => {
      if (this.#ended) return reject(this.#ended);
      const requestId = this.#allocateRequestId();
      const entry = {
        onPacket,
        timer: null,
        settled: false,
        touch: () => {
          clearTimeout(entry.timer);
          entry.timer = setTimeout(() => {
            settle.reject(SwitchboardError.timeout(`no answer to ${packet.type} within ${this.#timeoutMs} ms`));
          }, this.#timeoutMs);
        },
      };
      const settle = {
        resolve: (value) => {
          if (entry.settled) return;
          entry.settled = true;
          clearTimeout(entry.timer);
          this.#pending.delete(requestId);
          resolve(value);
        },
        reject: (error) => {
          if (entry.settled) return;
          entry.settled = true;
          clearTimeout(entry.timer);
          this.#pending.delete(requestId);
          reject(error);
        },
      };
      entry.settle = settle;
      this.#pending.set(requestId, entry);
      packet.requestId = requestId;
      if (manual) {
        manual.requestId = requestId;
        manual.entry = entry;
        manual.startTimeout = () => entry.touch();
      }
      this.#send(packet).then(
        () => {
          if (!manual?.deferTimeout && !entry.settled) entry.touch();
        },
        (error) => settle.reject(error),
      );
    });
  }

  #allocateRequestId() {
    for (;;) {
      const id = this.#nextRequestId;
      this.#nextRequestId = id >= 0xffffffff ? 1 : id + 1;
      if (!this.#pending.has(id)) return id;
    }
  }

  /** Encodes and writes a packet, in order with every other. */
  #send(packet) {
    const frame = encodePacket(packet);
    const limit = this.session?.limits.maxFrame ?? DEFAULT_MAX_FRAME;
    if (frame.content.length > limit) {
      return Promise.reject(new SwitchboardError('TOO_LARGE', 103, `a frame of ${frame.content.length} bytes is over the server's ${limit}`));
    }
    if (this.#macKey === undefined) {
      try {
        this.#write(encodeFrameBody(frame));
        return Promise.resolve();
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const sent = this.#sendChain.then(async () => this.#write(await encodeFrame(frame, this.#macKey)));
    this.#sendChain = sent.catch(() => {});
    return sent;
  }

  /**
   * Queues bytes for the socket. Frames written in one turn of the event loop go out
   * together, in one WebSocket message: a message costs a header, a mask and a system
   * call on each side, which for small frames is most of the work.
   */
  #write(bytes) {
    if (this.#ended && !this.#userClosed) throw this.#ended;
    if (this.#ws.readyState !== 1) throw SwitchboardError.closed('the connection is not open');
    this.#outgoing.push(bytes);
    this.#outgoingBytes += bytes.length;
    this.#lastSent = Date.now();
    if (this.#outgoingBytes >= COALESCE_BYTES) {
      this.#flushOutgoing();
    } else if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flushOutgoing());
    }
  }

  /** Sends what `#write` queued, as one message. */
  #flushOutgoing() {
    this.#flushQueued = false;
    const parts = this.#outgoing;
    if (parts.length === 0) return;
    this.#outgoing = [];
    const total = this.#outgoingBytes;
    this.#outgoingBytes = 0;
    // Closed meanwhile: the session's end reports it.
    if (this.#ws.readyState !== 1) return;
    if (parts.length === 1) {
      this.#ws.send(parts[0]);
      return;
    }
    const message = new Uint8Array(total);
    let at = 0;
    for (const part of parts) {
      message.set(part, at);
      at += part.length;
    }
    this.#ws.send(message);
  }

  async #publish(channel, scope, body, options) {
    const { bytes, impliedType } = await bodyBytes(body);
    const packet = {
      type: 'PUBLISH',
      channel,
      scope,
      contentType: options.contentType ?? impliedType,
      headers: normalizeHeaders(options.headers),
    };
    const maxFrame = this.session.limits.maxFrame;
    if (bytes.length <= maxFrame) {
      const ack = await this.#request({ ...packet, content: bytes }, expectType('PUBLISH_ACK'));
      options.onProgress?.(bytes.length, bytes.length);
      return publishAck(channel, ack);
    }
    return this.#publishStreamed(channel, packet, bytes, options.onProgress);
  }

  /** A body over the frame limit: an opening PUBLISH with its first part, then CHUNKs. */
  async #publishStreamed(channel, packet, bytes, onProgress) {
    const chunkBytes = Math.min(CHUNK_BYTES, this.session.limits.maxFrame);
    const streamId = this.#nextStreamId++;
    const digest = await sha256(bytes);
    const manual = { deferTimeout: true };
    const first = bytes.subarray(0, chunkBytes);
    const answer = this.#request(
      { ...packet, flags: Flag.STREAM, streamId, totalLen: bytes.length, content: first },
      expectType('PUBLISH_ACK'),
      manual,
    );
    // The answer may be a refusal that comes while chunks are still going out.
    answer.catch(() => {});
    let sent = first.length;
    onProgress?.(sent, bytes.length);
    while (sent < bytes.length && !manual.entry.settled) {
      while (this.#ws.bufferedAmount > UPLOAD_BUFFERED_BYTES && !manual.entry.settled && !this.#ended) await sleep(5);
      const piece = bytes.subarray(sent, sent + chunkBytes);
      const last = sent + piece.length === bytes.length;
      await this.#send({
        type: 'CHUNK',
        requestId: manual.requestId,
        flags: last ? Flag.LAST : 0,
        streamId,
        digest: last ? digest : undefined,
        content: piece,
      });
      sent += piece.length;
      onProgress?.(sent, bytes.length);
    }
    if (!manual.entry.settled) manual.startTimeout();
    return publishAck(channel, await answer);
  }

  #getMessage(packet) {
    return this.#request(packet, (answer, settle) => {
      if (answer.type !== 'MESSAGE') return settle.reject(unexpected(answer));
      const { message, ready } = this.#receiveMessage(answer);
      settle.resolve(
        ready
          ? ready.then((complete) => complete ?? Promise.reject(new SwitchboardError('STREAM_ABORTED', 110, 'the body did not arrive whole')))
          : message,
      );
    });
  }

  async #fetch(channel, scope, options) {
    const packet = { type: 'GET_MESSAGES', channel, scope };
    if (options.sinceSeq !== undefined) packet.sinceSeq = options.sinceSeq;
    else if (options.sinceTime !== undefined) packet.sinceTime = micros(options.sinceTime);
    if (options.last !== undefined) {
      if (packet.sinceSeq !== undefined || packet.sinceTime !== undefined) {
        throw new TypeError('give last, or sinceSeq / sinceTime with limit');
      }
      packet.limit = options.last;
    } else if (options.limit !== undefined) {
      packet.limit = options.limit;
    }
    const messages = [];
    const complete = await this.#request(packet, (answer, settle) => {
      if (answer.type === 'MESSAGE') {
        const { message, ready } = this.#receiveMessage(answer, options.onProgress);
        messages.push(ready ?? message);
      } else if (answer.type === 'MESSAGES_END') {
        // Streamed bodies follow MESSAGES_END.
        settle.resolve(Promise.all(messages));
      } else {
        settle.reject(unexpected(answer));
      }
    });
    return complete.filter((message) => message !== null);
  }

  /** Every page of a listing. */
  async #listAll(request, replyType) {
    const records = [];
    let cursor;
    for (;;) {
      const page = await this.#request({ ...request, cursor }, expectType(replyType));
      records.push(...page.records);
      if (page.cursor === undefined) return records;
      cursor = page.cursor;
    }
  }

  #feed(set) {
    const queue = new AsyncQueue(() => set.delete(queue));
    if (this.#ended) queue.end();
    else set.add(queue);
    return queue;
  }

  // ---- receiving ---------------------------------------------------------------

  #receive(data) {
    this.#lastReceived = Date.now();
    this.#reader.push(new Uint8Array(data));
    if (!this.#draining) this.#drained = this.#drain();
  }

  async #drain() {
    this.#draining = true;
    try {
      for (;;) {
        if (this.#ended && !this.#userClosed) return;
        if (!this.#prefaceRead) {
          const version = this.#reader.readPreface();
          if (version === null) return;
          if (version !== VERSION) {
            throw new FramingError('UNSUPPORTED_VERSION', 2, `the server speaks protocol version ${version}`);
          }
          this.#prefaceRead = true;
        }
        const frame = this.#reader.next();
        if (frame === null) return;
        if (frame.macMismatch) {
          // Read leniently only to tell the caller why the server refused.
          const packet = decodePacket(frame);
          if (packet.type === 'ERROR' || packet.type === 'DISCONNECT') throw SwitchboardError.fromPacket(packet);
          throw new FramingError('BAD_MAC', 4, this.#macKey ? 'the server sent a frame without an HMAC tag' : 'the server tags its frames: an HMAC key is needed');
        }
        if (this.#macKey !== undefined && !(await verifyTag(frame, this.#macKey))) {
          // A server with another key refuses the session with an ERROR this key cannot
          // verify: its code is still worth showing.
          const packet = this.session === null ? decodePacket(frame) : null;
          if (packet?.type === 'ERROR') throw SwitchboardError.fromPacket(packet);
          throw new FramingError('BAD_MAC', 4, 'a frame from the server has a wrong HMAC tag');
        }
        this.#handle(decodePacket(frame));
      }
    } catch (error) {
      this.#fail(error);
    } finally {
      this.#draining = false;
    }
  }

  /** A problem with the server's bytes: tell it, then close. */
  #fail(error) {
    const failure =
      error instanceof SwitchboardError
        ? error
        : new SwitchboardError(error.code ?? 'BAD_FRAME', error.number ?? 3, error.message);
    if (!(error instanceof SwitchboardError)) {
      this.#send({ type: 'DISCONNECT', code: failure.number, message: failure.message }).catch(() => {});
    }
    this.#flushOutgoing();
    this.#shutdown(failure);
    this.#ws.close();
  }

  #handle(packet) {
    switch (packet.type) {
      case 'HEARTBEAT':
        if (!(packet.flags & Flag.PONG)) {
          this.#send({ type: 'HEARTBEAT', flags: Flag.PONG, requestId: packet.requestId }).catch(() => {});
        }
        return;
      case 'DISCONNECT':
        if (packet.code === 0) {
          this.#endedNormally = true;
          this.#shutdown(SwitchboardError.closed(packet.message || 'the server ended the session'));
        } else {
          this.#shutdown(SwitchboardError.fromPacket(packet));
        }
        return;
      case 'CHUNK':
        this.#inbound.chunk(packet);
        return;
      case 'STREAM_ABORT':
        this.#inbound.abort(packet.streamId, SwitchboardError.fromPacket(packet));
        return;
      case 'DIRECT':
        for (const feed of this.#directFeeds) feed.push(new DirectMessage(packet));
        return;
      case 'EVENT':
        this.#event(packet);
        return;
      default:
        break;
    }
    if (packet.requestId === 0) {
      if (packet.type === 'MESSAGE') this.#live(packet);
      else if (packet.type === 'ERROR') this.#shutdown(SwitchboardError.fromPacket(packet));
      return;
    }
    const entry = this.#pending.get(packet.requestId);
    if (!entry) return; // An answer to a request given up on (timed out).
    if (packet.type === 'ERROR') return entry.settle.reject(SwitchboardError.fromPacket(packet));
    entry.touch();
    entry.onPacket(packet, entry.settle);
  }

  /**
   * A message for the caller: complete, or (flag STREAM) with a `ready` promise that
   * gives it once its body has arrived whole (null if it was aborted).
   */
  #receiveMessage(packet, onProgress) {
    const message = new Message(packet);
    if (!(packet.flags & Flag.STREAM)) return { message, ready: null };
    return { message, ready: this.#inbound.open(packet.streamId, message, packet.totalLen ?? 0, packet.content, onProgress) };
  }

  /** A live MESSAGE: a channel's to each matching subscription, a group's to the feeds. */
  #live(packet) {
    if (packet.scope === SCOPE.GROUP) {
      const { message, ready } = this.#receiveMessage(packet);
      for (const feed of this.#groupFeeds) {
        const item = { group: message.channel, kind: 'message', message };
        feed.push(item, ready?.then((complete) => (complete ? item : null)));
      }
      return;
    }
    const streamed = (packet.flags & Flag.STREAM) !== 0;
    // Streamed bodies are not searched for hashtags (nor does the server index them).
    let messageTags = streamed ? [] : null;
    const matching = new Set();
    for (const { pattern, subscription } of this.#routes.values()) {
      if (matching.has(subscription)) continue;
      if (pattern.tag !== null) messageTags ??= messageHashtags(packet.contentType, packet.content);
      if (pattern.matchesMessage(packet.channel, messageTags ?? [])) matching.add(subscription);
    }
    if (matching.size === 0) return;
    const progress = [...matching].map((subscription) => subscription.onProgress).filter(Boolean);
    const onProgress = progress.length ? (...args) => progress.forEach((report) => report(...args)) : undefined;
    const { message, ready } = this.#receiveMessage(packet, onProgress);
    for (const subscription of matching) subscription._queue.push(message, ready);
  }

  #event(packet) {
    switch (packet.kind) {
      case EVENT.MEMBER_JOINED:
      case EVENT.MEMBER_LEFT:
      case EVENT.GROUP_DELETED: {
        const kind = { [EVENT.MEMBER_JOINED]: 'join', [EVENT.MEMBER_LEFT]: 'leave', [EVENT.GROUP_DELETED]: 'deleted' }[packet.kind];
        const item = { group: packet.channel ?? '', kind, timestampUs: packet.time ?? 0 };
        if (packet.name) item.member = packet.name;
        for (const feed of this.#groupFeeds) feed.push(item);
        return;
      }
      case EVENT.SUBSCRIPTION_CLOSED:
      case EVENT.SUBSCRIPTION_REVOKED: {
        const key = String(packet.subscriptionId ?? 0n);
        const route = this.#routes.get(key);
        if (!route) return;
        this.#routes.delete(key);
        const { subscription } = route;
        const stillRouted = [...this.#routes.values()].some((other) => other.subscription === subscription);
        if (packet.kind === EVENT.SUBSCRIPTION_REVOKED) {
          subscription._queue.end(new SwitchboardError('FORBIDDEN', 106, `the subscription to ${packet.channel ?? route.pattern.source} was revoked`));
        } else if (!stillRouted) {
          subscription._queue.end();
        }
        return;
      }
      case EVENT.CHANNEL_DELETED: {
        // Subscriptions naming the channel exactly end; wildcards and hashtags go on.
        const ended = new Set();
        for (const route of this.#routes.values()) {
          if (route.pattern.source === packet.channel) ended.add(route.subscription);
        }
        for (const subscription of ended) {
          subscription._queue.end(new SwitchboardError('NOT_FOUND', 101, `channel ${packet.channel} was deleted`));
          subscription.close().catch(() => {});
        }
        return;
      }
      default:
        // SKIPPED, and kinds this client does not know.
        return;
    }
  }

  // ---- heartbeats and the end ------------------------------------------------------

  #startHeartbeat(intervalMs) {
    if (!intervalMs) return;
    this.#lastReceived = Date.now();
    const tick = Math.max(25, Math.floor(intervalMs / 2));
    this.#heartbeat = setInterval(() => {
      const now = Date.now();
      if (now - this.#lastReceived > 3 * intervalMs) {
        this.#fail(SwitchboardError.timeout(`nothing from the server for ${3 * intervalMs} ms`));
        return;
      }
      if (now - this.#lastSent >= intervalMs - tick / 2) {
        this.#send({ type: 'HEARTBEAT' }).catch(() => {});
      }
    }, tick);
  }

  #shutdown(error) {
    if (this.#ended) return;
    this.#ended = error;
    clearInterval(this.#heartbeat);
    for (const entry of [...this.#pending.values()]) entry.settle.reject(error);
    this.#inbound.abortAll(error);
    const feedError = this.#userClosed ? null : error;
    for (const { subscription } of this.#routes.values()) subscription._queue.end(feedError);
    this.#routes.clear();
    for (const feed of [...this.#groupFeeds, ...this.#directFeeds]) feed.end(feedError);
    this.#groupFeeds.clear();
    this.#directFeeds.clear();
    if (this.#userClosed || this.#endedNormally) {
      this.#settleClosed.resolve();
    } else {
      this.#settleClosed.reject(error);
    }
  }
}

function replayFields(replay) {
  if (replay === undefined || replay === null) return {};
  if (replay === 'all') return { sinceSeq: 1 };
  if (replay.last !== undefined) return { lastN: replay.last };
  if (replay.sinceSeq !== undefined) return { sinceSeq: replay.sinceSeq };
  if (replay.sinceTime !== undefined) return { sinceTime: micros(replay.sinceTime) };
  throw new TypeError("replay is 'all', { last }, { sinceSeq } or { sinceTime }");
}

function unexpected(packet) {
  return new SwitchboardError('BAD_FRAME', 3, `unexpected ${packet.type} from the server`);
}

function expectType(type) {
  return (packet, settle) => (packet.type === type ? settle.resolve(packet) : settle.reject(unexpected(packet)));
}

function expectOk(packet, settle) {
  if (packet.type === 'OK') settle.resolve();
  else settle.reject(unexpected(packet));
}
