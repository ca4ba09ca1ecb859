//! Wire requests turned into validated values. The generated structs are the boundary: the
//! server handles only these types, and the browser builds its requests after the same checks.

use crate::ValidationError;
use crate::content::{Password, Subject, Text};
use crate::emoji::Emoji;
use crate::ids::{ChatId, ClientId, MessageId, UserId};
use crate::limits::*;
use crate::proto;

/// A validated SignUp or SignIn request.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user_id: UserId,
    pub password: Password,
}

impl TryFrom<&proto::Credentials> for Credentials {
    type Error = ValidationError;

    fn try_from(request: &proto::Credentials) -> Result<Self, Self::Error> {
        Ok(Self {
            user_id: UserId::parse(&request.user_id)?,
            password: Password::parse(&request.password)?,
        })
    }
}

/// A ChangePassword request: the password in use, and the one to use from now on.
#[derive(Debug, Clone)]
pub struct PasswordChange {
    pub old_password: Password,
    pub new_password: Password,
}

impl TryFrom<&proto::ChangePasswordRequest> for PasswordChange {
    type Error = ValidationError;

    fn try_from(request: &proto::ChangePasswordRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            old_password: Password::parse(&request.old_password)?,
            new_password: Password::parse(&request.new_password)?,
        })
    }
}

/// The members of a chat: sorted, without duplicates, 1 to [`MEMBERS_MAX`] of them. One set
/// of users is one chat, whatever order or repetition a request used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members(Vec<UserId>);

impl Members {
    pub fn parse<'a>(user_ids: impl IntoIterator<Item = &'a str>) -> Result<Self, ValidationError> {
        let mut members: Vec<UserId> = Vec::new();
        let mut given = 0;
        for user_id in user_ids {
            let user_id = UserId::parse(user_id)?;
            given += 1;
            // Each id goes into its place as it comes, a repeated one once, rather than a
            // sort and a dedup: the standard library's sort was 4.5 KB of the web app's
            // bundle (2.7 KB gzipped), used nowhere else. Once one too many are in, the rest
            // are only counted, so a request of thousands of ids costs no more than a full
            // chat.
            if members.len() <= MEMBERS_MAX
                && let Err(at) = members.binary_search(&user_id)
            {
                members.insert(at, user_id);
            }
        }
        match members.len() {
            0 => Err(ValidationError::MembersMissing),
            n if n > MEMBERS_MAX => Err(ValidationError::TooManyMembers(given)),
            _ => Ok(Self(members)),
        }
    }

    pub fn contains(&self, user: &UserId) -> bool {
        self.0.binary_search(user).is_ok()
    }

    pub fn as_slice(&self) -> &[UserId] {
        &self.0
    }
}

impl TryFrom<&proto::NewRequest> for Members {
    type Error = ValidationError;

    fn try_from(request: &proto::NewRequest) -> Result<Self, Self::Error> {
        Self::parse(request.user_ids.iter().map(String::as_str))
    }
}

/// A message a client wants stored, from Send or from a Connect stream.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub chat_id: ChatId,
    pub client_id: ClientId,
    pub subject: Subject,
    pub text: Text,
    /// The `user_id` the client claimed, if any; it must be the caller.
    pub claimed_sender: Option<UserId>,
    /// The message this one answers; the store checks that it is in the same chat.
    pub reply_to: Option<MessageId>,
}

/// Takes the request by value: the validated message keeps the strings the request was
/// decoded into rather than copying them.
impl TryFrom<proto::SendRequest> for NewMessage {
    type Error = ValidationError;

    fn try_from(request: proto::SendRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            chat_id: ChatId::parse_owned(request.chat_id)?,
            client_id: ClientId::parse_owned(request.client_id)?,
            subject: Subject::parse_owned(request.subject)?,
            text: Text::parse_owned(request.text)?,
            claimed_sender: UserId::parse_optional(&request.user_id)?,
            reply_to: MessageId::parse_optional("reply_to_id", &request.reply_to_id)?,
        })
    }
}

impl NewMessage {
    /// Validates a message received on a Connect stream whose chat came from metadata. The
    /// server-assigned fields (`id`, `sent_at`) are ignored.
    pub fn from_connect(
        message: &proto::Message,
        chat_id: &ChatId,
    ) -> Result<Self, ValidationError> {
        if !message.chat_id.is_empty() && message.chat_id != chat_id.as_str() {
            return Err(ValidationError::ChatIdMismatch);
        }
        Ok(Self {
            chat_id: chat_id.clone(),
            client_id: ClientId::parse(&message.client_id)?,
            subject: Subject::parse(&message.subject)?,
            text: Text::parse(&message.text)?,
            claimed_sender: UserId::parse_optional(&message.user_id)?,
            reply_to: match &message.reply_to {
                Some(quoted) => {
                    MessageId::parse_optional("reply_to.message_id", &quoted.message_id)?
                }
                None => None,
            },
        })
    }
}

/// The message an Edit, Delete or React request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub chat_id: ChatId,
    pub message_id: MessageId,
}

impl MessageRef {
    pub fn parse(chat_id: &str, message_id: &str) -> Result<Self, ValidationError> {
        Ok(Self {
            chat_id: ChatId::parse(chat_id)?,
            message_id: MessageId::parse_optional("message_id", message_id)?
                .ok_or(ValidationError::MessageIdMissing)?,
        })
    }
}

impl TryFrom<&proto::DeleteRequest> for MessageRef {
    type Error = ValidationError;

    fn try_from(request: &proto::DeleteRequest) -> Result<Self, Self::Error> {
        Self::parse(&request.chat_id, &request.message_id)
    }
}

/// An Edit: the new subject and text, checked exactly like a new message's.
#[derive(Debug, Clone)]
pub struct Edit {
    pub target: MessageRef,
    pub subject: Subject,
    pub text: Text,
}

impl TryFrom<&proto::EditRequest> for Edit {
    type Error = ValidationError;

    fn try_from(request: &proto::EditRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            target: MessageRef::parse(&request.chat_id, &request.message_id)?,
            subject: Subject::parse(&request.subject)?,
            text: Text::parse(&request.text)?,
        })
    }
}

/// A React request: add, or take back (`remove`), the caller's `emoji` on a message.
#[derive(Debug, Clone)]
pub struct ReactionChange {
    pub target: MessageRef,
    pub emoji: Emoji,
    pub remove: bool,
}

impl TryFrom<&proto::ReactRequest> for ReactionChange {
    type Error = ValidationError;

    fn try_from(request: &proto::ReactRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            target: MessageRef::parse(&request.chat_id, &request.message_id)?,
            emoji: Emoji::parse(&request.emoji)?,
            remove: request.remove,
        })
    }
}

/// One page of History.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub chat_id: ChatId,
    /// 1 to [`HISTORY_MAX_PAGE`].
    pub limit: u32,
    pub before: Option<MessageId>,
}

impl TryFrom<&proto::HistoryRequest> for HistoryQuery {
    type Error = ValidationError;

    fn try_from(request: &proto::HistoryRequest) -> Result<Self, Self::Error> {
        let chat_id = ChatId::parse(&request.chat_id)?;
        let limit = match request.limit {
            n if n < 0 => return Err(ValidationError::NegativeLimit),
            0 => HISTORY_DEFAULT_PAGE,
            n => (n as u32).min(HISTORY_MAX_PAGE),
        };
        let before = MessageId::parse_optional("before_id", &request.before_id)?;
        Ok(Self {
            chat_id,
            limit,
            before,
        })
    }
}

/// Where a List page starts: just after this chat in List's order (most recently active first).
/// A chat's place in that order is its activity (the `sent_at` of its newest message, or its
/// `created_at` while it has none), then its newest message id (0 while none), then its chat
/// id, all descending: a total order, so keyset paging neither skips nor repeats a chat that
/// did not move between two pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub activity: i64,
    pub last_message: u64,
    pub chat_id: ChatId,
}

impl ListCursor {
    /// The cursor as the opaque `page_token` of the wire: `activity.last_message.chat_id`.
    pub fn to_token(&self) -> String {
        format!("{}.{}.{}", self.activity, self.last_message, self.chat_id)
    }

    /// Reads a `page_token` made by [`ListCursor::to_token`].
    pub fn from_token(token: &str) -> Result<Self, ValidationError> {
        let invalid = || ValidationError::PageTokenInvalid(token.to_owned());
        let mut parts = token.split('.');
        let (Some(activity), Some(last_message), Some(chat_id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(activity) || !digits(last_message) {
            return Err(invalid());
        }
        Ok(Self {
            activity: activity.parse().map_err(|_| invalid())?,
            last_message: last_message.parse().map_err(|_| invalid())?,
            chat_id: ChatId::parse(chat_id).map_err(|_| invalid())?,
        })
    }
}

/// One page of List.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// 1 to [`LIST_MAX_PAGE`].
    pub limit: u32,
    /// `None` for the first page.
    pub after: Option<ListCursor>,
}

impl TryFrom<&proto::ListRequest> for ListQuery {
    type Error = ValidationError;

    fn try_from(request: &proto::ListRequest) -> Result<Self, Self::Error> {
        let limit = match request.limit {
            n if n < 0 => return Err(ValidationError::NegativeLimit),
            0 => LIST_DEFAULT_PAGE,
            n => (n as u32).min(LIST_MAX_PAGE),
        };
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(ListCursor::from_token(token)?),
        };
        Ok(Self { limit, after })
    }
}

/// A Leave request: the chat to leave.
#[derive(Debug, Clone)]
pub struct LeaveChat {
    pub chat_id: ChatId,
}

impl TryFrom<&proto::LeaveRequest> for LeaveChat {
    type Error = ValidationError;

    fn try_from(request: &proto::LeaveRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            chat_id: ChatId::parse(&request.chat_id)?,
        })
    }
}

/// A Block or Unblock request of `caller`: the other account, never the caller themself.
#[derive(Debug, Clone)]
pub struct BlockTarget {
    pub user_id: UserId,
}

impl BlockTarget {
    /// Validates `user_id` as the account `caller` blocks or unblocks. The browser calls this
    /// with its own user id before it sends the request.
    pub fn parse(caller: &UserId, user_id: &str) -> Result<Self, ValidationError> {
        let user_id = UserId::parse(user_id)?;
        if &user_id == caller {
            return Err(ValidationError::BlockSelf);
        }
        Ok(Self { user_id })
    }
}

/// What a Stream follows: one chat or all of the caller's, from a cursor or from now.
#[derive(Debug, Clone)]
pub struct StreamQuery {
    pub chat_id: Option<ChatId>,
    pub after: Option<MessageId>,
}

impl TryFrom<&proto::StreamRequest> for StreamQuery {
    type Error = ValidationError;

    fn try_from(request: &proto::StreamRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            chat_id: ChatId::parse_optional(&request.chat_id)?,
            after: MessageId::parse_optional("after_id", &request.after_id)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_a_set() {
        let a = Members::parse(["bob", "Alice", "bob", "carol"]).unwrap();
        let b = Members::parse(["carol", "alice", "BOB"]).unwrap();
        assert_eq!(a, b);
        assert!(a.contains(&UserId::parse("alice").unwrap()));
        assert_eq!(Members::parse([]), Err(ValidationError::MembersMissing));
        let crowd: Vec<String> = (0..=MEMBERS_MAX).map(|i| format!("user{i}")).collect();
        assert_eq!(
            Members::parse(crowd.iter().map(String::as_str)),
            Err(ValidationError::TooManyMembers(MEMBERS_MAX + 1))
        );
        // As many as a chat may have, each given twice, in reverse: one full chat, sorted.
        let full = || crowd[..MEMBERS_MAX].iter().rev().map(String::as_str);
        let members = Members::parse(full().chain(full())).unwrap();
        let mut sorted: Vec<&str> = crowd[..MEMBERS_MAX].iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let parsed: Vec<&str> = members.as_slice().iter().map(UserId::as_str).collect();
        assert_eq!(parsed, sorted);
        // Thousands of names: refused, each one counted, an invalid one still refused as such.
        let many: Vec<String> = (0..5_000).map(|i| format!("user{i}")).collect();
        assert_eq!(
            Members::parse(many.iter().map(String::as_str)),
            Err(ValidationError::TooManyMembers(5_000))
        );
        let with_bad = many.iter().map(String::as_str).chain(["not a name"]);
        assert!(matches!(
            Members::parse(with_bad),
            Err(ValidationError::UserIdCharacters(_))
        ));
    }

    #[test]
    fn history_limit_has_a_default_and_a_cap() {
        let chat_id = ChatId::from_random(7).as_str().to_owned();
        let query = |limit| {
            HistoryQuery::try_from(&proto::HistoryRequest {
                chat_id: chat_id.clone(),
                limit,
                before_id: String::new(),
            })
        };
        assert_eq!(query(0).unwrap().limit, HISTORY_DEFAULT_PAGE);
        assert_eq!(query(7).unwrap().limit, 7);
        assert_eq!(query(i32::MAX).unwrap().limit, HISTORY_MAX_PAGE);
        assert_eq!(query(-1).unwrap_err(), ValidationError::NegativeLimit);
    }

    #[test]
    fn list_pages_have_a_default_a_cap_and_tokens_that_read_back() {
        let query = |limit, page_token: &str| {
            ListQuery::try_from(&proto::ListRequest {
                limit,
                page_token: page_token.to_owned(),
            })
        };
        assert_eq!(query(0, "").unwrap().limit, LIST_DEFAULT_PAGE);
        assert!(query(0, "").unwrap().after.is_none());
        assert_eq!(query(7, "").unwrap().limit, 7);
        assert_eq!(query(i32::MAX, "").unwrap().limit, LIST_MAX_PAGE);
        assert_eq!(query(-1, "").unwrap_err(), ValidationError::NegativeLimit);

        let cursor = ListCursor {
            activity: 1_700_000_000,
            last_message: 42,
            chat_id: ChatId::from_random(9),
        };
        assert_eq!(query(0, &cursor.to_token()).unwrap().after, Some(cursor));
        let chat = ChatId::from_random(9).to_string();
        for token in [
            "x".to_owned(),
            format!("1.2.{chat}.3"),
            format!("-1.2.{chat}"),
            format!("1.+2.{chat}"),
            "1.2.nothex".to_owned(),
            format!("99999999999999999999.2.{chat}"),
        ] {
            assert_eq!(
                query(0, &token).unwrap_err(),
                ValidationError::PageTokenInvalid(token.clone())
            );
        }
    }

    #[test]
    fn nobody_blocks_themself_and_user_ids_are_validated() {
        let alice = UserId::parse("alice").unwrap();
        assert_eq!(
            BlockTarget::parse(&alice, "Bob").unwrap().user_id,
            UserId::parse("bob").unwrap()
        );
        assert_eq!(
            BlockTarget::parse(&alice, "ALICE").unwrap_err(),
            ValidationError::BlockSelf
        );
        assert!(matches!(
            BlockTarget::parse(&alice, "x").unwrap_err(),
            ValidationError::UserIdLength(_)
        ));
        assert_eq!(
            LeaveChat::try_from(&proto::LeaveRequest::default()).unwrap_err(),
            ValidationError::ChatIdMissing
        );
    }

    #[test]
    fn connect_messages_take_the_chat_from_metadata() {
        let chat = ChatId::from_random(1);
        let mut message = proto::Message {
            client_id: "c1".into(),
            text: "hi".into(),
            ..Default::default()
        };
        assert_eq!(
            NewMessage::from_connect(&message, &chat).unwrap().chat_id,
            chat
        );
        message.chat_id = ChatId::from_random(2).as_str().into();
        assert_eq!(
            NewMessage::from_connect(&message, &chat).unwrap_err(),
            ValidationError::ChatIdMismatch
        );
    }

    #[test]
    fn edits_are_validated_like_sends_and_need_a_message_id() {
        let chat_id = ChatId::from_random(3).as_str().to_owned();
        let edit = |message_id: &str, subject: &str, text: &str| {
            Edit::try_from(&proto::EditRequest {
                chat_id: chat_id.clone(),
                message_id: message_id.into(),
                subject: subject.into(),
                text: text.into(),
            })
        };
        let ok = edit("42", "Re", "fixed").unwrap();
        assert_eq!(ok.target.message_id, MessageId(42));
        assert_eq!(ok.text.as_str(), "fixed");
        assert_eq!(
            edit("", "", "x").unwrap_err(),
            ValidationError::MessageIdMissing
        );
        assert!(matches!(
            edit("4x", "", "x").unwrap_err(),
            ValidationError::MessageIdInvalid {
                field: "message_id",
                ..
            }
        ));
        assert_eq!(
            edit("1", "", " \u{200B}").unwrap_err(),
            ValidationError::TextBlank
        );
        assert_eq!(
            edit("1", "a\nb", "x").unwrap_err(),
            ValidationError::SubjectControl
        );
        assert_eq!(
            edit("1", "", &"x".repeat(TEXT_MAX_CHARS + 1)).unwrap_err(),
            ValidationError::TextTooLong(TEXT_MAX_CHARS + 1)
        );
        let no_chat = Edit::try_from(&proto::EditRequest {
            message_id: "1".into(),
            text: "x".into(),
            ..Default::default()
        });
        assert_eq!(no_chat.unwrap_err(), ValidationError::ChatIdMissing);
    }

    #[test]
    fn reactions_need_one_emoji() {
        let react = |emoji: &str| {
            ReactionChange::try_from(&proto::ReactRequest {
                chat_id: ChatId::from_random(3).as_str().into(),
                message_id: "7".into(),
                emoji: emoji.into(),
                remove: true,
            })
        };
        let ok = react("🎉").unwrap();
        assert!(ok.remove);
        assert_eq!(ok.emoji.as_str(), "🎉");
        assert_eq!(react("").unwrap_err(), ValidationError::EmojiMissing);
        assert_eq!(
            react("lol").unwrap_err(),
            ValidationError::EmojiInvalid("lol".into())
        );
    }
}
