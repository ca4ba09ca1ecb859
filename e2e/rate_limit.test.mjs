// The server's send-rate limit seen from the real UI: someone who sends faster than the limit
// (a fast typist, or a long outbox flushed after a reconnect) gets RESOURCE_EXHAUSTED with a
// `retry-after-ms` hint. The app must wait that long and send again by itself: every message
// arrives once, in the order typed, and none is ever shown as failed. Likewise a Send lost on
// its way while the stream stays up (a load balancer's 502 from a server that just died):
// the app sends it again by itself, once. Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChatUser } from './browser.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
/** The server's limit here: 3 messages at once, then 2 per second. */
const BURST = 3;
const RATE = 2;
const COUNT = 10;
/** Sending COUNT messages must wait for at least this many refills of the bucket (the
 * typing itself takes some time, during which a token or two come back). */
const MIN_REFILLS = COUNT - BURST - 2;

describe('a sender over the rate limit', { timeout: 90_000 }, () => {
  /** @type {ChatUser} */ let alice;
  /** @type {ChatUser} */ let bob;

  const suite = serverAndBrowser({
      extraArgs: ['--send-rate', String(RATE), '--send-burst', String(BURST)],
    });

  test('waits out the limit and sends everything once, in order, never showing a failure', async () => {
    try {
      alice = await ChatUser.open(suite.browser, suite.server.url, 'alice');
      bob = await ChatUser.open(suite.browser, suite.server.url, 'bob');
      await alice.signUp(PASSWORD);
      await bob.signUp(PASSWORD);
      for (const user of [alice, bob]) await user.waitUntilConnected();
      await alice.startChatWith(bob.name);
      // Remember whether a failure was ever on screen, however briefly.
      await alice.page.evaluate(() => {
        window.__failureShown = false;
        new MutationObserver(() => {
          if (document.querySelector('.delivery.failed')) window.__failureShown = true;
        }).observe(document.body, { subtree: true, childList: true, characterData: true });
      });

      const texts = Array.from({ length: COUNT }, (_, i) => `Message number ${i + 1} of ${COUNT}`);
      const started = Date.now();
      for (const text of texts) await alice.send(text);
      await alice.waitUntilSent(texts.at(-1), 30_000);
      const elapsedMs = Date.now() - started;
      alice.note(`[test] ${COUNT} messages sent in ${elapsedMs} ms`);

      assert.ok(
        elapsedMs >= (MIN_REFILLS / RATE) * 1000,
        `${COUNT} messages went through in ${elapsedMs} ms: the limit of ${BURST} then ${RATE}/s was not applied`,
      );
      assert.equal(await alice.page.evaluate(() => window.__failureShown), false, 'a message was shown as failed');
      await bob.openChatWith(alice.name);
      await bob.messages(texts.at(-1)).first().waitFor({ timeout: 10_000 });
      for (const user of [alice, bob]) {
        assert.deepEqual(await user.messageTexts(), texts, `${user.name}'s log: each once, in the order typed`);
        assert.deepEqual(user.pageErrors, [], `uncaught errors in ${user.name}'s page`);
      }
      assert.equal(
        await alice.messageLog.getByRole('article', { name: 'Your message, not sent yet' }).count(),
        0,
        'nothing is left waiting',
      );
    } catch (error) {
      suite.report([alice, bob]);
      throw error;
    }
  });

  test('a Send lost on its way goes again by itself while the stream stays up', async () => {
    try {
      // The first Send gets what nginx answers when the server it picked died mid-call; the
      // stream, on another server, is untouched.
      let sends = 0;
      await alice.page.route('**/chat.Chat/Send', async (route) => {
        sends += 1;
        if (sends === 1) {
          await route.fulfill({ status: 502, contentType: 'text/html', body: '<html>502 Bad Gateway</html>' });
        } else {
          await route.continue();
        }
      });
      const text = 'Through the gateway, second time lucky';
      await alice.send(text);
      await bob.messages(text).first().waitFor({ timeout: 10_000 });
      await alice.waitUntilSent(text);
      await alice.page.unroute('**/chat.Chat/Send');
      assert.equal(sends, 2, 'sent again once after the lost one');
      assert.equal(await alice.connectionText(), 'Connected', 'the stream stayed up throughout');
      assert.equal(await alice.page.evaluate(() => window.__failureShown), false, 'the message was shown as failed');
      assert.equal(await bob.messages(text).count(), 1, 'Bob has it once');
    } catch (error) {
      suite.report([alice, bob]);
      throw error;
    }
  });
});
