//! Everything on the one port: native gRPC (HTTP/2), gRPC-web (HTTP/1.1) for browsers, and
//! the built web UI as static files, with CORS for browsers and the browser security headers
//! on the UI.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chat_core::wire;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderName, ORIGIN,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderValue, Method, Request, Response};
use http_body_util::Full;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tower::util::Either;
use tower::{Layer, Service, ServiceBuilder, ServiceExt as _};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::csp::ContentSecurityPolicy;
use crate::page::Page;

/// Headers a browser may send with gRPC-web calls, besides `content-type` and `authorization`.
/// Listed one by one: a wildcard does not cover `authorization`.
const ALLOWED_HEADERS: [&str; 5] = [
    wire::CHAT_ID,
    wire::USER_ID,
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
];
/// Response headers browser code may read; gRPC-web puts status in headers on early errors,
/// and a rate-limited call carries its retry hint.
const EXPOSED_HEADERS: [&str; 4] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    wire::RETRY_AFTER_MS,
];

/// What serves the one port, and each part of it: an HTTP service answering every request
/// (with tonic's body type, which the server takes as it is), cloned for each connection.
pub trait PortService:
    Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> PortService for S where
    S: Service<
            Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The built web UI a port serves.
#[derive(Debug, Clone, Copy)]
pub struct WebUi<'a> {
    /// The folder trunk built: `index.html`, the assets named by their hash, and the brotli
    /// and gzip copy of each.
    pub dir: &'a Path,
    /// Attributes added to the page's `<html>` element, written as in HTML, for the style
    /// sheet to follow the server's settings (`data-sign-up="closed"`); empty for the page as
    /// built (see `page`).
    pub root_attributes: &'static str,
}

/// Builds the port's service: gRPC and gRPC-web calls (told apart by their content type) go
/// to the gRPC services, `chat` first and the `others` after it, with `around_grpc` applied
/// to them (the server's call metrics), inside the gRPC-web translation, which answers 400 to
/// anything else on HTTP/1.1; everything else goes to the UI when its folder holds an
/// `index.html`, else gets 404. CORS is around every request with an `Origin`, and
/// around everything that is not a gRPC call.
///
/// Each layer wraps the whole of its part once, not each route (`axum::Router::layer` wraps
/// every route on its own, and axum clones a matched route's nest of boxed services on every
/// request), and the chat service, which takes nearly every call, is called directly rather
/// than through tonic's `Routes`, an axum router that costs each call about nine allocations
/// for its boxes and the path's parameters (BENCHMARKS.md, "The transport's layers without
/// boxes").
pub fn router<C, L>(
    chat: C,
    others: Routes,
    around_grpc: L,
    web_ui: Option<WebUi<'_>>,
) -> impl PortService
where
    C: PortService + NamedService,
    L: Layer<GrpcServices<C>>,
    L::Service: PortService,
{
    let services = GrpcServices {
        chat,
        others: unknown_services(others),
    };
    let grpc = tonic_web::GrpcWebLayer::new().layer(around_grpc.layer(services));
    let other = match web_ui.filter(|ui| ui.dir.join("index.html").is_file()) {
        Some(web_ui) => Either::Left(ui(web_ui)),
        None => {
            if let Some(WebUi { dir, .. }) = web_ui {
                tracing::info!(dir = %dir.display(), "no index.html there: serving the API only");
            }
            Either::Right(tower::service_fn(|_: Request<Body>| async {
                let mut response = Response::new(Body::new(Full::new(Bytes::from_static(
                    b"not found: this server has no web UI built\n",
                ))));
                *response.status_mut() = http::StatusCode::NOT_FOUND;
                Ok::<_, Infallible>(response)
            }))
        }
    };
    ByKind {
        browser_grpc: cors().layer(grpc.clone()),
        grpc,
        other: cors().layer(other),
    }
}

/// The gRPC services: calls to `chat` go straight to it, the rest to `others`.
#[derive(Clone)]
pub struct GrpcServices<C> {
    chat: C,
    others: Routes,
}

impl<C> Service<Request<Body>> for GrpcServices<C>
where
    C: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + NamedService,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures::future::Either<C::Future, <Routes as Service<Request<Body>>>::Future>;

    /// Ready when both are, so that either may take the call.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        let chat = self.chat.poll_ready(cx)?;
        let others = Service::<Request<Body>>::poll_ready(&mut self.others, cx)?;
        if chat.is_ready() && others.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let to_chat = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|path| path.strip_prefix(C::NAME))
            .is_some_and(|method| method.starts_with('/'));
        if to_chat {
            futures::future::Either::Left(self.chat.call(request))
        } else {
            futures::future::Either::Right(self.others.call(request))
        }
    }
}

/// Sends each request where it belongs: a gRPC or gRPC-web call with an `Origin` (a
/// browser's) to the gRPC services behind CORS; one without to them directly, since a browser
/// sends an `Origin` with every cross-origin request and CORS headers mean nothing to any
/// other client (they cost every call four header-map allocations); everything else,
/// preflights included, to the UI behind CORS.
#[derive(Clone)]
struct ByKind<B, G, O> {
    browser_grpc: B,
    grpc: G,
    other: O,
}

impl<B, G, O> Service<Request<Body>> for ByKind<B, G, O>
where
    B: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    G: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    O: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures::future::Either<futures::future::Either<B::Future, G::Future>, O::Future>;

    /// Ready when all are, so that any may take the call.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        let browser_grpc = self.browser_grpc.poll_ready(cx)?;
        let grpc = self.grpc.poll_ready(cx)?;
        let other = self.other.poll_ready(cx)?;
        if browser_grpc.is_ready() && grpc.is_ready() && other.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        use futures::future::Either::{Left, Right};
        let headers = request.headers();
        if !headers.get(CONTENT_TYPE).is_some_and(is_grpc) {
            Right(self.other.call(request))
        } else if headers.contains_key(ORIGIN) {
            Left(Left(self.browser_grpc.call(request)))
        } else {
            Left(Right(self.grpc.call(request)))
        }
    }
}

/// Whether `content_type` is gRPC's or gRPC-web's (`application/grpc`, `+proto`, `-web`,
/// `-web-text`, …): the one test of "a gRPC call" on the port.
pub(crate) fn is_grpc(content_type: &HeaderValue) -> bool {
    content_type.as_bytes().starts_with(b"application/grpc")
}

/// `grpc`, where a call to a service it does not have gets UNIMPLEMENTED with the path it
/// asked for, as tonic answers an unknown method of a known service.
fn unknown_services(mut grpc: Routes) -> Routes {
    let routes = std::mem::take(grpc.axum_router_mut());
    *grpc.axum_router_mut() = routes.fallback(|request: axum::extract::Request| async move {
        let status = tonic::Status::unimplemented(format!(
            "this server has no service at {}",
            request.uri().path()
        ));
        let mut response = status.into_http::<axum::body::Body>();
        // A gRPC client expects its own content type back, errors included (the gRPC-web
        // translation then puts back the browser's).
        if let Some(content_type) = request.headers().get(CONTENT_TYPE) {
            response
                .headers_mut()
                .insert(CONTENT_TYPE, content_type.clone());
        }
        response
    });
    grpc
}

/// The UI, every response with the browser security headers.
fn ui(
    WebUi {
        dir: static_dir,
        root_attributes,
    }: WebUi<'_>,
) -> impl PortService {
    tracing::info!(dir = %static_dir.display(), "serving the web UI");
    let index = static_dir.join("index.html");
    let policy = Arc::new(ContentSecurityPolicy::new(index.clone()));
    let page =
        (!root_attributes.is_empty()).then(|| Arc::new(Page::new(index.clone(), root_attributes)));
    // Unknown paths get index.html with 200, so the single-page app's deep links work.
    ServiceBuilder::new()
        .map_request(|request: Request<Body>| request.map(axum::body::Body::new))
        .map_response(|response: axum::response::Response| response.map(Body::new))
        .layer(SetResponseHeaderLayer::overriding(
            CONTENT_SECURITY_POLICY,
            move |_: &_| Some(policy.header()),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // The UI links nowhere else; its URLs (chat ids) are nobody else's business.
        .layer(SetResponseHeaderLayer::overriding(
            REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .service(ui_files(static_dir.to_owned(), index, page))
}

/// Cache-Control of a file whose name carries its content hash: it never changes, so a
/// browser keeps it for a year without asking again.
const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
/// Cache-Control of everything else (index.html, deep links): kept, but revalidated by its
/// ETag on every load, so a new build is picked up at once and an unchanged one costs a 304.
const REVALIDATE: HeaderValue = HeaderValue::from_static("no-cache");

/// The UI's files. Each is sent as the brotli or gzip copy made at build time
/// (`scripts/compress.mjs`) when the browser accepts it, with an ETag. Files named by their
/// content hash are cached for good and, when missing (a page of an older build asking for
/// its assets), get 404, never index.html, which would be cached as the asset for a year.
/// Any other path is a page of the single-page app: index.html with 200, revalidated; or,
/// when the server adds settings to it, that `page`.
fn ui_files(
    static_dir: PathBuf,
    index: PathBuf,
    page: Option<Arc<Page>>,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    // A folder's path ("/") is a page of the app, not the folder's index.html as a file:
    // `pages` or `page` answer it.
    let assets = ServeDir::new(static_dir)
        .append_index_html_on_directories(false)
        .precompressed_br()
        .precompressed_gzip();
    let pages = assets.clone().fallback(
        ServeFile::new(index)
            .precompressed_br()
            .precompressed_gzip(),
    );
    tower::service_fn(move |request: axum::extract::Request| {
        let hashed = is_content_addressed(request.uri().path());
        let (assets, pages, page) = (assets.clone(), pages.clone(), page.clone());
        async move {
            let (mut response, cache) = if hashed {
                let response = assets.oneshot(request).await?;
                let cache = if response.status().is_success()
                    || response.status() == http::StatusCode::NOT_MODIFIED
                {
                    IMMUTABLE
                } else {
                    REVALIDATE
                };
                (response.map(axum::body::Body::new), cache)
            } else if let Some(page) = page {
                // The page for every path but the folder's other files (none in trunk's
                // build, but an operator may add one), and index.html itself.
                let (method, headers) = (request.method().clone(), request.headers().clone());
                let response = if request.uri().path() == "/index.html" {
                    None
                } else {
                    Some(assets.oneshot(request).await?)
                        .filter(|response| response.status() != http::StatusCode::NOT_FOUND)
                };
                match response {
                    Some(file) => (file.map(axum::body::Body::new), REVALIDATE),
                    None => (page.respond(&method, &headers), REVALIDATE),
                }
            } else {
                let response = pages.oneshot(request).await?;
                (response.map(axum::body::Body::new), REVALIDATE)
            };
            response.headers_mut().insert(CACHE_CONTROL, cache);
            Ok(response)
        }
    })
}

/// Whether `path` names a file trunk named by its content hash: `<name>-<hash>` before the
/// extension, e.g. `/chat-web-0123456789abcdef_bg.wasm` or `/style-0123456789abcdef.css`.
/// The hash is a 64-bit one written in hex without leading zeros (`{:x}`), so one build in
/// sixteen has 15 digits or fewer: taken here from 8 digits up (a hash under 8 digits comes
/// once in four billion builds, and is then served as an ordinary file, revalidated).
fn is_content_addressed(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or_default();
    let Some((stem, _extension)) = file.split_once('.') else {
        return false;
    };
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-').is_some_and(|(name, hash)| {
        !name.is_empty()
            && (8..=16).contains(&hash.len())
            && hash.bytes().all(|byte| byte.is_ascii_hexdigit())
    })
}

fn cors() -> CorsLayer {
    let allowed = [CONTENT_TYPE, AUTHORIZATION]
        .into_iter()
        .chain(ALLOWED_HEADERS.map(HeaderName::from_static));
    // Any origin: calls authenticate with a bearer token the page must hold, never with
    // cookies, so another site gains nothing by calling the API from a user's browser.
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
        .allow_headers(allowed.collect::<Vec<_>>())
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_named_by_their_hash_count_as_content_addressed() {
        for hashed in [
            "/chat-web-0123456789abcdef_bg.wasm",
            "/chat-web-0123456789abcdef.js",
            "/style-fedcba9876543210.css",
            "/chat-web-0123456789abcdef_bg.wasm.br",
            // A hash with leading zeros, which trunk leaves out.
            "/chat-web-765ce255ef6b60c.js",
            "/style-7393efd7.css",
        ] {
            assert!(is_content_addressed(hashed), "{hashed}");
        }
        for page in [
            "/",
            "/index.html",
            "/chats/0123456789abcdef",
            "/app.js",
            "/-0123456789abcdef.js",
            "/chat-web-0123456789abcdeg.js",
            "/chat-web-0123456789abcdef0.js",
            "/chat-web-1234567.js",
            "/app-2.js",
            // A deep link is a page, whatever its last part looks like.
            "/chats/team-0123456789abcdef",
        ] {
            assert!(!is_content_addressed(page), "{page}");
        }
    }
}
