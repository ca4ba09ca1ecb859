//! The SQL of each read, each on a pooled connection. Reads run in PostgreSQL's default READ
//! COMMITTED isolation: every statement sees what was committed before it began.

use std::collections::HashMap;

use chat_core::ids::{ChatId, MessageId, UserId};
use chat_core::requests::{HistoryQuery, ListQuery, Members};
use deadpool_postgres::Client;

use chat_core::search::SearchQuery;

use super::rows::{
    MESSAGE_AND_REACTION_COLUMN_COUNT, MESSAGE_COLUMNS, REACTION_COLUMNS, REPLY_JOIN,
    message_with_reactions_at,
};
use super::words;
use crate::store::decode::{
    id_from_sql, id_to_sql, left_members, member_key, stored_chat, stored_user,
};
use crate::store::{
    ChatPage, ChatSummary, HistoryPage, SearchPage, StoreError, StoredEvent, TokenHash,
    position_after,
};

pub async fn password_hash(client: &Client, user: &UserId) -> Result<Option<String>, StoreError> {
    let statement = client
        .prepare_cached("SELECT password_hash FROM accounts WHERE user_id = $1")
        .await?;
    let row = client.query_opt(&statement, &[&user.as_str()]).await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// The owner of `token` and when it expires, if it is unexpired at `now` and not revoked.
pub async fn token_owner(
    client: &Client,
    token: &TokenHash,
    now: i64,
) -> Result<Option<(UserId, i64)>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT user_id, expires_at FROM tokens WHERE token_hash = $1 AND expires_at > $2",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&token.as_slice(), &now])
        .await?;
    row.map(|row| Ok((stored_user(row.try_get(0)?)?, row.try_get(1)?)))
        .transpose()
}

/// The account `device` was given to, while it keeps it.
pub async fn device_owner(
    client: &Client,
    device: &TokenHash,
) -> Result<Option<UserId>, StoreError> {
    let statement = client
        .prepare_cached("SELECT user_id FROM devices WHERE device_hash = $1")
        .await?;
    let row = client.query_opt(&statement, &[&device.as_slice()]).await?;
    row.map(|row| stored_user(row.try_get(0)?)).transpose()
}

/// The row id of `chat` if `user` is one of its members. A missing chat and a foreign chat
/// look the same from here on.
pub async fn member_chat_row(
    client: &Client,
    chat: &ChatId,
    user: &UserId,
) -> Result<Option<i64>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT c.id FROM chats c JOIN chat_members cm ON cm.chat = c.id
             WHERE c.public_id = $1 AND cm.user_id = $2",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&chat.as_str(), &user.as_str()])
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

async fn chat_row_for(client: &Client, chat: &ChatId, user: &UserId) -> Result<i64, StoreError> {
    member_chat_row(client, chat, user)
        .await?
        .ok_or(StoreError::ChatNotFound)
}

pub async fn history(
    client: &Client,
    user: &UserId,
    query: &HistoryQuery,
) -> Result<HistoryPage, StoreError> {
    let chat = chat_row_for(client, &query.chat_id, user).await?;
    let before = query.before.map_or(i64::MAX, id_to_sql);
    // One row more than asked tells whether older messages remain.
    let statement = client
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS}, {REACTION_COLUMNS} FROM messages m {REPLY_JOIN}
             WHERE m.chat = $1 AND m.id < $2 ORDER BY m.id DESC LIMIT $3"
        ))
        .await?;
    let rows = client
        .query(&statement, &[&chat, &before, &(i64::from(query.limit) + 1)])
        .await?;
    let mut messages = rows
        .iter()
        .map(|row| message_with_reactions_at(row, 0, query.chat_id.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = messages.len() > query.limit as usize;
    messages.truncate(query.limit as usize);
    messages.reverse();
    Ok(HistoryPage { messages, has_more })
}

/// Up to `limit` events after `after`, in id order: of `chat`, or of every chat of `user`.
/// Messages and changes come from their own tables, each side cut at `limit` before they are
/// merged; each event carries its message's current state.
pub async fn events_after(
    client: &Client,
    user: &UserId,
    chat: Option<&ChatId>,
    after: MessageId,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let after = id_to_sql(after);
    let limit = i64::from(limit);
    let rows = match chat {
        Some(chat_id) => {
            let chat = chat_row_for(client, chat_id, user).await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT e.id, {MESSAGE_COLUMNS}, {REACTION_COLUMNS}, c.public_id
                     FROM ((SELECT id, id AS message FROM messages
                            WHERE chat = $1 AND id > $2 ORDER BY id LIMIT $3)
                           UNION ALL
                           (SELECT id, message FROM message_changes
                            WHERE chat = $1 AND id > $2 ORDER BY id LIMIT $3)) e
                     JOIN messages m ON m.id = e.message
                     JOIN chats c ON c.id = m.chat
                     {REPLY_JOIN}
                     ORDER BY e.id LIMIT $3"
                ))
                .await?;
            client.query(&statement, &[&chat, &after, &limit]).await?
        }
        None => {
            let statement = client
                .prepare_cached(&format!(
                    "SELECT e.id, {MESSAGE_COLUMNS}, {REACTION_COLUMNS}, c.public_id
                     FROM ((SELECT id, id AS message FROM messages
                            WHERE id > $1
                              AND chat IN (SELECT chat FROM chat_members WHERE user_id = $2)
                            ORDER BY id LIMIT $3)
                           UNION ALL
                           (SELECT id, message FROM message_changes
                            WHERE id > $1
                              AND chat IN (SELECT chat FROM chat_members WHERE user_id = $2)
                            ORDER BY id LIMIT $3)) e
                     JOIN messages m ON m.id = e.message
                     JOIN chats c ON c.id = m.chat
                     {REPLY_JOIN}
                     ORDER BY e.id LIMIT $3"
                ))
                .await?;
            client
                .query(&statement, &[&after, &user.as_str(), &limit])
                .await?
        }
    };
    rows.iter().map(event).collect()
}

/// The event of a row that selects an event id, the [`MESSAGE_COLUMNS`], the
/// [`REACTION_COLUMNS`] and the chat's public id, in that order.
pub fn event(row: &tokio_postgres::Row) -> Result<StoredEvent, StoreError> {
    let id: i64 = row.try_get(0)?;
    let chat = stored_chat(row.try_get(1 + MESSAGE_AND_REACTION_COLUMN_COUNT)?)?;
    Ok(StoredEvent {
        id: MessageId(id_from_sql(id)),
        message: message_with_reactions_at(row, 1, chat)?,
    })
}

/// One page of the chats of `user` with their members and last message, in List's order.
/// The page is picked by position (keyset), so the rows after it are never sent. The last
/// messages' reactions are read once the page is cut (the outer query): in the inner one
/// PostgreSQL would read them for every chat of the user before sorting.
pub async fn chats_of(
    client: &Client,
    user: &UserId,
    query: &ListQuery,
) -> Result<ChatPage, StoreError> {
    let (activity, last_message, chat_id) = position_after(query.after.as_ref());
    let statement = client
        .prepare_cached(&format!(
            "SELECT m.*, {REACTION_COLUMNS}
             FROM (SELECT c.id AS chat_row, c.public_id, c.created_at, {MESSAGE_COLUMNS}
                   FROM chat_members mine
                   JOIN chats c ON c.id = mine.chat
                   LEFT JOIN messages m
                        ON m.id = (SELECT max(id) FROM messages WHERE chat = c.id)
                   {REPLY_JOIN}
                   WHERE mine.user_id = $1
                     AND (coalesce(m.sent_at, c.created_at), coalesce(m.id, 0), c.public_id)
                         < ($2, $3, $4)
                   ORDER BY coalesce(m.sent_at, c.created_at) DESC, coalesce(m.id, 0) DESC,
                            c.public_id DESC
                   LIMIT $5) m
             ORDER BY coalesce(m.sent_at, m.created_at) DESC, coalesce(m.id, 0) DESC,
                      m.public_id DESC"
        ))
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &user.as_str(),
                &activity,
                &id_to_sql(MessageId(last_message)),
                &chat_id,
                &i64::from(query.limit + 1),
            ],
        )
        .await?;
    let chats: Vec<i64> = rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;

    let statement = client
        .prepare_cached(
            "SELECT c.id, c.member_key,
                    array(SELECT user_id FROM chat_members WHERE chat = c.id ORDER BY user_id),
                    c.members_version
             FROM chats c WHERE c.id = ANY($1)",
        )
        .await?;
    // Each chat's members and their version come from one statement, so they agree.
    let mut members: HashMap<i64, (Vec<UserId>, Vec<UserId>, u64)> = HashMap::new();
    for row in client.query(&statement, &[&chats]).await? {
        let now = row
            .try_get::<_, Vec<&str>>(2)?
            .into_iter()
            .map(stored_user)
            .collect::<Result<Vec<_>, _>>()?;
        let left = left_members(row.try_get(1)?, &now)?;
        let version = u64::try_from(row.try_get::<_, i64>(3)?).unwrap_or(0);
        members.insert(row.try_get(0)?, (now, left, version));
    }

    let mut readings = super::activity::reading(client, user, &chats).await?;

    let chats = rows
        .iter()
        .map(|row| {
            let chat_id = stored_chat(row.try_get(1)?)?;
            // A chat without messages has NULL in every message column.
            let last_message = match row.try_get::<_, Option<i64>>(3)? {
                None => None,
                Some(_) => Some(message_with_reactions_at(row, 3, chat_id.clone())?),
            };
            let chat: i64 = row.try_get(0)?;
            let (members, left, members_version) = members.remove(&chat).unwrap_or_default();
            Ok(ChatSummary {
                members,
                left,
                members_version,
                chat_id,
                last_message,
                created_at: row.try_get(2)?,
                reading: readings.remove(&chat).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(ChatPage::from_rows(chats, query.limit))
}

/// How many of the newest messages a search of several lexemes looks through before it asks
/// the GIN index (see [`search`]).
const NEWEST_FIRST: i64 = 1_000;

/// A page of the messages of `user`'s chats (or of one) that hold every query word, newest
/// first, from the GIN index on `messages.search` (its words: `words.rs`). The bitmap of matches
/// is read whole and sorted by id, so a page costs time in the number of matches of the
/// rarest words, which the benchmark measures. The page's reactions are read once it is cut
/// (the outer query), not for every match before the sort.
///
/// A query of several lexemes (two words, or a Chinese word: a phrase of its characters)
/// first looks through the newest [`NEWEST_FIRST`] messages alone, and is answered from them
/// when they hold a whole page. The planner multiplies the frequencies of a query's lexemes
/// as if they were independent, which they seldom are (会 and 議 of 会議, two words people
/// write together), so it expects far fewer matches than there are and reads every one from
/// the index, where the newest messages would have held a page (a word in 2.7% of 100,000
/// messages: 8.6 ms through the index, BENCHMARKS.md). The newest matches of those messages
/// are the newest matches of all, so a page found there is the page; otherwise the index
/// answers, as for one lexeme, whose frequency the planner knows.
pub async fn search(
    client: &Client,
    user: &UserId,
    query: &SearchQuery,
) -> Result<SearchPage, StoreError> {
    let chat = match &query.chat_id {
        Some(chat) => Some(chat_row_for(client, chat, user).await?),
        None => None,
    };
    let Some(words) = words::query(&query.terms) else {
        // No word has a token (accents alone, say): nothing can hold it.
        return Ok(SearchPage::from_rows(Vec::new(), query.limit));
    };
    let page_rows = usize::try_from(query.limit)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let mut rows = Vec::new();
    if words.lexemes > 1 {
        rows = search_rows(
            client,
            user,
            query,
            &words.literal,
            chat,
            Some(NEWEST_FIRST),
        )
        .await?;
    }
    if rows.len() < page_rows {
        rows = search_rows(client, user, query, &words.literal, chat, None).await?;
    }
    let messages = rows
        .iter()
        .map(|row| {
            let chat = stored_chat(row.try_get(0)?)?;
            message_with_reactions_at(row, 1, chat)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SearchPage::from_rows(messages, query.limit))
}

/// The rows of a search page (one more than the page, to tell whether more follow): among
/// the newest `newest` messages of the chats searched only, or among all of them.
async fn search_rows(
    client: &Client,
    user: &UserId,
    query: &SearchQuery,
    words: &str,
    chat: Option<i64>,
    newest: Option<i64>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let in_chats = match chat {
        Some(_) => "m.chat = $3",
        None => "m.chat IN (SELECT chat FROM chat_members WHERE user_id = $3)",
    };
    let from = match newest {
        Some(_) => format!(
            "(SELECT * FROM messages m WHERE m.id < $2 AND {in_chats}
              ORDER BY m.id DESC LIMIT $5) AS m"
        ),
        None => "messages m".to_owned(),
    };
    // Not a cached statement: after five runs PostgreSQL may switch a prepared statement to
    // one generic plan, and no single plan suits every query here. A common word is found
    // fastest walking the ids down and stopping after a page; a rare word or one found
    // nowhere needs the GIN index, and the walk would read the whole table (measured: 58 to
    // 90 ms at 100,000 messages, against 2 ms with the index). Planned for its own words each
    // time, a search pays one more round trip to prepare instead.
    let sql = format!(
        "SELECT m.*, {REACTION_COLUMNS}
         FROM (SELECT c.public_id, {MESSAGE_COLUMNS}
               FROM {from} JOIN chats c ON c.id = m.chat {REPLY_JOIN}
               WHERE m.search @@ $1::text::tsquery AND m.id < $2 AND {in_chats}
               ORDER BY m.id DESC LIMIT $4) m
         ORDER BY m.id DESC"
    );
    let statement = client.prepare(&sql).await?;
    // Planned with the words (a new statement, so a custom plan), the planner estimates how
    // common they are.
    let before = query.before.map_or(i64::MAX, id_to_sql);
    let limit = i64::from(query.limit) + 1;
    let user = user.as_str();
    let within: &(dyn tokio_postgres::types::ToSql + Sync) = match &chat {
        Some(chat) => chat,
        None => &user,
    };
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        vec![&words, &before, within, &limit];
    if let Some(newest) = &newest {
        params.push(newest);
    }
    Ok(client.query(&statement, &params).await?)
}

/// The first of `members` already in `cap` chats, unless the chat of exactly these members
/// exists (New returns that one whatever the quota). Counting stops at `cap`, so a check
/// costs at most `cap` index entries per member.
pub async fn member_at_chat_cap(
    client: &Client,
    caller: &UserId,
    members: &Members,
    cap: u32,
) -> Result<Option<UserId>, StoreError> {
    let member_key = member_key(members);
    let existing = client
        .prepare_cached("SELECT id FROM chats WHERE member_key = $1")
        .await?;
    let existing = client.query_opt(&existing, &[&member_key]).await?;
    let count = client
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM chat_members WHERE user_id = $1 LIMIT $2) AS c",
        )
        .await?;
    let cap = i64::from(cap);
    if let Some(row) = existing {
        // Only the caller can come back into an existing chat (a rejoin after leaving it).
        let chat: i64 = row.try_get(0)?;
        let departed = client
            .prepare_cached("SELECT 1 FROM chat_departures WHERE chat = $1 AND user_id = $2")
            .await?;
        let rejoins = client
            .query_opt(&departed, &[&chat, &caller.as_str()])
            .await?
            .is_some();
        let chats: i64 = client
            .query_one(&count, &[&caller.as_str(), &cap])
            .await?
            .try_get(0)?;
        return Ok((rejoins && chats >= cap).then(|| caller.clone()));
    }
    for member in members.as_slice() {
        let row = client.query_one(&count, &[&member.as_str(), &cap]).await?;
        let chats: i64 = row.try_get(0)?;
        if chats >= cap {
            return Ok(Some(member.clone()));
        }
    }
    Ok(None)
}

/// Everyone `blocker` blocked, sorted.
pub async fn blocked_by(client: &Client, blocker: &UserId) -> Result<Vec<UserId>, StoreError> {
    let statement = client
        .prepare_cached("SELECT blocked FROM blocks WHERE blocker = $1 ORDER BY blocked")
        .await?;
    client
        .query(&statement, &[&blocker.as_str()])
        .await?
        .iter()
        .map(|row| stored_user(row.try_get(0)?))
        .collect()
}
