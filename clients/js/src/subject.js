/**
 * Subjects as the server sees them: which live messages a subscription pattern takes
 * (PROTOCOL §6.3) and the hashtags of a text body (§6.4). A live MESSAGE arrives once
 * per connection, so the client routes it to its subscriptions by these same rules.
 *
 * @module
 */

import { fromUtf8 } from './bytes.js';

/** The most distinct hashtags a message has; later ones do not count. */
export const MAX_HASHTAGS = 64;

const TAG_CHAR = /^[\p{Alphabetic}\p{Nd}\p{Nl}\p{No}_]$/u;

function isTagChar(char) {
  return char !== undefined && TAG_CHAR.test(char);
}

/**
 * The hashtags of `text`: lower-cased, without `#`, each once, in order of first
 * appearance, at most 64.
 * @param {string} text
 * @returns {string[]}
 */
export function hashtags(text) {
  const chars = Array.from(text);
  const tags = [];
  let previous;
  let i = 0;
  while (i < chars.length && tags.length < MAX_HASHTAGS) {
    const char = chars[i];
    const starts = char === '#' && !(isTagChar(previous) || previous === '#');
    if (starts) {
      let end = i + 1;
      while (end < chars.length && isTagChar(chars[end])) end++;
      if (end > i + 1) {
        const tag = chars.slice(i + 1, end).join('').toLowerCase();
        if (!tags.includes(tag)) tags.push(tag);
        previous = chars[end - 1];
        i = end;
        continue;
      }
    }
    previous = char;
    i++;
  }
  return tags;
}

/**
 * The hashtags of a message: those of its body when its content type is `text/...`
 * (any ASCII case) and the body is UTF-8; none otherwise.
 */
export function messageHashtags(contentType, body) {
  if (!/^text\//i.test(contentType ?? '')) return [];
  let text;
  try {
    text = fromUtf8(body);
  } catch {
    return [];
  }
  return hashtags(text);
}

/** A subscription pattern, ready to match live messages. */
export class Pattern {
  /** @param {string} pattern as given to SUBSCRIBE */
  constructor(pattern) {
    this.source = pattern;
    if (pattern.startsWith('#')) {
      this.tag = pattern.slice(1).toLowerCase();
      this.tokens = null;
    } else {
      this.tag = null;
      this.tokens = pattern.split('.');
    }
  }

  /** Whether a channel message with these hashtags matches. */
  matchesMessage(channel, tags) {
    if (this.tag !== null) return tags.includes(this.tag);
    return this.matchesChannel(channel);
  }

  /** Whether the channel name matches (exact or wildcard). */
  matchesChannel(channel) {
    const names = channel.split('.');
    const tokens = this.tokens;
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i];
      if (token === '>' && i === tokens.length - 1) return names.length > i;
      if (i >= names.length) return false;
      if (token !== '*' && token !== names[i]) return false;
    }
    return names.length === tokens.length;
  }
}
