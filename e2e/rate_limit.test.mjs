// The server's send-rate limit seen from the real UI: someone who sends faster than the limit
// (a fast typist, or a long outbox flushed after a reconnect) gets RESOURCE_EXHAUSTED with a
// `retry-after-ms` hint. The app must wait that long and send again by itself: every message
// arrives once, in the order typed, and none is ever shown as failed. Run it with e2e/run.sh.

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
});
