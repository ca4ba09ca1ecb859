// A user in more chats than one List page: the app shows the first page, connects its stream
// anyway, loads the rest with "Load more chats", and a live message in a chat of a later page
// arrives. The chats are made through the gRPC-web API, as an attacker with sockpuppets would
// make them. Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChatUser, eventually } from './browser.mjs';
import { decodeStrings, encodeStrings, unary } from './grpc_web.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
/** List's default page (chat_core::limits::LIST_DEFAULT_PAGE). */
const PAGE = 30;
const CHATS = PAGE + 5;
/** Puppets: their subsets, with mallory and the victim, give every chat its own member set. */
const PUPPETS = 6;

const greeting = (n) => `greeting ${String(n).padStart(2, '0')}.`;

describe('a user in more chats than one List page', { timeout: 120_000 }, () => {
  /** @type {ChatUser} */ let victim;

  // Mallory starts more chats, and sends more greetings, than the default New and send rates
  // allow at once: the setup is not what this test is about.
  const suite = serverAndBrowser({ extraArgs: ['--new-chat-per-minute', '0', '--send-rate', '0'] });

  test('sees the first page, loads the rest, and gets live messages in a chat of a later page', async () => {
    try {
      victim = await ChatUser.open(suite.browser, suite.server.url, 'victim');
      await victim.signUp(PASSWORD);

      const signUp = async (name) =>
        decodeStrings(await unary(suite.server.url, '/chat.Auth/SignUp', encodeStrings({ 1: name, 2: PASSWORD })))[2];
      const mallory = await signUp('mallory');
      for (let bit = 0; bit < PUPPETS; bit++) await signUp(`puppet${bit}`);
      const chatIds = [];
      for (let n = 0; n < CHATS; n++) {
        // NewRequest.user_ids is a repeated string (field 1): one field per member.
        const members = ['mallory', 'victim'];
        for (let bit = 0; bit < PUPPETS; bit++) if ((n + 1) & (1 << bit)) members.push(`puppet${bit}`);
        const request = Buffer.concat(members.map((member) => encodeStrings({ 1: member })));
        const chatId = decodeStrings(await unary(suite.server.url, '/chat.Chat/New', request, { token: mallory }))[1];
        // SendRequest: client_id = 1, chat_id = 2, text = 5. Chat 0 ends up the least recent.
        await unary(suite.server.url, '/chat.Chat/Send', encodeStrings({ 1: `g-${n}`, 2: chatId, 5: greeting(n) }), {
          token: mallory,
        });
        chatIds.push(chatId);
      }

      // A fresh start lists only the first page, and the stream connects regardless.
      victim.note('[test] reload');
      await victim.page.reload();
      await victim.waitUntilConnected();
      const entries = victim.page.getByRole('navigation', { name: 'Chats' }).getByRole('button', { name: /greeting/ });
      await eventually('the first page listed', async () => assert.equal(await entries.count(), PAGE));
      assert.equal(await victim.chatEntry(greeting(0)).count(), 0, 'the oldest chat is on a later page');

      await victim.button('Load more chats').click();
      await eventually('every chat listed', async () => assert.equal(await entries.count(), CHATS));
      await victim.button('Load more chats').waitFor({ state: 'detached' });

      // A chat from the later page receives live.
      await victim.openChatWith(greeting(0));
      await victim.messages(greeting(0)).first().waitFor();
      const live = 'live in the oldest chat';
      await unary(suite.server.url, '/chat.Chat/Send', encodeStrings({ 1: 'live-0', 2: chatIds[0], 5: live }), {
        token: mallory,
      });
      await victim.messages(live).first().waitFor();
      assert.deepEqual(await victim.messageTexts(), [greeting(0), live]);
      assert.deepEqual(victim.pageErrors, []);
    } catch (error) {
      suite.report([victim]);
      throw error;
    }
  });
});
