// The page as it crosses a slow network, for chat-bench's bundle scenario: loads the UI in
// headless Chromium with the network throttled (DevTools network emulation), from a fresh
// browser (empty cache) and then reloaded, and measures for each the time from navigation
// start to the sign-in form and the bytes received on the wire (compressed bodies plus
// headers, as DevTools' `encodedDataLength` counts them). Prints one JSON line:
// {"first_ms": [...], "reload_ms": [...], "first_bytes": [...], "reload_bytes": [...],
//  "encodings": {"<file>": "<content-encoding>"}}.

import { parseArgs } from 'node:util';

import { launchChromium } from '../e2e/browser.mjs';

/** The script gives up, closing the browser, before chat-bench would stop it. */
const GIVE_UP_MS = 100_000;
const LOAD_TIMEOUT_MS = 30_000;

/** Chrome DevTools' "Slow 4G" preset as the benchmark states it: 1.6 Mbit/s down, 750 kbit/s up, 150 ms RTT. */
const SLOW_4G = {
  offline: false,
  latency: 150,
  downloadThroughput: (1.6 * 1000 * 1000) / 8,
  uploadThroughput: (750 * 1000) / 8,
  connectionType: 'cellular4g',
};

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    loads: { type: 'string', default: '1' },
  },
});
const loads = Number(values.loads);
if (!values.url || !(loads > 0)) {
  console.error('usage: wire_load.mjs --url URL [--loads N]');
  process.exit(2);
}

const giveUp = setTimeout(() => {
  console.error(`wire_load: gave up after ${GIVE_UP_MS} ms`);
  process.exit(3);
}, GIVE_UP_MS);

/** Counts the bytes of every response of `page` and notes each file's Content-Encoding. */
async function watchNetwork(context, page, encodings) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', SLOW_4G);
  const meter = { bytes: 0 };
  cdp.on('Network.loadingFinished', (event) => {
    meter.bytes += event.encodedDataLength;
  });
  cdp.on('Network.responseReceived', (event) => {
    const headers = Object.fromEntries(
      Object.entries(event.response.headers).map(([name, value]) => [name.toLowerCase(), value]),
    );
    const file = new URL(event.response.url).pathname;
    encodings[file] = headers['content-encoding'] ?? 'identity';
  });
  return meter;
}

/** Milliseconds from navigation start to the sign-in form's password field on screen. */
async function signInFormShown(page) {
  await page.waitForFunction(() => window.__signInAt !== undefined, null, { timeout: LOAD_TIMEOUT_MS });
  return page.evaluate(() => window.__signInAt);
}

const browser = await launchChromium();
try {
  const result = { first_ms: [], reload_ms: [], first_bytes: [], reload_bytes: [], encodings: {} };
  for (let n = 0; n < loads; n++) {
    const context = await browser.newContext();
    await context.addInitScript(() => {
      const check = () => {
        if (window.__signInAt === undefined && document.querySelector('input[type="password"]')) {
          window.__signInAt = performance.now();
        }
      };
      new MutationObserver(check).observe(document, { childList: true, subtree: true });
    });
    const page = await context.newPage();
    const meter = await watchNetwork(context, page, result.encodings);

    await page.goto(values.url, { waitUntil: 'commit', timeout: LOAD_TIMEOUT_MS });
    result.first_ms.push(await signInFormShown(page));
    await page.waitForLoadState('networkidle', { timeout: LOAD_TIMEOUT_MS });
    result.first_bytes.push(meter.bytes);

    meter.bytes = 0;
    await page.reload({ waitUntil: 'commit', timeout: LOAD_TIMEOUT_MS });
    result.reload_ms.push(await signInFormShown(page));
    await page.waitForLoadState('networkidle', { timeout: LOAD_TIMEOUT_MS });
    result.reload_bytes.push(meter.bytes);
    await context.close();
  }
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  clearTimeout(giveUp);
}
