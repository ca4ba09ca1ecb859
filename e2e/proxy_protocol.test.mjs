// The server behind a load balancer that passes TCP through (layer 4): nginx's stream module
// configured with the README's own example (read from README.md; the addresses and the port
// changed, one server instead of three, and nginx made to connect from 127.0.0.2, its address
// as the server sees it), and the server started with `--proxy-protocol-from 127.0.0.2`. Browsers load the app and chat live through it, and
// the per-address sign-in limit counts each client that nginx names in its PROXY protocol
// header (the loopback addresses 127.0.0.3 and up), not nginx. Needs nginx with its stream
// module (scripts/test installs Debian's nginx and libnginx-mod-stream). Run it with
// e2e/run.sh.

import assert from 'node:assert/strict';
import { access, chmod, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';

import { ChatUser, launchChromium } from './browser.mjs';
import { encodeStrings, frame, grpcWebHeaders, readGrpcWebReply } from './grpc_web.mjs';
import { readmeNginxBlock, replaceExactly, startNginx } from './nginx.mjs';
import { ChatServer, freePort, storySteps } from './server.mjs';

const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';
const PASSWORD = 'correct horse battery';
/** Sign-in attempts per minute per client address on the server here. */
const SIGN_INS_PER_ADDRESS = 3;
const GRPC_UNAUTHENTICATED = '16';
const GRPC_RESOURCE_EXHAUSTED = '8';

/** The README's layer-4 nginx example, pointed at `serverPort` and listening on `port`. */
async function readmeStreamConfig({ serverPort, port }) {
  const block = await readmeNginxBlock('stream {');
  let config = replaceExactly(block, '10.0.0.11:8080', `127.0.0.1:${serverPort}`);
  config = replaceExactly(config, '        server 10.0.0.12:8080 max_fails=0;\n', '');
  config = replaceExactly(config, '        server 10.0.0.13:8080 max_fails=0;\n', '');
  config = replaceExactly(config, 'listen 443;', `listen 127.0.0.1:${port};`);
  // On the loopback every address is nginx's: this is the one the server is told about.
  return replaceExactly(config, 'proxy_protocol on;', 'proxy_protocol on;\n        proxy_bind 127.0.0.2;');
}

/** A SignIn of an account that does not exist over gRPC-web, from `localAddress`. */
function signInAttempt(origin, localAddress) {
  const { hostname, port } = new URL(origin);
  return new Promise((resolve, reject) => {
    const request = http.request(
      { hostname, port, path: '/chat.Auth/SignIn', method: 'POST', headers: grpcWebHeaders(), localAddress, timeout: 5_000 },
      (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => resolve(readGrpcWebReply(Buffer.concat(chunks), (name) => response.headers[name])));
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.on('timeout', () => request.destroy(new Error('SignIn timed out')));
    request.end(frame(encodeStrings({ 1: 'nobody', 2: 'not the password' })));
  });
}

describe('the server behind a layer-4 load balancer sending the PROXY protocol (nginx stream)', { timeout: 90_000 }, () => {
  let dir;
  /** @type {ChatServer} */ let server;
  let nginx;
  let origin;
  let browser;
  /** @type {ChatUser} */ let alice;
  /** @type {ChatUser} */ let bob;

  before(async () => {
    await access(STREAM_MODULE).catch(() => {
      throw new Error(`no ${STREAM_MODULE}: scripts/test installs Debian's libnginx-mod-stream`);
    });
    dir = await mkdtemp(path.join(tmpdir(), 'chat-e2e-l4-'));
    await chmod(dir, 0o755);
    server = await ChatServer.create({
      extraArgs: [
        '--proxy-protocol-from', '127.0.0.2',
        '--sign-in-per-address-per-minute', String(SIGN_INS_PER_ADDRESS),
      ],
    });
    // Started before nginx: its readiness check comes straight from 127.0.0.1, which sends
    // no header and needs none.
    await server.start();
    const port = await freePort();
    origin = `http://127.0.0.1:${port}/`;
    const config = `load_module ${STREAM_MODULE};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
worker_processes 1;
events { worker_connections 512; }
${await readmeStreamConfig({ serverPort: server.port, port })}`;
    nginx = await startNginx({
      dir,
      config,
      serving: async () => {
        const response = await fetch(origin, { signal: AbortSignal.timeout(1_000) });
        await response.arrayBuffer();
        assert.equal(response.status, 200);
      },
    });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await nginx?.stop();
    await server?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const step = storySteps(async () => {
    console.error(`--- chat-server log (last lines) ---\n${server?.logTail() ?? ''}`);
    if (nginx) console.error(await nginx.report());
    for (const user of [alice, bob]) if (user) console.error(user.report());
  });

  step('Alice and Bob load the app through the load balancer and chat live', async () => {
    alice = await ChatUser.open(browser, origin, 'alice');
    bob = await ChatUser.open(browser, origin, 'bob');
    await alice.signUp(PASSWORD);
    await bob.signUp(PASSWORD);
    for (const user of [alice, bob]) await user.waitUntilConnected();
    await alice.startChatWith('bob');
    const text = 'Hello through a layer-4 load balancer';
    await alice.send(text);
    await alice.waitUntilSent(text);
    await bob.openChatWith('alice');
    await bob.messages(text).first().waitFor();
    assert.deepEqual([...alice.pageErrors, ...bob.pageErrors], [], 'uncaught errors in the pages');
  });

  step('the sign-in limit counts each client the load balancer names, not the load balancer', async () => {
    for (let n = 0; n < SIGN_INS_PER_ADDRESS; n++) {
      const { status, message } = await signInAttempt(origin, '127.0.0.3');
      assert.equal(status, GRPC_UNAUTHENTICATED, `attempt ${n + 1} from 127.0.0.3: ${message}`);
    }
    const over = await signInAttempt(origin, '127.0.0.3');
    assert.equal(over.status, GRPC_RESOURCE_EXHAUSTED, `over the limit from 127.0.0.3: ${over.message}`);
    assert.match(over.message, /from your address/);
    // Had the server counted the load balancer's address, everyone would be over it now.
    const other = await signInAttempt(origin, '127.0.0.4');
    assert.equal(other.status, GRPC_UNAUTHENTICATED, `another client: ${other.message}`);
    // The browsers' streams (from 127.0.0.1) still deliver.
    const text = 'Still live after the guessing';
    await bob.send(text);
    await alice.messages(text).first().waitFor();
  });
});
