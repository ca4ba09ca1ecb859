// Three servers on one PostgreSQL behind nginx, configured with the README's own example (read
// from README.md; only the servers' addresses, the port and the certificate's paths are
// changed): what an operator who follows "Several servers on PostgreSQL" gets.
// - Browsers load the app and chat live over HTTPS (HTTP/2 to nginx, gRPC-web on to the
//   servers), and when servers are killed (SIGKILL) or stopped (SIGTERM) their streams
//   follow nginx to the live ones with nothing lost or doubled.
// - Native gRPC goes through `grpc_pass` and gRPC-web through `proxy_pass`, each with the
//   client's address in X-Forwarded-For: the per-address sign-in limit counts each client
//   (addresses 127.0.0.2 and up, on the loopback), not nginx; and nginx's own connections
//   are not capped per address (the servers run with a cap of 2).
// Needs nginx (scripts/test installs Debian's), openssl, psql and the PostgreSQL at
// CHAT_TEST_DATABASE_URL (default 127.0.0.1:5432). Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import http2 from 'node:http2';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { promisify } from 'node:util';

import { ChatUser, launchChromium } from './browser.mjs';
import { encodeStrings, frame, grpcWebHeaders, readGrpcWebReply } from './grpc_web.mjs';
import { readmeNginxBlock, replaceExactly, startNginx } from './nginx.mjs';
import { ChatServer, freePort, storySteps } from './server.mjs';

const run = promisify(execFile);

const ADMIN_URL = process.env.CHAT_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const PASSWORD = 'correct horse battery';
/** Sign-in attempts per minute per client address on the servers here. */
const SIGN_INS_PER_ADDRESS = 3;
/** How long a browser may take to reconnect through nginx after its server died. */
const RECONNECT_MS = 20_000;

const GRPC_UNAUTHENTICATED = '16';
const GRPC_RESOURCE_EXHAUSTED = '8';

/** The README's nginx example, pointed at `servers` and listening on `port`. */
async function readmeNginxConfig({ servers, port, cert, key }) {
  let config = await readmeNginxBlock('upstream chat_grpc');
  servers.forEach((server, index) => {
    config = replaceExactly(config, `10.0.0.1${index + 1}:8080`, `127.0.0.1:${server.port}`, 2);
  });
  config = replaceExactly(config, 'listen 443 ssl http2;', `listen 127.0.0.1:${port} ssl http2;`);
  config = replaceExactly(config, '/etc/ssl/chat.example.org.pem', cert);
  return replaceExactly(config, '/etc/ssl/chat.example.org.key', key);
}

/** A unary call over native gRPC (HTTP/2, TLS) from `localAddress`: `{ status, message }`. */
function nativeCall(origin, rpcPath, message, localAddress) {
  return new Promise((resolve, reject) => {
    const session = http2.connect(origin, { rejectUnauthorized: false, localAddress });
    session.on('error', reject);
    const call = session.request({
      ':method': 'POST',
      ':path': rpcPath,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    let headers = {};
    let trailers = {};
    call.on('response', (received) => (headers = received));
    call.on('trailers', (received) => (trailers = received));
    call.on('data', () => {});
    call.on('error', reject);
    call.on('end', () => {
      session.close();
      const field = (name) => trailers[name] ?? headers[name];
      resolve({ status: field('grpc-status'), message: decodeURIComponent(field('grpc-message') ?? '') });
    });
    call.setTimeout(5_000, () => call.close(http2.constants.NGHTTP2_CANCEL));
    call.end(frame(message));
  });
}

/** A unary call over gRPC-web (HTTP/1.1, TLS) from `localAddress`: `{ status, message }`. */
function grpcWebCall(origin, rpcPath, message, localAddress) {
  const { hostname, port } = new URL(origin);
  return new Promise((resolve, reject) => {
    const request = https.request(
      { hostname, port, path: rpcPath, method: 'POST', headers: grpcWebHeaders(), localAddress, rejectUnauthorized: false, timeout: 5_000 },
      (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => {
          const { status, message: text } = readGrpcWebReply(Buffer.concat(chunks), (name) => response.headers[name]);
          resolve({ status, message: text });
        });
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.on('timeout', () => request.destroy(new Error(`${rpcPath} timed out`)));
    request.end(frame(message));
  });
}

/** Signs in as an account that does not exist, which counts against the address's limit. */
function signInAttempt(call, origin, localAddress) {
  return call(origin, '/chat.Auth/SignIn', encodeStrings({ 1: 'nobody', 2: 'not the password' }), localAddress);
}

describe("three servers on one PostgreSQL behind the README's nginx", { timeout: 170_000 }, () => {
  let dir;
  let database;
  let databaseUrl;
  /** @type {ChatServer[]} */ const servers = [];
  let nginx;
  let origin;
  let browser;
  /** @type {ChatUser} */ let alice;
  /** @type {ChatUser} */ let bob;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'chat-e2e-nginx-'));
    // nginx's workers may run as another user (root's nginx starts them as nobody).
    await chmod(dir, 0o755);
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost']);

    database = `chat_e2e_${process.pid}_${Date.now()}`;
    await run('psql', [ADMIN_URL, '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE DATABASE ${database}`]);
    const url = new URL(ADMIN_URL);
    url.pathname = `/${database}`;
    databaseUrl = url.href;

    for (let index = 0; index < 3; index++) {
      const server = await ChatServer.create({
        extraArgs: [
          '--database-url', databaseUrl,
          // nginx reaches the servers from 127.0.0.1: its X-Forwarded-For is believed, and
          // its connections (one per open stream) are not capped per address, which 2 would
          // otherwise be for two browsers' streams and their calls.
          '--trusted-proxies', '127.0.0.1',
          '--max-connections-per-address', '2',
          '--sign-in-per-address-per-minute', String(SIGN_INS_PER_ADDRESS),
        ],
      });
      servers.push(server);
      // One at a time: the first migrates the new database.
      await server.start({ timeoutMs: 30_000 });
    }

    const port = await freePort();
    origin = `https://127.0.0.1:${port}`;
    const config = `pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 1024; }
http {
    access_log ${dir}/access.log;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
${await readmeNginxConfig({ servers, port, cert, key })}
}
`;
    nginx = await startNginx({
      dir,
      config,
      serving: async () => {
        const status = await new Promise((resolve, reject) =>
          https.get(`${origin}/`, { rejectUnauthorized: false }, (response) => {
            response.resume();
            resolve(response.statusCode);
          }).on('error', reject),
        );
        assert.equal(status, 200);
      },
    });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch((error) => console.error(`closing Chromium: ${error}`));
    await nginx?.stop();
    for (const server of servers) await server.dispose();
    if (database) {
      await run('psql', [ADMIN_URL, '-qc', `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`])
        .catch((error) => console.error(`dropping ${database}: ${error}`));
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // After a failed step: every server's log, nginx's and each browser's report.
  const step = storySteps(async () => {
    servers.forEach((server, index) => console.error(`--- server ${index + 1} (last lines) ---\n${server.logTail()}`));
    if (nginx) console.error(await nginx.report());
    for (const user of [alice, bob]) if (user) console.error(user.report());
  }, { timeout: 60_000 });

  step('Alice and Bob load the app through nginx and chat live', async () => {
    alice = await ChatUser.open(browser, `${origin}/`, 'alice', { ignoreHTTPSErrors: true });
    bob = await ChatUser.open(browser, `${origin}/`, 'bob', { ignoreHTTPSErrors: true });
    await alice.signUp(PASSWORD);
    await bob.signUp(PASSWORD);
    await alice.waitUntilConnected();
    await bob.waitUntilConnected();
    await alice.startChatWith(bob.name);
    await alice.send('one');
    await alice.waitUntilSent('one');
    await bob.openChatWith(alice.name);
    await bob.messages('one').waitFor();
    await bob.send('two');
    await alice.messages('two').waitFor();
  });

  step('the sign-in limit counts each client behind nginx, over native gRPC and gRPC-web', async () => {
    for (const [call, address] of [[nativeCall, '127.0.0.2'], [grpcWebCall, '127.0.0.3']]) {
      for (let attempt = 1; attempt <= SIGN_INS_PER_ADDRESS; attempt++) {
        const answer = await signInAttempt(call, origin, address);
        assert.equal(answer.status, GRPC_UNAUTHENTICATED, `${call.name} attempt ${attempt} from ${address}: ${answer.message}`);
      }
      const over = await signInAttempt(call, origin, address);
      assert.equal(over.status, GRPC_RESOURCE_EXHAUSTED, `${call.name} from ${address} over the limit: ${over.message}`);
    }
    // Had the servers counted nginx's address, every client would now be over the limit.
    for (const call of [nativeCall, grpcWebCall]) {
      const fresh = await signInAttempt(call, origin, '127.0.0.4');
      assert.equal(fresh.status, GRPC_UNAUTHENTICATED, `${call.name} from a new address: ${fresh.message}`);
    }
  });

  step('servers die, then one stops as in a rolling restart; the browsers follow nginx to the live one, nothing lost or doubled', async () => {
    await servers[0].kill();
    await servers[1].kill();
    await alice.send('three');
    await alice.waitUntilSent('three', RECONNECT_MS);
    await bob.messages('three').waitFor({ timeout: RECONNECT_MS });

    // Now every stream is on the third server: stop it (SIGTERM, as a rolling restart does:
    // its streams end with UNAVAILABLE), with the first one back.
    await servers[0].start({ timeoutMs: 30_000 });
    await servers[2].stop();
    await bob.send('four');
    await bob.waitUntilSent('four', RECONNECT_MS);
    await alice.messages('four').waitFor({ timeout: RECONNECT_MS });
    for (const user of [alice, bob]) {
      await user.waitUntilConnected(RECONNECT_MS);
      assert.deepEqual(await user.messageTexts(), ['one', 'two', 'three', 'four'], `${user.name}'s log`);
    }
  });
});
