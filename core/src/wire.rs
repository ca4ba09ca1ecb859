//! The conventions of the wire beyond the proto's messages, written once for the server and
//! every client (the browser app, the benchmark, the tests): the metadata keys, how a call
//! carries its bearer token, and how a refusal carries its retry hint. `proto/chat.proto`
//! documents each of them for other languages' clients.

use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// `authorization: Bearer <token>`, on every `chat.Chat` call and on SignOut.
pub const AUTHORIZATION: &str = "authorization";
/// The scheme of [`AUTHORIZATION`]; servers accept it in any case.
pub const BEARER: &str = "Bearer";
/// Optional on any call: when not empty, it must name the caller.
pub const USER_ID: &str = "user-id";
/// The chat a Connect call is about (Connect has no request message to carry it).
pub const CHAT_ID: &str = "chat-id";
/// Optional on Connect: resume after this message id.
pub const AFTER_ID: &str = "after-id";
/// On a RESOURCE_EXHAUSTED rate-limit refusal: milliseconds until the same request may
/// succeed.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// Puts `authorization: Bearer <token>` on `request`. A token that cannot be metadata (not
/// visible ASCII) is left off, so the server refuses the call as unauthenticated, as it does
/// any bad token.
pub fn set_bearer<T>(request: &mut Request<T>, token: &str) {
    if let Ok(value) = MetadataValue::try_from(format!("{BEARER} {token}")) {
        request.metadata_mut().insert(AUTHORIZATION, value);
    }
}

/// `message` in a request carrying the bearer token.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    set_bearer(&mut request, token);
    request
}

/// The [`RETRY_AFTER_MS`] hint of a refused call, if it has a readable one.
pub fn retry_after_ms(status: &Status) -> Option<u64> {
    status
        .metadata()
        .get(RETRY_AFTER_MS)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_its_bearer_token() {
        let request = authed("ab12", ());
        assert_eq!(
            request.metadata().get(AUTHORIZATION).unwrap(),
            "Bearer ab12"
        );
        let request = authed("not\nmetadata", ());
        assert!(request.metadata().get(AUTHORIZATION).is_none());
    }

    #[test]
    fn the_retry_hint_is_read_when_it_is_a_number() {
        let mut status = Status::resource_exhausted("too fast");
        assert_eq!(retry_after_ms(&status), None);
        status
            .metadata_mut()
            .insert(RETRY_AFTER_MS, "1500".parse().unwrap());
        assert_eq!(retry_after_ms(&status), Some(1500));
        status
            .metadata_mut()
            .insert(RETRY_AFTER_MS, "soon".parse().unwrap());
        assert_eq!(retry_after_ms(&status), None);
    }
}
