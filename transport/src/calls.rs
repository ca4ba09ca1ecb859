//! What happens to every request on the port, outside everything else: it lifts its
//! connection's first-request deadline, counts as an open call of its connection until its
//! response's body is done (so an HTTP/1.1 connection streaming a response is never idle),
//! and is answered DEADLINE_EXCEEDED when its response has not started in time (`deadline`).
//!
//! A hand-written service rather than axum's `middleware::from_fn`: that boxes each call's
//! future, boxes a clone of the inner service into its `Next` and boxes `Next::run`'s future
//! again, three allocations per middleware and per request, plus a copy of the whole future
//! into its box (BENCHMARKS.md, "The transport's layers without boxes"). Here the call's state
//! lives inside tonic's own future for the request.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Timeout;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tower::Service;

use crate::connections::{OpenCall, Registry};
use crate::deadline;

/// Wraps the port's service: every request is tracked on its connection and has `limit` to
/// start its response.
#[derive(Clone)]
pub(crate) struct Calls<S> {
    inner: S,
    registry: Arc<Registry>,
    limit: Duration,
}

impl<S> Calls<S> {
    pub(crate) fn new(inner: S, registry: Arc<Registry>, limit: Duration) -> Self {
        Self {
            inner,
            registry,
            limit,
        }
    }
}

impl<S> Service<Request<Body>> for Calls<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<CallBody>;
    type Error = Infallible;
    type Future = CallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let open = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .and_then(|peer| self.registry.request_started(peer, request.version()));
        // Kept for the answer when the deadline passes: it is given in the caller's protocol.
        let content_type = request.headers().get(CONTENT_TYPE).cloned();
        CallFuture {
            response: tokio::time::timeout(self.limit, self.inner.call(request)),
            limit: self.limit,
            content_type,
            open,
        }
    }
}

pin_project! {
    /// A request's response, or DEADLINE_EXCEEDED once its time is up.
    pub(crate) struct CallFuture<F> {
        #[pin]
        response: Timeout<F>,
        limit: Duration,
        content_type: Option<HeaderValue>,
        open: Option<OpenCall>,
    }
}

impl<F> Future for CallFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<CallBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match ready!(this.response.poll(cx)) {
            Ok(Ok(response)) => response,
            Err(_elapsed) => deadline::exceeded(*this.limit, this.content_type.take()),
        };
        let open = this.open.take();
        Poll::Ready(Ok(response.map(|inner| CallBody { inner, _open: open })))
    }
}

pin_project! {
    /// A response's body that keeps its call open on the connection until it is dropped.
    pub(crate) struct CallBody {
        #[pin]
        inner: Body,
        _open: Option<OpenCall>,
    }
}

impl http_body::Body for CallBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
