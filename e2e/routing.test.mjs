// The open chat is part of the address: Alice opens her chat with Bob (the address becomes
// /chats/<id>), reloads (the chat is open again), goes back to the list with the browser's
// back button and forward again; then, signed out, she follows a link to the chat, signs in
// and lands in it. A link to a chat she is not in, or to no chat at all, shows her list. A
// link to a chat written in a message opens that chat in place, and back returns from it. An
// address in a message of her own is a link while it is still on its way.
// Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChatUser, VIEWPORT, eventually } from './browser.mjs';
import { decodeStrings, encodeStrings, unary } from './grpc_web.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
const CHAT_PATH = /^\/chats\/[0-9a-f]{32}$/;

describe('the open chat in the address bar', { timeout: 90_000 }, () => {
  /** @type {ChatUser} */ let alice;
  /** @type {ChatUser} */ let bob;

  const suite = serverAndBrowser();
  const path = (user) => new URL(user.page.url()).pathname;

  test('reload, back and forward, and a link after sign-in all open the right place', async () => {
    try {
      alice = await ChatUser.open(suite.browser, suite.server.url, 'alice');
      bob = await ChatUser.open(suite.browser, suite.server.url, 'bob');
      await alice.signUp(PASSWORD);
      await bob.signUp(PASSWORD);
      await bob.startChatWith(alice.name);
      await bob.send('Hello alice');
      await bob.waitUntilSent('Hello alice');
      assert.equal(path(alice), '/');

      await alice.openChatWith(bob.name);
      await alice.messages('Hello alice').first().waitFor();
      assert.match(path(alice), CHAT_PATH);
      const chatPath = path(alice);

      alice.note('[test] reload');
      await alice.page.reload();
      await alice.messages('Hello alice').first().waitFor();
      assert.equal(path(alice), chatPath, 'the reload kept the chat');

      alice.note('[test] back');
      await alice.page.goBack();
      await eventually('the list, with no chat open', async () => {
        assert.equal(path(alice), '/');
        assert.equal(await alice.messageLog.count(), 0);
      });
      await alice.page.getByText('Choose a chat, or start a new one.').waitFor();
      alice.note('[test] forward');
      await alice.page.goForward();
      await alice.messages('Hello alice').first().waitFor();
      assert.equal(path(alice), chatPath);

      // On a phone's width the app has its own Back button: it goes back in the tab's
      // history too, so the browser's forward button returns to the chat.
      await alice.page.setViewportSize({ width: 400, height: 700 });
      await alice.button('Back').click();
      await eventually('the list again', async () => assert.equal(path(alice), '/'));
      await alice.page.goForward();
      await alice.messages('Hello alice').first().waitFor();
      await alice.button('Back').click();
      await eventually('and the list once more', async () => assert.equal(path(alice), '/'));
      await alice.page.setViewportSize(VIEWPORT);

      // Signed out, a link to the chat: the sign-in form, then the chat itself.
      alice.note('[test] sign out, then follow a link to the chat');
      await alice.button('Sign out').click();
      await alice.page.goto(new URL(chatPath, suite.server.url).href);
      await alice.page.getByLabel('Username', { exact: true }).fill(alice.name);
      await alice.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      await alice.button('Sign in').click();
      await alice.messages('Hello alice').first().waitFor();
      assert.equal(path(alice), chatPath);

      // A chat she is not in, and a path that names no chat: her list, nothing broken.
      for (const other of ['/chats/0123456789abcdef0123456789abcdef', '/chats/not-a-chat']) {
        alice.note(`[test] go to ${other}`);
        await alice.page.goto(new URL(other, suite.server.url).href);
        await alice.waitUntilConnected();
        await eventually(`${other} ends on the list`, async () => {
          assert.equal(await alice.messageLog.count(), 0);
          assert.equal(path(alice), '/');
        });
        await alice.chatEntry(bob.name).waitFor();
      }

      // Carol, in a chat with Alice, writes the address of Alice's chat with Bob: a click
      // opens it in Alice's tab (no new tab), and the back button returns to Carol's chat.
      alice.note('[test] follow a link to a chat written in a message');
      const url = suite.server.url;
      const carol = decodeStrings(await unary(url, '/chat.Auth/SignUp', encodeStrings({ 1: 'carol', 2: PASSWORD })))[2];
      const members = Buffer.concat(['carol', 'alice'].map((member) => encodeStrings({ 1: member })));
      const carolsChat = decodeStrings(await unary(url, '/chat.Chat/New', members, { token: carol }))[1];
      const address = new URL(chatPath, url).href;
      const text = `Bob's plan is in your chat with him: ${address}.`;
      await unary(url, '/chat.Chat/Send', encodeStrings({ 1: 'link-1', 2: carolsChat, 5: text }), { token: carol });
      await alice.openChatWith('carol');
      const link = alice.messages('plan').getByRole('link');
      assert.equal(await link.getAttribute('href'), address);
      assert.equal(await link.getAttribute('target'), null, 'a link to a chat here opens in place');
      const pages = alice.page.context().pages().length;
      await alice.page.evaluate(() => { window.__samePage = true; });
      await link.click();
      await alice.messages('Hello alice').first().waitFor();
      assert.equal(path(alice), chatPath);
      assert.equal(alice.page.context().pages().length, pages, 'a tab was opened');
      assert.equal(await alice.page.evaluate(() => window.__samePage), true, 'the page was loaded again');
      await alice.page.goBack();
      await alice.messages('plan').first().waitFor();
      assert.equal(path(alice), `/chats/${carolsChat}`);

      // An address in a message of her own is a link already while the message is on its
      // way (its Send held back before it reaches the server).
      let letSendGo;
      const sendHeld = new Promise((resolve) => {
        letSendGo = resolve;
      });
      await alice.page.route('**/chat.Chat/Send', async (route) => {
        await sendHeld;
        await route.continue();
      });
      await alice.send('Mine is at https://example.org/plan too');
      const pending = alice.messageLog.getByRole('article', { name: 'Your message, not sent yet' });
      assert.equal(await pending.getByRole('link').getAttribute('href'), 'https://example.org/plan');
      letSendGo();
      await alice.waitUntilSent('Mine is at');
      await alice.page.unroute('**/chat.Chat/Send');

      for (const user of [alice, bob]) {
        assert.deepEqual(user.pageErrors, [], `uncaught errors in ${user.name}'s page`);
        assert.deepEqual(await user.cspViolations(), [], `CSP violations in ${user.name}'s page`);
      }
    } catch (error) {
      suite.report([alice, bob]);
      throw error;
    }
  });
});
