/**
 * The Switchboard client for browsers and Node: the protocol over WebSocket.
 *
 *     import { Client } from './index.js';
 *     const client = await Client.connect('ws://127.0.0.1:7480/ws', { name: 'alice' });
 *
 * @module
 */

export { Client } from './client.js';
export { Subscription } from './subscription.js';
export { ErrorCode, SwitchboardError } from './errors.js';
export { crc32c } from './crc32c.js';
