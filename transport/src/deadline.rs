//! The per-call deadline: how long a call may take until its response starts. That is all of
//! a unary call, its request body included, so a body that trickles in is cut off; a Stream
//! or Connect starts its response at once and is never cut.
//!
//! A call past it ends with DEADLINE_EXCEEDED and a sentence, in the caller's own protocol (a
//! trailers-only gRPC response, or its gRPC-web form for a browser). Hand-written rather than
//! tonic's `Server::timeout`, which answers CANCELLED "Timeout expired" (a code that says the
//! caller gave up) and, sitting outside the gRPC-web translation, in plain gRPC even to a
//! browser.

use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use tonic::body::Body;

use crate::router::is_grpc;

/// The answer to a call whose response has not started within `limit` (applied by
/// `calls::Calls`): DEADLINE_EXCEEDED to a gRPC or gRPC-web call, 408 to anything else.
pub(crate) fn exceeded(limit: Duration, content_type: Option<HeaderValue>) -> Response<Body> {
    if !content_type.as_ref().is_some_and(is_grpc) {
        let mut response = Response::new(Body::new(Full::new(Bytes::from_static(
            b"request timed out\n",
        ))));
        *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
        return response;
    }
    tracing::debug!(?limit, "call deadline passed before the response started");
    let status = tonic::Status::deadline_exceeded(format!(
        "the call took longer than the server's limit of {} s before it could be answered \
         (a request that arrives too slowly is cut off): send it again",
        limit.as_secs_f64()
    ));
    let mut response: Response<Body> = status.into_http();
    // A trailers-only answer: gRPC-web carries it in the headers the same way, under its own
    // content type (application/grpc-web, +proto, -text), which its clients check.
    if let Some(content_type) = content_type {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    response
}
