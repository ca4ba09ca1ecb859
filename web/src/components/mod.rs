//! Reusable pieces of the chat screen.

pub mod account_menu;
pub mod blocked_list;
pub mod chat_actions;
pub mod chat_list;
pub mod composer;
pub mod connection_indicator;
pub mod focus;
pub mod message_item;
pub mod message_list;
pub mod new_chat;
pub mod notification_offer;
pub mod pieces;
pub mod presence;
pub mod quote;
pub mod search;
pub mod typing_line;
