// Read state, typing and presence in real browsers: Alice on two devices (two isolated
// contexts) and Bob. Reading on one of Alice's devices clears the unread badge on the other
// live, Bob sees "Seen", a chat opened with unread messages shows the "New messages" divider,
// "alice is typing…" shows and goes away by itself, a group shows no presence dot and says
// who has seen Alice's message ("Seen by bob", then "Seen by everyone", until Bob replies), and
// presence goes online, then offline with "last seen" once Alice has closed every device.
// Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { ChatUser, VIEWPORT, eventually } from './browser.mjs';
import { encodeStrings, unary } from './grpc_web.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
/** The server's presence grace period here. */
const GRACE_MS = 1_000;
/** How long a typing line may stay after the last keystroke: the server's 6 s and margin. */
const TYPING_GONE_MS = 9_000;

/** Signs `user` in with the name and password of an existing account. */
async function signIn(user) {
  user.note(`[test] sign in as ${user.name}`);
  await user.page.getByLabel('Username', { exact: true }).fill(user.name);
  await user.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await user.button('Sign in').click();
  await user.button('New chat').waitFor();
}

/** The unread badge of `user`'s chat entry that mentions `member`. */
function badge(user, member) {
  return user.chatEntry(member).getByLabel(/^\d+ unread$/);
}

/** The presence line in the open chat's header. */
function presenceLine(user) {
  return user.page.locator('.conversation-header').getByRole('status');
}

describe('read state, typing and presence', { timeout: 150_000 }, () => {
  /** @type {ChatUser} */ let alice;
  /** @type {ChatUser} */ let aliceOther;
  /** @type {ChatUser} */ let bob;
  /** @type {ChatUser} */ let carol;


  const suite = serverAndBrowser({ extraArgs: ['--presence-grace-ms', String(GRACE_MS)] });
  const step = suite.steps(() => [alice, aliceOther, bob, carol]);

  step('Alice (two devices) and Bob are connected, and see each other online', async () => {
    alice = await ChatUser.open(suite.browser, suite.server.url, 'alice');
    bob = await ChatUser.open(suite.browser, suite.server.url, 'bob');
    await alice.signUp(PASSWORD);
    await bob.signUp(PASSWORD);
    aliceOther = await ChatUser.open(suite.browser, suite.server.url, 'alice');
    await signIn(aliceOther);
    for (const user of [alice, aliceOther, bob]) await user.waitUntilConnected();
    await alice.startChatWith(bob.name);
    await alice.send('Hello Bob');
    await alice.waitUntilSent('Hello Bob');
    await bob.openChatWith(alice.name);
    await presenceLine(bob).filter({ hasText: 'online' }).waitFor();
    await bob.chatEntry(alice.name).getByRole('img', { name: 'alice: online' }).waitFor();
  });

  step('Bob sees "Seen" once Alice has the chat open, in view at the end of his full log', async () => {
    // A window so low that two messages fill the log: the line, which comes after the
    // message, must bring the log down with it rather than appear under its edge.
    await bob.page.setViewportSize({ width: VIEWPORT.width, height: 300 });
    await bob.send('Hi Alice, first');
    await bob.waitUntilSent('Hi Alice, first');
    await alice.messages('Hi Alice, first').first().waitFor();
    const seen = bob.messageLog.getByText('Seen', { exact: true });
    await seen.waitFor();
    await eventually('the receipt is in view at the bottom of the log', async () => {
      const [line, log] = [await seen.boundingBox(), await bob.messageLog.boundingBox()];
      assert.ok(line.y + line.height <= log.y + log.height + 1, `line ${JSON.stringify(line)}, log ${JSON.stringify(log)}`);
    });
    await bob.page.setViewportSize(VIEWPORT);
  });

  step('reading on one of Alice\'s devices clears the badge on the other; the divider shows', async () => {
    // Alice's first device goes to another chat: Bob's next message stays unread everywhere.
    await alice.startChatWith('alice');
    await bob.send('Unread until opened');
    await bob.waitUntilSent('Unread until opened');
    await badge(alice, bob.name).waitFor();
    await badge(aliceOther, bob.name).waitFor();
    await aliceOther.openChatWith(bob.name);
    await aliceOther.messageLog.getByRole('separator', { name: 'New messages' }).waitFor();
    const texts = await aliceOther.messageLog.locator('p.divider ~ article p.text').allInnerTexts();
    assert.deepEqual(texts, ['Unread until opened'], 'the divider sits before the unread message');
    await eventually("the badge on Alice's first device is cleared live by the other", async () =>
      assert.equal(await badge(alice, bob.name).count(), 0),
    );
  });

  step('"alice is typing…" shows while she types and goes away by itself', async () => {
    // Screen readers hear the typing line and the presence line politely, and the typing
    // line changes once when Alice starts, not with each of her keystrokes.
    const region = bob.page.locator('p.typing');
    assert.equal(await region.getAttribute('aria-live'), 'polite');
    assert.equal(await presenceLine(bob).getAttribute('aria-live'), 'polite');
    await region.evaluate((element) => {
      window.__typingTexts = [];
      new MutationObserver(() => window.__typingTexts.push(element.textContent)).observe(element, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    await aliceOther.composer.pressSequentially('I am wri');
    const typing = bob.page.getByRole('status').filter({ hasText: 'alice is typing…' });
    await typing.waitFor();
    await aliceOther.composer.pressSequentially('ting more and more');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const announced = await bob.page.evaluate(() => [...new Set(window.__typingTexts)]);
    assert.deepEqual(announced, ['alice is typing…'], 'one announcement while she types 26 keys');
    await eventually('the typing line goes away', async () => assert.equal(await typing.count(), 0), {
      timeout: TYPING_GONE_MS,
    });
    // Typing again, then sending: the message ends the line at once.
    await aliceOther.composer.fill('');
    await aliceOther.composer.pressSequentially('Done typ');
    await typing.waitFor();
    await aliceOther.composer.press('Enter');
    await bob.messages('Done typ').first().waitFor();
    // The message ends the line, long before the typing event's own 6 s.
    await eventually('the message ends the typing line', async () => assert.equal(await typing.count(), 0), {
      timeout: 1_000,
    });
  });

  step('a group that arrives live shows no presence dot, once its members are known', async () => {
    await unary(suite.server.url, '/chat.Auth/SignUp', encodeStrings({ 1: 'carol', 2: PASSWORD }));
    await alice.startChatWith('bob carol');
    await alice.send('Hello both');
    const group = bob.chatEntry('Hello both');
    // Bob's list first learns of the chat from the message, then lists its members.
    await group.filter({ hasText: 'carol' }).waitFor();
    await eventually("no dot for the group's first sender", async () =>
      assert.equal(await group.getByRole('img').count(), 0),
    );
    await bob.chatEntry(alice.name).filter({ hasNotText: 'carol' }).getByRole('img', { name: 'alice: online' }).waitFor();
  });

  step('in the group, Alice sees "Seen by bob", then "Seen by everyone" once Carol has read it too, until Bob replies', async () => {
    await bob.chatEntry('Hello both').click();
    await alice.messageLog.getByText('Seen by bob', { exact: true }).waitFor();
    carol = await ChatUser.open(suite.browser, suite.server.url, 'carol');
    await signIn(carol);
    await carol.chatEntry('Hello both').click();
    await alice.messageLog.getByText('Seen by everyone', { exact: true }).waitFor();
    await carol.context.close();
    // A reply ends Alice's line (below Bob's message it would read as about his), and the
    // line is Bob's now, under his message.
    await bob.send('Thanks both');
    await alice.messages('Thanks both').first().waitFor();
    await bob.messageLog.getByText('Seen by alice', { exact: true }).waitFor();
    await eventually("Alice's receipt is gone below Bob's reply", async () =>
      assert.equal(await alice.messageLog.locator('p.receipt').count(), 0),
    );
    // Back to the chat of two, whose header shows Alice's presence.
    await bob.chatEntry(alice.name).filter({ hasNotText: 'carol' }).click();
  });

  step('Alice closes both devices: Bob sees her last seen; she comes back online', async () => {
    await alice.context.close();
    await aliceOther.context.close();
    await presenceLine(bob).filter({ hasText: /^last seen / }).waitFor({ timeout: GRACE_MS + 5_000 });
    await bob.chatEntry(alice.name).getByRole('img', { name: /^alice: last seen / }).waitFor();

    alice = await ChatUser.open(suite.browser, suite.server.url, 'alice');
    await signIn(alice);
    await presenceLine(bob).filter({ hasText: 'online' }).waitFor();
    assert.deepEqual(bob.pageErrors, [], "uncaught errors in Bob's page");
  });
});
