/**
 * A subscription as its caller holds it: the patterns it was opened with, the server's
 * ids for them, and an async iterable of the messages routed to it.
 *
 * @module
 */

import { AsyncQueue } from './queue.js';

/** A live subscription: an async iterable of messages. */
export class Subscription {
  #client;
  #queue;
  #closed = false;

  constructor(client, patterns) {
    this.#client = client;
    this.patterns = patterns;
    /** The server's subscription ids. */
    this.ids = [];
    /** How many replayed messages come first. */
    this.replayCount = 0;
    this.#queue = new AsyncQueue(() => this.close());
    /** Called as a streamed body arrives: (bytesReceived, total, message). */
    this.onProgress = undefined;
  }

  /** @internal */
  get _queue() {
    return this.#queue;
  }

  /** Unsubscribes and ends the iteration (after the messages already received). */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.end();
    await this.#client._unsubscribe(this);
  }

  [Symbol.asyncIterator]() {
    return this.#queue[Symbol.asyncIterator]();
  }
}
