// nginx in front of the servers, for the end-to-end tests of the README's load balancer
// examples (`load_balancer.test.mjs`, HTTP; `proxy_protocol.test.mjs`, layer 4): the README's
// blocks with the test's addresses, a configuration checked by `nginx -t`, and nginx run in
// the foreground until the test stops it.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

import { eventually } from './browser.mjs';
import { REPO_ROOT } from './server.mjs';

const run = promisify(execFile);

export const NGINX = process.env.NGINX ?? '/usr/sbin/nginx';

/** `text` with `from` replaced by `to`, which must occur exactly `times` times. */
export function replaceExactly(text, from, to, times = 1) {
  const found = text.split(from).length - 1;
  assert.equal(found, times, `the README's nginx example should hold ${JSON.stringify(from)} ${times} time(s)`);
  return text.replaceAll(from, to);
}

/** The README's first nginx block that holds `marker`. */
export async function readmeNginxBlock(marker) {
  const readme = await readFile(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const block = [...readme.matchAll(/```nginx\n([\s\S]*?)```/g)]
    .map((match) => match[1])
    .find((text) => text.includes(marker));
  assert.ok(block, `README.md holds an nginx example with ${JSON.stringify(marker)}`);
  return block;
}

/**
 * Writes `config` into `dir`, has `nginx -t` check it, starts nginx on it and waits until
 * `serving` (an assertion) passes. Returns `stop`, and `report` (for a failed test: what
 * nginx printed and the last lines of its error log, which `config` must put in `dir`).
 */
export async function startNginx({ dir, config, serving }) {
  await run(NGINX, ['-v']).catch(() => {
    throw new Error(`no nginx at ${NGINX}: scripts/test installs Debian's package nginx (or set NGINX)`);
  });
  const configFile = path.join(dir, 'nginx.conf');
  await writeFile(configFile, config);
  const args = ['-e', path.join(dir, 'error.log'), '-p', dir, '-c', configFile];
  await run(NGINX, [...args, '-t']).catch((error) => {
    throw new Error(`nginx refuses the configuration: ${error.stderr}\n${config}`);
  });
  const nginx = spawn(NGINX, [...args, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  for (const stream of [nginx.stdout, nginx.stderr]) stream.on('data', (chunk) => log.push(String(chunk)));
  const stop = async () => {
    if (nginx.exitCode === null) {
      nginx.kill('SIGTERM');
      await once(nginx, 'exit');
    }
  };
  try {
    await eventually('nginx serves the app', serving, { timeout: 10_000 });
  } catch (error) {
    await stop();
    throw error;
  }
  const report = async () => {
    const errorLog = await readFile(path.join(dir, 'error.log'), 'utf8').catch(() => '');
    return `--- nginx (last lines) ---\n${log.join('')}${errorLog.split('\n').slice(-40).join('\n')}`;
  };
  return { stop, report };
}
