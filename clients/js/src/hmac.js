/**
 * HMAC-SHA256 frame tags and SHA-256 digests: through Web Crypto (`crypto.subtle`) where
 * there is one (Node 20, browsers in secure contexts), else in plain JavaScript
 * (`sha256.js`), so that a page served over plain http works too.
 *
 * @module
 */

import { utf8 } from './bytes.js';
import { hmacSha256Sync, sha256Sync } from './sha256.js';

function subtle() {
  return globalThis.crypto?.subtle ?? null;
}

/**
 * Prepares a pre-shared key (text is taken as its UTF-8 bytes): a Web Crypto key, or the
 * raw bytes where Web Crypto is missing.
 * @param {string | Uint8Array} key
 * @param {{ webCrypto?: boolean }} [options] webCrypto: false forces plain JavaScript
 * @returns {Promise<CryptoKey | { raw: Uint8Array }>}
 */
export async function importHmacKey(key, { webCrypto = true } = {}) {
  const raw = typeof key === 'string' ? utf8(key) : Uint8Array.from(key);
  const api = webCrypto ? subtle() : null;
  if (!api) return { raw };
  return api.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
}

/** The 32-byte HMAC-SHA256 tag of `bytes`. */
export async function hmacTag(key, bytes) {
  if (key.raw) return hmacSha256Sync(key.raw, bytes);
  return new Uint8Array(await subtle().sign('HMAC', key, bytes));
}

/** The 32-byte SHA-256 digest of `bytes`. */
export async function sha256(bytes) {
  const api = subtle();
  if (!api) return sha256Sync(bytes);
  return new Uint8Array(await api.digest('SHA-256', bytes));
}
