// The end-to-end test: the real chat-server serving the real built UI (dist/), two people in
// two isolated Chromium contexts chatting live both ways, a reload that keeps the session and
// the history, a message that arrives while a chat's history loads, and a server restart that
// the client rides out without losing or duplicating a message; Alice sees "Seen" under her
// message until Bob's reply comes below it. Then Bob reacts and starts typing, and Alice sees
// the reaction, his typing line and him online. Also takes a
// screenshot: target/e2e/screenshot.png, or with UPDATE_SCREENSHOT=1 the README's
// docs/screenshot.png (not on every run: it shows the clock, so it would always change).
// Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { describe } from 'node:test';

import { ChatUser, eventually, holdAnswers } from './browser.mjs';
import { REPO_ROOT, serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
const SCREENSHOT = process.env.UPDATE_SCREENSHOT === '1'
  ? path.join(REPO_ROOT, 'docs', 'screenshot.png')
  : path.join(REPO_ROOT, 'target', 'e2e', 'screenshot.png');
/** Enough for the client's backoff (0.5 s, 1 s, 2 s, 4 s, …) to find the restarted server. */
const RECONNECT_MS = 20_000;
/** Longer than one heartbeat (the server runs with --heartbeat-secs 2): a late duplicate
 * from a replayed stream would have shown by then. */
const SETTLE_MS = 2_500;

describe('two people chat in the browser', { timeout: 120_000 }, () => {
  // Every run has a fresh database, so plain names are unique; the texts differ from one
  // another, so counting a text counts one message.
  const said = {
    hello: 'Hi Bob! Lunch at noon?',
    reply: 'Sounds good, see you there.',
    whileOpening: 'Written while Bob opened the chat',
    offline: 'Typed while the server was down',
    afterRestart: 'Sent after the server restarted',
  };
  /** @type {ChatUser} */ let alice;
  /** @type {ChatUser} */ let bob;

  // Each step builds on the one before: once one fails, the rest are skipped, and what the
  // server and both browsers printed is shown.

  const suite = serverAndBrowser();
  const step = suite.steps(() => [alice, bob]);

  step('Alice and Bob sign up in their own browsers and get connected', async () => {
    alice = await ChatUser.open(suite.browser, suite.server.url, 'alice');
    bob = await ChatUser.open(suite.browser, suite.server.url, 'bob');
    await alice.signUp(PASSWORD);
    await bob.signUp(PASSWORD);
    for (const user of [alice, bob]) await user.waitUntilConnected();
  });

  step('Alice starts a chat with Bob and her message is sent', async () => {
    await alice.startChatWith(bob.name);
    await alice.send(said.hello);
    await alice.messages(said.hello).first().waitFor();
    await alice.waitUntilSent(said.hello);
    assert.equal(await alice.composer.inputValue(), '', 'the message box empties after Enter');
  });

  step('Bob sees the chat arrive live, reads it, and replies; Alice sees the reply live', async () => {
    const entry = bob.chatEntry(alice.name);
    await entry.waitFor();
    await entry.getByLabel(/^\d+ unread$/).waitFor();
    await bob.openChatWith(alice.name);
    await bob.messages(said.hello).filter({ hasText: alice.name }).first().waitFor();

    await bob.send(said.reply);
    await bob.waitUntilSent(said.reply);
    await alice.messages(said.reply).filter({ hasText: bob.name }).first().waitFor();
  });

  step('Bob reloads: still signed in, and the chat history is there in order', async () => {
    bob.note('[test] reload');
    await bob.page.reload();
    await bob.button('New chat').waitFor();
    assert.equal(await bob.button('Sign in').count(), 0, 'no "Sign in" button after a reload');
    await bob.openChatWith(alice.name);
    await bob.messages(said.reply).first().waitFor();
    assert.deepEqual(await bob.messageTexts(), [said.hello, said.reply]);
  });

  step('Bob opens the chat as Alice writes: her message shows, though History answered without it', async () => {
    bob.note('[test] back to the chat list, History held back');
    await bob.page.goto(suite.server.url);
    await bob.waitUntilConnected();
    // The server reads the page at once; Bob's browser gets it only after Alice's message has
    // reached his stream, which never brings that message again.
    const history = await holdAnswers(bob.page, '**/chat.Chat/History');
    await bob.chatEntry(alice.name).click();
    await eventually('History read by the server', async () => assert.ok(history.read));
    await alice.send(said.whileOpening);
    await alice.waitUntilSent(said.whileOpening);
    await bob.chatEntry(said.whileOpening).waitFor();
    await history.end();
    await bob.messages(said.whileOpening).first().waitFor();
    assert.deepEqual(await bob.messageTexts(), [said.hello, said.reply, said.whileOpening]);
  });

  step('the server restarts: Alice reconnects, her offline message goes out once and is seen, live messages flow', async () => {
    await alice.waitUntilConnected();
    const bobsDot = alice.chatEntry(bob.name).locator('.presence-dot');
    await alice.chatEntry(bob.name).getByRole('img', { name: 'bob: online', exact: true }).waitFor();
    const exit = await suite.server.stop();
    assert.deepEqual(exit, { code: 0, signal: null, killed: false }, 'chat-server exits 0 on SIGTERM');
    await eventually("Alice's indicator leaves Connected", async () =>
      assert.notEqual(await alice.connectionText(), 'Connected'),
    );
    // Nor does her chat list claim Bob is online while she cannot know.
    await eventually("Bob's dot is gone from her chat list", async () => assert.equal(await bobsDot.isVisible(), false));
    // What the server last said of Bob may no longer hold: the chat's header, which is all a
    // phone shows of the connection while a chat is open, says so instead of "online".
    const header = alice.page.locator('.conversation-header').getByRole('status');
    await eventually('her chat header says it is connecting', async () =>
      assert.equal(await header.innerText(), 'Connecting…'),
    );

    await alice.send(said.offline);
    const waiting = alice.messages(said.offline).first();
    await waiting.waitFor();
    await eventually('the offline message shown as pending or failed', async () =>
      assert.match(await waiting.innerText(), /Sending…|Failed/),
    );

    await suite.server.start();
    await alice.waitUntilConnected(RECONNECT_MS);
    await bobsDot.waitFor();
    await alice.waitUntilSent(said.offline, RECONNECT_MS);
    await bob.messages(said.offline).first().waitFor({ timeout: RECONNECT_MS });
    // Bob has the chat open: Alice's message, the newest, is seen.
    await alice.messageLog.getByText('Seen', { exact: true }).waitFor({ timeout: RECONNECT_MS });

    await bob.waitUntilConnected(RECONNECT_MS);
    await bob.send(said.afterRestart);
    await bob.waitUntilSent(said.afterRestart);
    await alice.messages(said.afterRestart).first().waitFor();
    // His reply ends her line: below it, "Seen" would read as about his message.
    await eventually("Alice's receipt is gone below Bob's reply", async () =>
      assert.equal(await alice.messageLog.locator('p.receipt').count(), 0),
    );
  });

  step('Bob reacts and starts typing: Alice sees the reaction, "bob is typing…" and Bob online', async () => {
    await bob.messages(said.offline).first().getByRole('button', { name: 'React', exact: true }).click();
    await bob.page.getByRole('button', { name: 'React with 👍' }).click();
    await alice.messages(said.offline).first().locator('.reaction').filter({ hasText: '👍' }).waitFor();
    await alice.page.locator('.conversation-header').getByRole('status').filter({ hasText: 'online' }).waitFor();
    await bob.composer.pressSequentially('See you at');
    await alice.page.getByRole('status').filter({ hasText: 'bob is typing…' }).waitFor();
  });

  step("a screenshot of Alice's chat screen is taken", async () => {
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await alice.page.screenshot({ path: SCREENSHOT });
  });

  step('no message is shown twice or out of order, nothing is left unsent, no page crashed or broke the CSP', async () => {
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const everything = [said.hello, said.reply, said.whileOpening, said.offline, said.afterRestart];
    for (const user of [alice, bob]) {
      const texts = await user.messageTexts();
      const counts = new Map();
      for (const text of texts) counts.set(text, (counts.get(text) ?? 0) + 1);
      const repeated = [...counts].filter(([, count]) => count > 1);
      assert.deepEqual(repeated, [], `messages shown more than once to ${user.name}`);
      assert.deepEqual(texts, everything, `${user.name}'s log`);
      assert.equal(
        await user.messageLog.getByRole('article', { name: 'Your message, not sent yet' }).count(),
        0,
        `${user.name} has no message still waiting`,
      );
      assert.deepEqual(user.pageErrors, [], `uncaught errors (a Rust panic shows as "unreachable") in ${user.name}'s page`);
      assert.deepEqual(await user.cspViolations(), [], `Content-Security-Policy violations in ${user.name}'s page`);
    }
  });

  step('a message in Hebrew reads right to left, one in English left to right', async () => {
    const hebrew = 'שלום בוב, מה שלומך?';
    await alice.send(hebrew);
    await alice.waitUntilSent(hebrew);
    await bob.messages(hebrew).first().waitFor();
    // Where the first `first` and the last `last` of an element's text are drawn: in a
    // right-to-left paragraph the closing "?" stands left of the first letter; in a
    // left-to-right one it would follow the Hebrew words on their right.
    const ends = (element, first, last) => element.evaluate((span, [first, last]) => {
      const node = span.firstChild;
      const at = (start) => {
        const range = document.createRange();
        range.setStart(node, start);
        range.setEnd(node, start + 1);
        return range.getBoundingClientRect().left;
      };
      return { first: at(node.data.indexOf(first)), last: at(node.data.lastIndexOf(last)) };
    }, [first, last]);
    const text = (user, message) => user.messages(message).first().locator('p.text');
    for (const user of [alice, bob]) {
      const rtl = await ends(text(user, hebrew), 'ש', '?');
      assert.ok(rtl.last < rtl.first, `${user.name}: "?" left of "ש" ${JSON.stringify(rtl)}`);
      const ltr = await ends(text(user, said.reply), 'S', '.');
      assert.ok(ltr.last > ltr.first, `${user.name}: "." right of "S" ${JSON.stringify(ltr)}`);
    }
    // Bob's chat list shows it after Alice's name, isolated: the "?" stays left there too.
    const preview = bob.chatEntry(alice.name).locator('.chat-preview', { hasText: 'שלומך' });
    await preview.waitFor();
    const inList = await ends(preview, 'ש', '?');
    assert.ok(inList.last < inList.first, `preview: "?" left of "ש" ${JSON.stringify(inList)}`);
    // Alice's own list says "You" before her message, not her own name.
    const isolated = (text) => text.replace(/[\u2068\u2069]/g, '');
    const own = alice.chatEntry(bob.name).locator('.chat-preview', { hasText: 'שלומך' });
    await own.waitFor();
    assert.equal(isolated(await own.innerText()), `You: ${hebrew}`);
    assert.equal(isolated(await preview.innerText()), `${alice.name}: ${hebrew}`);

    // Found by a search, it starts at the right edge of its result (its text's start side).
    await bob.page.getByRole('searchbox', { name: 'Search messages' }).fill('שלומך');
    await bob.button('Search').click();
    const found = bob.page.getByRole('region', { name: 'Search results' }).locator('.text').first();
    await found.waitFor();
    const gaps = await found.evaluate((span) => {
      const range = document.createRange();
      range.selectNodeContents(span);
      const text = range.getBoundingClientRect();
      const box = span.getBoundingClientRect();
      return { left: text.left - box.left, right: box.right - text.right };
    });
    assert.ok(gaps.right < 2 && gaps.left > 20, `result aligned right ${JSON.stringify(gaps)}`);
    await bob.button('Close search').click();
  });

  step('Bob changes his password and stays connected; Alice signs out everywhere', async () => {
    await bob.page.locator('summary', { hasText: 'Account' }).click();
    await bob.page.getByLabel('Current password').fill(PASSWORD);
    await bob.page.getByLabel('New password').fill(`${PASSWORD} again`);
    await bob.button('Change password').click();
    // The old session is revoked; the app starts afresh with the fresh one and its stream,
    // and says so.
    await bob.page
      .getByRole('status')
      .filter({ hasText: 'Your password was changed, and your other devices were signed out.' })
      .waitFor();
    await bob.button('New chat').waitFor();
    await bob.waitUntilConnected(RECONNECT_MS);
    const afterChange = 'Sent with the fresh session';
    await bob.openChatWith('alice');
    await bob.send(afterChange);
    await bob.waitUntilSent(afterChange);
    await alice.messages(afterChange).first().waitFor();

    await alice.page.locator('summary', { hasText: 'Account' }).click();
    await alice.button('Sign out everywhere').click();
    await alice.button('Sign in').waitFor();
  });
});
