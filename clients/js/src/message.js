/**
 * What the client hands to its caller: received messages, direct messages and the
 * descriptions of channels, groups and clients, built from decoded packets.
 *
 * @module
 */

import { fromUtf8Lenient, uuidFromString, uuidV7Millis } from './bytes.js';

/** Body helpers shared by messages and direct messages. */
class Received {
  /** The body read as UTF-8 (invalid bytes replaced). */
  text() {
    return fromUtf8Lenient(this.body);
  }

  /** The body parsed as JSON. */
  json() {
    return JSON.parse(this.text());
  }
}

/** A stored message: live, replayed or fetched. */
export class Message extends Received {
  constructor(packet) {
    super();
    this.channel = packet.channel;
    this.scope = packet.scope === 1 ? 'group' : 'channel';
    this.seq = packet.seq;
    this.id = packet.messageId;
    this.timestampUs = packet.time ?? 0;
    this.from = packet.senderId ? { clientId: packet.senderId, name: packet.senderName ?? '' } : null;
    this.contentType = packet.contentType ?? '';
    this.headers = packet.headers ?? [];
    this.body = packet.content ?? new Uint8Array(0);
    this.replay = (packet.flags & 0x0008) !== 0;
  }
}

/** A body relayed by another client. */
export class DirectMessage extends Received {
  constructor(packet) {
    super();
    this.from = { clientId: packet.senderId, name: packet.senderName ?? '' };
    this.timestampUs = packet.time ?? 0;
    this.contentType = packet.contentType ?? '';
    this.body = packet.content ?? new Uint8Array(0);
  }
}

/** A PUBLISH_ACK as the caller sees it; the time is the one in the message id. */
export function publishAck(channel, packet) {
  return {
    channel,
    seq: packet.seq,
    id: packet.messageId,
    timestampUs: uuidV7Millis(uuidFromString(packet.messageId)) * 1000,
  };
}

const SLOW_CONSUMER = ['disconnect', 'drop-oldest'];

/** A CHANNEL_INFO packet or CHANNEL_LIST record as the caller sees it. */
export function channelInfo(record) {
  return {
    name: record.channel,
    messages: record.count ?? 0,
    firstSeq: record.firstSeq ?? 0,
    lastSeq: record.lastSeq ?? 0,
    bytes: record.bytes ?? 0,
    maxHistory: record.history ?? null,
    maxBody: record.maxBytes ?? null,
    maxChars: record.maxChars ?? null,
    maxAge: record.maxAgeMs ?? null,
    maxTotalBytes: record.maxTotalBytes ?? null,
    slowConsumer: record.slowConsumer === undefined ? null : (SLOW_CONSUMER[record.slowConsumer] ?? null),
    durability: record.durability ?? null,
  };
}

/** The SLOW_CONSUMER value of a caller's option. */
export function slowConsumerValue(option) {
  if (option === undefined) return undefined;
  const value = SLOW_CONSUMER.indexOf(option);
  if (value < 0) throw new TypeError(`slowConsumer is 'disconnect' or 'drop-oldest', not ${option}`);
  return value;
}

const RELAY_STATUS = ['delivered', 'unknown', 'dropped'];

export function relayStatus(value) {
  return RELAY_STATUS[value] ?? `status ${value}`;
}
