//! The gRPC services: thin handlers that validate with `chat-core`, authenticate, and
//! delegate to the store, the broker and the feed.

pub mod auth;
pub mod chat;
