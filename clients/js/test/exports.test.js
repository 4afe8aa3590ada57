// The module's exports and the types in index.d.ts agree: every declared name exists,
// every exported name is declared, and the Client's methods are the declared ones.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';

import * as api from '../src/index.js';

const SRC = new URL('../src/', import.meta.url);
const TYPES = readFileSync(new URL('index.d.ts', SRC), 'utf8');

/** The members declared in the body of `export class NAME { ... }` of the .d.ts. */
function declaredMembers(className) {
  const start = TYPES.indexOf(`export class ${className}`);
  assert.ok(start >= 0, `index.d.ts declares class ${className}`);
  const open = TYPES.indexOf('{', start);
  let depth = 0;
  let end = open;
  for (; end < TYPES.length; end++) {
    if (TYPES[end] === '{') depth++;
    if (TYPES[end] === '}' && --depth === 0) break;
  }
  const body = TYPES.slice(open + 1, end);
  const methods = new Set();
  const statics = new Set();
  for (const match of body.matchAll(/^ {2}(static )?(?:readonly )?([A-Za-z]\w*)(\(|\??:)/gm)) {
    (match[1] ? statics : methods).add(`${match[2]}${match[3] === '(' ? '()' : ''}`);
  }
  return { methods, statics };
}

test('every name index.d.ts exports exists, and every export is declared', () => {
  const declared = new Set(
    [...TYPES.matchAll(/^export (?:declare )?(?:class|function|const) (\w+)/gm)].map((match) => match[1]),
  );
  const exported = new Set(Object.keys(api));
  assert.deepEqual([...exported].sort(), [...declared].sort());
  assert.equal(typeof api.Client.connect, 'function');
  assert.equal(api.ErrorCode.FORBIDDEN, 106);
  assert.equal(api.crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  const error = new api.SwitchboardError('FORBIDDEN', 106, 'no');
  assert.ok(error instanceof Error);
  assert.deepEqual([error.code, error.number, error.message], ['FORBIDDEN', 106, 'no']);
});

test("the Client's methods are the declared ones", () => {
  const { methods, statics } = declaredMembers('Client');
  const actual = Object.getOwnPropertyNames(api.Client.prototype)
    .filter((name) => name !== 'constructor' && !name.startsWith('_'))
    .map((name) => `${name}()`);
  const declaredMethods = [...methods].filter((name) => name.endsWith('()'));
  assert.deepEqual(actual.sort(), declaredMethods.sort());
  assert.deepEqual([...statics], ['connect()']);
  for (const property of ['session', 'closed']) assert.ok(methods.has(property), `declares ${property}`);
});

test('the Subscription declares what it has', () => {
  const { methods } = declaredMembers('Subscription');
  for (const name of ['ids', 'patterns', 'replayCount', 'onProgress', 'close()']) {
    assert.ok(methods.has(name), `Subscription declares ${name}`);
  }
  assert.equal(typeof api.Subscription.prototype.close, 'function');
  assert.equal(typeof api.Subscription.prototype[Symbol.asyncIterator], 'function');
});

test('the sources are a flat directory of .js files importing each other by relative path', () => {
  const files = readdirSync(SRC, { withFileTypes: true });
  for (const file of files) {
    assert.ok(file.isFile(), `${file.name} is a file`);
    assert.match(file.name, /\.(js|d\.ts)$/);
    if (!file.name.endsWith('.js')) continue;
    const text = readFileSync(new URL(file.name, SRC), 'utf8');
    for (const match of text.matchAll(/^\s*(?:import|export)[^'"]*from\s+['"]([^'"]+)['"]/gm)) {
      assert.match(match[1], /^\.\/[\w-]+\.js$/, `${file.name} imports ${match[1]}`);
    }
    assert.ok(text.startsWith('/**'), `${file.name} opens with a doc comment`);
  }
});
