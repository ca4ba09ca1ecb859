// The small things people notice in a busy chat: a separator names the day ("Today") above
// its first message; scrolled up to read older messages when new ones arrive, the log stays
// put and a button offers the way down to them; at the bottom, a composer growing with its
// lines or a reply's quote keeps the newest in view, and so do bursts of messages; one's own
// message brings the log down to it; a sender's name shows once for messages in a row; a hidden tab counts the messages that arrived
// from others in its title, "(2) Chat", until it is shown again. Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChatUser, VIEWPORT, eventually } from './browser.mjs';
import { decodeStrings, encodeStrings, unary } from './grpc_web.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
const EARLIER = 60;

describe('days, new messages below, and the title of a hidden tab', { timeout: 90_000 }, () => {
  /** @type {ChatUser} */ let alice;

  // Bob's earlier messages are written in a burst, faster than the default send rate.
  const suite = serverAndBrowser({ extraArgs: ['--send-rate', '0'] });

  test('what a person notices in a busy chat', async () => {
    try {
      alice = await ChatUser.open(suite.browser, suite.server.url, 'alice');
      await alice.signUp(PASSWORD);
      // Bob writes from a client of his own over gRPC-web.
      const signUp = (user) =>
        unary(suite.server.url, '/chat.Auth/SignUp', encodeStrings({ 1: user, 2: PASSWORD }));
      const token = decodeStrings(await signUp('bob'))[2];
      const members = Buffer.concat(['alice', 'bob'].map((member) => encodeStrings({ 1: member })));
      const chatId = decodeStrings(await unary(suite.server.url, '/chat.Chat/New', members, { token }))[1];
      const send = (clientId, text) =>
        unary(suite.server.url, '/chat.Chat/Send', encodeStrings({ 1: clientId, 2: chatId, 5: text }), { token });
      for (let n = 0; n < EARLIER; n++) await send(`earlier-${n}`, `earlier message ${n}`);

      await alice.page.reload();
      await alice.openChatWith('bob');
      await alice.messages(`earlier message ${EARLIER - 1}`).first().waitFor();
      const day = alice.messageLog.getByRole('separator', { name: 'Today' });
      assert.equal(await day.count(), 1, 'one "Today" separator above today\'s first message');

      // Scrolled up, a new message does not pull the log down; the button does.
      const log = alice.messageLog;
      const fromBottom = () =>
        log.evaluate((element) => element.scrollHeight - element.scrollTop - element.clientHeight);
      await log.evaluate((element) => element.scrollTo(0, 0));
      await eventually('scrolled up', async () => assert.ok((await fromBottom()) > 300));
      const below = alice.button('New messages below ↓');
      assert.equal(await below.count(), 0, 'no button before anything new arrives');
      await send('news', 'something new');
      await below.waitFor();
      assert.ok((await fromBottom()) > 300, 'the log stayed where she reads');
      await below.click();
      await eventually('at the newest message, the button gone', async () => {
        assert.ok((await fromBottom()) < 50);
        assert.equal(await below.count(), 0);
      });
      // A window made smaller (a phone's keyboard opening, say) keeps the newest message in
      // view; scrolled up, the log stays where she reads.
      const smaller = { width: VIEWPORT.width, height: 420 };
      await alice.page.setViewportSize(smaller);
      await eventually('the newest message still in view', async () => assert.ok((await fromBottom()) < 50));
      await log.evaluate((element) => element.scrollTo(0, 0));
      await eventually('scrolled up again', async () => assert.ok((await fromBottom()) > 300));
      await alice.page.setViewportSize(VIEWPORT);
      await alice.page.setViewportSize(smaller);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.ok((await fromBottom()) > 300, 'a resize pulled the log down from where she reads');
      await alice.page.setViewportSize(VIEWPORT);
      await log.evaluate((element) => element.scrollTo(0, element.scrollHeight));
      await eventually('at the newest message again', async () => assert.ok((await fromBottom()) < 50));

      // The composer growing with the lines she writes, or a reply's quote above it, makes
      // the log smaller: the newest message stays in view.
      await alice.composer.click();
      for (let line = 0; line < 5; line++) {
        await alice.page.keyboard.type(`line ${line}`);
        await alice.page.keyboard.press('Shift+Enter');
      }
      await eventually('the newest message in view above five lines', async () =>
        assert.ok((await fromBottom()) < 5, `${await fromBottom()} px below the view`),
      );
      await alice.composer.fill('');
      await alice.messages('something new').getByRole('button', { name: 'Reply' }).click();
      await alice.page.getByRole('group', { name: 'Replying to' }).waitFor();
      await eventually("the newest message in view above the reply's quote", async () =>
        assert.ok((await fromBottom()) < 5, `${await fromBottom()} px below the view`),
      );
      await alice.button('Cancel reply').click();

      // A busy chat: bursts of messages, many within one frame, keep the newest in view. (The
      // log once took the scroll events of its own following for her scrolling up, and from
      // the second burst on was left behind for good.)
      for (let burst = 0; burst < 3; burst++) {
        await Promise.all(Array.from({ length: 15 }, (_, n) => send(`burst-${burst}-${n}`, `burst ${burst}, message ${n}`)));
        await eventually(`burst ${burst} shown`, async () =>
          assert.equal(await alice.messages(`burst ${burst}, message`).count(), 15),
        );
        await eventually(`burst ${burst}: the newest message in view`, async () =>
          assert.ok((await fromBottom()) < 50, `${await fromBottom()} px below the view`),
        );
      }
      // Scrolled up, a message of her own brings the log down to it.
      await log.evaluate((element) => element.scrollTo(0, 0));
      await eventually('scrolled up once more', async () => assert.ok((await fromBottom()) > 300));
      await alice.send('written while scrolled up');
      await alice.waitUntilSent('written while scrolled up');
      await eventually('her message in view', async () =>
        assert.ok((await fromBottom()) < 50, `${await fromBottom()} px below the view`),
      );

      // Who said what: a sender's name shows on the first of their messages in a row, not on
      // each; the others keep it for screen readers, which read each message on its own.
      await send('answer-1', 'answering you');
      await send('answer-2', 'and one more thing');
      const nameOf = (text) => alice.messages(text).first().locator('.sender');
      await nameOf('and one more thing').waitFor({ state: 'attached' });
      const width = (text) => nameOf(text).evaluate((name) => name.getBoundingClientRect().width);
      assert.ok((await width('answering you')) > 10, "bob's name is shown after her message");
      assert.ok((await width('and one more thing')) <= 1, "bob's name is shown again on his next message");
      assert.equal(await nameOf('and one more thing').textContent(), 'bob');

      // A hidden tab counts what arrives from others in its title; shown, it is "Chat" again.
      assert.equal(await alice.page.title(), 'Chat');
      const setHidden = (hidden) =>
        alice.page.evaluate((value) => {
          Object.defineProperty(document, 'hidden', { configurable: true, get: () => value });
          // As browsers fire it: at the document, bubbling up to the window.
          document.dispatchEvent(new Event('visibilitychange', { bubbles: true }));
        }, hidden);
      await setHidden(true);
      await send('hidden-1', 'while you were away');
      await eventually('(1) in the title', async () => assert.equal(await alice.page.title(), '(1) Chat'));
      await send('hidden-2', 'and again');
      await eventually('(2) in the title', async () => assert.equal(await alice.page.title(), '(2) Chat'));
      await alice.send('my own message does not count');
      await alice.waitUntilSent('my own message does not count');
      assert.equal(await alice.page.title(), '(2) Chat');
      await setHidden(false);
      await eventually('the title back to normal', async () => assert.equal(await alice.page.title(), 'Chat'));

      assert.deepEqual(alice.pageErrors, [], 'uncaught errors in the page');
      assert.deepEqual(await alice.cspViolations(), [], 'CSP violations in the page');
    } catch (error) {
      suite.report([alice]);
      throw error;
    }
  });
});
