// An upgrade must not lose what the browser kept. A browser that ran the previous release
// holds its session and an unsent message in localStorage in that release's format (the
// domain structs as JSON, no version field). Loading the current app there, the person is
// still signed in and the message goes out, once. Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChatUser } from './browser.mjs';
import { decodeStrings, encodeStrings, unary } from './grpc_web.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
const UNSENT = 'Written before the upgrade, sent after it';
/** Longer than one heartbeat (the server runs with --heartbeat-secs 2): a second copy of the
 * message would have shown by then. */
const SETTLE_MS = 2_500;

describe('a browser that ran the previous release', { timeout: 90_000 }, () => {
  /** @type {ChatUser} */ let alice;
  /** @type {ChatUser} */ let bob;
  /** @type {ChatUser} */ let upgraded;

  const suite = serverAndBrowser();

  test('stays signed in and sends the message it had not sent', async () => {
    try {
      alice = await ChatUser.open(suite.browser, suite.server.url, 'alice');
      bob = await ChatUser.open(suite.browser, suite.server.url, 'bob');
      await alice.signUp(PASSWORD);
      await bob.signUp(PASSWORD);
      await alice.waitUntilConnected();
      await alice.startChatWith(bob.name);

      // What the previous release wrote: Alice's session, and her outbox holding one message
      // for the chat with Bob (New answers the chat id again for the same members).
      const stored = await alice.page.evaluate(() => JSON.parse(localStorage.getItem('chat.session')));
      const members = Buffer.concat([encodeStrings({ 1: alice.name }), encodeStrings({ 1: bob.name })]);
      const chatId = decodeStrings(
        await unary(suite.server.url, '/chat.Chat/New', members, { token: stored.token }),
      )[1];
      const session = JSON.stringify({ user_id: stored.user_id, token: stored.token, expires_at: stored.expires_at });
      const outbox = JSON.stringify([
        { client_id: '18c2f1a9b3e-0f3a9c2d41b7e580', chat_id: chatId, text: UNSENT, delivery: 'Pending' },
      ]);

      // A browser of its own holding exactly that, then the current app loaded in it.
      upgraded = await ChatUser.open(suite.browser, suite.server.url, 'alice');
      await upgraded.page.evaluate(
        ([session, outbox]) => {
          localStorage.setItem('chat.session', session);
          localStorage.setItem('chat.outbox.alice', outbox);
        },
        [session, outbox],
      );
      upgraded.note('[test] reload with the previous release\'s storage');
      await upgraded.page.reload();
      await upgraded.button('New chat').waitFor();
      assert.equal(await upgraded.button('Sign in').count(), 0, 'still signed in');
      await upgraded.waitUntilConnected();
      await upgraded.openChatWith(bob.name);
      await upgraded.waitUntilSent(UNSENT);

      await bob.openChatWith(alice.name);
      await bob.messages(UNSENT).first().waitFor();
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      for (const user of [bob, upgraded]) {
        assert.deepEqual(await user.messageTexts(), [UNSENT], `${user.name}'s log: the message, once`);
        assert.deepEqual(user.pageErrors, [], `uncaught errors in ${user.name}'s page`);
      }
      // The old list was moved to a key per message (the current format), and the message's
      // key removed once the server had it: nothing of the outbox is left.
      const left = await upgraded.page.evaluate(() =>
        Object.keys(localStorage).filter((key) => key.startsWith('chat.outbox.alice')),
      );
      assert.deepEqual(left, [], 'the outbox, moved to the current format, is empty');
    } catch (error) {
      suite.report([alice, bob, upgraded]);
      throw error;
    }
  });
});
