/**
 * Bodies the server streams: a MESSAGE with flag STREAM opens one, CHUNK frames carry
 * the rest, the last with the SHA-256 of the whole. A body is handed over only once its
 * length and digest were checked; nothing of a broken one is ever seen.
 *
 * @module
 */

import { SwitchboardError } from './errors.js';
import { Flag } from './frame.js';
import { sha256 } from './hmac.js';

export class InboundStreams {
  /** Streams being received, by the server's stream id. */
  #streams = new Map();

  /**
   * Opens a stream for `message`; resolves to the message, its body filled in, once the
   * body arrived whole, or to null if it was broken off or did not match.
   * @returns {Promise<import('./message.js').Message | null>}
   */
  open(streamId, message, total, firstPart, onProgress) {
    const ready = new Promise((resolve, reject) => {
      const stream = { message, total, pieces: [], received: 0, resolve, reject, onProgress };
      this.#streams.set(streamId, stream);
      this.#add(stream, firstPart ?? new Uint8Array(0));
    });
    return ready.catch(() => null);
  }

  #add(stream, piece) {
    if (piece.length === 0) return;
    stream.pieces.push(piece);
    stream.received += piece.length;
    stream.onProgress?.(stream.received, stream.total, stream.message);
  }

  /** A CHUNK: the next part, and with flag LAST the end of the body. */
  chunk(packet) {
    const stream = this.#streams.get(packet.streamId);
    if (!stream) return;
    this.#add(stream, packet.content);
    if (!(packet.flags & Flag.LAST)) return;
    this.#streams.delete(packet.streamId);
    const body = new Uint8Array(stream.received);
    let at = 0;
    for (const piece of stream.pieces) {
      body.set(piece, at);
      at += piece.length;
    }
    stream.pieces = null;
    if (body.length !== stream.total) {
      stream.reject(new SwitchboardError('STREAM_ABORTED', 110, `a streamed body of ${body.length} bytes, announced ${stream.total}`));
      return;
    }
    sha256(body).then((digest) => {
      if (!packet.digest || digest.some((byte, i) => byte !== packet.digest[i])) {
        stream.reject(new SwitchboardError('STREAM_ABORTED', 110, 'a streamed body does not match its digest'));
        return;
      }
      stream.message.body = body;
      stream.resolve(stream.message);
    }, stream.reject);
  }

  /** A STREAM_ABORT from the server. */
  abort(streamId, error) {
    const stream = this.#streams.get(streamId);
    if (!stream) return;
    this.#streams.delete(streamId);
    stream.reject(error);
  }

  /** The connection ended: every body still arriving is lost. */
  abortAll(error) {
    for (const stream of this.#streams.values()) stream.reject(error);
    this.#streams.clear();
  }
}
