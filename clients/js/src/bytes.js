/**
 * Byte helpers shared by the codec and the client: UTF-8, hex, UUIDs, joining pieces,
 * and turning the bodies a caller may give (text, bytes, buffers, blobs) into bytes.
 *
 * @module
 */

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const lenientDecoder = new TextDecoder('utf-8');

/** @param {string} text */
export function utf8(text) {
  return encoder.encode(text);
}

/**
 * Decodes UTF-8, refusing invalid bytes (text fields of the protocol must be UTF-8).
 * @param {Uint8Array} bytes
 */
export function fromUtf8(bytes) {
  return strictDecoder.decode(bytes);
}

/** Decodes UTF-8, replacing invalid bytes (for message bodies shown as text). */
export function fromUtf8Lenient(bytes) {
  return lenientDecoder.decode(bytes);
}

/** @param {Uint8Array} bytes */
export function toHex(bytes) {
  let out = '';
  for (const byte of bytes) out += byte.toString(16).padStart(2, '0');
  return out;
}

/** @param {string} hex */
export function fromHex(hex) {
  if (hex.length % 2 !== 0 || /[^0-9a-fA-F]/.test(hex)) {
    throw new TypeError(`not hexadecimal: ${hex.slice(0, 40)}`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** The canonical text form of a 16-byte UUID. */
export function uuidToString(bytes) {
  const hex = toHex(bytes);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The 16 bytes of a UUID in its text form (hyphens optional). */
export function uuidFromString(text) {
  const hex = String(text).replace(/-/g, '');
  if (hex.length !== 32) throw new TypeError(`not a UUID: ${text}`);
  return fromHex(hex);
}

/** The time in a UUID version 7 (its first 48 bits), in milliseconds since the epoch. */
export function uuidV7Millis(bytes) {
  let ms = 0;
  for (let i = 0; i < 6; i++) ms = ms * 256 + bytes[i];
  return ms;
}

/** Joins byte arrays into one. */
export function concat(pieces) {
  let length = 0;
  for (const piece of pieces) length += piece.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}

/** Byte-wise equality in time independent of where the first difference is. */
export function constantTimeEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * The bytes of a body given as text, bytes, a buffer or a blob, with the content type
 * it implies when the caller gives none: `text/plain` for text, the blob's own type.
 *
 * @param {string | Uint8Array | ArrayBuffer | ArrayBufferView | Blob} body
 * @returns {Promise<{ bytes: Uint8Array, impliedType: string }>}
 */
export async function bodyBytes(body) {
  if (typeof body === 'string') return { bytes: utf8(body), impliedType: 'text/plain' };
  if (body instanceof Uint8Array) return { bytes: body, impliedType: '' };
  if (body instanceof ArrayBuffer) return { bytes: new Uint8Array(body), impliedType: '' };
  if (ArrayBuffer.isView(body)) {
    return { bytes: new Uint8Array(body.buffer, body.byteOffset, body.byteLength), impliedType: '' };
  }
  if (typeof Blob !== 'undefined' && body instanceof Blob) {
    return { bytes: new Uint8Array(await body.arrayBuffer()), impliedType: body.type || '' };
  }
  throw new TypeError('a body is a string, a Uint8Array, an ArrayBuffer or a Blob');
}
