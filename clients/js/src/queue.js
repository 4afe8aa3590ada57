/**
 * An async queue: pushes on one side, `for await` on the other. It backs subscriptions
 * and the group and direct feeds. Items may carry a promise (`ready`) that the reader
 * waits for, so that a message whose streamed body is still arriving keeps its place
 * without holding up the socket.
 *
 * @module
 */

export class AsyncQueue {
  #items = [];
  #waiters = [];
  #ended = false;
  #error = null;
  #onClose;

  /** @param {() => void} [onClose] called once when the reader closes the queue */
  constructor(onClose) {
    this.#onClose = onClose;
  }

  get ended() {
    return this.#ended;
  }

  /** Queues `item`; with `ready`, the reader gets what it resolves to (skipped on null). */
  push(item, ready) {
    if (this.#ended) return;
    this.#items.push(ready ? ready.then((value) => value, () => null) : Promise.resolve(item));
    this.#wake();
  }

  /** Ends the queue after the items already in it; with `error`, the reader then throws. */
  end(error = null) {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    this.#wake();
  }

  /** Ends the queue from the reader's side. */
  close() {
    this.#items.length = 0;
    this.end();
    const onClose = this.#onClose;
    this.#onClose = undefined;
    onClose?.();
  }

  #wake() {
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** The next item, or undefined once the queue ended and is empty. */
  async next() {
    for (;;) {
      if (this.#items.length > 0) {
        const item = await this.#items.shift();
        if (item === null) continue;
        return { value: item, done: false };
      }
      if (this.#ended) {
        if (this.#error) {
          const error = this.#error;
          this.#error = null;
          throw error;
        }
        return { value: undefined, done: true };
      }
      await new Promise((resolve) => this.#waiters.push(resolve));
    }
  }

  [Symbol.asyncIterator]() {
    return {
      next: () => this.next(),
      return: async () => {
        this.close();
        return { value: undefined, done: true };
      },
    };
  }
}
