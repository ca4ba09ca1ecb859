//! Every size limit of the product, shared by the server (which enforces them) and the
//! browser (which checks them before sending). Lengths count Unicode scalar values
//! (`str::chars`), which is what a person counts, not bytes.

/// A user id is 3 to 32 characters: see [`crate::ids::UserId`] for the charset.
pub const USER_ID_MIN_CHARS: usize = 3;
/// See [`USER_ID_MIN_CHARS`].
pub const USER_ID_MAX_CHARS: usize = 32;

/// Passwords are 8 to 128 characters. The upper bound keeps hashing cost bounded.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// See [`PASSWORD_MIN_CHARS`].
pub const PASSWORD_MAX_CHARS: usize = 128;

/// Message text: non-blank, at most 4,000 characters.
pub const TEXT_MAX_CHARS: usize = 4_000;
/// Subject: optional, one line, at most 200 characters.
pub const SUBJECT_MAX_CHARS: usize = 200;
/// A client id is 1 to 64 visible ASCII characters (a UUID fits).
pub const CLIENT_ID_MAX_CHARS: usize = 64;

/// A chat has 1 to 100 members, the creator included.
pub const MEMBERS_MAX: usize = 100;

/// Accounts one account may block. Bounds the blocked table per user and ListBlocked's answer
/// (1,000 user ids of at most 32 characters: about 34 KB).
pub const BLOCKED_MAX: usize = 1_000;

/// History page size when the request says `limit = 0`.
pub const HISTORY_DEFAULT_PAGE: u32 = 50;
/// Larger `limit`s are capped to this.
pub const HISTORY_MAX_PAGE: u32 = 100;

/// gRPC's default maximum decoded message size (4 MiB), which both ends keep.
pub const GRPC_MESSAGE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// A reply quotes the first 100 characters of the message it answers.
pub const REPLY_PREFIX_CHARS: usize = 100;

/// The largest encoded `ReplyPreview`: the quoted prefix with 4-byte characters, the original's
/// id and sender, and tags, lengths and the `deleted` flag.
pub const REPLY_PREVIEW_MAX_ENCODED_BYTES: usize = 4 * REPLY_PREFIX_CHARS
    + USER_ID_MAX_CHARS
    + 20  // message id
    + 16; // tags, lengths, deleted

/// The largest encoded `Message` a server can produce: every string field at its limit with
/// 4-byte characters, a reply preview, plus a generous allowance for tags, lengths and the
/// numeric fields.
pub const MESSAGE_MAX_ENCODED_BYTES: usize = 4 * TEXT_MAX_CHARS
    + 4 * SUBJECT_MAX_CHARS
    + CLIENT_ID_MAX_CHARS
    + USER_ID_MAX_CHARS
    + REPLY_PREVIEW_MAX_ENCODED_BYTES
    + 32  // chat id
    + 20  // message id
    + 64 // tags, lengths, sent_at, edited_at, deleted
    + REACTIONS_MAX_ENCODED_BYTES;

/// A message can be edited for 24 hours after it was sent; deleting has no time limit.
pub const EDIT_WINDOW_SECS: i64 = 24 * 60 * 60;

/// One emoji (see [`crate::emoji::Emoji`]) is at most 64 bytes of UTF-8: the longest ZWJ
/// sequences of the emoji set (families with skin tones) take about 40.
pub const EMOJI_MAX_BYTES: usize = 64;
/// A message carries at most 12 different emoji...
pub const REACTION_KINDS_MAX: usize = 12;
/// ...and at most 3 reactions of any one person, so its reactions stay a bounded list.
pub const REACTIONS_PER_PERSON_MAX: usize = 3;

/// The largest encoded reactions of one message: every kind with the longest emoji, and every
/// member reacting as often as allowed, each with the longest user id.
pub const REACTIONS_MAX_ENCODED_BYTES: usize = REACTION_KINDS_MAX * (EMOJI_MAX_BYTES + 8)
    + REACTIONS_PER_PERSON_MAX * MEMBERS_MAX * (USER_ID_MAX_CHARS + 2);

// A full History page of the largest possible messages must fit in one gRPC message, so a
// response can never hit the transport limit. (A quarter of the limit stays spare; it takes
// every member reacting three times to every message of a page to come near it.)
const _: () = assert!(
    HISTORY_MAX_PAGE as usize * (MESSAGE_MAX_ENCODED_BYTES + 8) < GRPC_MESSAGE_MAX_BYTES / 4 * 3
);

/// List page size when the request says `limit = 0`.
pub const LIST_DEFAULT_PAGE: u32 = 30;
/// Larger `limit`s are capped to this.
pub const LIST_MAX_PAGE: u32 = 50;

/// The largest encoded `ChatSummary`: its last message at the limit above, every member id at
/// its longest, a receipt (chat id, user id, message id) of every member, the chat id, the
/// caller's read position, `created_at`, the unread count, and tags and lengths.
pub const CHAT_SUMMARY_MAX_ENCODED_BYTES: usize = MESSAGE_MAX_ENCODED_BYTES
    + MEMBERS_MAX * (USER_ID_MAX_CHARS + 2)
    + MEMBERS_MAX * (32 + USER_ID_MAX_CHARS + 20 + 8)
    + 32  // chat id
    + 20  // read position
    + 64; // tags, lengths, created_at, unread count

// A full List page of the largest possible chats, with its page token, must fit in one gRPC
// message: however many chats a user is put in, List always answers.
const _: () = assert!(
    LIST_MAX_PAGE as usize * (CHAT_SUMMARY_MAX_ENCODED_BYTES + 8) + 256
        < GRPC_MESSAGE_MAX_BYTES / 2
);

/// A search query is at most 200 characters...
pub const SEARCH_QUERY_MAX_CHARS: usize = 200;
/// ...of at most 16 words: each word is one more index lookup.
pub const SEARCH_MAX_WORDS: usize = 16;
/// Search page size when the request says `limit = 0`.
pub const SEARCH_DEFAULT_PAGE: u32 = 20;
/// Larger `limit`s are capped to this.
pub const SEARCH_MAX_PAGE: u32 = 50;

/// The largest encoded `Matches` of one Search result: a range for at most every other
/// character of its subject and text (ranges never touch: matched tokens side by side are
/// joined), each two offsets of at most 3 bytes (a field is far shorter than 2 MiB), and
/// tags and lengths.
pub const MATCHES_MAX_ENCODED_BYTES: usize = 3 * (TEXT_MAX_CHARS + 1 + SUBJECT_MAX_CHARS + 1) + 16;

// A full Search page of the largest possible messages, with where each matched and the page
// token, fits in one gRPC message (a quarter of it spare, as for History).
const _: () = assert!(
    SEARCH_MAX_PAGE as usize * (MESSAGE_MAX_ENCODED_BYTES + MATCHES_MAX_ENCODED_BYTES + 16) + 64
        < GRPC_MESSAGE_MAX_BYTES / 4 * 3
);
