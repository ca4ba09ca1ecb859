// An accessibility audit with axe-core (from npm) in headless Chromium: the sign-in page, and
// a busy chat screen (a chat list, a conversation with replies, reactions, an edited and a
// deleted message, a day separator, the "New messages" divider, a typing line), and then
// with the editor open on one's own message, each in the light and the dark theme. Fails on any
// violation axe rates serious or critical, naming the rule and the elements. axe runs through
// the DevTools protocol, so the server's Content-Security-Policy applies to the page as
// always and nothing is relaxed for the test. Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { describe, test } from 'node:test';

import { ChatUser } from './browser.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
const AXE = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** The serious and critical violations of WCAG 2 A and AA rules on `page`, as readable lines. */
async function seriousViolations(page) {
  await page.evaluate(AXE);
  const results = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }),
  );
  return results.violations
    .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
    .map((violation) => `${violation.impact} ${violation.id}: ${violation.help} — ${violation.nodes.map((node) => node.target.join(' ')).join(', ')}`);
}

describe('accessibility audit (axe-core)', { timeout: 90_000 }, () => {
  /** @type {ChatUser} */ let alice;
  /** @type {ChatUser} */ let bob;

  const suite = serverAndBrowser();

  test('the sign-in page and a busy chat screen have no serious or critical violation', async () => {
    try {
      alice = await ChatUser.open(suite.browser, suite.server.url, 'alice');
      bob = await ChatUser.open(suite.browser, suite.server.url, 'bob');
      await alice.page.getByLabel('Username', { exact: true }).waitFor();
      for (const colorScheme of ['dark', 'light']) {
        await alice.page.emulateMedia({ colorScheme });
        assert.deepEqual(await seriousViolations(alice.page), [], `the sign-in page, ${colorScheme}`);
      }

      await alice.signUp(PASSWORD);
      await bob.signUp(PASSWORD);
      await bob.startChatWith(alice.name);
      await bob.send('Hello alice, shall we plan the trip?');
      await bob.waitUntilSent('Hello alice, shall we plan the trip?');
      await bob.send('This one I will delete');
      await bob.waitUntilSent('This one I will delete');
      await alice.openChatWith(bob.name);
      const question = alice.messages('plan the trip').first();
      await question.waitFor();

      // A reply, a reaction, an edit and a deletion, so each of their parts is on screen.
      await question.getByRole('button', { name: 'Reply', exact: true }).click();
      await alice.send('Yes, on Saturday');
      await alice.waitUntilSent('Yes, on Saturday');
      await question.getByRole('button', { name: 'React', exact: true }).click();
      await alice.page.getByRole('button', { name: 'React with 👍' }).click();
      await question.getByRole('button', { name: /👍 1/ }).waitFor();
      const mine = alice.messages('Yes, on Saturday').first();
      await mine.getByRole('button', { name: 'Edit', exact: true }).click();
      await alice.page.getByLabel('Edit message').fill('Yes, on Sunday');
      await alice.page.getByLabel('Edit message').press('Enter');
      await alice.messages('Yes, on Sunday').first().waitFor();
      bob.page.once('dialog', (dialog) => dialog.accept());
      await bob.messages('This one I will delete').first().getByRole('button', { name: 'Delete', exact: true }).click();
      await alice.messages('Message deleted').first().waitFor();
      // Bob types: Alice sees the typing line.
      await bob.composer.fill('Let me check');
      await alice.page.getByText('bob is typing').waitFor();

      assert.deepEqual(await seriousViolations(alice.page), [], 'the chat screen');
      // Her own message's editor, open on her coloured bubble, in the light and dark themes.
      const edited = alice.messages('Yes, on Sunday').first();
      await edited.getByRole('button', { name: 'Edit', exact: true }).click();
      const editor = alice.page.getByLabel('Edit message');
      assert.equal(await editor.inputValue(), 'Yes, on Sunday');
      for (const colorScheme of ['light', 'dark']) {
        await alice.page.emulateMedia({ colorScheme });
        assert.deepEqual(await seriousViolations(alice.page), [], `the editor, ${colorScheme}`);
        const [text, background] = await editor.evaluate((element) => {
          const style = getComputedStyle(element);
          return [style.color, style.backgroundColor];
        });
        assert.notEqual(text, background, `the editor's text is the colour of its background (${colorScheme})`);
      }
      await alice.page.emulateMedia({ colorScheme: 'light' });
      await editor.press('Escape');
      await edited.getByRole('button', { name: 'Edit', exact: true }).waitFor();
      assert.deepEqual(alice.pageErrors, [], 'uncaught errors in the page');
    } catch (error) {
      suite.report([alice, bob]);
      throw error;
    }
  });
});
