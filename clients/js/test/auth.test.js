// Logging in (password, token, JWT, admin token), HMAC-tagged frames, and the admin
// operations, each against a server configured for it.

import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { Client } from '../src/index.js';
import { cli, rejectsWith, startServer, tempDir } from './support.js';

const base64url = (data) => Buffer.from(data).toString('base64url');

function hs256(secret, claims) {
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = base64url(JSON.stringify(claims));
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

test('password, token and JWT logins name the session after its user', async () => {
  const hash = (await cli(['passwd'], { input: 'hunter2\n' })).trim();
  const token = randomBytes(24).toString('hex');
  const secret = randomBytes(48).toString('base64');
  const dir = tempDir();
  writeFileSync(join(dir, 'jwt.secret'), secret);
  const config = `
[[users]]
name = "alice"
password = "${hash}"

[[users]]
name = "deploy"

[[users]]
name = "svc"

[[tokens]]
name = "deploy-token"
user = "deploy"
sha256 = "${createHash('sha256').update(token).digest('hex')}"

[jwt]
algorithm = "HS256"
secret_file = "${join(dir, 'jwt.secret')}"
`;
  const server = await startServer({ config });
  try {
    const alice = await Client.connect(server.url, { name: 'ignored', user: 'alice', password: 'hunter2' });
    assert.equal(alice.session.name, 'alice');
    assert.equal(alice.session.user, 'alice');
    assert.equal((await alice.identity()).name, 'alice');

    const deploy = await Client.connect(server.url, { token });
    assert.equal(deploy.session.user, 'deploy');

    const jwt = hs256(secret, { sub: 'svc', exp: Math.floor(Date.now() / 1000) + 600 });
    const svc = await Client.connect(server.url, { jwt });
    assert.equal(svc.session.user, 'svc');

    // The sessions work as any other.
    const subscription = await deploy.subscribe('auth.chat');
    await svc.publish('auth.chat', 'from svc');
    const { value } = await subscription[Symbol.asyncIterator]().next();
    assert.equal(value.from.name, 'svc');

    await rejectsWith(assert, Client.connect(server.url, { user: 'alice', password: 'wrong' }), 'AUTH_FAILED', 8);
    await rejectsWith(assert, Client.connect(server.url, { name: 'anonymous' }), 'AUTH_FAILED', 8);
    const expired = hs256(secret, { sub: 'svc', exp: Math.floor(Date.now() / 1000) - 3600 });
    await rejectsWith(assert, Client.connect(server.url, { jwt: expired }), 'AUTH_FAILED', 8);

    for (const client of [alice, deploy, svc]) await client.close();
  } finally {
    await server.stop();
  }
});

test('with the server HMAC key every frame is tagged; without it, or with another, BAD_MAC', async () => {
  const dir = tempDir();
  const keyFile = join(dir, 'hmac.key');
  writeFileSync(keyFile, 'a shared secret for the tests');
  const server = await startServer({ args: ['--hmac-key-file', keyFile] });
  try {
    const tagged = await Client.connect(server.url, { name: 'tagged', hmacKey: 'a shared secret for the tests' });
    const other = await Client.connect(server.url, {
      name: 'tagged-bytes',
      hmacKey: new TextEncoder().encode('a shared secret for the tests'),
    });
    const subscription = await other.subscribe('mac.test', { replay: 'all' });
    await tagged.publish('mac.test', 'authentic');
    const { value } = await subscription[Symbol.asyncIterator]().next();
    assert.equal(value.text(), 'authentic');
    await rejectsWith(assert, Client.connect(server.url, { name: 'untagged' }), 'BAD_MAC', 4);
    await rejectsWith(assert, Client.connect(server.url, { name: 'forged', hmacKey: 'another key' }), 'BAD_MAC', 4);
    await tagged.close();
    await other.close();
  } finally {
    await server.stop();
  }
});

test('the admin token allows reload and stop; the server then ends every session', async () => {
  const adminToken = randomBytes(16).toString('hex');
  const server = await startServer({ env: { SWITCHBOARD_ADMIN_TOKEN: adminToken } });
  try {
    const admin = await Client.connect(server.url, { name: 'admin', token: adminToken });
    const bystander = await Client.connect(server.url, { name: 'bystander' });
    await rejectsWith(assert, bystander.stopServer(), 'FORBIDDEN', 106);
    // Allowed, but this server has no configuration file to read again.
    await rejectsWith(assert, admin.reloadServer(), 'NOT_FOUND', 101);
    await rejectsWith(assert, Client.connect(server.url, { name: 'x', token: 'not the token' }), 'AUTH_FAILED', 8);
    await admin.stopServer();
    await rejectsWith(assert, bystander.closed, 'SHUTTING_DOWN', 11);
    assert.equal(await server.exited, 0);
  } finally {
    await server.stop();
  }
});
