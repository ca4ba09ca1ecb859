// Starts and stops the real chat-server binary for the end-to-end test: a free port on
// 127.0.0.1, a fresh data directory, the built UI from dist/, and its log kept for failures.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, constants, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { launchChromium } from './browser.mjs';

/** The repository root: defaults below are relative to it, whatever the working directory. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const SERVER_BIN = path.resolve(REPO_ROOT, process.env.CHAT_SERVER_BIN ?? 'target/release/chat-server');
const STATIC_DIR = path.resolve(REPO_ROOT, process.env.CHAT_DIST ?? 'dist');

/** How many lines of server output to keep for a failure report. */
const LOG_LINES_KEPT = 200;

/** A port nobody listens on now: bind port 0, read what the kernel chose, close. */
export async function freePort() {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address();
  probe.close();
  await once(probe, 'close');
  return port;
}

/**
 * One server deployment: a port and a data directory that survive restarts, so a restarted
 * server is the same server to the browsers (same URL, same accounts and messages).
 */
export class ChatServer {
  /**
   * @param {number} port
   * @param {string[]} extraArgs more chat-server flags, e.g. lower limits for a test
   */
  constructor(port, dataDir, extraArgs = []) {
    this.port = port;
    this.dataDir = dataDir;
    this.extraArgs = extraArgs;
    this.url = `http://127.0.0.1:${port}/`;
    /** @type {import('node:child_process').ChildProcess | null} */
    this.process = null;
    /** The last lines the server printed, across restarts. */
    this.log = [];
  }

  /** A deployment on a free port with a fresh, empty data directory. */
  static async create({ extraArgs = [] } = {}) {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'chat-e2e-data-'));
    return new ChatServer(await freePort(), dataDir, extraArgs);
  }

  /** Starts the binary and waits until it serves the UI (`GET /` answers 200). */
  async start({ timeoutMs = 15_000 } = {}) {
    if (this.process) throw new Error('the server is already running');
    await access(SERVER_BIN, constants.X_OK).catch(() => {
      throw new Error(`no server binary at ${SERVER_BIN}: build it (cargo build --release -p chat-server) or set CHAT_SERVER_BIN`);
    });
    await access(path.join(STATIC_DIR, 'index.html')).catch(() => {
      throw new Error(`no ${STATIC_DIR}/index.html: build the UI (trunk build --release) or set CHAT_DIST`);
    });
    const child = spawn(
      SERVER_BIN,
      [
        '--listen', `127.0.0.1:${this.port}`,
        '--data-dir', this.dataDir,
        '--static-dir', STATIC_DIR,
        '--heartbeat-secs', '2',
        ...this.extraArgs,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RUST_LOG ?? 'info' } },
    );
    this.process = child;
    for (const stream of [child.stdout, child.stderr]) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => this.#remember(chunk));
    }
    const exited = once(child, 'exit').then(([code, signal]) => {
      if (this.process === child) this.process = null;
      return { code, signal };
    });
    child.exitStatus = exited;
    child.on('error', (error) => this.#remember(`spawn failed: ${error.message}\n`));

    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${SERVER_BIN} exited before serving (${child.exitCode ?? child.signalCode}):\n${this.logTail()}`);
      }
      try {
        const response = await fetch(this.url, { signal: AbortSignal.timeout(1_000) });
        await response.arrayBuffer();
        if (response.status === 200) return;
        throw new Error(`GET ${this.url} answered ${response.status}; is ${STATIC_DIR} built (trunk build --release)?`);
      } catch (error) {
        if (error.message?.startsWith('GET ')) throw error;
        // Not listening yet: try again shortly.
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`GET ${this.url} did not answer 200 within ${timeoutMs} ms:\n${this.logTail()}`);
  }

  /** Sends SIGTERM and waits for the exit; returns `{ code, signal }`. */
  async stop({ timeoutMs = 10_000 } = {}) {
    const child = this.process;
    if (!child) throw new Error('the server is not running');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    try {
      const status = await child.exitStatus;
      return { ...status, killed: status.signal === 'SIGKILL' };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills the server at once (SIGKILL: no goodbye to its clients), keeping its data. */
  async kill() {
    const child = this.process;
    if (!child) throw new Error('the server is not running');
    child.kill('SIGKILL');
    await child.exitStatus;
  }

  /**
   * Runs an operator's task (`chat-server add-account dave`, say) on this server's data with
   * `input` on its standard input; resolves to its exit code and everything it printed.
   */
  async operatorTask(args, input = '', { timeoutMs = 30_000 } = {}) {
    const child = spawn(SERVER_BIN, ['--data-dir', this.dataDir, ...args], {
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: timeoutMs,
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.stdin.end(input);
    const [code] = await once(child, 'close');
    return { code, output };
  }

  /** Ends the server whatever its state, and removes its data: for `after`. */
  async dispose() {
    if (this.process) await this.kill();
    await rm(this.dataDir, { recursive: true, force: true });
  }

  logTail(lines = 40) {
    return this.log.slice(-lines).join('\n');
  }

  #remember(chunk) {
    const plain = chunk.replace(/\x1b\[[0-9;]*m/g, '');
    this.log.push(...plain.split('\n').filter((line) => line.length > 0));
    if (this.log.length > LOG_LINES_KEPT) this.log.splice(0, this.log.length - LOG_LINES_KEPT);
  }
}

/**
 * A `step(name, body)` for a story told in several tests: each step is a test; after a failed
 * one the rest are skipped, and the failure runs `report` (which prints what explains it).
 */
export function storySteps(report, { timeout = 45_000 } = {}) {
  let failed = false;
  return (name, body) =>
    test(name, { timeout }, async (t) => {
      if (failed) {
        t.skip('an earlier step failed');
        return;
      }
      try {
        await body();
      } catch (error) {
        failed = true;
        await report();
        throw error;
      }
    });
}

/**
 * For a `describe` block: before its tests, a fresh server (with `extraArgs`) and a headless
 * Chromium; after them, both ended and the server's data removed. Read `suite.server` and
 * `suite.browser` inside tests and hooks (they are set only once `before` has run).
 */
export function serverAndBrowser({ extraArgs = [] } = {}) {
  const suite = {
    /** @type {ChatServer | null} */ server: null,
    browser: null,
    /** Prints the server's last log lines and each of `users`' page reports, for a failure. */
    report(users) {
      console.error(`--- chat-server log (last lines) ---\n${suite.server?.logTail() ?? ''}`);
      for (const user of users) if (user) console.error(user.report());
    },
    /**
     * A `step(name, body)` for a story told in several tests: each step is a test; after a
     * failed one the rest are skipped, and the failure prints `users()`' reports.
     */
    steps(users) {
      return storySteps(() => suite.report(users()));
    },
  };
  before(async () => {
    suite.server = await ChatServer.create({ extraArgs });
    await suite.server.start();
    suite.browser = await launchChromium();
  });
  after(async () => {
    await suite.browser?.close().catch((error) => console.error(`closing Chromium: ${error}`));
    await suite.server?.dispose();
  });
  return suite;
}
