/**
 * Header fields: LEB128 varints, the key-length-value fields of a header block, and the
 * records (u16 length + fields) that carry lists in a frame's content.
 *
 * Varints hold u64 values. They are read as numbers while they fit exactly (below
 * 2^53) and as BigInts beyond, so counts stay plain numbers and client ids lose nothing.
 *
 * @module
 */

import { concat } from './bytes.js';

/** Raised for bytes that do not decode: the protocol's BAD_FRAME. */
export class DecodeError extends Error {
  constructor(message) {
    super(message);
    this.name = 'DecodeError';
  }
}

const TWO_POW_53 = 2 ** 53;

/**
 * Appends the shortest LEB128 form of `value` (a non-negative number or BigInt < 2^64).
 * @param {number[]} out
 * @param {number | bigint} value
 */
export function writeVarint(out, value) {
  if (typeof value === 'number' && value < TWO_POW_53) {
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`not a u64: ${value}`);
    while (value >= 0x80) {
      out.push((value % 0x80) | 0x80);
      value = Math.floor(value / 0x80);
    }
    out.push(value);
    return;
  }
  let big = BigInt(value);
  if (big < 0n || big >= 1n << 64n) throw new RangeError(`not a u64: ${value}`);
  while (big >= 0x80n) {
    out.push(Number(big & 0x7fn) | 0x80);
    big >>= 7n;
  }
  out.push(Number(big));
}

/**
 * Reads a varint at `offset`, refusing one longer than 10 bytes or overflowing 64 bits.
 * @returns {{ value: number | bigint, next: number }}
 */
export function readVarint(bytes, offset, end = bytes.length) {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (offset + i >= end) throw new DecodeError('varint runs past its bytes');
    const byte = bytes[offset + i];
    if (i === 9 && byte > 0x01) throw new DecodeError('varint overflows 64 bits');
    if (i >= 7) return readBigVarint(bytes, offset, end);
    value += (byte & 0x7f) * scale;
    scale *= 0x80;
    if ((byte & 0x80) === 0) return { value, next: offset + i + 1 };
  }
  throw new DecodeError('varint longer than 10 bytes');
}

function readBigVarint(bytes, offset, end) {
  let value = 0n;
  for (let i = 0; i < 10; i++) {
    if (offset + i >= end) throw new DecodeError('varint runs past its bytes');
    const byte = bytes[offset + i];
    if (i === 9 && byte > 0x01) throw new DecodeError('varint overflows 64 bits');
    value |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if ((byte & 0x80) === 0) {
      const small = value < BigInt(TWO_POW_53) ? Number(value) : value;
      return { value: small, next: offset + i + 1 };
    }
  }
  throw new DecodeError('varint longer than 10 bytes');
}

/** Writes fields (and records) into bytes. */
export class FieldWriter {
  constructor() {
    /** @type {Uint8Array[]} */
    this.pieces = [];
    this.length = 0;
  }

  /** A field whose value is `value` (bytes). */
  bytes(key, value) {
    const head = [key];
    writeVarint(head, value.length);
    this.#push(Uint8Array.from(head));
    this.#push(value);
    return this;
  }

  /** A field holding one varint. */
  varint(key, value) {
    const encoded = [];
    writeVarint(encoded, value);
    const out = [key];
    writeVarint(out, encoded.length);
    this.#push(Uint8Array.from(out.concat(encoded)));
    return this;
  }

  /** A record: a u16 length, then the fields written by `write`. */
  record(write) {
    const inner = new FieldWriter();
    write(inner);
    const block = inner.finish();
    if (block.length > 0xffff) throw new RangeError('a record is over 65535 bytes');
    this.#push(Uint8Array.of(block.length >> 8, block.length & 0xff));
    this.#push(block);
    return this;
  }

  #push(piece) {
    this.pieces.push(piece);
    this.length += piece.length;
  }

  finish() {
    return concat(this.pieces);
  }
}

/**
 * The fields of a header block or record, in order: `[{ key, value: Uint8Array }]`.
 * @param {Uint8Array} block
 */
export function readFields(block) {
  const fields = [];
  let at = 0;
  while (at < block.length) {
    const key = block[at];
    const { value: length, next } = readVarint(block, at + 1);
    if (typeof length !== 'number' || next + length > block.length) {
      throw new DecodeError(`field 0x${key.toString(16)} runs past the end of its block`);
    }
    fields.push({ key, value: block.subarray(next, next + length) });
    at = next + length;
  }
  return fields;
}

/**
 * The field blocks of the records in a frame's content.
 * @param {Uint8Array} content
 * @returns {Uint8Array[]}
 */
export function readRecords(content) {
  const records = [];
  let at = 0;
  while (at < content.length) {
    if (at + 2 > content.length) throw new DecodeError('a record length is cut short');
    const length = (content[at] << 8) | content[at + 1];
    if (at + 2 + length > content.length) throw new DecodeError('a record runs past the content');
    records.push(content.subarray(at + 2, at + 2 + length));
    at += 2 + length;
  }
  return records;
}
