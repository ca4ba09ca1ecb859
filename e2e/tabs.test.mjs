// One browser, one stream: Alice's tabs in one browser profile (one context: shared locks,
// channels and localStorage) share the one stream the first tab holds, which the server's
// open-stream gauge (/metrics) shows; a message sent from another tab goes out once; when the
// leading tab closes while Bob keeps writing, another tab takes over, and every tab shows every
// message once, in order, including one written in a tab during the takeover. With 10 tabs
// the browser still holds one stream. A browser without Web Locks falls back to one stream per
// tab, and still shows each message once. A tab whose history was read before the leading tab
// began streaming reads it again. Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { ChatUser, eventually, STEP_MS } from './browser.mjs';
import { decodeStrings, encodeStrings, unary } from './grpc_web.mjs';
import { freePort, serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
/** Bob's messages while the leading tab closes. */
const BURST = 16;
const BURST_GAP_MS = 120;
/** Longer than one heartbeat (the server runs with --heartbeat-secs 2): a second copy of a
 * message would have shown by then. */
const SETTLE_MS = 2_500;
const METRICS_PORT = await freePort();

/** The server's count of open streams, from its metrics listener. */
async function openStreams() {
  const response = await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`, { signal: AbortSignal.timeout(2_000) });
  const line = (await response.text()).split('\n').find((l) => l.startsWith('chat_open_streams '));
  assert.ok(line, 'the metrics report chat_open_streams');
  return Number(line.split(' ')[1]);
}

async function waitForStreams(expected, timeout = STEP_MS) {
  await eventually(`${expected} open streams`, async () => assert.equal(await openStreams(), expected), {
    timeout,
  });
}

describe("one stream for all of a browser's tabs", { timeout: 170_000 }, () => {
  /** @type {ChatUser[]} Alice's tabs, in the order opened, all in one browser context. */
  const tabs = [];
  /** @type {ChatUser} */ let bob;
  let chatId;
  let bobToken;
  const expected = [];

  const suite = serverAndBrowser({
    extraArgs: ['--metrics-listen', `127.0.0.1:${METRICS_PORT}`, '--send-rate', '0'],
  });
  const step = suite.steps(() => [...tabs, bob]);

  /** Opens one more of Alice's tabs in her browser context, signed in by the stored session. */
  async function openTab() {
    const page = await tabs[0].context.newPage();
    const tab = new ChatUser(`alice (tab ${tabs.length + 1})`, tabs[0].context, page);
    tabs.push(tab);
    await page.goto(suite.server.url);
    await tab.button('New chat').waitFor();
    return tab;
  }

  /** Bob writes from a client of his own: the server's copy is what every tab must show. */
  async function bobSends(text) {
    await unary(suite.server.url, '/chat.Chat/Send', encodeStrings({ 1: `bob-${expected.length}`, 2: chatId, 5: text }), {
      token: bobToken,
    });
    expected.push(text);
  }

  /** Every open tab of Alice's and Bob's own shows `expected`, once each, in order. */
  async function everyoneShowsExpected() {
    for (const user of [...tabs.filter((tab) => !tab.page.isClosed()), bob]) {
      await eventually(`${user.name} shows every message once, in order`, async () =>
        assert.deepEqual(await user.messageTexts(), expected),
      );
    }
  }

  step('three tabs of Alice share one stream; Bob has his own', async () => {
    tabs.push(await ChatUser.open(suite.browser, suite.server.url, 'alice'));
    bob = await ChatUser.open(suite.browser, suite.server.url, 'bob');
    await tabs[0].signUp(PASSWORD);
    await bob.signUp(PASSWORD);
    await tabs[0].startChatWith(bob.name);
    bobToken = await bob.page.evaluate(() => JSON.parse(localStorage.getItem('chat.session')).token);
    const members = Buffer.concat(['alice', 'bob'].map((member) => encodeStrings({ 1: member })));
    chatId = decodeStrings(await unary(suite.server.url, '/chat.Chat/New', members, { token: bobToken }))[1];
    await openTab();
    await openTab();
    for (const user of [...tabs, bob]) await user.waitUntilConnected();
    await waitForStreams(2);
    // A chat shows in Bob's list once it has a message.
    await bobSends('Hello from Bob');
    await bob.openChatWith('alice');
    for (const tab of tabs) await tab.openChatWith(bob.name);
    await everyoneShowsExpected();
  });

  step('a message written in a tab that does not hold the stream goes out once', async () => {
    await tabs[1].send('Sent from the second tab');
    expected.push('Sent from the second tab');
    await tabs[1].waitUntilSent('Sent from the second tab');
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    await everyoneShowsExpected();
  });

  step('the leading tab closes while Bob writes: another takes over, nothing lost or doubled', async () => {
    const burst = (async () => {
      for (let n = 0; n < BURST; n++) {
        await bobSends(`Bob's message ${n}`);
        await new Promise((resolve) => setTimeout(resolve, BURST_GAP_MS));
      }
    })();
    // Mid-burst, the first tab (the one that took the lock) closes, and the second writes
    // at once: no tab holds the stream at that moment.
    await new Promise((resolve) => setTimeout(resolve, (BURST / 2) * BURST_GAP_MS));
    tabs[0].note('[test] close the leading tab');
    await tabs[0].page.close();
    const during = 'Written while the stream changed hands';
    await tabs[1].send(during);
    await burst;
    await tabs[1].waitUntilSent(during);
    for (const tab of tabs.slice(1)) await tab.waitUntilConnected();
    await waitForStreams(2);
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    // Where the message written during the takeover falls among Bob's depends on when the
    // new leader sent it: take its place from Bob's log, then check everything else.
    const bobsLog = await bob.messageTexts();
    assert.equal(bobsLog.filter((text) => text === during).length, 1, 'Bob got it once');
    assert.deepEqual(bobsLog.slice(0, 2), ['Hello from Bob', 'Sent from the second tab']);
    assert.equal(bobsLog.length, 2 + BURST + 1, "Bob's log: nothing else, nothing twice");
    expected.splice(0, expected.length, ...bobsLog);
    const bobsOwn = bobsLog.filter((text) => text.startsWith("Bob's message"));
    assert.deepEqual(
      bobsOwn,
      Array.from({ length: BURST }, (_, n) => `Bob's message ${n}`),
      "Bob's log holds his burst once, in order",
    );
    await everyoneShowsExpected();
    const stored = await tabs[1].page.evaluate(() =>
      Object.keys(localStorage).filter((key) => key.startsWith('chat.outbox.alice')),
    );
    assert.deepEqual(stored, [], 'nothing left in the stored outbox');
  });

  step('with 10 tabs open the browser holds one stream', async () => {
    while (tabs.filter((tab) => !tab.page.isClosed()).length < 10) await openTab();
    const open = tabs.filter((tab) => !tab.page.isClosed());
    assert.equal(open.length, 10);
    for (const tab of open) await tab.waitUntilConnected();
    await waitForStreams(2);
    const streams = await openStreams();
    console.log(`open streams with 10 tabs of Alice's and 1 of Bob's: ${streams}`);
    await bobSends('Seen by ten tabs');
    await open.at(-1).openChatWith(bob.name);
    await open.at(-1).messages('Seen by ten tabs').first().waitFor();
    for (const user of [...open, bob]) assert.deepEqual(user.pageErrors, [], `uncaught errors in ${user.name}'s page`);
  });

  step('a browser without Web Locks gives each tab its own stream, as before', async () => {
    const old = await ChatUser.open(suite.browser, suite.server.url, 'alice (no Web Locks)');
    tabs.push(old);
    await old.context.addInitScript(() => {
      Object.defineProperty(Navigator.prototype, 'locks', { configurable: true, get: () => undefined });
    });
    await old.page.reload();
    await old.page.getByLabel('Username', { exact: true }).fill('alice');
    await old.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await old.button('Sign in').click();
    await old.button('New chat').waitFor();
    const second = new ChatUser('alice (no Web Locks, tab 2)', old.context, await old.context.newPage());
    tabs.push(second);
    await second.page.goto(suite.server.url);
    for (const tab of [old, second]) await tab.waitUntilConnected();
    assert.equal(await old.page.evaluate(() => navigator.locks), undefined);
    await waitForStreams(4);
    await bobSends('To every tab of every browser');
    for (const tab of [old, second]) {
      await tab.openChatWith(bob.name);
      await eventually(`${tab.name} shows the new message once`, async () =>
        assert.deepEqual((await tab.messageTexts()).slice(-1), ['To every tab of every browser']),
      );
      assert.equal((await tab.messages('To every tab of every browser').count()), 1);
      assert.deepEqual(tab.pageErrors, [], `uncaught errors in ${tab.name}'s page`);
    }
  });

  step('a tab that opened a chat before the leading tab began streaming shows what came between', async () => {
    // A browser restoring two tabs at once: the first takes the stream but lists its chats
    // late; the second lists at once and opens the chat its address names; Bob writes between
    // the two lists, so the leader's stream begins after his message and never passes it on.
    const first = await ChatUser.open(suite.browser, suite.server.url, 'alice (restored)');
    tabs.push(first);
    await first.page.getByLabel('Username', { exact: true }).fill('alice');
    await first.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await first.button('Sign in').click();
    await first.button('New chat').waitFor();
    let listing = false;
    let release;
    const released = new Promise((resolve) => {
      release = resolve;
    });
    await first.page.route('**/chat.Chat/List', async (route) => {
      listing = true;
      await released;
      await route.continue();
    });
    await first.page.reload();
    await eventually("the leading tab's List held", async () => assert.ok(listing));
    const second = new ChatUser('alice (restored, tab 2)', first.context, await first.context.newPage());
    tabs.push(second);
    await second.page.goto(new URL(`/chats/${chatId}`, suite.server.url).href);
    await second.messages(expected.at(-1)).first().waitFor();
    await bobSends('Written between the two lists');
    // From now on the route lets every List through (unrouting could cut one in flight).
    release();
    await first.waitUntilConnected();
    await second.messages('Written between the two lists').first().waitFor();
    assert.equal(await second.messages('Written between the two lists').count(), 1);
    await first.openChatWith(bob.name);
    await first.messages('Written between the two lists').first().waitFor();
    assert.deepEqual(second.pageErrors, [], `uncaught errors in ${second.name}'s page`);
  });
});
