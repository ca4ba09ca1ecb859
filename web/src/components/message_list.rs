//! The messages of the open chat: history pages loaded as the user scrolls up (keeping the
//! scroll position), live messages appended, the user's unconfirmed messages last, a "New
//! messages" divider where the user's read position was when the chat opened, and the receipt
//! of the user's message while it is the newest, with a separator before each day ("Today", "Yesterday", a
//! date, in the browser's language). What is shown in a visible tab is marked read. A message
//! jumped to (from a reply's quote or a search result) is scrolled into view and highlighted
//! for a moment. Scrolled up when new messages arrive, a button offers the way down to them.

use gloo_timers::future::TimeoutFuture;
use leptos::html::Div;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::ResizeObserver;

use crate::components::focus::{focus_after_change, focus_in_message};
use crate::components::message_item::{MessageItem, linked};
use crate::live::activity::seen_line;
use crate::live::model::{ChatMessage, Delivery, ModelStoreFields};
use crate::live::use_live;
use crate::time;

/// How long a message jumped to stays highlighted.
const HIGHLIGHT_MS: u32 = 2_000;

/// Messages of one sender in a row, each within this long of the one before, show the name
/// once, at the first: a conversation reads as who said what, not the same name on every line.
const RUN_SECS: i64 = 5 * 60;

/// How close to the top (in pixels) scrolling must come to load the previous page.
const LOAD_OLDER_WITHIN_PX: i32 = 80;
/// How close to the bottom counts as "reading the newest", which keeps it in view.
const STICK_TO_BOTTOM_WITHIN_PX: i32 = 120;

/// The message log of one chat (`role="log"`, so screen readers announce new messages).
#[component]
pub fn MessageList(
    /// The chat whose messages to show.
    chat_id: String,
) -> impl IntoView {
    let chat_id = StoredValue::new(chat_id);
    let live = use_live();
    let log = NodeRef::<Div>::new();
    let loading_older = RwSignal::new(false);

    let me = live.model.me().get_untracked();

    let has_older = Memo::new(move |_| {
        chat_id.with_value(|chat_id| {
            live.model
                .timelines()
                .with(|timelines| timelines.get(chat_id).is_some_and(|t| t.has_older))
        })
    });
    let outgoing = Memo::new(move |_| {
        chat_id.with_value(|chat_id| {
            live.model.outbox().with(|outbox| {
                outbox
                    .iter()
                    .filter(|outgoing| outgoing.chat_id == *chat_id)
                    .cloned()
                    .collect::<Vec<_>>()
            })
        })
    });
    let message = move |id: u64| -> Option<ChatMessage> {
        chat_id.with_value(|chat_id| {
            live.model
                .timelines()
                .with_untracked(|timelines| timelines.get(chat_id)?.messages.get(&id).cloned())
        })
    };

    let reading = Memo::new(move |_| {
        chat_id.with_value(|chat_id| {
            live.model
                .reading()
                .with(|reading| reading.get(chat_id).cloned().unwrap_or_default())
        })
    });
    // Where the "New messages" divider goes, apart from `reading`, which others' read
    // positions move often.
    let divider = Memo::new(move |_| reading.with(|reading| reading.divider));

    // What the log shows of the timeline (`None` until the first page is in): a row per
    // loaded message, oldest first, each with the separators before it. Rows are keyed by
    // all of it, so a row reads its message once, when it is created, and is rendered anew
    // only when its message or a reply's original is replaced by a change (a new stamp), or
    // its separators move. A row holds no reactive closure over the log: one that read a
    // memo of the whole timeline would be woken by every new message, so that each new
    // message cost a wake-up per message shown.
    //
    // The day the rows were labelled on: labels ("Today") are reused until it changes.
    let labelled_on = StoredValue::new(None);
    let rows = Memo::new(move |previous: Option<&Option<Vec<Row>>>| {
        let divider = divider.get();
        chat_id.with_value(|chat_id| {
            live.model.timelines().with(|timelines| {
                let timeline = timelines.get(chat_id).filter(|t| t.loaded)?;
                // What the previous rows found is asked of the browser again only when the
                // date changed: "Today" becomes "Yesterday" at midnight.
                let today = time::today();
                let same_day =
                    labelled_on.try_update_value(|on| on.replace(today)) == Some(Some(today));
                let mut known = previous
                    .and_then(Option::as_deref)
                    .unwrap_or_default()
                    .iter()
                    .peekable();
                let mut rows = Vec::<Row>::with_capacity(timeline.messages.len());
                let mut above = None::<&ChatMessage>;
                for message in timeline.messages.values() {
                    // Both are in id order: walk the previous rows alongside.
                    while known.next_if(|row| row.id < message.id).is_some() {}
                    let known = known.peek().filter(|row| row.id == message.id);
                    let day = known.map_or_else(|| time::day_of(message.sent_at), |row| row.day);
                    let day_label = (rows.last().map(|row| row.day) != Some(day)).then(|| {
                        known
                            .and_then(|row| row.day_label.clone())
                            .filter(|_| same_day)
                            .unwrap_or_else(|| time::day_label(message.sent_at))
                    });
                    let first_new = divider.is_some_and(|divider| {
                        message.id > divider && rows.last().is_none_or(|row| row.id <= divider)
                    });
                    let original = message.reply.as_ref().and_then(|quote| {
                        timeline
                            .messages
                            .get(&quote.message_id)
                            .map(|original| original.stamp)
                    });
                    let continued = day_label.is_none()
                        && !first_new
                        && above.is_some_and(|above| {
                            above.sender == message.sender
                                && message.sent_at - above.sent_at < RUN_SECS
                        });
                    above = Some(message);
                    rows.push(Row {
                        id: message.id,
                        stamp: message.stamp,
                        original,
                        day,
                        day_label,
                        first_new,
                        continued,
                    });
                }
                Some(rows)
            })
        })
    });
    let receipt = {
        let me = me.clone();
        Memo::new(move |_| {
            rows.track();
            let (mine, others) = chat_id.with_value(|chat_id| {
                // Only while the chat's newest message is the user's: the line sits at the
                // end of the log, where under someone's reply it would read as about the reply
                // (whose sender has seen the user's message anyway).
                let mine = live.model.timelines().with_untracked(|timelines| {
                    let newest = timelines.get(chat_id)?.messages.values().next_back()?;
                    (newest.sender == me).then_some(newest.id)
                });
                let others = live.model.chats().with_untracked(|chats| {
                    chats
                        .iter()
                        .find(|chat| chat.chat_id == *chat_id)
                        .map_or(0, |chat| chat.members.len().saturating_sub(1))
                });
                (mine, others)
            });
            reading.with(|reading| seen_line(&reading.seen_by(mine?), others))
        })
    };

    // Marks read the newest message shown, when the tab is visible. It also runs from an
    // animation frame, which may come after the log is gone (the chat was left or closed in
    // between): then there is nothing to mark.
    let report_seen = move || {
        if let Some(Some(element)) = log.try_get_untracked()
            && let Some(chat_id) = chat_id.try_get_value()
            && let Some(id) = newest_visible(&element)
        {
            live.seen(&chat_id, id);
        }
    };
    let shown_again = window_event_listener_untyped("visibilitychange", move |_| report_seen());
    on_cleanup(move || shown_again.remove());

    // Keep the newest message in view as messages arrive, unless the user scrolled up to
    // read older ones; then mark read what is in view, and offer a way down to the new ones.
    let stick_to_bottom = RwSignal::new(true);
    let news_below = RwSignal::new(false);
    let newest = Memo::new(move |_| rows.with(|rows| rows.as_ref()?.last().map(|row| row.id)));
    Effect::new(move |previous: Option<Option<u64>>| {
        let now = newest.get();
        if previous.is_some_and(|before| before.is_some() && now > before)
            && !stick_to_bottom.get_untracked()
        {
            news_below.set(true);
        }
        now
    });
    // Whatever makes the log smaller (a phone turned, its keyboard opened, a window resized,
    // the composer growing with its lines, a reply's quote above it) keeps the newest message
    // in view if it was; one scrolled up stays where it is. The callback holds no element, so
    // the observer goes with the log; once the log is gone it finds nothing to do.
    Effect::new(move |_| {
        let Some(element) = log.get() else { return };
        let follow = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            if stick_to_bottom.try_get_untracked() == Some(true)
                && let Some(Some(log)) = log.try_get_untracked()
            {
                log.set_scroll_top(log.scroll_height());
            }
        })
        .into_js_value();
        if let Ok(observer) = ResizeObserver::new(follow.unchecked_ref()) {
            observer.observe(&element);
        }
    });
    // The scroll event at the bottom then holds the log there and takes the button away.
    let to_latest = move |_| {
        if let Some(log) = log.get_untracked() {
            log.set_scroll_top(log.scroll_height());
        }
    };
    // A message of one's own, just written, is the newest thing one wants to see: it brings
    // the log down to it, however far up one had scrolled, as chats people know do. The
    // receipt's line, which comes and goes below the newest message, is followed likewise:
    // otherwise it appears half under the log's edge.
    Effect::new(move |queued: Option<usize>| {
        rows.track();
        receipt.track();
        let now = outgoing.with(Vec::len);
        if queued.is_some_and(|before| now > before) {
            stick_to_bottom.set(true);
        }
        if let Some(log) = log.get_untracked() {
            request_animation_frame(move || {
                if stick_to_bottom.try_get_untracked() == Some(true) {
                    log.set_scroll_top(log.scroll_height());
                }
                report_seen();
                restore_focus(&log);
            });
        }
        now
    });

    // A message jumped to: once its row is rendered, bring it to the middle of the log and
    // highlight it; the log then stays where the person is reading. (The chat is kept with
    // the id only because the app has a signal of that type already: one more type of
    // signal costs the bundle several hundred bytes.)
    let highlighted = RwSignal::new(None::<(String, u64)>);
    Effect::new(move |_| {
        let Some((chat, id)) = live.jump.get() else {
            return;
        };
        if chat_id.with_value(|open| *open != chat)
            || !rows.with(|rows| {
                rows.as_ref()
                    .is_some_and(|rows| rows.iter().any(|row| row.id == id))
            })
        {
            return;
        }
        live.jump.set(None);
        stick_to_bottom.set(false);
        highlighted.set(Some((chat, id)));
        request_animation_frame(move || {
            if let Some(row) = log.get_untracked().and_then(|log| row(&log, id)) {
                row.scroll_into_view();
            }
        });
        spawn_local(async move {
            TimeoutFuture::new(HIGHLIGHT_MS).await;
            if highlighted
                .try_get_untracked()
                .flatten()
                .is_some_and(|(_, shown)| shown == id)
            {
                highlighted.try_set(None);
            }
        });
    });

    // Only scrolling up lets go of the newest message. A scroll event comes a frame after
    // the scroll: when the log was brought down to the newest message and more came in that
    // frame (a busy chat), the event finds it short of the bottom again, and taking that for
    // the person's doing left the log behind for good.
    let mut last_top = 0;
    let on_scroll = move |_| {
        let Some(element) = log.get_untracked() else {
            return;
        };
        let top = element.scroll_top();
        let scrolled_up = top < std::mem::replace(&mut last_top, top);
        if element.scroll_height() - top - element.client_height() < STICK_TO_BOTTOM_WITHIN_PX {
            stick_to_bottom.set(true);
            news_below.set(false);
        } else if scrolled_up {
            stick_to_bottom.set(false);
        }
        report_seen();
        if element.scroll_top() < LOAD_OLDER_WITHIN_PX
            && has_older.get_untracked()
            && !loading_older.get_untracked()
        {
            loading_older.set(true);
            let (height_before, top_before) = (element.scroll_height(), element.scroll_top());
            live.load_older(chat_id.get_value(), move || {
                loading_older.try_set(false);
                // Once the older page is rendered above, shift by its height so the message
                // the user was reading stays where it was.
                request_animation_frame(move || {
                    element.set_scroll_top(element.scroll_height() - height_before + top_before);
                });
            });
        }
    };

    view! {
        <div class="messages" role="log" aria-label="Messages" aria-live="polite" tabindex="0" node_ref=log on:scroll=on_scroll>
            <Show when=move || has_older.get()>
                <p class="older">{move || if loading_older.get() { "Loading older messages…" } else { "Scroll up for older messages" }}</p>
            </Show>
            <Show when=move || rows.with(Option::is_none)>
                <p class="loading">"Loading…"</p>
            </Show>
            <For
                each=move || rows.get().unwrap_or_default()
                key=Row::clone
                children=move |row| {
                    let id = row.id;
                    let day = row.day_label.map(|label| {
                        let text = label.clone();
                        view! { <p class="day" role="separator" aria-label=label>{text}</p> }
                    });
                    let divider = row.first_new.then(|| {
                        view! { <p class="divider" role="separator" aria-label="New messages">"New messages"</p> }
                    });
                    message(id).map(|message| view! {
                        {day}
                        {divider}
                        <MessageItem message=message me=me.clone() chat_id=chat_id.get_value() highlighted=highlighted continued=row.continued />
                    })
                }
            />
            <Show when=move || receipt.with(Option::is_some)>
                <p class="receipt">{move || receipt.get()}</p>
            </Show>
            <For
                each=move || outgoing.get()
                key=|outgoing| (outgoing.client_id.clone(), outgoing.delivery.clone())
                children=move |outgoing| {
                    let client_id = outgoing.client_id.clone();
                    let status = match &outgoing.delivery {
                        Delivery::Pending => view! { <span class="delivery">"Sending…"</span> }.into_any(),
                        Delivery::Failed { reason, .. } => view! {
                            <span class="delivery failed" title=reason.clone()>
                                "Failed — "
                                <button type="button" class="link" on:click=move |_| live.retry(client_id.clone())>"Retry"</button>
                            </span>
                        }
                        .into_any(),
                    };
                    view! {
                        <article class="message mine pending" aria-label="Your message, not sent yet">
                            <p class="text">{linked(&outgoing.text)}</p>
                            <footer>{status}</footer>
                        </article>
                    }
                }
            />
        </div>
        <Show when=move || news_below.get()>
            <button type="button" class="to-latest" on:click=to_latest>"New messages below ↓"</button>
        </Show>
    }
}

/// One row of the log: a loaded message and the separators before it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Row {
    id: u64,
    /// Moves when a change (edit, deletion, reaction) replaces the message.
    stamp: u64,
    /// The stamp of a reply's original while it is loaded: its quote follows it.
    original: Option<u64>,
    /// The calendar day it was sent on (`time::day_of`).
    day: i64,
    /// What the day's separator says, when it is the first loaded message of its day.
    day_label: Option<String>,
    /// Whether the "New messages" divider comes before it: the first message after the
    /// position the chat opened with.
    first_new: bool,
    /// Whether it follows a message of the same sender, sent less than `RUN_SECS` before,
    /// with no separator between: the name is not shown again.
    continued: bool,
}

/// The id of the newest message at least partly inside the log's visible area; `None` when
/// none is (all of them scrolled out of view, or none loaded).
fn newest_visible(log: &web_sys::HtmlElement) -> Option<u64> {
    let top = log.scroll_top();
    let bottom = top + log.client_height();
    let rows = log.query_selector_all("article[data-id]").ok()?;
    for index in (0..rows.length()).rev() {
        let Some(row) = rows
            .item(index)
            .and_then(|row| row.dyn_into::<web_sys::HtmlElement>().ok())
        else {
            continue;
        };
        // Offsets are relative to the log (`position: relative` in the style sheet).
        let row_top = row.offset_top();
        if row_top >= bottom {
            continue;
        }
        if row_top + row.offset_height() <= top {
            return None;
        }
        return row.get_attribute("data-id")?.parse().ok();
    }
    None
}

/// The row of message `id` in the log.
fn row(log: &web_sys::HtmlDivElement, id: u64) -> Option<web_sys::Element> {
    log.query_selector(&format!("article[data-id=\"{id}\"]"))
        .ok()
        .flatten()
}

/// A message's row is rendered anew when it changes, and the keyboard's focus, when it was on
/// a button of the old row (a reaction just pressed), fell to the page's start: once the log
/// shows the change, put it where the button asked, unless the person has put it somewhere
/// else meanwhile.
fn restore_focus(log: &web_sys::HtmlDivElement) {
    if let Some((id, selector)) = focus_after_change()
        && document().query_selector(":focus").ok().flatten().is_none()
    {
        focus_in_message(row(log, id), &selector);
    }
}
