// Times cold page loads of the chat UI in headless Chromium for chat-bench's bundle scenario:
// from navigation start to the chat list showing every chat of a signed-in user. Each load
// gets a new browser context (empty cache, fresh localStorage holding the session). Prints
// one JSON line, {"loads_ms": [...]}. Chromium is launched as the e2e test launches it.

import { parseArgs } from 'node:util';

import { launchChromium } from '../e2e/browser.mjs';

/** The script gives up, closing the browser, before chat-bench would stop it. */
const GIVE_UP_MS = 100_000;
const LOAD_TIMEOUT_MS = 20_000;

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    session: { type: 'string' },
    chats: { type: 'string' },
    loads: { type: 'string', default: '1' },
  },
});
const chats = Number(values.chats);
const loads = Number(values.loads);
if (!values.url || !values.session || !(chats > 0) || !(loads > 0)) {
  console.error('usage: page_load.mjs --url URL --session JSON --chats N [--loads N]');
  process.exit(2);
}

// playwright-core kills the browser when the process exits, also through process.exit.
const giveUp = setTimeout(() => {
  console.error(`page_load: gave up after ${GIVE_UP_MS} ms`);
  process.exit(3);
}, GIVE_UP_MS);

const browser = await launchChromium();
try {
  const times = [];
  for (let n = 0; n < loads; n++) {
    const context = await browser.newContext();
    // Runs in the page before its own scripts: store the session, and note the moment (ms
    // since navigation start) the chat list first holds every chat.
    await context.addInitScript(({ session, chats }) => {
      try {
        localStorage.setItem('chat.session', session);
      } catch {
        return; // about:blank and other opaque origins have no storage
      }
      const check = () => {
        if (window.__chatListAt === undefined
            && document.querySelectorAll('nav[aria-label="Chats"] li').length >= chats) {
          window.__chatListAt = performance.now();
        }
      };
      new MutationObserver(check).observe(document, { childList: true, subtree: true });
    }, { session: values.session, chats });
    const page = await context.newPage();
    await page.goto(values.url, { waitUntil: 'commit', timeout: LOAD_TIMEOUT_MS });
    await page.waitForFunction(() => window.__chatListAt !== undefined, null, { timeout: LOAD_TIMEOUT_MS });
    times.push(await page.evaluate(() => window.__chatListAt));
    await context.close();
  }
  console.log(JSON.stringify({ loads_ms: times }));
} finally {
  await browser.close();
  clearTimeout(giveUp);
}
