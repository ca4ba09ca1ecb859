// Leaving a chat and blocking someone, in the real UI: Alice blocks Mallory from the chat's
// header, leaves the chat (after confirming), finds Mallory in her account menu's blocked
// list; Mallory's attempt to start a new chat with her is refused with a sentence she can
// read; once Alice unblocks her (from the account menu), Mallory can start one again. And
// everyone sees who is in a group as it changes, without a reload: a new group shows in its
// members' lists before anything is said, the others' open chat drops the one who left (and
// their receipt; their other device drops the chat), and takes them back when they return; a
// chat everyone else has left keeps their names, saying they left. Run it with e2e/run.sh.

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
      // Mallory's chat keeps alice's name and says she left (not mallory's own name): at once,
      // and after a reload, from the list.
      const title = mallory.page.getByRole('heading', { level: 2 });
      await eventually("mallory's chat says that alice left", async () =>
        assert.equal((await title.innerText()).trim(), 'alice (left)'),
      );
      await mallory.page.reload();
      await mallory.waitUntilConnected();
      await mallory.chatEntry('alice (left)').waitFor();
      // From that chat she can still block alice (who then could not come back to it either),
      // and undo it.
      await mallory.button('Block alice').click();
      await mallory.button('Unblock alice').click();
      await mallory.button('Block alice').waitFor();

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

  test('everyone sees who is in a group as people leave and come back', async () => {
    /** @type {ChatUser[]} */ const users = [];
    try {
      const [anna, ben, cleo] = await Promise.all(
        ['anna', 'ben', 'cleo'].map((name) => ChatUser.open(suite.browser, suite.server.url, name)),
      );
      users.push(anna, ben, cleo);
      for (const user of users) await user.signUp(PASSWORD);
      // Cleo's second device: another browser, signed in to the same account.
      const laptop = await ChatUser.open(suite.browser, suite.server.url, 'cleo');
      users.push(laptop);
      await laptop.page.getByLabel('Username', { exact: true }).fill('cleo');
      await laptop.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      await laptop.button('Sign in').click();
      for (const user of users) await user.waitUntilConnected();

      // A new group is in its members' lists at once, before anyone says anything.
      await anna.startChatWith('ben, cleo');
      await ben.chatEntry('anna, cleo').waitFor();
      await cleo.chatEntry('anna, ben').waitFor();
      await laptop.chatEntry('anna, ben').waitFor();
      await ben.openChatWith('anna, cleo');
      const heading = ben.page.getByRole('heading', { level: 2 });
      const presence = ben.page.locator('p.presence');
      assert.equal((await heading.innerText()).trim(), 'anna, cleo');
      await eventually('ben sees both others online', async () =>
        assert.equal((await presence.innerText()).trim(), '2 of 2 online'),
      );
      // Both read what Ben writes (Anna has the group open; Cleo opens it).
      await ben.send('Lunch at noon?');
      await ben.waitUntilSent('Lunch at noon?');
      await cleo.openChatWith('anna, ben');
      const receipt = ben.page.locator('p.receipt');
      await eventually('ben sees that both have read it', async () =>
        assert.equal((await receipt.innerText()).trim(), 'Seen by everyone'),
      );

      // Cleo leaves on her phone: Ben's open chat is with Anna alone now (her receipt goes with
      // her), and the chat is gone from Cleo's laptop.
      await cleo.button('Leave chat').click();
      await cleo.page
        .getByRole('alertdialog', { name: 'Leave this chat?' })
        .getByRole('button', { name: 'Leave', exact: true })
        .click();
      await eventually('ben sees that cleo left', async () =>
        assert.equal((await heading.innerText()).trim(), 'anna'),
      );
      await eventually('ben sees anna online', async () =>
        assert.equal((await presence.innerText()).trim(), 'online'),
      );
      await eventually("cleo's receipt is gone with her", async () =>
        assert.equal((await receipt.innerText()).trim(), 'Seen'),
      );
      assert.equal(await ben.chatEntry('cleo').count(), 0, "ben's list still names cleo");
      await eventually('the chat is gone from cleo\'s laptop', async () =>
        assert.equal(await laptop.chatEntry('anna').count(), 0),
      );

      // She comes back (her New of the same people): Ben sees her again, and so does her laptop.
      await cleo.startChatWith('anna, ben');
      await eventually('ben sees that cleo is back', async () =>
        assert.equal((await heading.innerText()).trim(), 'anna, cleo'),
      );
      await laptop.chatEntry('anna, ben').waitFor();
      await anna.chatEntry('ben, cleo').waitFor();

      for (const user of users) {
        assert.deepEqual(user.pageErrors, [], `uncaught errors in ${user.name}'s page`);
      }
    } catch (error) {
      suite.report(users);
      throw error;
    }
  });
});
