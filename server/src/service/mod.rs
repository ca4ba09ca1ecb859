//! The gRPC services: thin handlers that authenticate, validate with `chat-core`, and
//! delegate to the store, the broker and the feed.

mod activity;
pub mod auth;
pub mod chat;
