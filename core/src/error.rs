//! The one error type of validation: each variant reads as an instruction a person can act on,
//! and the server sends it verbatim as an INVALID_ARGUMENT message.

use crate::limits::*;

/// Why a piece of input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("username {shown} must be {USER_ID_MIN_CHARS} to {USER_ID_MAX_CHARS} characters long", shown = Shown(.0))]
    UserIdLength(String),
    #[error("username {shown} may only contain letters a-z, digits, '.', '_' and '-'", shown = Shown(.0))]
    UserIdCharacters(String),
    #[error("username {shown} must start with a letter or a digit", shown = Shown(.0))]
    UserIdStart(String),
    #[error("password must be at least {PASSWORD_MIN_CHARS} characters long")]
    PasswordTooShort,
    #[error("password must be at most {PASSWORD_MAX_CHARS} characters long")]
    PasswordTooLong,
    #[error("message text is empty or invisible: write something to send")]
    TextBlank,
    #[error("message text is {0} characters long; the limit is {TEXT_MAX_CHARS}")]
    TextTooLong(usize),
    #[error("message text contains a control character; only line breaks and tabs are allowed")]
    TextControl,
    #[error("subject is {0} characters long; the limit is {SUBJECT_MAX_CHARS}")]
    SubjectTooLong(usize),
    #[error("subject must be a single line without control characters")]
    SubjectControl,
    #[error("subject shows nothing: leave it empty or write one")]
    SubjectBlank,
    #[error("client_id is required: pick a unique id per message and reuse it when retrying")]
    ClientIdMissing,
    #[error("client_id must be 1 to {CLIENT_ID_MAX_CHARS} visible ASCII characters (a UUID works)")]
    ClientIdInvalid,
    #[error("chat_id is required")]
    ChatIdMissing,
    #[error("chat_id {shown} is not a chat id: use one returned by New or List", shown = Shown(.0))]
    ChatIdInvalid(String),
    #[error("chat_id of a Connect message must be empty or equal the chat-id metadata")]
    ChatIdMismatch,
    #[error("{field} {shown} is not a message id: use the id of a message you received", shown = Shown(.value))]
    MessageIdInvalid { field: &'static str, value: String },
    #[error("message_id is required: the id of the message to change")]
    MessageIdMissing,
    #[error("emoji is required: one emoji to react with")]
    EmojiMissing,
    #[error("emoji {shown} is not one emoji: react with a single emoji such as 👍", shown = Shown(.0))]
    EmojiInvalid(String),
    #[error("up_to_id is required: the id of the newest message you have seen")]
    UpToIdMissing,
    #[error("limit must not be negative")]
    NegativeLimit,
    #[error("page_token {shown} is not a page token: use the next_page_token of the previous List", shown = Shown(.0))]
    PageTokenInvalid(String),
    #[error("search query is empty: type the words to look for")]
    SearchBlank,
    #[error("search query is {0} characters long; the limit is {SEARCH_QUERY_MAX_CHARS}")]
    SearchTooLong(usize),
    #[error("search query has no words: search for letters or digits, not only punctuation")]
    SearchNoWords,
    #[error("search query has {0} words; search for at most {SEARCH_MAX_WORDS}")]
    SearchTooManyWords(usize),
    #[error("user_ids is empty: list the chat's members, yourself included")]
    MembersMissing,
    #[error("a chat has at most {MEMBERS_MAX} members; {0} were given")]
    TooManyMembers(usize),
    #[error("you cannot block yourself")]
    BlockSelf,
}

/// Quotes client input inside an error message, cut short so that a huge input cannot make
/// the `grpc-message` header huge.
struct Shown<'a>(&'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MAX: usize = 40;
        match self.0.char_indices().nth(MAX) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}…", &self.0[..cut]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_cut_short_in_messages() {
        let message = ValidationError::UserIdLength("x".repeat(10_000)).to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains('…'));
    }
}
