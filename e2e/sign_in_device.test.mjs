// Guesses at Alice's password from many addresses empty her account's shared sign-in budget,
// and then everyone without a device key waits. The browser Alice signed in with before keeps
// the device key its session came with (after signing out, too) and shows it at SignIn: she
// gets in at once, and can change her password, which takes the same check. A browser she
// never used waits, with the reason on the page. The server
// believes the test's X-Forwarded-For (`--trusted-proxies 127.0.0.1`), so each guess comes
// from an address of its own. Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { ChatUser } from './browser.mjs';
import { encodeStrings, frame, grpcWebHeaders, readGrpcWebReply } from './grpc_web.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
const NEW_PASSWORD = 'correct horse battery staple';
/** With 2 free failures and 30 s as the longest wait, the budget holds 2 + 5 + 1 guesses. */
const BUDGET = 8;

/** A SignIn of `user` made, as a proxy says, for `address`; returns its grpc-status and message. */
async function signInFrom(url, address, user, password) {
  const response = await fetch(new URL('/chat.Auth/SignIn', url), {
    method: 'POST',
    headers: { ...grpcWebHeaders(), 'x-forwarded-for': address },
    body: frame(encodeStrings({ 1: user, 2: password })),
    signal: AbortSignal.timeout(10_000),
  });
  const body = Buffer.from(await response.arrayBuffer());
  return readGrpcWebReply(body, (name) => response.headers.get(name));
}

/** Fills the sign-in form as `user` with `password` and presses "Sign in". */
async function signIn(user, password) {
  user.note(`[test] sign in as ${user.name}`);
  await user.page.getByLabel('Username', { exact: true }).fill(user.name);
  await user.page.getByLabel('Password', { exact: true }).fill(password);
  await user.button('Sign in').click();
}

describe('the browser someone signed in with before is not kept out by guesses from elsewhere', { timeout: 120_000 }, () => {
  /** @type {ChatUser} */ let alice;
  /** @type {ChatUser} */ let aliceElsewhere;

  const suite = serverAndBrowser({
    extraArgs: [
      '--sign-in-free-failures', '2',
      '--sign-in-max-delay-secs', '30',
      '--trusted-proxies', '127.0.0.1',
    ],
  });
  const step = suite.steps(() => [alice, aliceElsewhere]);

  step('Alice signs up, and signs out', async () => {
    alice = await ChatUser.open(suite.browser, suite.server.url, 'alice');
    await alice.signUp(PASSWORD);
    const device = await alice.page.evaluate(() => localStorage.getItem('chat.device.alice'));
    assert.match(device ?? '', /^[0-9a-f]{64}$/, 'the browser keeps a device key');
    await alice.button('Sign out').click();
    await alice.page.getByLabel('Username', { exact: true }).waitFor();
    assert.equal(
      await alice.page.evaluate(() => localStorage.getItem('chat.device.alice')),
      device,
      'the device key outlives the session',
    );
  });

  step('guesses from many addresses empty her account budget', async () => {
    for (let n = 0; n < BUDGET; n++) {
      const { status, message } = await signInFrom(suite.server.url, `198.51.100.${n + 1}`, 'alice', 'a wrong guess');
      assert.equal(status, '16', `guess ${n}: ${message}`); // UNAUTHENTICATED: checked, wrong
    }
    const { status, message } = await signInFrom(suite.server.url, '203.0.113.9', 'alice', PASSWORD);
    assert.equal(status, '8', `the right password from yet another address: ${message}`); // RESOURCE_EXHAUSTED
    assert.match(message, /for this account/);
  });

  step('her own browser signs her in at once', async () => {
    await signIn(alice, PASSWORD);
    await alice.button('New chat').waitFor();
    assert.deepEqual(alice.pageErrors, [], "uncaught errors in Alice's page");
  });

  step('her own browser changes her password, and keeps the new key', async () => {
    const before = await alice.page.evaluate(() => localStorage.getItem('chat.device.alice'));
    await alice.page.locator('summary', { hasText: 'Account' }).click();
    await alice.page.getByLabel('Current password').fill(PASSWORD);
    await alice.page.getByLabel('New password').fill(NEW_PASSWORD);
    await alice.button('Change password').click();
    await alice.page
      .getByRole('status')
      .filter({ hasText: 'Your password was changed' })
      .waitFor();
    const after = await alice.page.evaluate(() => localStorage.getItem('chat.device.alice'));
    assert.match(after ?? '', /^[0-9a-f]{64}$/);
    assert.notEqual(after, before, 'the change gives a new device key');
    // The budget is still empty: a browser without the key still waits.
    const { status } = await signInFrom(suite.server.url, '203.0.113.9', 'alice', NEW_PASSWORD);
    assert.equal(status, '8');
  });

  step('a browser she never used waits, and says why', async () => {
    aliceElsewhere = await ChatUser.open(suite.browser, suite.server.url, 'alice');
    await signIn(aliceElsewhere, NEW_PASSWORD);
    await aliceElsewhere.page
      .getByRole('alert')
      .filter({ hasText: 'for this account' })
      .waitFor();
    assert.equal(await aliceElsewhere.button('New chat').count(), 0, 'signed in despite the empty budget');
  });
});
