//! Changes to stored messages (Edit, Delete, React) on PostgreSQL, each in its own short
//! transaction that takes its id the way the writer's batches do (see `writer.rs`): under the
//! row lock of `message_seq`, held until commit, so a change's id is the next one and commits
//! before any later id can be assigned. Messages and changes therefore share one commit
//! order across every server, and the tailers publish both from it.
//!
//! The message's state is read under that lock too: every change to any message takes it,
//! so no other change can slip in between the read and the write, and [`plan`] decides on
//! the latest state.

use std::sync::Arc;

use chat_core::ids::{MessageId, UserId};
use deadpool_postgres::{Object, Pool};

use super::reads::member_chat_row;
use super::rows::{MESSAGE_COLUMNS, REACTION_COLUMNS, REPLY_JOIN, message_with_reactions_at};
use super::tailer::{Committed, TailerLink};
use super::words;
use super::writer::{CHANNEL, COMMIT_TIMEOUT, FRESH_PLANS, PUBLISH_TIMEOUT};
use crate::store::changes::{Change, MessageUpdate, plan};
use crate::store::decode::{id_from_sql, id_to_sql, stored_user};
use crate::store::{StoreError, StoredEvent, StoredMessage};
use chat_transport::unix_now;

/// Applies `change` by `user` and waits until this server's tailer has published it; returns
/// the message's state after it.
pub async fn apply(
    pool: &Pool,
    tailer: &TailerLink,
    user: &UserId,
    change: &Change,
) -> Result<StoredMessage, StoreError> {
    let mut client = pool.get().await?;
    let chat = member_chat_row(&client, &change.target().chat_id, user)
        .await?
        .ok_or(StoreError::ChatNotFound)?;
    let members_of = client
        .prepare_cached("SELECT user_id FROM chat_members WHERE chat = $1")
        .await?;
    let members = client
        .query(&members_of, &[&chat])
        .await?
        .iter()
        .map(|row| stored_user(row.try_get(0)?))
        .collect::<Result<Vec<_>, StoreError>>()?;

    let stored = match tokio::time::timeout(
        COMMIT_TIMEOUT,
        store(&mut client, chat, user, change, unix_now()),
    )
    .await
    {
        Ok(stored) => stored?,
        Err(_) => {
            // The connection may be mid-transaction: never hand it back to the pool.
            drop(Object::take(client));
            return Err(StoreError::Unavailable(
                "the database did not commit in time".into(),
            ));
        }
    };
    let (message, event) = stored;
    let Some(event) = event else {
        return Ok(message);
    };
    let id = event.id;
    tailer.hand_off(vec![Committed {
        event: Arc::new(event),
        members: members.into(),
    }]);
    let mut published = tailer.published();
    match tokio::time::timeout(PUBLISH_TIMEOUT, published.wait_for(|last| *last >= id)).await {
        Ok(Ok(_)) => Ok(message),
        Ok(Err(_)) | Err(_) => Err(StoreError::Unavailable(
            "stored, but not yet delivered to streams".into(),
        )),
    }
}

/// The change's transaction: the message after it, and the event when something changed.
async fn store(
    client: &mut Object,
    chat: i64,
    user: &UserId,
    change: &Change,
    now: i64,
) -> Result<(StoredMessage, Option<StoredEvent>), StoreError> {
    let target = change.target();
    let tx = client.transaction().await?;
    let lock = tx
        .prepare_cached("SELECT last FROM message_seq FOR UPDATE")
        .await?;
    let (_, locked) =
        futures::future::try_join(tx.batch_execute(FRESH_PLANS), tx.query_one(&lock, &[])).await?;
    let last: i64 = locked.try_get(0)?;
    let find = tx
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS}, {REACTION_COLUMNS} FROM messages m {REPLY_JOIN}
             WHERE m.id = $1 AND m.chat = $2"
        ))
        .await?;
    let message = id_to_sql(target.message_id);
    let row = tx
        .query_opt(&find, &[&message, &chat])
        .await?
        .ok_or(StoreError::MessageNotFound)?;
    let current = message_with_reactions_at(&row, 0, target.chat_id.clone())?;
    let Some((write, after)) = plan(&current, user, change, now)? else {
        // Nothing to change (a retry): the rollback releases the lock.
        return Ok((current, None));
    };

    let id = last + 1;
    match write {
        MessageUpdate::Edit { content, at } => {
            tx.execute(
                "UPDATE messages SET subject = $2, text = $3, edited_at = $4,
                                     search = $5::text::tsvector
                 WHERE id = $1",
                &[
                    &message,
                    &content.subject.as_str(),
                    &content.text.as_str(),
                    &at,
                    &words::vector(content.subject.as_str(), content.text.as_str()),
                ],
            )
            .await?;
        }
        MessageUpdate::Erase => {
            tx.execute("DELETE FROM reactions WHERE message = $1", &[&message])
                .await?;
            tx.execute(
                "UPDATE messages SET subject = '', text = '', deleted = TRUE, search = ''
                 WHERE id = $1",
                &[&message],
            )
            .await?;
        }
        MessageUpdate::AddReaction(emoji) => {
            tx.execute(
                "INSERT INTO reactions (message, emoji, user_id) VALUES ($1, $2, $3)",
                &[&message, &emoji.as_str(), &user.as_str()],
            )
            .await?;
        }
        MessageUpdate::RemoveReaction(emoji) => {
            tx.execute(
                "DELETE FROM reactions WHERE message = $1 AND emoji = $2 AND user_id = $3",
                &[&message, &emoji.as_str(), &user.as_str()],
            )
            .await?;
        }
    }
    let record = tx
        .prepare_cached(
            "INSERT INTO message_changes (id, message, chat, kind, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    let bump = tx
        .prepare_cached("UPDATE message_seq SET last = $1")
        .await?;
    let notify = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
    let announced = id.to_string();
    futures::future::try_join3(
        tx.execute(&record, &[&id, &message, &chat, &change.kind(), &now]),
        tx.execute(&bump, &[&id]),
        tx.execute(&notify, &[&CHANNEL, &announced]),
    )
    .await?;
    tx.commit().await?;
    let event = StoredEvent {
        id: MessageId(id_from_sql(id)),
        message: after.clone(),
    };
    Ok((after, Some(event)))
}
