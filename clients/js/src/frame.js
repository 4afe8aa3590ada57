/**
 * Frames: the connection preface, the 24-byte prefix with its two CRC32Cs, the optional
 * HMAC tag, and a reader that cuts frames out of a byte stream arriving in pieces.
 *
 * A frame here is `{ type, flags, requestId, headers, content }` with `headers` the
 * encoded header block; `packets.js` gives those bytes their meaning.
 *
 * @module
 */

import { concat, constantTimeEqual } from './bytes.js';
import { crc32c } from './crc32c.js';
import { hmacTag } from './hmac.js';

export const VERSION = 1;
export const MAGIC = Uint8Array.of(0x8a, 0x53, 0x57, 0x42, 0x0d, 0x0a, 0x00, 0x1a);
export const PREFACE_LEN = 10;
export const PREFIX_LEN = 24;
export const TAG_LEN = 32;
/** The header block limit every peer keeps to and accepts. */
export const MAX_HEADER = 16384;
/** The content limit until the server announces its own. */
export const DEFAULT_MAX_FRAME = 8 * 1024 * 1024;

export const Flag = Object.freeze({
  MAC: 0x0001,
  STREAM: 0x0002,
  LAST: 0x0004,
  REPLAY: 0x0008,
  PONG: 0x0010,
  NO_REPLY: 0x0020,
});

/** Frame type codes by name. */
export const FrameType = Object.freeze({
  SESSION_INIT: 0x01,
  SESSION_ACK: 0x02,
  HEARTBEAT: 0x03,
  ERROR: 0x04,
  DISCONNECT: 0x05,
  OK: 0x06,
  IDENTIFY: 0x10,
  IDENTITY: 0x11,
  LIST_CLIENTS: 0x12,
  CLIENT_LIST: 0x13,
  RELAY: 0x14,
  RELAY_RESULT: 0x15,
  CREATE_CHANNEL: 0x20,
  CHANNEL_INFO: 0x21,
  PUBLISH: 0x22,
  PUBLISH_ACK: 0x23,
  SUBSCRIBE: 0x24,
  SUBSCRIBE_ACK: 0x25,
  UNSUBSCRIBE: 0x26,
  GET_MESSAGE: 0x27,
  GET_MESSAGES: 0x28,
  MESSAGES_END: 0x29,
  LIST_CHANNELS: 0x2a,
  CHANNEL_LIST: 0x2b,
  DELETE_CHANNEL: 0x2c,
  CREATE_GROUP: 0x30,
  LIST_GROUPS: 0x31,
  GROUP_LIST: 0x32,
  JOIN_GROUP: 0x33,
  LEAVE_GROUP: 0x34,
  GROUP_MEMBERS: 0x35,
  MEMBER_LIST: 0x36,
  DELETE_GROUP: 0x37,
  STOP: 0x40,
  STATS: 0x41,
  STATS_REPLY: 0x42,
  RELOAD: 0x43,
  MESSAGE: 0x50,
  DIRECT: 0x51,
  EVENT: 0x52,
  CHUNK: 0x60,
  STREAM_ABORT: 0x61,
});

const KNOWN_TYPES = new Set(Object.values(FrameType));

/** Thrown for a stream that can no longer be trusted; `number` is the protocol's code. */
export class FramingError extends Error {
  constructor(code, number, message) {
    super(message);
    this.name = 'FramingError';
    this.code = code;
    this.number = number;
  }
}

/** The client's preface: the magic and the version it speaks. */
export function preface(version = VERSION) {
  const out = new Uint8Array(PREFACE_LEN);
  out.set(MAGIC);
  out[8] = version >> 8;
  out[9] = version & 0xff;
  return out;
}

/**
 * Encodes a frame. With `macKey` (a CryptoKey from `importHmacKey`) flag MAC is set and
 * the tag appended; without it, the result is returned synchronously wrapped in a promise
 * all the same, so callers need one path.
 *
 * @param {{ type: number, flags?: number, requestId?: number, headers?: Uint8Array, content?: Uint8Array }} frame
 * @param {CryptoKey} [macKey]
 * @returns {Promise<Uint8Array>}
 */
export async function encodeFrame(frame, macKey) {
  const bytes = encodeFrameBody(frame, macKey !== undefined);
  if (macKey === undefined) return bytes;
  return concat([bytes, await hmacTag(macKey, bytes)]);
}

/** The frame without its tag (flag MAC set when `mac`). */
export function encodeFrameBody({ type, flags = 0, requestId = 0, headers, content }, mac = false) {
  headers ??= new Uint8Array(0);
  content ??= new Uint8Array(0);
  if (headers.length > 0xffff) throw new RangeError(`a header block of ${headers.length} bytes is over 65535`);
  const out = new Uint8Array(PREFIX_LEN + headers.length + content.length);
  const view = new DataView(out.buffer);
  out[0] = 0x53;
  out[1] = 0x42;
  out[2] = VERSION;
  out[3] = type;
  view.setUint16(4, mac ? flags | Flag.MAC : flags & ~Flag.MAC);
  view.setUint16(6, headers.length);
  view.setUint32(8, requestId >>> 0);
  view.setUint32(12, content.length);
  view.setUint32(16, crc32c(content));
  out.set(headers, PREFIX_LEN);
  out.set(content, PREFIX_LEN + headers.length);
  const headerCrc = crc32c(out.subarray(PREFIX_LEN, PREFIX_LEN + headers.length), crc32c(out.subarray(0, 20)));
  view.setUint32(20, headerCrc);
  return out;
}

/** Checks a decoded frame's tag in constant time. */
export async function verifyTag(frame, macKey) {
  const expected = await hmacTag(macKey, frame.signed);
  return constantTimeEqual(expected, frame.tag);
}

/**
 * Cuts frames out of bytes that arrive in arbitrary pieces (WebSocket messages need not
 * follow frame boundaries), checking each in the protocol's order: sync, version, the
 * two lengths against the limits (before anything is kept for them), flag MAC, header
 * CRC, type, content CRC. The tag itself is checked by the caller (`verifyTag`), which
 * Web Crypto makes asynchronous.
 *
 * A frame whose flag MAC disagrees with `mac` is still read (the tag is there if and only
 * if the flag is), marked `macMismatch`, so that an ERROR from a server with another key
 * can show its code before the connection is dropped.
 */
export class FrameReader {
  /**
   * @param {{ mac?: boolean, maxContent?: number }} [options]
   */
  constructor({ mac = false, maxContent = DEFAULT_MAX_FRAME } = {}) {
    this.mac = mac;
    this.maxContent = maxContent;
    this.buffer = new Uint8Array(64 * 1024);
    this.start = 0;
    this.end = 0;
  }

  /** Bytes received and not read yet. */
  get buffered() {
    return this.end - this.start;
  }

  /** @param {Uint8Array} bytes */
  push(bytes) {
    const kept = this.end - this.start;
    if (this.end + bytes.length > this.buffer.length) {
      if (kept + bytes.length <= this.buffer.length) {
        this.buffer.copyWithin(0, this.start, this.end);
      } else {
        let capacity = this.buffer.length;
        while (capacity < kept + bytes.length) capacity *= 2;
        const grown = new Uint8Array(capacity);
        grown.set(this.buffer.subarray(this.start, this.end));
        this.buffer = grown;
      }
      this.start = 0;
      this.end = kept;
    }
    this.buffer.set(bytes, this.end);
    this.end += bytes.length;
  }

  /** The server's preface (its version), or null until 10 bytes are there. */
  readPreface() {
    if (this.buffered < PREFACE_LEN) return null;
    const bytes = this.buffer.subarray(this.start, this.start + PREFACE_LEN);
    for (let i = 0; i < MAGIC.length; i++) {
      if (bytes[i] !== MAGIC[i]) throw new FramingError('BAD_PREFACE', 1, 'the server did not answer with a Switchboard preface');
    }
    const version = (bytes[8] << 8) | bytes[9];
    this.start += PREFACE_LEN;
    return version;
  }

  /**
   * The next whole frame, or null until more bytes arrive.
   * @returns {null | { type: number, flags: number, requestId: number, headers: Uint8Array,
   *   content: Uint8Array, tag: Uint8Array | null, signed: Uint8Array, macMismatch: boolean }}
   */
  next() {
    if (this.buffered < PREFIX_LEN) return null;
    const at = this.start;
    const bytes = this.buffer;
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, PREFIX_LEN);
    if (bytes[at] !== 0x53 || bytes[at + 1] !== 0x42) throw new FramingError('BAD_FRAME', 3, 'bad sync bytes');
    if (bytes[at + 2] !== VERSION) {
      throw new FramingError('UNSUPPORTED_VERSION', 2, `frame version ${bytes[at + 2]} is not the session's`);
    }
    const flags = view.getUint16(4);
    const headerLen = view.getUint16(6);
    const contentLen = view.getUint32(12);
    if (headerLen > MAX_HEADER) throw new FramingError('FRAME_TOO_LARGE', 6, `a header block of ${headerLen} bytes`);
    if (contentLen > this.maxContent) throw new FramingError('FRAME_TOO_LARGE', 6, `a content of ${contentLen} bytes`);
    const tagged = (flags & Flag.MAC) !== 0;
    const total = PREFIX_LEN + headerLen + contentLen + (tagged ? TAG_LEN : 0);
    if (this.buffered < PREFIX_LEN + headerLen) return null;
    const headerCrc = crc32c(bytes.subarray(at + PREFIX_LEN, at + PREFIX_LEN + headerLen), crc32c(bytes.subarray(at, at + 20)));
    if (headerCrc !== view.getUint32(20)) throw new FramingError('BAD_FRAME', 3, 'header CRC mismatch');
    const type = bytes[at + 3];
    if (!KNOWN_TYPES.has(type)) throw new FramingError('UNKNOWN_FRAME_TYPE', 5, `unknown frame type 0x${type.toString(16)}`);
    if (this.buffered < total) return null;
    const contentStart = at + PREFIX_LEN + headerLen;
    // Copied out: the buffer is reused for the bytes that follow.
    const signed = bytes.slice(at, contentStart + contentLen);
    if (crc32c(signed.subarray(PREFIX_LEN + headerLen)) !== view.getUint32(16)) {
      throw new FramingError('BAD_FRAME', 3, 'content CRC mismatch');
    }
    const tag = tagged ? bytes.slice(contentStart + contentLen, at + total) : null;
    this.start += total;
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
      // A large body's room is given back once it was read.
      if (this.buffer.length > 1024 * 1024) this.buffer = new Uint8Array(64 * 1024);
    }
    return {
      type,
      flags,
      requestId: new DataView(signed.buffer).getUint32(8),
      headers: signed.subarray(PREFIX_LEN, PREFIX_LEN + headerLen),
      content: signed.subarray(PREFIX_LEN + headerLen),
      tag,
      signed,
      macMismatch: tagged !== this.mac,
    };
  }
}
