// Leaving a chat and blocking someone, in the real UI: Alice blocks Mallory from the chat's
// header, leaves the chat (after confirming), finds Mallory in her account menu's blocked
// list; Mallory's attempt to start a new chat with her is refused with a sentence she can
// read; once Alice unblocks her (from the account menu), Mallory can start one again. Run it
// with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChatUser, eventually, focused } from './browser.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';

describe('leaving a chat and blocking someone', { timeout: 90_000 }, () => {
  /** @type {ChatUser} */ let alice;
  /** @type {ChatUser} */ let mallory;

  const suite = serverAndBrowser();

  test('the blocked person cannot start a chat and is told so; the left chat is gone', async () => {
    try {
      alice = await ChatUser.open(suite.browser, suite.server.url, 'alice');
      mallory = await ChatUser.open(suite.browser, suite.server.url, 'mallory');
      await alice.signUp(PASSWORD);
      await mallory.signUp(PASSWORD);
      for (const user of [alice, mallory]) await user.waitUntilConnected();

      await mallory.startChatWith(alice.name);
      await mallory.send('Hello alice');
      await mallory.waitUntilSent('Hello alice');
      await alice.openChatWith(mallory.name);
      await alice.messages('Hello alice').first().waitFor();

      // Block from the chat's header: the button turns into "Unblock mallory".
      alice.note('[test] block mallory');
      await alice.button('Block mallory').click();
      await alice.button('Unblock mallory').waitFor();

      // Leave, which asks first; "Cancel" keeps the chat.
      alice.note('[test] leave the chat');
      await alice.button('Leave chat').click();
      const confirm = alice.page.getByRole('alertdialog', { name: 'Leave this chat?' });
      await confirm.waitFor();
      await confirm.getByRole('button', { name: 'Cancel', exact: true }).click();
      await alice.messageLog.waitFor();
      await alice.button('Leave chat').click();
      await confirm.getByRole('button', { name: 'Leave', exact: true }).click();
      await alice.page.getByText('Choose a chat, or start a new one.').waitFor();
      await eventually('the left chat is gone from the list', async () =>
        assert.equal(await alice.chatEntry(mallory.name).count(), 0),
      );
      // Also after a reload: the server no longer lists it.
      await alice.page.reload();
      await alice.waitUntilConnected();
      assert.equal(await alice.chatEntry(mallory.name).count(), 0, 'the left chat came back after a reload');

      // The account menu lists mallory as blocked.
      await alice.page.getByText('Account', { exact: true }).click();
      const blocked = alice.page.getByRole('region', { name: 'Blocked people' });
      await blocked.getByText('mallory', { exact: true }).waitFor();

      // Escape closes the New chat form, puts the focus back on its button and keeps what
      // was typed for the next opening.
      mallory.note('[test] start a chat with alice again');
      const newChat = mallory.button('New chat');
      await newChat.click();
      const names = mallory.page.getByLabel('Usernames', { exact: true });
      await names.fill(alice.name);
      await names.press('Escape');
      await names.waitFor({ state: 'detached' });
      await eventually('focus is back on New chat', async () => assert.ok(await focused(newChat)));
      assert.equal(await newChat.getAttribute('aria-expanded'), 'false');
      await newChat.click();
      assert.equal(await names.inputValue(), alice.name, 'the names typed before Escape');

      // Mallory's New is refused with a readable sentence.
      await mallory.button('Start chat').click();
      const refusal = mallory.page.getByRole('alert').filter({ hasText: 'does not accept chats from you' });
      await refusal.waitFor();
      assert.equal((await refusal.innerText()).trim(), '"alice" does not accept chats from you');

      // Unblocked from the account menu, mallory may start a chat again.
      await blocked.getByRole('button', { name: 'Unblock mallory', exact: true }).click();
      await blocked.getByText('You have blocked nobody.').waitFor();
      await mallory.button('Start chat').click();
      await mallory.messageLog.waitFor();

      for (const user of [alice, mallory]) {
        assert.deepEqual(user.pageErrors, [], `uncaught errors in ${user.name}'s page`);
        assert.deepEqual(await user.cspViolations(), [], `CSP violations in ${user.name}'s page`);
      }
    } catch (error) {
      suite.report([alice, mallory]);
      throw error;
    }
  });
});
