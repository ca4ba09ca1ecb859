// Two people change sent messages in the browser: Alice edits hers inline (Escape cancels),
// Bob and Alice react, Alice deletes one after confirming; each change shows live on the
// other side, the answer to a call never hides a later change the stream brought first, and
// a reload (History) shows the same current versions.
// Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { ChatUser, eventually, focused, holdAnswers } from './browser.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';

describe('two people edit, delete and react in the browser', { timeout: 120_000 }, () => {
  const said = {
    typo: 'Helo Bob, lunch at noon?',
    fixed: 'Hello Bob, lunch at noon?',
    regret: 'Something I should not have said',
  };
  /** @type {ChatUser} */ let alice;
  /** @type {ChatUser} */ let bob;


  const suite = serverAndBrowser();
  const step = suite.steps(() => [alice, bob]);

  /** The reaction button of `emoji` on the message showing `text`. */
  const reaction = (user, text, emoji) =>
    user.messages(text).first().locator('.reaction').filter({ hasText: emoji });

  step('Alice and Bob chat', async () => {
    alice = await ChatUser.open(suite.browser, suite.server.url, 'alice');
    bob = await ChatUser.open(suite.browser, suite.server.url, 'bob');
    await alice.signUp(PASSWORD);
    await bob.signUp(PASSWORD);
    for (const user of [alice, bob]) await user.waitUntilConnected();
    await alice.startChatWith(bob.name);
    for (const text of [said.typo, said.regret]) {
      await alice.send(text);
      await alice.waitUntilSent(text);
    }
    await bob.openChatWith(alice.name);
    await bob.messages(said.regret).first().waitFor();
    assert.equal(await bob.messages(said.typo).getByRole('button', { name: 'Edit' }).count(), 0,
      'no Edit button on messages of others');
  });

  step('Alice edits her message inline: Escape cancels, Enter saves; Bob sees it live, marked edited', async () => {
    const message = alice.messages(said.typo).first();
    await message.getByRole('button', { name: 'Edit', exact: true }).click();
    const editor = alice.page.getByRole('textbox', { name: 'Edit message' });
    // The box shows every line of what is edited, not two and a scroll bar.
    await editor.fill('thrown\naway\nin\nfive\nlines');
    const [height, content] = await editor.evaluate((box) => [box.clientHeight, box.scrollHeight]);
    assert.ok(content <= height, `five lines need ${content} px; the editor shows ${height}`);
    await editor.fill('thrown away');
    await editor.press('Escape');
    await alice.messages(said.typo).first().waitFor();
    assert.equal(await alice.page.getByRole('textbox', { name: 'Edit message' }).count(), 0);
    // The keyboard is back on the Edit button, not at the start of the page.
    const edit = alice.messages(said.typo).first().getByRole('button', { name: 'Edit', exact: true });
    assert.ok(await focused(edit), 'focus is back on Edit');
    // Saving the text unchanged stores nothing and closes the editor the same way.
    await edit.click();
    await alice.page.getByRole('textbox', { name: 'Edit message' }).press('Enter');
    await eventually('the editor closed by saving it unchanged', async () =>
      assert.equal(await alice.page.getByRole('textbox', { name: 'Edit message' }).count(), 0),
    );
    assert.ok(await focused(edit), 'focus is back on Edit after saving it unchanged');
    assert.equal(await alice.messages(said.typo).filter({ hasText: 'edited' }).count(), 0, 'not marked edited');

    await alice.messages(said.typo).first().getByRole('button', { name: 'Edit', exact: true }).click();
    await alice.page.getByRole('textbox', { name: 'Edit message' }).fill(said.fixed);
    await alice.page.getByRole('textbox', { name: 'Edit message' }).press('Enter');
    for (const user of [alice, bob]) {
      await user.messages(said.fixed).filter({ hasText: 'edited' }).first().waitFor();
      assert.equal(await user.messages(said.typo).count(), 0, `${user.name} still sees the typo`);
    }
    // Saved, the message's row is shown anew; the keyboard is on its Edit button again.
    await eventually('focus is on Edit after the save', async () =>
      assert.ok(await focused(alice.messages(said.fixed).first().getByRole('button', { name: 'Edit', exact: true }))),
    );
  });

  step('Bob reacts from the picker, Alice joins in: counts, highlight and who reacted', async () => {
    const open = bob.messages(said.fixed).first().getByRole('button', { name: 'React', exact: true });
    // Escape closes the picker, and the keyboard is back on the button that opened it.
    await open.click();
    await bob.page.getByRole('button', { name: 'React with 👍' }).focus();
    await bob.page.keyboard.press('Escape');
    await eventually('the picker closed by Escape', async () =>
      assert.equal(await bob.page.getByRole('group', { name: 'Pick a reaction' }).count(), 0),
    );
    assert.ok(await focused(open), 'focus is back on React');
    await open.click();
    await bob.page.getByRole('button', { name: 'React with 👍' }).press('Enter');
    await reaction(alice, said.fixed, '👍').getByText('bob').waitFor({ state: 'attached' });
    assert.equal(await reaction(alice, said.fixed, '👍').getAttribute('aria-pressed'), 'false');
    // The pick changed the message, whose row is shown anew: the keyboard is on React again.
    await eventually('focus is on React after the pick', async () =>
      assert.ok(await focused(bob.messages(said.fixed).first().getByRole('button', { name: 'React', exact: true }))),
    );

    await reaction(alice, said.fixed, '👍').click();
    for (const user of [alice, bob]) {
      await eventually(`${user.name} sees two 👍`, async () =>
        assert.equal(await reaction(user, said.fixed, '👍').getAttribute('aria-label'), '👍 2: bob, alice'),
      );
    }
    assert.equal(await reaction(alice, said.fixed, '👍').getAttribute('aria-pressed'), 'true', 'mine is highlighted');
    await eventually('focus is on the 👍 Alice pressed', async () =>
      assert.ok(await focused(reaction(alice, said.fixed, '👍'))),
    );
    await reaction(bob, said.fixed, '👍').focus();
    assert.ok(await reaction(bob, said.fixed, '👍').locator('.who').isVisible(), 'who reacted shows on focus');
  });

  step("the answer to Bob's reaction, come after Alice's next one, does not hide hers", async () => {
    // Bob's React is answered by the server at once, but his browser gets the answer only
    // after Alice's 🎉, which came later, has reached his stream.
    const react = await holdAnswers(bob.page, '**/chat.Chat/React');
    await bob.messages(said.fixed).first().getByRole('button', { name: 'React', exact: true }).click();
    await bob.page.getByRole('button', { name: 'React with 🎉' }).click();
    await eventually("Bob's reaction stored", async () => assert.ok(react.read));
    await reaction(alice, said.fixed, '🎉').getByText('bob').waitFor({ state: 'attached' });
    await reaction(alice, said.fixed, '🎉').click();
    const both = '🎉 2: bob, alice';
    await eventually('Bob sees both from his stream', async () =>
      assert.equal(await reaction(bob, said.fixed, '🎉').getAttribute('aria-label'), both),
    );
    await react.end();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    assert.equal(await reaction(bob, said.fixed, '🎉').getAttribute('aria-label'), both, 'the older answer hid nothing');
  });

  step('Alice deletes a message after confirming: both see the placeholder', async () => {
    const message = alice.messages(said.regret).first();
    alice.page.once('dialog', (dialog) => dialog.dismiss());
    await message.getByRole('button', { name: 'Delete', exact: true }).click();
    await alice.messages(said.regret).first().waitFor();
    alice.page.once('dialog', (dialog) => dialog.accept());
    await alice.messages(said.regret).first().getByRole('button', { name: 'Delete', exact: true }).click();
    for (const user of [alice, bob]) {
      await user.messages('Message deleted').first().waitFor();
      assert.equal(await user.messages(said.regret).count(), 0, `${user.name} still sees the deleted text`);
    }
    // The keyboard is on the placeholder, which says what happened, not at the page's start.
    await eventually("focus is on Alice's placeholder", async () =>
      assert.ok(await focused(alice.messages('Message deleted').first().locator('.text'))),
    );
  });

  step('after a reload Bob sees the current versions from History, each once', async () => {
    await bob.page.reload();
    await bob.openChatWith(alice.name);
    await bob.messages(said.fixed).filter({ hasText: 'edited' }).first().waitFor();
    await eventually('the reactions after a reload', async () =>
      assert.equal(await reaction(bob, said.fixed, '👍').getAttribute('aria-label'), '👍 2: bob, alice'),
    );
    assert.deepEqual(await bob.messageTexts(), [said.fixed, 'Message deleted']);
    for (const user of [alice, bob]) {
      assert.deepEqual(user.pageErrors, [], `uncaught errors in ${user.name}'s page`);
      assert.deepEqual(await user.cspViolations(), [], `CSP violations in ${user.name}'s page`);
    }
  });
});
