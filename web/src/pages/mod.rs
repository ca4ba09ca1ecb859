//! The app's screens: signing in, and chatting.

pub mod chats;
pub mod sign_in;
