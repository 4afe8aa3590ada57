/**
 * Packets: what each frame type's header fields and content mean, as plain objects.
 *
 * One table describes every frame type: its fields in the order the reference encoder
 * writes them (golden bytes depend on that order), each with its key, its kind of value
 * and when it is written. Encoding and decoding both follow the table, so the two cannot
 * drift apart. Lists travel as records in the content (`records`); bodies as `content`.
 *
 * A packet: `{ type: 'PUBLISH', flags, requestId, channel, contentType, ..., content }`.
 *
 * @module
 */

import { fromUtf8, utf8, uuidFromString, uuidToString } from './bytes.js';
import { DecodeError, FieldWriter, readFields, readRecords, readVarint, writeVarint } from './fields.js';
import { FrameType } from './frame.js';

/** Field keys by name (PROTOCOL §4.3). */
export const Key = Object.freeze({
  CHANNEL: 0x01,
  CONTENT_TYPE: 0x02,
  USER_HEADER: 0x03,
  MESSAGE_ID: 0x04,
  SEQ: 0x05,
  TIME: 0x06,
  SENDER_ID: 0x07,
  SENDER_NAME: 0x08,
  SCOPE: 0x09,
  CLIENT_ID: 0x0a,
  CLIENT_NAME: 0x0b,
  SESSION_ID: 0x0c,
  HEARTBEAT_MS: 0x0d,
  SOFTWARE: 0x0e,
  ERROR_CODE: 0x0f,
  MESSAGE: 0x10,
  RECEIVERS: 0x11,
  HISTORY: 0x12,
  MAX_BYTES: 0x13,
  MAX_CHARS: 0x14,
  SINCE_SEQ: 0x15,
  SINCE_TIME: 0x16,
  LAST_N: 0x17,
  LIMIT: 0x18,
  SUBSCRIPTION_ID: 0x19,
  COUNT: 0x1a,
  DESCRIPTION: 0x1b,
  EVENT_KIND: 0x1c,
  STREAM_ID: 0x1d,
  TOTAL_LEN: 0x1e,
  DIGEST: 0x1f,
  MAX_FRAME: 0x20,
  MAX_BODY: 0x21,
  CONNECTED_SINCE: 0x22,
  ONLINE: 0x23,
  STATUS: 0x24,
  MEMBER_COUNT: 0x26,
  LAST_SEQ: 0x27,
  FIRST_SEQ: 0x28,
  CREDENTIALS: 0x29,
  MAX_AGE_MS: 0x2a,
  MAX_TOTAL_BYTES: 0x2b,
  SLOW_CONSUMER: 0x2c,
  BYTES: 0x2d,
  DURABILITY: 0x2e,
  USER: 0x2f,
  PASSWORD: 0x30,
  JWT: 0x31,
  CURSOR: 0xff,
});

/**
 * One field of a table: [property, key, kind, presence].
 * kinds: text, bytes, uint (number, BigInt past 2^53), id (always BigInt), uuid (text
 * form), u64list (BigInt[]), header (repeatable [name, value] pairs), bool.
 * presence: 'always' (written even when unset), 'opt' (written when set), 'nz' (written
 * when set and not zero or empty).
 */
const F = (property, key, kind, presence = 'always') => ({ property, key, kind, presence });

const CHANNEL_OPTIONS = [
  F('history', Key.HISTORY, 'uint', 'opt'),
  F('maxBytes', Key.MAX_BYTES, 'uint', 'opt'),
  F('maxChars', Key.MAX_CHARS, 'uint', 'opt'),
  F('maxAgeMs', Key.MAX_AGE_MS, 'uint', 'opt'),
  F('maxTotalBytes', Key.MAX_TOTAL_BYTES, 'uint', 'opt'),
  F('slowConsumer', Key.SLOW_CONSUMER, 'uint', 'opt'),
  F('durability', Key.DURABILITY, 'uint', 'opt'),
];

const CHANNEL_INFO = [
  F('channel', Key.CHANNEL, 'text'),
  F('count', Key.COUNT, 'uint'),
  F('firstSeq', Key.FIRST_SEQ, 'uint'),
  F('lastSeq', Key.LAST_SEQ, 'uint'),
  F('bytes', Key.BYTES, 'uint'),
  ...CHANNEL_OPTIONS,
];

const PAGE = [F('cursor', Key.CURSOR, 'bytes', 'opt'), F('limit', Key.LIMIT, 'uint', 'opt')];
const CURSOR = [F('cursor', Key.CURSOR, 'bytes', 'opt')];
const GROUP_NAME = [F('channel', Key.CHANNEL, 'text')];
const ERROR_FIELDS = [F('code', Key.ERROR_CODE, 'uint'), F('message', Key.MESSAGE, 'text')];

/**
 * Per frame type: `fields` of the header block, and either `records` (the fields of
 * each record of the content) or `body: true` (the content is opaque bytes).
 */
const SCHEMAS = {
  SESSION_INIT: {
    fields: [
      F('name', Key.CLIENT_NAME, 'text'),
      F('heartbeatMs', Key.HEARTBEAT_MS, 'uint'),
      F('credentials', Key.CREDENTIALS, 'bytes', 'nz'),
      F('software', Key.SOFTWARE, 'text', 'nz'),
      F('user', Key.USER, 'text', 'nz'),
      F('password', Key.PASSWORD, 'bytes', 'nz'),
      F('jwt', Key.JWT, 'bytes', 'nz'),
    ],
  },
  SESSION_ACK: {
    fields: [
      F('clientId', Key.CLIENT_ID, 'id'),
      F('sessionId', Key.SESSION_ID, 'uuid'),
      F('heartbeatMs', Key.HEARTBEAT_MS, 'uint'),
      F('maxFrame', Key.MAX_FRAME, 'uint'),
      F('maxBody', Key.MAX_BODY, 'uint'),
      F('software', Key.SOFTWARE, 'text'),
      F('name', Key.CLIENT_NAME, 'text', 'nz'),
      F('user', Key.USER, 'text', 'nz'),
    ],
  },
  HEARTBEAT: { fields: [] },
  ERROR: { fields: ERROR_FIELDS },
  DISCONNECT: { fields: ERROR_FIELDS },
  OK: { fields: [] },
  IDENTIFY: { fields: [] },
  IDENTITY: {
    fields: [
      F('clientId', Key.CLIENT_ID, 'id'),
      F('name', Key.CLIENT_NAME, 'text'),
      F('sessionId', Key.SESSION_ID, 'uuid'),
      F('connectedSince', Key.CONNECTED_SINCE, 'uint'),
    ],
  },
  LIST_CLIENTS: { fields: PAGE },
  CLIENT_LIST: {
    fields: CURSOR,
    records: [
      F('clientId', Key.CLIENT_ID, 'id'),
      F('name', Key.CLIENT_NAME, 'text'),
      F('connectedSince', Key.CONNECTED_SINCE, 'uint'),
    ],
  },
  RELAY: {
    fields: [F('receivers', Key.RECEIVERS, 'u64list'), F('contentType', Key.CONTENT_TYPE, 'text', 'nz')],
    body: true,
  },
  RELAY_RESULT: { fields: [], records: [F('clientId', Key.CLIENT_ID, 'id'), F('status', Key.STATUS, 'uint')] },
  CREATE_CHANNEL: { fields: [F('channel', Key.CHANNEL, 'text'), ...CHANNEL_OPTIONS] },
  CHANNEL_INFO: { fields: CHANNEL_INFO },
  PUBLISH: {
    fields: [
      F('channel', Key.CHANNEL, 'text'),
      F('scope', Key.SCOPE, 'uint', 'nz'),
      F('contentType', Key.CONTENT_TYPE, 'text', 'nz'),
      F('headers', Key.USER_HEADER, 'header'),
      F('streamId', Key.STREAM_ID, 'uint', 'opt'),
      F('totalLen', Key.TOTAL_LEN, 'uint', 'opt'),
    ],
    body: true,
  },
  PUBLISH_ACK: { fields: [F('messageId', Key.MESSAGE_ID, 'uuid'), F('seq', Key.SEQ, 'uint')] },
  SUBSCRIBE: {
    fields: [
      F('channel', Key.CHANNEL, 'text'),
      F('sinceSeq', Key.SINCE_SEQ, 'uint', 'opt'),
      F('sinceTime', Key.SINCE_TIME, 'uint', 'opt'),
      F('lastN', Key.LAST_N, 'uint', 'opt'),
    ],
  },
  SUBSCRIBE_ACK: { fields: [F('subscriptionId', Key.SUBSCRIPTION_ID, 'id'), F('count', Key.COUNT, 'uint')] },
  UNSUBSCRIBE: { fields: [F('subscriptionId', Key.SUBSCRIPTION_ID, 'id')] },
  GET_MESSAGE: {
    fields: [
      F('channel', Key.CHANNEL, 'text'),
      F('scope', Key.SCOPE, 'uint', 'nz'),
      F('messageId', Key.MESSAGE_ID, 'uuid', 'opt'),
    ],
  },
  GET_MESSAGES: {
    fields: [
      F('channel', Key.CHANNEL, 'text'),
      F('scope', Key.SCOPE, 'uint', 'nz'),
      F('sinceSeq', Key.SINCE_SEQ, 'uint', 'opt'),
      F('sinceTime', Key.SINCE_TIME, 'uint', 'opt'),
      F('limit', Key.LIMIT, 'uint', 'opt'),
    ],
  },
  MESSAGES_END: { fields: [F('count', Key.COUNT, 'uint'), F('lastSeq', Key.LAST_SEQ, 'uint')] },
  LIST_CHANNELS: { fields: PAGE },
  CHANNEL_LIST: { fields: CURSOR, records: CHANNEL_INFO },
  DELETE_CHANNEL: { fields: [F('channel', Key.CHANNEL, 'text')] },
  CREATE_GROUP: { fields: [F('channel', Key.CHANNEL, 'text'), F('description', Key.DESCRIPTION, 'text', 'nz')] },
  LIST_GROUPS: { fields: PAGE },
  GROUP_LIST: {
    fields: CURSOR,
    records: [
      F('channel', Key.CHANNEL, 'text'),
      F('description', Key.DESCRIPTION, 'text'),
      F('memberCount', Key.MEMBER_COUNT, 'uint'),
    ],
  },
  JOIN_GROUP: { fields: GROUP_NAME },
  LEAVE_GROUP: { fields: GROUP_NAME },
  GROUP_MEMBERS: { fields: [...GROUP_NAME, ...PAGE] },
  MEMBER_LIST: {
    fields: [...GROUP_NAME, ...CURSOR],
    records: [F('name', Key.CLIENT_NAME, 'text'), F('online', Key.ONLINE, 'bool')],
  },
  DELETE_GROUP: { fields: GROUP_NAME },
  STOP: { fields: [] },
  STATS: { fields: [] },
  STATS_REPLY: { fields: [], records: [F('name', Key.DESCRIPTION, 'text'), F('value', Key.COUNT, 'uint')] },
  RELOAD: { fields: [] },
  MESSAGE: {
    fields: [
      F('channel', Key.CHANNEL, 'text'),
      F('scope', Key.SCOPE, 'uint', 'nz'),
      F('messageId', Key.MESSAGE_ID, 'uuid'),
      F('seq', Key.SEQ, 'uint'),
      F('time', Key.TIME, 'uint'),
      F('senderId', Key.SENDER_ID, 'id'),
      F('senderName', Key.SENDER_NAME, 'text', 'nz'),
      F('contentType', Key.CONTENT_TYPE, 'text', 'nz'),
      F('headers', Key.USER_HEADER, 'header'),
      F('streamId', Key.STREAM_ID, 'uint', 'opt'),
      F('totalLen', Key.TOTAL_LEN, 'uint', 'opt'),
    ],
    body: true,
  },
  DIRECT: {
    fields: [
      F('senderId', Key.SENDER_ID, 'id'),
      F('senderName', Key.SENDER_NAME, 'text'),
      F('time', Key.TIME, 'uint'),
      F('contentType', Key.CONTENT_TYPE, 'text', 'nz'),
    ],
    body: true,
  },
  EVENT: {
    fields: [
      F('kind', Key.EVENT_KIND, 'uint'),
      F('scope', Key.SCOPE, 'uint', 'nz'),
      F('channel', Key.CHANNEL, 'text', 'nz'),
      F('name', Key.CLIENT_NAME, 'text', 'nz'),
      F('count', Key.COUNT, 'uint', 'nz'),
      F('subscriptionId', Key.SUBSCRIPTION_ID, 'id', 'nz'),
      F('time', Key.TIME, 'uint'),
    ],
  },
  CHUNK: { fields: [F('streamId', Key.STREAM_ID, 'uint'), F('digest', Key.DIGEST, 'bytes', 'opt')], body: true },
  STREAM_ABORT: { fields: [F('streamId', Key.STREAM_ID, 'uint'), ...ERROR_FIELDS] },
};

const TYPE_NAMES = new Map(Object.entries(FrameType).map(([name, code]) => [code, name]));

function isUnset(value) {
  return value === undefined || value === null;
}

function isZero(value) {
  return (
    isUnset(value) ||
    value === 0 ||
    value === 0n ||
    value === '' ||
    value === false ||
    (value instanceof Uint8Array && value.length === 0) ||
    (Array.isArray(value) && value.length === 0)
  );
}

function writeField(writer, field, value) {
  const { key, kind } = field;
  switch (kind) {
    case 'text':
      writer.bytes(key, utf8(value ?? ''));
      break;
    case 'bytes':
      writer.bytes(key, typeof value === 'string' ? utf8(value) : (value ?? new Uint8Array(0)));
      break;
    case 'uint':
    case 'id':
      writer.varint(key, value ?? 0);
      break;
    case 'bool':
      writer.varint(key, value ? 1 : 0);
      break;
    case 'uuid':
      writer.bytes(key, typeof value === 'string' ? uuidFromString(value) : value);
      break;
    case 'u64list': {
      const list = value ?? [];
      const out = new Uint8Array(list.length * 8);
      const view = new DataView(out.buffer);
      list.forEach((id, i) => view.setBigUint64(i * 8, BigInt(id)));
      writer.bytes(key, out);
      break;
    }
    case 'header':
      for (const [name, text] of value ?? []) {
        const nameBytes = utf8(name);
        const valueBytes = utf8(text);
        // A user header: varint name length, name, then the value.
        const nameLength = [];
        writeVarint(nameLength, nameBytes.length);
        const out = new Uint8Array(nameLength.length + nameBytes.length + valueBytes.length);
        out.set(nameLength, 0);
        out.set(nameBytes, nameLength.length);
        out.set(valueBytes, nameLength.length + nameBytes.length);
        writer.bytes(key, out);
      }
      break;
    default:
      throw new Error(`unknown field kind ${kind}`);
  }
}

function writeFields(writer, schema, values) {
  for (const field of schema) {
    const value = values[field.property];
    if (field.kind === 'header') {
      writeField(writer, field, value);
      continue;
    }
    if (field.presence === 'opt' && isUnset(value)) continue;
    if (field.presence === 'nz' && isZero(value)) continue;
    writeField(writer, field, value);
  }
}

function readValue(field, value) {
  switch (field.kind) {
    case 'text':
      try {
        return fromUtf8(value);
      } catch {
        throw new DecodeError(`field ${field.property} is not UTF-8`);
      }
    case 'bytes':
      return value.slice();
    case 'uint':
    case 'id':
    case 'bool': {
      const { value: number, next } = readVarint(value, 0);
      if (next !== value.length) throw new DecodeError(`field ${field.property} is not one varint`);
      if (field.kind === 'id') return BigInt(number);
      if (field.kind === 'bool') return number !== 0;
      return number;
    }
    case 'uuid':
      if (value.length !== 16) throw new DecodeError(`field ${field.property} is not 16 bytes`);
      return uuidToString(value);
    case 'u64list': {
      if (value.length % 8 !== 0) throw new DecodeError(`field ${field.property} is not a list of u64`);
      const view = new DataView(value.buffer, value.byteOffset, value.length);
      return Array.from({ length: value.length / 8 }, (_, i) => view.getBigUint64(i * 8));
    }
    case 'header': {
      const { value: nameLength, next } = readVarint(value, 0);
      if (typeof nameLength !== 'number' || next + nameLength > value.length) {
        throw new DecodeError('a user header name runs past its field');
      }
      try {
        return [fromUtf8(value.subarray(next, next + nameLength)), fromUtf8(value.subarray(next + nameLength))];
      } catch {
        throw new DecodeError('a user header is not UTF-8');
      }
    }
    default:
      throw new Error(`unknown field kind ${field.kind}`);
  }
}

function readInto(target, schema, block) {
  const byKey = new Map(schema.map((field) => [field.key, field]));
  for (const field of schema) if (field.kind === 'header') target[field.property] = [];
  for (const { key, value } of readFields(block)) {
    const field = byKey.get(key);
    if (!field) continue; // Unknown keys are skipped (new optional fields).
    const decoded = readValue(field, value);
    if (field.kind === 'header') target[field.property].push(decoded);
    else target[field.property] = decoded;
  }
  return target;
}

/**
 * Encodes a packet into a frame (`encodeFrame` then makes its bytes).
 * @param {{ type: string, flags?: number, requestId?: number, content?: Uint8Array, records?: object[] }} packet
 */
export function encodePacket(packet) {
  const schema = SCHEMAS[packet.type];
  if (!schema) throw new TypeError(`unknown packet type ${packet.type}`);
  const headers = new FieldWriter();
  writeFields(headers, schema.fields, packet);
  let content = packet.content ?? new Uint8Array(0);
  if (schema.records) {
    const records = new FieldWriter();
    for (const record of packet.records ?? []) records.record((fields) => writeFields(fields, schema.records, record));
    content = records.finish();
  }
  return {
    type: FrameType[packet.type],
    flags: packet.flags ?? 0,
    requestId: packet.requestId ?? 0,
    headers: headers.finish(),
    content,
  };
}

/**
 * Decodes a frame into a packet. Throws `DecodeError` for malformed fields.
 * @param {{ type: number, flags: number, requestId: number, headers: Uint8Array, content: Uint8Array }} frame
 */
export function decodePacket(frame) {
  const type = TYPE_NAMES.get(frame.type);
  const schema = SCHEMAS[type];
  if (!schema) throw new DecodeError(`unknown frame type 0x${frame.type.toString(16)}`);
  const packet = { type, flags: frame.flags, requestId: frame.requestId };
  readInto(packet, schema.fields, frame.headers);
  if (schema.records) {
    packet.records = readRecords(frame.content).map((block) => readInto({}, schema.records, block));
  } else if (schema.body) {
    packet.content = frame.content;
  }
  return packet;
}
