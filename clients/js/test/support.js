// Test support: a real server process on port 0 (its addresses read from its output),
// and helpers to wait for things without sleeping blindly.

import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

/** The server binary: SWITCHBOARD_BIN, else the workspace's debug build. */
export const BIN = process.env.SWITCHBOARD_BIN
  ? resolve(REPO_ROOT, process.env.SWITCHBOARD_BIN)
  : join(REPO_ROOT, 'target', 'debug', 'switchboard');

/** A directory removed by `cleanup`. */
export function tempDir() {
  return mkdtempSync(join(tmpdir(), 'switchboard-js-'));
}

/**
 * Starts `switchboard serve` on port 0 (TCP and HTTP) with history in memory.
 * @param {{ args?: string[], env?: Record<string, string>, config?: string }} [options]
 *   config: the text of a TOML config file
 * @returns {Promise<{ url: string, http: string, tcp: string, stop(): Promise<void>, exited: Promise<number|null>, output(): string }>}
 */
export async function startServer({ args = [], env = {}, config } = {}) {
  const dir = tempDir();
  const extra = [];
  if (config !== undefined) {
    const path = join(dir, 'switchboard.toml');
    writeFileSync(path, config);
    extra.push('--config', path);
  }
  const child = spawn(
    BIN,
    ['serve', '--memory', '--no-unix', '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0', ...extra, ...args],
    { env: { ...process.env, RUST_LOG: undefined, ...env }, stdio: ['ignore', 'pipe', 'pipe'], cwd: dir },
  );
  let output = '';
  const exited = new Promise((resolveExit) => child.on('exit', (code) => resolveExit(code)));
  const addresses = new Promise((resolveAddresses, reject) => {
    const found = {};
    const look = (chunk) => {
      output += chunk;
      // Whole lines only: an address may arrive in two pieces.
      const http = /switchboard listening on http:\/\/(\S+)\r?\n/.exec(output);
      const tcp = /switchboard listening on (\d[\d.]*:\d+)\r?\n/.exec(output);
      if (http) found.http = http[1];
      if (tcp) found.tcp = tcp[1];
      if (found.http && found.tcp) resolveAddresses(found);
    };
    child.stdout.setEncoding('utf8').on('data', look);
    child.stderr.setEncoding('utf8').on('data', look);
    exited.then((code) => reject(new Error(`the server exited (${code}) before listening:\n${output}`)));
    child.on('error', reject);
  });
  const timeout = setTimeout(() => child.kill('SIGKILL'), 20_000);
  let found;
  try {
    found = await addresses;
  } finally {
    clearTimeout(timeout);
  }
  return {
    url: `ws://${found.http}/ws`,
    http: found.http,
    tcp: found.tcp,
    dir,
    exited,
    output: () => output,
    /** Sends the server process a signal ('SIGSTOP', 'SIGCONT', 'SIGKILL'...). */
    signal: (name) => child.kill(name),
    pid: child.pid,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Runs the CLI; resolves with its stdout, rejects with its stderr.
 * @param {string[]} args
 */
export function cli(args, { input, env = {}, timeout = 20_000 } = {}) {
  return new Promise((resolveRun, reject) => {
    const child = execFile(BIN, args, { env: { ...process.env, ...env }, timeout }, (error, stdout, stderr) => {
      if (error) reject(new Error(`switchboard ${args.join(' ')}: ${error.message}\n${stderr}`));
      else resolveRun(stdout);
    });
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

/**
 * The next value of an async iterator, failing after `ms` (generous, for a busy machine:
 * the wait ends as soon as the value arrives).
 */
export async function nextWithin(iterator, ms = 15_000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`nothing arrived within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([iterator.next(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Asserts that `promise` rejects with a SwitchboardError of `code` and `number`. */
export async function rejectsWith(assert, promise, code, number) {
  await assert.rejects(promise, (error) => {
    assert.equal(error.name, 'SwitchboardError', `a SwitchboardError, got ${error}`);
    assert.equal(error.code, code, error.message);
    if (number !== undefined) assert.equal(error.number, number);
    return true;
  });
}
