// Desktop notifications: the browser is asked for permission only when Alice clicks the offer
// in the account menu, never on load; then, with all her tabs hidden, a message from Bob shows
// one notification per browser (not one per tab), with his name and the text, none while she
// reads in a visible tab (even when the tab holding the stream is hidden), and clicking it
// opens the chat. The browser context grants the permission (as a person would at the
// prompt); a wrapper around `Notification`, installed before the app loads, records what the
// app asked for and shows, since headless Chromium shows nothing. Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { ChatUser, eventually } from './browser.mjs';
import { decodeStrings, encodeStrings, unary } from './grpc_web.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
/** Long enough for a notification to have been made, had one been going to be. */
const SETTLE_MS = 1_500;

/**
 * Runs in every page before the app: `Notification` records each notification made (in
 * `window.__notifications`) and each permission request (counted in localStorage, as the
 * permission itself is the origin's, shared by its tabs). Until this origin has asked, it
 * reports "default" (not asked yet), whatever the context granted.
 */
function recordNotifications() {
  const Real = window.Notification;
  window.__notifications = [];
  const asked = () => Number(localStorage.getItem('test.permission-requests') ?? 0);
  window.Notification = class {
    constructor(title, options = {}) {
      this.title = title;
      this.body = options.body;
      this.tag = options.tag;
      this.closed = false;
      window.__notifications.push(this);
    }
    close() {
      this.closed = true;
    }
    static get permission() {
      return asked() > 0 ? Real.permission : 'default';
    }
    static requestPermission() {
      localStorage.setItem('test.permission-requests', String(asked() + 1));
      return Real.requestPermission();
    }
  };
}

/** Makes the page report itself hidden (or shown), as a tab in the background does. */
function setHidden(user, hidden) {
  return user.page.evaluate((value) => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => value });
    document.dispatchEvent(new Event('visibilitychange', { bubbles: true }));
  }, hidden);
}

/** What each of `tabs` has shown, as [{ title, body, tag }] per tab. */
function shown(tabs) {
  return Promise.all(
    tabs.map((tab) =>
      tab.page.evaluate(() => window.__notifications.map(({ title, body, tag }) => ({ title, body, tag }))),
    ),
  );
}

describe('desktop notifications, one per browser', { timeout: 120_000 }, () => {
  /** @type {ChatUser[]} */ const tabs = [];
  let bobToken;
  let chatId;

  const suite = serverAndBrowser();
  const step = suite.steps(() => tabs);

  const bobSends = (clientId, text) =>
    unary(suite.server.url, '/chat.Chat/Send', encodeStrings({ 1: clientId, 2: chatId, 5: text }), {
      token: bobToken,
    });

  step('nothing is asked on load; the offer in the account menu asks', async () => {
    const first = await ChatUser.open(suite.browser, suite.server.url, 'alice');
    tabs.push(first);
    await first.context.grantPermissions(['notifications']);
    await first.context.addInitScript(recordNotifications);
    await first.page.reload();
    await first.signUp(PASSWORD);
    const signUp = (user) => unary(suite.server.url, '/chat.Auth/SignUp', encodeStrings({ 1: user, 2: PASSWORD }));
    bobToken = decodeStrings(await signUp('bob'))[2];
    const members = Buffer.concat(['alice', 'bob'].map((member) => encodeStrings({ 1: member })));
    chatId = decodeStrings(await unary(suite.server.url, '/chat.Chat/New', members, { token: bobToken }))[1];
    for (let n = 2; n <= 3; n++) {
      const page = await first.context.newPage();
      const tab = new ChatUser(`alice (tab ${n})`, first.context, page);
      tabs.push(tab);
      await page.goto(suite.server.url);
    }
    for (const tab of tabs) await tab.waitUntilConnected();
    const requests = () => first.page.evaluate(() => localStorage.getItem('test.permission-requests'));
    assert.equal(await requests(), null, 'no permission asked on load');

    await first.page.getByText('Account', { exact: true }).click();
    await first.button('Turn on desktop notifications').click();
    await first.page.getByText('Desktop notifications are on.').waitFor();
    assert.equal(await requests(), '1', 'asked once, on the click');
  });

  step('a visible tab shows the message, not a notification', async () => {
    await bobSends('n-1', 'While Alice looks');
    await tabs[0].chatEntry('bob').waitFor();
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    assert.deepEqual(await shown(tabs), [[], [], []]);
  });

  step('with every tab hidden, one notification per browser, with sender and text', async () => {
    for (const tab of tabs) await setHidden(tab, true);
    await bobSends('n-2', 'Are you there?');
    await eventually('a notification', async () => assert.equal((await shown(tabs)).flat().length, 1));
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const perTab = await shown(tabs);
    const all = perTab.flat();
    assert.equal(all.length, 1, `one notification in all, not one per tab: ${JSON.stringify(perTab)}`);
    assert.equal(all[0].title, 'bob');
    assert.equal(all[0].body, 'Are you there?');
    assert.match(all[0].tag, /^\d+$/, 'tagged with the message id');
  });

  step('no notification while another tab shows the chat, though the one streaming is hidden', async () => {
    // The tab that made the notification holds the stream; the person now reads in another.
    const leader = (await shown(tabs)).findIndex((notifications) => notifications.length > 0);
    const reading = tabs[(leader + 1) % tabs.length];
    await setHidden(reading, false);
    await reading.openChatWith('bob');
    await bobSends('n-3', 'Read in another tab');
    await reading.messages('Read in another tab').waitFor();
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const perTab = await shown(tabs);
    assert.equal(perTab.flat().length, 1, `no notification beyond the first: ${JSON.stringify(perTab)}`);

    // Hidden again, the next message notifies once more.
    await setHidden(reading, true);
    await bobSends('n-4', 'Gone again?');
    await eventually('a second notification', async () => assert.equal((await shown(tabs)).flat().length, 2));
    assert.deepEqual(
      (await shown(tabs))[leader].map(({ body }) => body),
      ['Are you there?', 'Gone again?'],
      'both from the tab holding the stream',
    );
  });

  step('clicking it opens the chat', async () => {
    const perTab = await shown(tabs);
    const tab = tabs[perTab.findIndex((notifications) => notifications.length > 0)];
    assert.equal(await tab.messageLog.count(), 0, 'no chat open before the click');
    await tab.page.evaluate(() => window.__notifications[0].onclick());
    await tab.messages('Are you there?').first().waitFor();
    assert.equal(new URL(tab.page.url()).pathname, `/chats/${chatId}`);
    assert.equal(await tab.page.evaluate(() => window.__notifications[0].closed), true, 'closed once used');
    for (const each of tabs) assert.deepEqual(each.pageErrors, [], `uncaught errors in ${each.name}'s page`);
  });
});
