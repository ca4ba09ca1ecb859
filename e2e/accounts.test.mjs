// A team's server with sign-up closed (`--sign-up closed`): the sign-in page offers "Sign in"
// only; a page loaded while sign-up was still open hears why "Sign up" fails and creates
// nothing; an account the operator makes with `chat-server add-account` (the server stopped,
// as on SQLite it must be) signs in; one the operator deactivates (`deactivate-account`) is
// signed out and gone from the others' chats, which keep what they wrote, and nobody can start
// a chat with them. Run it with
// e2e/run.sh.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { ChatUser, eventually } from './browser.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';

/** Fills the sign-in form of `user` and presses `button` ("Sign up" or "Sign in"). */
async function submit(user, button) {
  user.note(`[test] ${button} as ${user.name}`);
  await user.page.getByLabel('Username', { exact: true }).fill(user.name);
  await user.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await user.button(button).click();
}

describe('sign-up closed: accounts come from the operator', { timeout: 120_000 }, () => {
  /** @type {ChatUser} */ let mallory;
  /** @type {ChatUser} */ let dave;
  /** @type {ChatUser} */ let erin;

  const suite = serverAndBrowser({ extraArgs: ['--sign-up', 'closed'] });
  const step = suite.steps(() => [mallory, dave, erin]);

  step('the sign-in page offers "Sign in" only', async () => {
    mallory = await ChatUser.open(suite.browser, suite.server.url, 'mallory');
    await mallory.button('Sign in').waitFor();
    assert.equal(await mallory.button('Sign up').count(), 0, '"Sign up" is offered');
    await submit(mallory, 'Sign in');
    await mallory.page.getByRole('alert').filter({ hasText: 'Wrong username or password' }).waitFor();
  });

  step('"Sign up" on a page from before sign-up closed says so and whom to ask, and makes no account', async () => {
    // The operator closes sign-up while the page is open.
    await suite.server.stop();
    suite.server.extraArgs = [];
    await suite.server.start();
    await mallory.page.reload();
    await mallory.button('Sign up').waitFor();
    await suite.server.stop();
    suite.server.extraArgs = ['--sign-up', 'closed'];
    await suite.server.start();
    await submit(mallory, 'Sign up');
    await mallory.page
      .getByRole('alert')
      .filter({ hasText: 'Sign-up is closed on this server: ask its operator for an account' })
      .waitFor();
    await submit(mallory, 'Sign in');
    await mallory.page.getByRole('alert').filter({ hasText: 'Wrong username or password' }).waitFor();
  });

  step('an account the operator adds signs in', async () => {
    await suite.server.stop();
    const task = await suite.server.operatorTask(['add-account', 'dave'], `${PASSWORD}\n`);
    assert.equal(task.code, 0, task.output);
    assert.match(task.output, /account dave created/);
    await suite.server.start();
    dave = await ChatUser.open(suite.browser, suite.server.url, 'dave');
    await submit(dave, 'Sign in');
    await dave.button('New chat').waitFor();
    assert.deepEqual(dave.pageErrors, [], "uncaught errors in Dave's page");
  });

  step('someone who leaves the team is signed out and taken out of the chats, which keep their words', async () => {
    await suite.server.stop();
    for (const name of ['erin', 'frank']) {
      const task = await suite.server.operatorTask(['add-account', name], `${PASSWORD}\n`);
      assert.equal(task.code, 0, task.output);
    }
    await suite.server.start();
    erin = await ChatUser.open(suite.browser, suite.server.url, 'erin');
    await submit(erin, 'Sign in');
    await dave.waitUntilConnected(15_000);
    await dave.startChatWith('erin, frank');
    await dave.send('My last day: bye all');
    await dave.waitUntilSent('My last day: bye all');
    await erin.openChatWith('dave, frank');
    await erin.messages('My last day: bye all').waitFor();

    // On SQLite the operator stops the server for it.
    await suite.server.stop();
    const task = await suite.server.operatorTask(['deactivate-account', 'dave']);
    assert.equal(task.code, 0, task.output);
    assert.match(task.output, /account dave deactivated: every session of dave has ended, and dave left 1 chat\b/);
    await suite.server.start();

    // Dave's page is back at the sign-in form, saying why; his password no longer works.
    await dave.page.getByText('Your session has ended. Please sign in again.').waitFor({ timeout: 20_000 });
    await submit(dave, 'Sign in');
    await dave.page.getByRole('alert').filter({ hasText: 'Wrong username or password' }).waitFor();
    // Erin's open chat, reconnected, is with Frank alone, and still shows what Dave wrote.
    const heading = erin.page.getByRole('heading', { level: 2 });
    await eventually('erin sees that dave is gone', async () =>
      assert.equal((await heading.innerText()).trim(), 'frank'),
    { timeout: 20_000 });
    await erin.messages('My last day: bye all').waitFor();
    // Nor can Erin start a chat with him again: she is told why, rather than writing to nobody.
    await erin.button('New chat').click();
    await erin.page.getByLabel('Usernames', { exact: true }).fill('dave');
    await erin.button('Start chat').click();
    const refusal = erin.page.getByRole('alert').filter({ hasText: 'is no longer here' });
    await refusal.waitFor();
    assert.equal(
      (await refusal.innerText()).trim(),
      '"dave" is no longer here (the account is deactivated): a chat with them would reach nobody',
    );
    for (const user of [dave, erin]) {
      assert.deepEqual(user.pageErrors, [], `uncaught errors in ${user.name}'s page`);
    }
  });
});
