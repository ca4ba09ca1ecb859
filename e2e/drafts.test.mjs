// What someone writes and does not send stays with its chat, as every chat people use keeps
// it: opening another chat, reloading the page or signing out and in again loses nothing,
// the chat list says which chats hold a draft, and sending empties it for good. Run it with
// e2e/run.sh.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChatUser, eventually } from './browser.mjs';
import { encodeStrings, unary } from './grpc_web.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
const FOR_BOB = 'Half a thought for Bob, to finish after lunch';
const FOR_CAROL = 'Two lines for Carol:\nthe second one';

describe('drafts', { timeout: 90_000 }, () => {
  /** @type {ChatUser} */ let alice;

  const suite = serverAndBrowser();

  test('a draft stays with its chat across chats, reloads and sign-outs until it is sent', async () => {
    try {
      const url = suite.server.url;
      for (const name of ['bob', 'carol']) {
        await unary(url, '/chat.Auth/SignUp', encodeStrings({ 1: name, 2: PASSWORD }));
      }
      alice = await ChatUser.open(suite.browser, url, 'alice');
      await alice.signUp(PASSWORD);
      await alice.startChatWith('bob');
      await alice.startChatWith('carol');

      const composer = alice.composer;
      // A row's preview, without the isolates that keep each text's own direction.
      const rowPreview = async (member) =>
        (await alice.chatEntry(member).locator('.chat-preview').innerText()).replace(/[\u2068\u2069]/g, '');
      const composerHolds = (what, text) =>
        eventually(what, async () => assert.equal(await composer.inputValue(), text));

      await alice.openChatWith('bob');
      await composer.fill(FOR_BOB);
      await alice.openChatWith('carol');
      await composerHolds("Carol's chat opens with an empty box", '');
      await eventually("Bob's row says it holds a draft", async () =>
        assert.equal(await rowPreview('bob'), `Draft: ${FOR_BOB}`),
      );
      await composer.fill(FOR_CAROL);
      await alice.openChatWith('bob');
      await composerHolds("Bob's chat opens with its draft", FOR_BOB);
      // The open chat's row shows its last message, as before: the draft is in the box.
      assert.equal(await rowPreview('bob'), 'No messages yet');

      await alice.page.reload();
      await alice.messageLog.waitFor();
      await composerHolds("after a reload Bob's chat, still open, holds its draft", FOR_BOB);
      assert.equal(await rowPreview('carol'), `Draft: ${FOR_CAROL.replace('\n', ' ')}`);

      await alice.button('Sign out').click();
      await alice.page.getByLabel('Username', { exact: true }).fill('alice');
      await alice.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      await alice.button('Sign in').click();
      await alice.openChatWith('carol');
      await composerHolds("after signing out and in, Carol's chat holds its draft", FOR_CAROL);
      // The box grows to show both lines of it, rather than one line and a scroll bar.
      const [height, scrolled, line] = await composer.evaluate((box) => [
        box.clientHeight,
        box.scrollHeight,
        parseFloat(getComputedStyle(box).lineHeight) || 1.2 * parseFloat(getComputedStyle(box).fontSize),
      ]);
      assert.ok(height >= 2 * line && scrolled <= height, `the box is ${height} px high for two lines of ${line} px (content ${scrolled} px)`);

      await composer.press('Enter');
      await alice.waitUntilSent('the second one');
      await composerHolds('the box empties once the message is queued', '');
      await alice.openChatWith('bob');
      await alice.openChatWith('carol');
      await composerHolds("Carol's chat opens empty again", '');
      await alice.page.reload();
      await alice.messageLog.waitFor();
      await composerHolds('and after a reload', '');
      // Her own message, as the list says it to her.
      assert.match(await rowPreview('carol'), /^You: Two lines for Carol:/);
      assert.equal(await rowPreview('bob'), `Draft: ${FOR_BOB}`);
      assert.deepEqual(alice.pageErrors, [], 'uncaught errors in the page');
    } catch (error) {
      suite.report([alice]);
      throw error;
    }
  });
});
