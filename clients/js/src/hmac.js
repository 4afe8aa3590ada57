/**
 * HMAC-SHA256 frame tags and SHA-256 digests, through Web Crypto (`crypto.subtle`,
 * present in browsers on secure origins and localhost, and in Node 20).
 *
 * @module
 */

import { utf8 } from './bytes.js';

function subtle() {
  const api = globalThis.crypto?.subtle;
  if (!api) {
    throw new Error('Web Crypto (crypto.subtle) is not available here: HMAC keys and streamed bodies need it');
  }
  return api;
}

/**
 * Prepares a pre-shared key (text is taken as its UTF-8 bytes).
 * @param {string | Uint8Array} key
 * @returns {Promise<CryptoKey>}
 */
export function importHmacKey(key) {
  const raw = typeof key === 'string' ? utf8(key) : key;
  return subtle().importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
}

/** The 32-byte HMAC-SHA256 tag of `bytes`. */
export async function hmacTag(cryptoKey, bytes) {
  return new Uint8Array(await subtle().sign('HMAC', cryptoKey, bytes));
}

/** The 32-byte SHA-256 digest of `bytes`. */
export async function sha256(bytes) {
  return new Uint8Array(await subtle().digest('SHA-256', bytes));
}
