// Drives Debian's headless Chromium with playwright-core (which never downloads a browser):
// one isolated browser context per chat user, the UI found by role and accessible name as a
// person would, and a polling helper, since playwright-core has no `expect`.

import assert from 'node:assert/strict';

import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

// What Chromium needs here as root on a closed network (see ../../shared/TOOLCHAIN.md).
// Playwright gives the browser a fresh temporary --user-data-dir itself and removes it on close.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The size of the screenshot in the README: a laptop window. */
export const VIEWPORT = { width: 1100, height: 700 };

/** How long one UI step may take: a click's effect, a live message's arrival. */
export const STEP_MS = 5_000;

export function launchChromium() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/** Whether `locator`'s element holds the keyboard's focus. */
export function focused(locator) {
  return locator.evaluate((element) => element === document.activeElement);
}

/** Retries `check` (which throws or rejects while not yet true) until it passes or time runs out. */
export async function eventually(what, check, { timeout = STEP_MS, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() >= deadline) {
        throw new Error(`${what}: still not so after ${timeout} ms (${error.message})`, { cause: error });
      }
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/**
 * Holds back the answers to `page`'s calls whose address matches `url` (a glob): each such
 * call reaches the server at once, which answers it then, but the page gets the answer only
 * after `end()`. So a test can make the stream deliver something before an answer that the
 * server made without it. `read` turns true once the server has answered one; `end()` lets
 * the answers go, waits until the page has the held one, and stops holding. With `passFirst`,
 * the first such call goes through untouched.
 */
export async function holdAnswers(page, url, { passFirst = false } = {}) {
  let release;
  const released = new Promise((resolve) => {
    release = resolve;
  });
  let delivered;
  const answered = new Promise((resolve) => {
    delivered = resolve;
  });
  const hold = {
    read: false,
    async end() {
      release();
      await answered;
      await page.unroute(url);
    },
  };
  let calls = 0;
  await page.route(url, async (route) => {
    if (passFirst && calls++ === 0) return route.continue();
    const response = await route.fetch();
    hold.read = true;
    await released;
    await route.fulfill({ response });
    delivered();
  });
  return hold;
}

/** One person in their own browser context (own localStorage, own stream to the server). */
export class ChatUser {
  constructor(name, context, page) {
    this.name = name;
    this.context = context;
    this.page = page;
    /** What the page printed to its console and its uncaught errors, in order, for reports. */
    this.console = [];
    this.pageErrors = [];
    page.on('console', (message) => this.note(`[${message.type()}] ${message.text()}`));
    page.on('pageerror', (error) => {
      this.pageErrors.push(String(error));
      this.note(`[pageerror] ${error.stack ?? error}`);
    });
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) this.note(`[navigated] ${frame.url()}`);
    });
  }

  /** Adds a timestamped line to this user's report: what the page said, or what the test did. */
  note(line) {
    this.console.push(`${new Date().toISOString()} ${line}`);
  }

  /**
   * Opens `url` in a new, isolated context; `contextOptions` go to playwright's `newContext`
   * (`{ ignoreHTTPSErrors: true }` for a server with a self-signed certificate).
   */
  static async open(browser, url, name, contextOptions = {}) {
    const context = await browser.newContext({ viewport: VIEWPORT, ...contextOptions });
    context.setDefaultTimeout(STEP_MS);
    // Every Content-Security-Policy violation the page meets, so tests can assert there was
    // none: the app must run under the server's policy without being blocked anywhere.
    await context.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener('securitypolicyviolation', (event) => {
        window.__cspViolations.push(`${event.effectiveDirective} blocked ${event.blockedURI || 'inline'}`);
      });
    });
    const page = await context.newPage();
    const user = new ChatUser(name, context, page);
    await page.goto(url);
    return user;
  }

  // The parts of the UI, by role and accessible name.
  button(name) {
    return this.page.getByRole('button', { name, exact: true });
  }
  get messageLog() {
    return this.page.getByRole('log', { name: 'Messages' });
  }
  get composer() {
    return this.page.getByRole('textbox', { name: 'Message', exact: true });
  }
  get connection() {
    return this.page.getByRole('status', { name: 'Connection' });
  }
  /** Clicks the chat list's entry for the chat with `member`, and waits for its log. */
  async openChatWith(member) {
    this.note(`[test] open the chat with ${member}`);
    await this.chatEntry(member).click();
    await this.messageLog.waitFor();
  }
  /** The entry of the chat list whose text mentions `text` (a member's name). */
  chatEntry(text) {
    return this.page.getByRole('navigation', { name: 'Chats' }).getByRole('button').filter({ hasText: text });
  }
  /** Every message in the open chat's log whose text contains `text`, sent or not. */
  messages(text) {
    return this.messageLog.getByRole('article').filter({ hasText: text });
  }

  async signUp(password) {
    this.note(`[test] sign up as ${this.name}`);
    await this.page.getByLabel('Username', { exact: true }).fill(this.name);
    await this.page.getByLabel('Password', { exact: true }).fill(password);
    await this.button('Sign up').click();
    await this.button('New chat').waitFor();
  }

  async startChatWith(other) {
    this.note(`[test] start a chat with ${other}`);
    await this.button('New chat').click();
    // The cursor is in the form's field at once: a person just types.
    const field = this.page.getByLabel('Usernames', { exact: true });
    await eventually('the usernames field has the focus', async () => assert.ok(await focused(field)));
    await this.page.keyboard.type(other);
    await this.button('Start chat').click();
    await this.messageLog.waitFor();
  }

  /** Types `text` into the open chat and presses Enter. */
  async send(text) {
    this.note(`[test] send ${JSON.stringify(text)}`);
    await this.composer.fill(text);
    await this.composer.press('Enter');
  }

  /** Waits until `text` shows in the log as sent by this user (" · Sent" in its footer). */
  async waitUntilSent(text, timeout = STEP_MS) {
    await this.messages(text).filter({ hasText: '· Sent' }).first().waitFor({ timeout });
  }

  /** The texts of the open chat's messages, top to bottom. */
  messageTexts() {
    return this.messageLog.getByRole('article').locator('p.text').allInnerTexts();
  }

  /** The CSP violations reported in this page so far (see `open`). */
  cspViolations() {
    return this.page.evaluate(() => window.__cspViolations);
  }

  async connectionText() {
    return (await this.connection.innerText()).trim();
  }

  /** Waits until the connection indicator says "Connected". */
  async waitUntilConnected(timeout = STEP_MS) {
    await eventually(
      `${this.name} connected`,
      async () => assert.equal(await this.connectionText(), 'Connected'),
      { timeout },
    );
  }

  /** What to print when a step fails: the end of this browser's console. */
  report() {
    return `--- ${this.name}'s browser console (last lines) ---\n${this.console.slice(-40).join('\n')}`;
  }
}
