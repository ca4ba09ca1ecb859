// Hostile input in the real UI: message texts, subjects and usernames carrying HTML and
// JavaScript (`<script>`, `<img onerror>`, `javascript:` links, ...) must show as the very
// characters typed, create no element, and run nothing; and the page must work under the
// server's Content-Security-Policy without a single violation. A web address becomes a link
// to that address and nothing more, opened in a tab of its own. Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChatUser, eventually } from './browser.mjs';
import { decodeStrings, encodeStrings, unary } from './grpc_web.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';

/** Each would set `window.__xss` if the page ever treated it as markup or as a URL. */
const TEXTS = [
  `<script>window.__xss = 'script'</script>`,
  `<img src=x onerror="window.__xss = 'img'">`,
  `<a href="javascript:window.__xss = 'link'">click me</a>`,
  `javascript:window.__xss = 'url'`,
  `<svg onload="window.__xss = 'svg'"></svg>`,
  `<iframe srcdoc="<script>parent.__xss = 'iframe'</script>"></iframe>`,
];
const SUBJECT = `<b onmouseover="window.__xss = 'subject'">bold?</b>`;
const TYPED = `<img src=/nope onerror="window.__xss = 'typed'"> typed in the composer`;
const BAD_USERNAME = `<img src=x onerror=window.__xss=1>`;

describe('hostile text renders as text under a strict CSP', { timeout: 90_000 }, () => {
  /** @type {ChatUser} */ let victim;

  const suite = serverAndBrowser();

  /** Fails with the server's and the browser's last words, so a failure explains itself. */
  async function reported(body) {
    try {
      await body();
    } catch (error) {
      suite.report([victim]);
      throw error;
    }
  }

  test('the UI comes with nosniff, a referrer policy and a CSP that allows its loader by hash', async () => {
    const response = await fetch(suite.server.url);
    await response.arrayBuffer();
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(response.headers.get('referrer-policy'), 'no-referrer');
    const policy = response.headers.get('content-security-policy') ?? '';
    assert.match(policy, /^script-src 'self' 'wasm-unsafe-eval' 'sha256-[A-Za-z0-9+/]+=*';/);
    assert.doesNotMatch(policy, /unsafe-inline/);
  });

  test('a username made of markup is refused, and the refusal shows it as text', async () => {
    await reported(async () => {
      victim = await ChatUser.open(suite.browser, suite.server.url, 'victim');
      await victim.page.getByLabel('Username', { exact: true }).fill(BAD_USERNAME);
      await victim.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      await victim.button('Sign up').click();
      const error = victim.page.locator('#sign-in-user-error');
      await eventually('the username error quotes the name as typed', async () =>
        assert.match(await error.innerText(), /^Username ".*" (must|may)/),
      );
      assert.ok((await error.innerText()).includes(BAD_USERNAME), await error.innerText());
      assert.equal(await victim.page.locator('img').count(), 0, 'an <img> appeared');
      assert.equal(await victim.page.evaluate(() => window.__xss), undefined);
    });
  });

  test('messages and a subject full of markup arrive as text, create nothing and run nothing', async () => {
    await reported(async () => {
      await victim.page.getByLabel('Username', { exact: true }).fill('');
      await victim.signUp(PASSWORD);

      // Mallory is no browser user: she calls the API directly, as an attacker would.
      const mallory = decodeStrings(
        await unary(suite.server.url, '/chat.Auth/SignUp', encodeStrings({ 1: 'mallory', 2: PASSWORD })),
      )[2];
      // NewRequest.user_ids is a repeated string (field 1): one field per member.
      const newRequest = Buffer.concat([encodeStrings({ 1: 'mallory' }), encodeStrings({ 1: 'victim' })]);
      const chatId = decodeStrings(await unary(suite.server.url, '/chat.Chat/New', newRequest, { token: mallory }))[1];
      // Addresses of the test's own server, so that a click can only open a page here. The
      // first tries to carry markup out of its link; the quote ends the address before it.
      const here = suite.server.url;
      const linking = `${here}a?q="><img src=x onerror="window.__xss = 'href'"> and (${here}b).`;
      const texts = [...TEXTS, linking];
      for (const [n, text] of texts.entries()) {
        // SendRequest: client_id = 1, chat_id = 2, subject = 4, text = 5.
        const fields = { 1: `xss-${n}`, 2: chatId, 5: text };
        if (n === 0) fields[4] = SUBJECT;
        await unary(suite.server.url, '/chat.Chat/Send', encodeStrings(fields), { token: mallory });
      }

      await victim.openChatWith('mallory');
      await eventually('every hostile message shown', async () =>
        assert.deepEqual(await victim.messageTexts(), texts),
      );
      const links = victim.messageLog.locator('p.text a');
      assert.deepEqual(await links.evaluateAll((all) => all.map((a) => a.getAttribute('href'))), [`${here}a?q=`, `${here}b`]);
      assert.deepEqual(await links.allInnerTexts(), [`${here}a?q=`, `${here}b`]);
      for (const link of await links.all()) {
        assert.equal(await link.getAttribute('target'), '_blank');
        assert.equal(await link.getAttribute('rel'), 'noopener noreferrer nofollow');
      }
      const subjects = await victim.messageLog.locator('p.subject').allInnerTexts();
      assert.deepEqual(subjects, [SUBJECT]);

      await victim.send(TYPED);
      await victim.waitUntilSent(TYPED);
      assert.deepEqual(await victim.messageTexts(), [...texts, TYPED]);
      const preview = await victim.chatEntry('mallory').innerText();
      assert.ok(preview.includes(TYPED.slice(0, 20)), `the chat list preview shows the text: ${preview}`);

      // Nothing the texts describe became an element, anywhere in the page.
      for (const selector of ['img', 'svg', 'iframe', 'b', 'a[href^="javascript:" i]', '[onerror]', '[onload]', '[onmouseover]']) {
        assert.equal(await victim.page.locator(selector).count(), 0, `${selector} in the page`);
      }
      assert.equal(await victim.messageLog.locator('script').count(), 0, '<script> in the log');
      // Poke at everything a person might: nothing may run, and a link opens a tab of its
      // own, leaving the chat where it was.
      const chatAt = victim.page.url();
      for (const text of await victim.messageLog.locator('p.text, p.subject').all()) {
        await text.hover();
        await text.click();
      }
      const opened = victim.page.context().waitForEvent('page');
      await links.first().click();
      const tab = await opened;
      await tab.waitForLoadState();
      assert.equal(tab.url(), `${here}a?q=`);
      assert.equal(await tab.evaluate(() => window.opener), null, 'the opened page can reach the chat');
      await tab.close();
      assert.equal(victim.page.url(), chatAt, 'a link took the chat away');
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(await victim.page.evaluate(() => window.__xss), undefined, 'hostile text ran');
      assert.deepEqual(await victim.cspViolations(), [], 'CSP violations: something tried to run or load');
      assert.deepEqual(victim.pageErrors, []);
    });
  });
});
