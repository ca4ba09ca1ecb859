// Replies and search in the browser: Bob finds a message of Alice's far back in their chat
// with the search box (matched words marked, "More results" for the next page), clicks the
// result and the chat opens there, scrolled to it and highlighted; he replies to it (a reload
// halfway through keeps the reply), and
// Alice, after a reload, sees the reply with its quote live and clicks the quote to jump to
// the original many pages back. A hostile message among the results stays text. The old
// messages are sent through the gRPC-web API (as Alice on another device), to put the
// original several History pages back. A result in a chat that the paged chat list has not
// loaded is named by its members and opens under that name. Run it with e2e/run.sh.

import assert from 'node:assert/strict';
import { describe } from 'node:test';

import { ChatUser, eventually, focused, holdAnswers } from './browser.mjs';
import { decodeStrings, encodeStrings, unary } from './grpc_web.mjs';
import { serverAndBrowser } from './server.mjs';

const PASSWORD = 'correct horse battery';
/** More than two History pages of 50 (chat_core::limits::HISTORY_DEFAULT_PAGE) after it. */
const FILLER = 130;
/** A filler on the second History page back (of 50) from the newest. */
const EDITED_FILLER = 60;
const ORIGINAL = 'The launch code is pelican-42, don’t share it!';
const HOSTILE = '<img src=x onerror="window.__pwned = 1"> pelican pie <b>bold</b>';
const REPLY = 'Only if you bring the pelican pie';
/** Words that no space sets apart, and a ß: found by part of a run, and by "ss". */
const UNSPACED = ['明天在东京开会', '京东的快递到了', 'Grüße aus der Straße'];

/** The id of the message a Send reply carries (`SendResponse.message.id`). */
function sentId(reply) {
  // Field 1, the Message: past its key (one byte) and its length (a varint).
  let at = 1;
  while (reply[at] & 0x80) at++;
  return decodeStrings(reply.subarray(at + 1))[1];
}

/** Whether the element sits inside the visible part of its scrolling log. */
function inView(element) {
  const box = element.getBoundingClientRect();
  const log = element.closest('[role="log"]').getBoundingClientRect();
  return box.bottom > log.top && box.top < log.bottom;
}

describe('two people reply and search in the browser', { timeout: 150_000 }, () => {
  /** @type {ChatUser} */ let alice;
  /** @type {ChatUser} */ let bob;
  /** Alice's other device: its session, the chat, and the id of one filler message. */
  let token;
  let chatId;
  let fillerId;
  const suite = serverAndBrowser({ extraArgs: ['--send-rate', '0', '--new-chat-per-minute', '0'] });
  const step = suite.steps(() => [alice, bob]);

  step('Alice and Bob have a chat whose first message is far back', async () => {
    alice = await ChatUser.open(suite.browser, suite.server.url, 'alice');
    bob = await ChatUser.open(suite.browser, suite.server.url, 'bob');
    await alice.signUp(PASSWORD);
    await bob.signUp(PASSWORD);
    await alice.startChatWith(bob.name);

    // Alice's other device: a session of its own, the same chat (New is idempotent).
    token = decodeStrings(
      await unary(suite.server.url, '/chat.Auth/SignIn', encodeStrings({ 1: 'alice', 2: PASSWORD })),
    )[2];
    const members = Buffer.concat(['alice', 'bob'].map((member) => encodeStrings({ 1: member })));
    chatId = decodeStrings(await unary(suite.server.url, '/chat.Chat/New', members, { token }))[1];
    const send = (clientId, text) =>
      unary(suite.server.url, '/chat.Chat/Send', encodeStrings({ 1: clientId, 2: chatId, 5: text }), { token });
    await send('original', ORIGINAL);
    await send('hostile', HOSTILE);
    for (const [n, text] of UNSPACED.entries()) await send(`unspaced-${n}`, text);
    for (let n = 0; n < FILLER; n++) {
      const reply = await send(`filler-${n}`, `filler message number ${n}`);
      if (n === EDITED_FILLER) fillerId = sentId(reply);
    }
    await bob.waitUntilConnected();
  });

  step('Bob searches, sees the matched words marked and hostile text as text, and pages on', async () => {
    const box = bob.page.getByRole('searchbox', { name: 'Search messages' });
    const results = bob.page.getByRole('region', { name: 'Search results' });
    await box.fill('"pelican');
    await bob.button('Search').click();
    const items = results.getByRole('listitem');
    await eventually('two results', async () => assert.equal(await items.count(), 2));
    // Newest first: the hostile message, then the original.
    assert.match(await items.nth(0).innerText(), /pelican pie/);
    assert.match(await items.nth(1).innerText(), /launch code/);
    assert.deepEqual(await items.nth(1).locator('mark').allInnerTexts(), ['pelican']);
    assert.equal(await results.locator('img, b').count(), 0, 'no markup from a message');
    // Alice sent them in her chat with Bob: his results need not name it, hers do.
    assert.equal(await items.locator('.chat').count(), 0, "Bob's results name no chat");
    await alice.page.getByRole('searchbox', { name: 'Search messages' }).fill('"pelican');
    await alice.button('Search').click();
    const hers = alice.page.getByRole('region', { name: 'Search results' }).getByRole('listitem');
    await eventually('two results for Alice', async () => assert.equal(await hers.count(), 2));
    // "In" comes from the style sheet: in the accessible name, not in innerText.
    assert.match(await hers.nth(0).innerText(), /^bob\nalice\n/, 'her result names the chat, then the sender');
    assert.equal(await hers.nth(0).getByRole('button', { name: /^In bob alice / }).count(), 1, 'and says so');
    await alice.button('Close search').click();
    assert.equal(await bob.page.evaluate(() => window.__pwned), undefined);

    await box.fill('filler message');
    await bob.button('Search').click();
    await eventually('a first page of 20', async () => assert.equal(await items.count(), 20));
    assert.match(await items.nth(0).innerText(), new RegExp(`number ${FILLER - 1}\\b`));
    await bob.button('More results').click();
    await eventually('a second page after it', async () => assert.equal(await items.count(), 40));
    assert.match(await items.nth(20).innerText(), new RegExp(`number ${FILLER - 21}\\b`));

    await box.fill('   ');
    await bob.button('Search').click();
    await bob.page.getByRole('alert').filter({ hasText: 'Search query is empty' }).waitFor();
  });

  step('Bob finds Chinese inside a run of characters, and "strasse" finds "Straße", marked', async () => {
    const box = bob.page.getByRole('searchbox', { name: 'Search messages' });
    const items = bob.page.getByRole('region', { name: 'Search results' }).getByRole('listitem');
    await box.fill('东京');
    await bob.button('Search').click();
    await eventually('one result', async () => assert.equal(await items.count(), 1));
    assert.match(await items.nth(0).innerText(), /明天在东京开会/);
    assert.deepEqual(await items.nth(0).locator('mark').allInnerTexts(), ['东京']);

    await box.fill('strasse gruss');
    await bob.button('Search').click();
    await eventually('the German message', async () =>
      assert.match(await items.nth(0).innerText(), /Grüße aus der Straße/),
    );
    assert.equal(await items.count(), 1);
    assert.deepEqual(await items.nth(0).locator('mark').allInnerTexts(), ['Grüße', 'Straße']);
  });

  step('a click on a result opens the chat at the message, far back, highlighted', async () => {
    const box = bob.page.getByRole('searchbox', { name: 'Search messages' });
    await box.fill('launch code');
    await bob.button('Search').click();
    const result = bob.page.getByRole('region', { name: 'Search results' }).getByRole('listitem');
    await eventually('one result', async () => assert.equal(await result.count(), 1));
    await result.getByRole('button').click();
    const original = bob.messages('launch code').first();
    await original.waitFor({ timeout: 15_000 });
    await eventually('the original scrolled into view and highlighted', async () => {
      assert.ok(await original.evaluate(inView), 'in view');
      assert.match((await original.getAttribute('class')) ?? '', /highlight/);
    });
  });

  step('Bob replies to it; the quote shows in his composer and in the message', async () => {
    const original = bob.messages('launch code').first();
    await original.getByRole('button', { name: 'Reply', exact: true }).click();
    const replying = bob.page.getByRole('group', { name: 'Replying to' });
    await replying.getByText('launch code').waitFor();
    await replying.getByRole('button', { name: 'Cancel reply' }).click();
    await replying.waitFor({ state: 'detached' });
    // Escape in the box cancels a reply too, keeping what was typed and the focus there.
    await original.getByRole('button', { name: 'Reply', exact: true }).click();
    await replying.getByText('launch code').waitFor();
    await bob.composer.fill('never mind');
    await bob.composer.press('Escape');
    await replying.waitFor({ state: 'detached' });
    assert.equal(await bob.composer.inputValue(), 'never mind');
    assert.ok(await focused(bob.composer), 'the focus left the box');

    await original.getByRole('button', { name: 'Reply', exact: true }).click();
    // A reload halfway through keeps the reply with its draft: the quote, though its original
    // is no longer loaded, and the text.
    await bob.composer.fill(REPLY);
    bob.note('[test] reload while replying');
    await bob.page.reload();
    await bob.messageLog.waitFor();
    await replying.getByText('launch code').waitFor();
    assert.equal(await bob.composer.inputValue(), REPLY);
    await bob.composer.press('Enter');
    await bob.waitUntilSent(REPLY);
    await replying.waitFor({ state: 'detached' });
    const reply = bob.messages(REPLY).first();
    assert.match(await reply.locator('.quote').innerText(), /alice[\s\S]*launch code is pelican-42/);
    // Sent, the reply is no longer kept: after another reload the composer quotes nothing.
    await bob.page.reload();
    await bob.messageLog.waitFor();
    await bob.messages(REPLY).first().waitFor();
    assert.equal(await replying.count(), 0, 'the sent reply came back to the composer');
    // Back to the original, pages back again after the reloads, through the reply's quote.
    await bob.messages(REPLY).first().locator('.quote').click();
    await bob.messages('launch code').filter({ hasNotText: REPLY }).first().waitFor({ timeout: 15_000 });
  });

  step('Alice reloads, sees the reply with its quote live, and the quote takes her to the original', async () => {
    alice.note('[test] reload');
    await alice.page.reload();
    await alice.openChatWith(bob.name);
    const reply = alice.messages(REPLY).first();
    await reply.waitFor();
    assert.match(await reply.locator('.quote').innerText(), /launch code/);
    const original = alice.messageLog.getByRole('article').filter({ hasText: 'launch code' }).filter({ hasNotText: REPLY });
    assert.equal(await original.count(), 0, 'the original is pages back, not loaded yet');

    await reply.locator('.quote').click();
    await original.first().waitFor({ timeout: 15_000 });
    await eventually('the original scrolled into view and highlighted', async () => {
      assert.ok(await original.first().evaluate(inView), 'in view');
      assert.match((await original.first().getAttribute('class')) ?? '', /highlight/);
    });

    // A reply arriving live carries its quote too.
    await bob.messages(REPLY).first().getByRole('button', { name: 'Reply', exact: true }).click();
    await bob.send('and a second answer');
    await bob.waitUntilSent('and a second answer');
    const live = alice.messages('and a second answer').first();
    await live.waitFor();
    assert.match(await live.locator('.quote').innerText(), /bob[\s\S]*Only if you bring/);
  });

  step('Alice deletes the original: every quote shows the placeholder and search no longer finds it', async () => {
    // Bob has begun another reply to it: the quote in his composer follows it too.
    await bob.messages('launch code').filter({ hasNotText: REPLY }).first()
      .getByRole('button', { name: 'Reply', exact: true }).click();
    const replying = bob.page.getByRole('group', { name: 'Replying to' });
    await replying.getByText('launch code').waitFor();

    const original = alice.messageLog.getByRole('article').filter({ hasText: 'launch code' }).filter({ hasNotText: REPLY }).first();
    alice.page.once('dialog', (dialog) => dialog.accept());
    await original.getByRole('button', { name: 'Delete', exact: true }).click();
    const quotes = [
      ['Alice\'s reply', alice.messages(REPLY).first().locator('.quote')],
      ['Bob\'s reply', bob.messages(REPLY).first().locator('.quote')],
      ['Bob\'s composer', replying.locator('.quote')],
    ];
    for (const [where, quote] of quotes) {
      await eventually(`${where} quotes the original as deleted`, async () => {
        assert.match(await quote.innerText(), /Message deleted/);
        assert.doesNotMatch(await quote.innerText(), /pelican-42/);
      });
    }
    await replying.getByRole('button', { name: 'Cancel reply' }).click();
    await replying.waitFor({ state: 'detached' });
    const box = bob.page.getByRole('searchbox', { name: 'Search messages' });
    await box.fill('launch code');
    await bob.button('Search').click();
    await bob.page.getByText('No messages found').waitFor();
  });

  step('a message edited while its older History page is on its way shows edited', async () => {
    bob.note('[test] back to the chat list; older History pages held back');
    await bob.page.goto(suite.server.url);
    await bob.waitUntilConnected();
    // The first page passes; an older one is read by the server, then held until the edit
    // has reached Bob's stream, which never brings that change again.
    const history = await holdAnswers(bob.page, '**/chat.Chat/History', { passFirst: true });
    await bob.openChatWith(alice.name);
    await bob.messages('filler message number 129').waitFor();
    await bob.messageLog.evaluate((log) => {
      log.scrollTop = 0;
      log.dispatchEvent(new Event('scroll'));
    });
    await eventually('an older page read by the server', async () => assert.ok(history.read));

    const edited = `filler ${EDITED_FILLER}, edited while Bob scrolled up`;
    await unary(
      suite.server.url,
      '/chat.Chat/Edit',
      encodeStrings({ 1: chatId, 2: fillerId, 4: edited }),
      { token },
    );
    // A message after the edit: once Bob has it, his stream has delivered the edit.
    await unary(
      suite.server.url,
      '/chat.Chat/Send',
      encodeStrings({ 1: 'after-edit', 2: chatId, 5: 'sent after the edit' }),
      { token },
    );
    await bob.messages('sent after the edit').waitFor();
    await history.end();
    await bob.messages(edited).waitFor();
    assert.equal(
      await bob.messages(`filler message number ${EDITED_FILLER}`).count(),
      0,
      'the text before the edit is not shown',
    );
  });

  step("a result in a chat past the chat list's first page is named, opens under its name and joins the list", async () => {
    // Six more people, and Alice in 32 chats with them, each newer than the one with the
    // word: List's first page (30) then stops before it.
    const others = ['dora', 'ezra', 'fay', 'gus', 'hal', 'ivy'];
    for (const name of others) {
      await unary(suite.server.url, '/chat.Auth/SignUp', encodeStrings({ 1: name, 2: PASSWORD }));
    }
    const newChat = async (members) =>
      decodeStrings(
        await unary(
          suite.server.url,
          '/chat.Chat/New',
          Buffer.concat(['alice', ...members].map((member) => encodeStrings({ 1: member }))),
          { token },
        ),
      )[1];
    const say = (chat, clientId, text) =>
      unary(suite.server.url, '/chat.Chat/Send', encodeStrings({ 1: clientId, 2: chat, 5: text }), { token });
    const old = await newChat(['ezra', 'ivy']);
    await say(old, 'old', 'The zebra crossing is on Main Street');
    await say(old, 'old-newest', 'See you there');
    // Every group of the first five (no other chat has both ezra and ivy), then one with ivy.
    for (let set = 1; set <= 31; set++) {
      const members = others.filter((_, n) => set & (1 << n));
      await say(await newChat(members), `newer-${set}`, `chat ${set}`);
    }
    await say(await newChat(['ivy']), 'newer-ivy', 'chat 32');

    alice.note('[test] reload');
    await alice.page.reload();
    await alice.waitUntilConnected();
    const list = alice.page.getByRole('navigation', { name: 'Chats' });
    await list.getByRole('button').filter({ hasText: 'chat 32' }).waitFor();
    assert.equal(await alice.chatEntry('ezra, ivy').count(), 0, 'the chat is not in the first page');

    await alice.page.getByRole('searchbox', { name: 'Search messages' }).fill('zebra');
    await alice.button('Search').click();
    const result = alice.page.getByRole('region', { name: 'Search results' }).getByRole('listitem');
    await eventually('one result', async () => assert.equal(await result.count(), 1));
    assert.match(await result.innerText(), /^ezra, ivy\nalice\n/, 'named by its other members');
    await result.getByRole('button').click();
    await alice.messages('zebra crossing').first().waitFor();
    assert.equal(await alice.page.locator('.conversation-header h2').innerText(), 'ezra, ivy');
    // Its entry shows its newest message once the chat's first page is in, not the found one.
    await alice.chatEntry('ezra, ivy').filter({ hasText: 'See you there' }).waitFor();
  });

  step('no page crashed or broke the CSP', async () => {
    for (const user of [alice, bob]) {
      assert.deepEqual(user.pageErrors, [], `uncaught errors in ${user.name}'s page`);
      assert.deepEqual(await user.cspViolations(), [], `CSP violations in ${user.name}'s page`);
    }
  });
});
