// A team's server with sign-up closed (`--sign-up closed`): "Sign up" on the sign-in page
// says so and what to do, and creates nothing; an account the operator makes with
// `chat-server add-account` (the server stopped, as on SQLite it must be) signs in.
// Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { ChatUser } from './browser.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';

/** Fills the sign-in form of `user` and presses `button` ("Sign up" or "Sign in"). */
async function submit(user, button) {
  user.note(`[test] ${button} as ${user.name}`);
  await user.page.getByLabel('Username', { exact: true }).fill(user.name);
  await user.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await user.button(button).click();
}

describe('sign-up closed: accounts come from the operator', { timeout: 60_000 }, () => {
  /** @type {ChatUser} */ let mallory;
  /** @type {ChatUser} */ let dave;

  const suite = serverAndBrowser({ extraArgs: ['--sign-up', 'closed'] });
  const step = suite.steps(() => [mallory, dave]);

  step('"Sign up" says sign-up is closed and whom to ask, and makes no account', async () => {
    mallory = await ChatUser.open(suite.browser, suite.server.url, 'mallory');
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
});
