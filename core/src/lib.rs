//! The shared core of the chat product, used by the server and the browser alike.
//!
//! - [`proto`]: the wire types and gRPC stubs, generated once from `proto/chat.proto`.
//! - [`limits`]: every size limit the product enforces, in one place.
//! - [`ids`], [`content`], [`emoji`]: validated domain types that cannot hold an invalid value.
//! - [`requests`]: conversions from wire requests into those types.
//! - [`search`]: search queries, and what to highlight in what they find.
//! - [`links`]: the web addresses in message text, which the browser shows as links.
//! - [`activity`]: the requests about reading and typing (MarkRead, Typing, settings) and
//!   the timings of typing that server and browser share.
//! - [`codec`]: the protobuf codec of the generated stubs (small per-call buffers).
//! - [`wire`]: metadata keys, the bearer token and the retry hint, for server and clients.
//! - [`reason`]: the machine-readable causes of refusals, shared by server and browser.
//! - [`details`]: reading a refusal's reason and retry wait from a status, for clients.
//!
//! Nothing here knows about tokio, SQL or the DOM: the browser form and the server run the
//! very same checks, so a user sees the server's rule before a request is even sent.

/// `parse` (copies a borrowed string) and `parse_owned` (keeps the caller's string) of a
/// string newtype whose `check` says whether a value is valid: one definition for every such
/// type, so the two cannot come to check differently.
macro_rules! parse_by_check {
    ($type:ident) => {
        impl $type {
            pub fn parse(input: &str) -> Result<Self, ValidationError> {
                Self::check(input)?;
                Ok(Self(input.to_owned()))
            }

            /// [`Self::parse`] of a string the caller owns, which the value then keeps: no copy.
            pub fn parse_owned(input: String) -> Result<Self, ValidationError> {
                Self::check(&input)?;
                Ok(Self(input))
            }
        }
    };
}

pub mod activity;
pub mod codec;
pub mod content;
pub mod details;
pub mod emoji;
pub mod error;
pub mod ids;
pub mod limits;
pub mod links;
pub mod reason;
pub mod requests;
pub mod search;
pub mod wire;

pub use error::ValidationError;

/// Types and stubs generated from `proto/chat.proto` by `build.rs`.
///
/// The client methods for the `New` and `Connect` RPCs are `new_chat` and
/// `connect_chat` (tonic already uses `new` and `connect`); their wire paths are unchanged.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("chat");

    /// The encoded `FileDescriptorSet` of `chat.proto`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/chat_descriptor.bin"));
}
