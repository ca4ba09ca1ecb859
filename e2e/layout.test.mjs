// The chat screen's layout holds up with what people really have: a group of many members
// with long names keeps the open chat's header to two lines of title, with its buttons on
// the screen, on a laptop and on a phone, so the messages keep the screen. Run it with
// e2e/run.sh.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChatUser, VIEWPORT } from './browser.mjs';
import { decodeStrings, encodeStrings, unary } from './grpc_web.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
/** Nine members with names of the longest kind (user ids are at most 32 characters). */
const MEMBERS = Array.from({ length: 9 }, (_, n) => `a-member-with-a-long-name-${n}`);

describe('the chat screen with a large group', { timeout: 60_000 }, () => {
  /** @type {ChatUser} */ let quinn;

  const suite = serverAndBrowser();

  test("a group of nine long names keeps the header's title to two lines", async () => {
    try {
      const url = suite.server.url;
      const tokens = [];
      for (const name of MEMBERS) {
        tokens.push(decodeStrings(await unary(url, '/chat.Auth/SignUp', encodeStrings({ 1: name, 2: PASSWORD })))[2]);
      }
      quinn = await ChatUser.open(suite.browser, url, 'quinn');
      await quinn.signUp(PASSWORD);
      const members = Buffer.concat([...MEMBERS, 'quinn'].map((member) => encodeStrings({ 1: member })));
      const chatId = decodeStrings(await unary(url, '/chat.Chat/New', members, { token: tokens[0] }))[1];
      await unary(url, '/chat.Chat/Send', encodeStrings({ 1: 'hello', 2: chatId, 5: 'Welcome, everyone' }), {
        token: tokens[0],
      });
      await quinn.openChatWith(MEMBERS[8]);
      await quinn.messages('Welcome, everyone').first().waitFor();

      const title = quinn.page.locator('.conversation-header h2');
      // Every name is still there for a screen reader, however little of it shows.
      const text = await title.textContent();
      for (const name of MEMBERS) assert.ok(text.includes(name), `${name} missing from the title`);
      for (const viewport of [VIEWPORT, { width: 390, height: 700 }]) {
        await quinn.page.setViewportSize(viewport);
        // Two lines of the title's font, at a generous 1.5 of its size each.
        const [height, most] = await title.evaluate((element) => [
          element.getBoundingClientRect().height,
          2 * 1.5 * parseFloat(getComputedStyle(element).fontSize),
        ]);
        assert.ok(height <= most, `the title is ${height} px high at ${viewport.width} px wide (at most ${most})`);
        const leave = await quinn.button('Leave chat').boundingBox();
        assert.ok(leave.x >= 0 && leave.x + leave.width <= viewport.width, `"Leave chat" off the screen: ${JSON.stringify(leave)}`);
        const log = await quinn.messageLog.boundingBox();
        assert.ok(log.height >= viewport.height / 2, `the messages keep ${log.height} of ${viewport.height} px`);
      }

      // A chat of two with such a name, on a phone: the name keeps a line of its own (it was
      // squeezed to a few letters a line beside "Block <name>" and "Leave chat"), and the
      // buttons fit on the screen below it, the long one cut short.
      const pair = Buffer.concat([MEMBERS[0], 'quinn'].map((member) => encodeStrings({ 1: member })));
      const pairId = decodeStrings(await unary(url, '/chat.Chat/New', pair, { token: tokens[0] }))[1];
      await unary(url, '/chat.Chat/Send', encodeStrings({ 1: 'hi', 2: pairId, 5: 'Just us two' }), { token: tokens[0] });
      await quinn.page.setViewportSize({ width: 390, height: 700 });
      await quinn.button('Back').click();
      await quinn.chatEntry('Just us two').click();
      await quinn.messages('Just us two').first().waitFor();
      const [height, line] = await title.evaluate((element) => [
        element.getBoundingClientRect().height,
        1.5 * parseFloat(getComputedStyle(element).fontSize),
      ]);
      assert.ok(height <= line, `the name is ${height} px high on a phone (one line is at most ${line})`);
      const block = await quinn.button(`Block ${MEMBERS[0]}`).boundingBox();
      const leave = await quinn.button('Leave chat').boundingBox();
      for (const [name, box] of [['Block', block], ['Leave chat', leave]]) {
        assert.ok(box.x >= 0 && box.x + box.width <= 390, `"${name}" off the screen: ${JSON.stringify(box)}`);
      }
      assert.ok(block.x + block.width <= leave.x || block.y + block.height <= leave.y, 'the buttons overlap');
      assert.deepEqual(quinn.pageErrors, [], 'uncaught errors in the page');
    } catch (error) {
      suite.report([quinn]);
      throw error;
    }
  });
});
