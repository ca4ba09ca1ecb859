//! The API test suite: one binary (so it links once) that starts the real server for each test
//! and drives it through real clients, native gRPC and gRPC-web. Each module covers one concern
//! of the contract in `proto/chat.proto`; `helpers` is the only code they share.

mod helpers;

mod access;
mod accounts;
mod auth;
mod backup;
mod bad_input;
mod block;
mod changes;
mod cluster;
mod cluster_limits;
mod cluster_presence;
mod connect;
mod connections;
mod crash;
mod devices;
mod disk;
mod fuzz;
mod grpc_web;
mod history;
mod leave;
mod limits;
mod list;
mod many_chats;
mod metrics;
mod migrate;
mod new_chat;
mod ops;
mod pg_faults;
mod pg_restart;
mod pg_tls;
mod presence;
mod proxy_protocol;
mod quotas;
mod read_state;
mod readiness;
mod reply;
mod restart;
mod search;
mod send;
mod sessions;
mod sign_in_storm;
mod slow_consumer;
mod storm;
mod stream;
mod tls;
mod typing;
