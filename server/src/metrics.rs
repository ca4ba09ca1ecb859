//! The operators' figures in Prometheus's text format, on a listener of their own
//! (`--metrics-listen`), never on the public port: calls by RPC and status with their
//! latency, open streams, deliveries, feeds that fell behind, the store's commits, the
//! database pool and rate-limit refusals.
//!
//! One [`Metrics`] per server, handed to whoever counts (the store's writers, feeds, limits),
//! rather than the `prometheus` crate's process-wide default registry: the tests run many
//! servers in one process, and each must report only its own figures.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse as _;
use http_body::Frame;
use parking_lot::Mutex;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tonic::body::Body as GrpcBody;

use crate::readiness::Readiness;

/// How the database pool is used at one moment (PostgreSQL only).
#[derive(Debug, Clone, Copy)]
pub struct PoolUse {
    /// The most connections the pool may open.
    pub max: usize,
    /// Connections open now, in use or idle.
    pub open: usize,
    /// Open connections nobody holds.
    pub idle: usize,
    /// Calls waiting for a connection.
    pub waiting: usize,
}

type PoolProbe = Box<dyn Fn() -> PoolUse + Send + Sync>;

/// Every series of one server. The fields are the handles the counting code uses.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    pub open_streams: IntGauge,
    pub deliveries: IntCounter,
    pub catch_ups: IntCounter,
    pub messages_missed_live: IntCounter,
    pub messages_from_storage: IntCounter,
    pub tailer_reads: IntCounter,
    pub commit_seconds: Histogram,
    pub commit_batch: Histogram,
    refusals: IntCounterVec,
    pool: IntGaugeVec,
    pool_probe: Mutex<Option<PoolProbe>>,
}

/// Which limit refused a call, as the `reason` label of `chat_rate_limit_refusals_total`.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    SendRate,
    CallRate,
    StreamsPerUser,
    AccountSignIns,
    AddressSignIns,
    AddressSignOuts,
    SignInQueue,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::SendRate => "send_rate",
            Refusal::CallRate => "call_rate",
            Refusal::StreamsPerUser => "streams_per_user",
            Refusal::AccountSignIns => "account_sign_ins",
            Refusal::AddressSignIns => "address_sign_ins",
            Refusal::AddressSignOuts => "address_sign_outs",
            Refusal::SignInQueue => "sign_in_queue",
        }
    }
}

/// Latency buckets from 1 ms to 10 s: a unary call or a commit lands in the low ones, a
/// stream's whole life (also counted as one call) in the top one.
const SECONDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Batch sizes up to the writers' largest batch.
const BATCH_SIZES: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "chat_requests_total",
                "Calls answered, by RPC and gRPC status code",
            ),
            &["rpc", "code"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "chat_request_duration_seconds",
                "Time from a call's arrival to its status (a stream's whole life), by RPC",
            )
            .buckets(SECONDS.to_vec()),
            &["rpc"],
        )
        .expect("valid metric");
        let open_streams = IntGauge::new(
            "chat_open_streams",
            "Stream and Connect calls open on this server",
        )
        .expect("valid metric");
        let deliveries =
            IntCounter::new("chat_deliveries_total", "Messages handed to open streams")
                .expect("valid metric");
        let catch_ups = IntCounter::new(
            "chat_feed_catch_ups_total",
            "Times a stream fell behind live delivery and caught up from storage",
        )
        .expect("valid metric");
        let messages_missed_live = IntCounter::new(
            "chat_feed_lagged_messages_total",
            "Messages streams missed live (then read from storage) because they fell behind",
        )
        .expect("valid metric");
        let messages_from_storage = IntCounter::new(
            "chat_feed_storage_messages_total",
            "Messages streams read from storage (resume replay and catch-up)",
        )
        .expect("valid metric");
        let tailer_reads = IntCounter::new(
            "chat_store_tailer_events_read_total",
            "PostgreSQL only: events the tailer read from the database (other servers' writes; \
             this server's own are handed over, not read back)",
        )
        .expect("valid metric");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "chat_store_commit_duration_seconds",
                "Time the store's writer took to commit one batch of writes",
            )
            .buckets(SECONDS.to_vec()),
        )
        .expect("valid metric");
        let commit_batch = Histogram::with_opts(
            HistogramOpts::new(
                "chat_store_commit_batch_size",
                "Writes committed together in one transaction",
            )
            .buckets(BATCH_SIZES.to_vec()),
        )
        .expect("valid metric");
        let refusals = IntCounterVec::new(
            Opts::new(
                "chat_rate_limit_refusals_total",
                "Calls refused by a limit, by which limit",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let pool = IntGaugeVec::new(
            Opts::new(
                "chat_database_pool_connections",
                "PostgreSQL pool: max (its size), open, idle, and waiting (calls waiting for one)",
            ),
            &["state"],
        )
        .expect("valid metric");
        let collectors: [Box<dyn prometheus::core::Collector>; 12] = [
            Box::new(requests.clone()),
            Box::new(request_seconds.clone()),
            Box::new(open_streams.clone()),
            Box::new(deliveries.clone()),
            Box::new(catch_ups.clone()),
            Box::new(messages_missed_live.clone()),
            Box::new(messages_from_storage.clone()),
            Box::new(tailer_reads.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(commit_batch.clone()),
            Box::new(refusals.clone()),
            Box::new(pool.clone()),
        ];
        for collector in collectors {
            registry
                .register(collector)
                .expect("each series is registered once");
        }
        Arc::new(Self {
            registry,
            requests,
            request_seconds,
            open_streams,
            deliveries,
            catch_ups,
            messages_missed_live,
            messages_from_storage,
            tailer_reads,
            commit_seconds,
            commit_batch,
            refusals,
            pool,
            pool_probe: Mutex::new(None),
        })
    }

    pub fn refused(&self, refusal: Refusal) {
        self.refusals.with_label_values(&[refusal.label()]).inc();
    }

    /// Reads the pool's use at each scrape through `probe`.
    pub fn watch_pool(&self, probe: impl Fn() -> PoolUse + Send + Sync + 'static) {
        *self.pool_probe.lock() = Some(Box::new(probe));
    }

    /// Counts one open stream until the returned guard is dropped.
    pub fn stream_opened(&self) -> OpenStream {
        self.open_streams.inc();
        OpenStream(self.open_streams.clone())
    }

    /// Every series, in Prometheus's text format.
    pub fn render(&self) -> String {
        if let Some(probe) = &*self.pool_probe.lock() {
            let PoolUse {
                max,
                open,
                idle,
                waiting,
            } = probe();
            for (state, value) in [
                ("max", max),
                ("open", open),
                ("idle", idle),
                ("waiting", waiting),
            ] {
                self.pool
                    .with_label_values(&[state])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        let text = TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| {
                tracing::error!(%error, "cannot encode the metrics");
                String::new()
            });
        #[cfg(feature = "count-allocations")]
        let text = with_allocations(text);
        text
    }

    fn finished(&self, rpc: &str, code: tonic::Code, started: Instant) {
        // A path no service knows is any string a client sends: one label for all of them,
        // so clients cannot grow the number of series.
        let rpc = if code == tonic::Code::Unimplemented {
            "unknown"
        } else {
            rpc
        };
        self.requests
            .with_label_values(&[rpc, code_label(code)])
            .inc();
        self.request_seconds
            .with_label_values(&[rpc])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// The counting allocator's totals, written by hand: they are the process's, read at the
/// scrape, where the registry holds series this server updates itself.
#[cfg(feature = "count-allocations")]
fn with_allocations(mut text: String) -> String {
    use std::fmt::Write as _;
    let (allocations, bytes) = crate::allocations::totals();
    let _ = write!(
        text,
        "# HELP chat_allocations_total Heap allocations (malloc, calloc and realloc calls) since the process started\n\
         # TYPE chat_allocations_total counter\n\
         chat_allocations_total {allocations}\n\
         # HELP chat_allocated_bytes_total Heap bytes asked for since the process started\n\
         # TYPE chat_allocated_bytes_total counter\n\
         chat_allocated_bytes_total {bytes}\n"
    );
    text
}

/// One open stream, counted in `chat_open_streams` while this lives.
pub struct OpenStream(IntGauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// gRPC's own names for the codes, as other gRPC servers' metrics label them.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Around the gRPC routes (inside the gRPC-web translation, so both protocols are seen as
/// gRPC): counts each call once its status is known, whether the status comes in the headers
/// (an early error) or in the trailers at the end of the body (an answer, or a stream's end).
/// A call whose client went away before its status counts as cancelled. A layer of its own
/// rather than axum's `from_fn`, which costs three boxes per call (chat_transport's `calls`).
#[derive(Clone)]
pub struct TrackCalls(pub Arc<Metrics>);

impl<S> tower::Layer<S> for TrackCalls {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            metrics: Arc::clone(&self.0),
        }
    }
}

/// The gRPC routes with their calls counted ([`TrackCalls`]).
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<http::Request<GrpcBody>> for Tracked<S>
where
    S: tower::Service<http::Request<GrpcBody>, Response = http::Response<GrpcBody>>,
{
    type Response = http::Response<GrpcBody>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<GrpcBody>) -> Self::Future {
        let call = Call {
            metrics: Arc::clone(&self.metrics),
            uri: request.uri().clone(),
            started: Instant::now(),
        };
        TrackedFuture {
            response: self.inner.call(request),
            call: Some(call),
        }
    }
}

pin_project_lite::pin_project! {
    /// A gRPC call's response, counted when its status is in its headers, else given a body
    /// that counts it when the trailers go by.
    pub struct TrackedFuture<F> {
        #[pin]
        response: F,
        call: Option<Call>,
    }
}

impl<F, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<http::Response<GrpcBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let response = ready!(this.response.poll(cx))?;
        let Some(call) = this.call.take() else {
            return Poll::Ready(Ok(response));
        };
        if let Some(code) = grpc_code(response.headers()) {
            call.finish(code);
            return Poll::Ready(Ok(response));
        }
        Poll::Ready(Ok(response.map(|inner| {
            GrpcBody::new(Observed {
                inner,
                call: Some(call),
            })
        })))
    }
}

struct Call {
    metrics: Arc<Metrics>,
    /// The call's URI, kept whole for its path: a clone shares the request's bytes, where
    /// the path as a `String` would be one more allocation per call.
    uri: http::Uri,
    started: Instant,
}

impl Call {
    fn finish(self, code: tonic::Code) {
        let rpc = self.uri.path().trim_start_matches('/');
        self.metrics.finished(rpc, code, self.started);
    }
}

fn grpc_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(tonic::Code::from_i32(value.parse().ok()?))
}

/// A response body that reports its call's status when the trailers carrying it go by.
struct Observed {
    inner: GrpcBody,
    call: Option<Call>,
}

impl Observed {
    fn finish(&mut self, code: tonic::Code) {
        if let Some(call) = self.call.take() {
            call.finish(code);
        }
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_code) {
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => self.finish(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}

/// Serves `GET /metrics` and `GET /readyz` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(metrics): State<Arc<Metrics>>| async move {
                (
                    [(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                    metrics.render(),
                )
                    .into_response()
            }),
        )
        .with_state(metrics)
        // For load balancers' and orchestrators' checks (`readiness.rs`): 200 or 503, and why.
        .route(
            "/readyz",
            axum::routing::get(move || async move {
                match readiness.why_not() {
                    None => (http::StatusCode::OK, "ready\n".to_owned()),
                    Some(why) => (
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    ),
                }
            }),
        );
    // The port's service answers with tonic's body type; one box per scrape.
    let app = tower::ServiceBuilder::new()
        .map_response(|response: axum::response::Response| response.map(GrpcBody::new))
        .service(app);
    chat_transport::serve(listener, app, shutdown, chat_transport::Options::default()).await
}
