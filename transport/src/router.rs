//! Everything on the one port: native gRPC (HTTP/2), gRPC-web (HTTP/1.1) for browsers, and
//! the built web UI as static files, with CORS around it all and the browser security headers
//! on the UI.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse as _;
use chat_core::wire;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderName,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderValue, Method};
use tonic::service::Routes;
use tower::{Layer as _, ServiceBuilder, ServiceExt as _};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::csp::ContentSecurityPolicy;

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

/// Builds the router: gRPC services (with the gRPC-web translation applied to them only,
/// since it answers 400 to anything else on HTTP/1.1), then the UI in `static_dir` as the
/// fallback when that folder holds an `index.html`.
pub fn router(grpc: Routes, static_dir: Option<&Path>) -> axum::Router {
    let grpc = grpc
        .into_axum_router()
        .layer(tonic_web::GrpcWebLayer::new());
    let app = match static_dir.filter(|dir| dir.join("index.html").is_file()) {
        Some(static_dir) => with_ui(grpc, static_dir),
        None => {
            if let Some(dir) = static_dir {
                tracing::info!(dir = %dir.display(), "no index.html there: serving the API only");
            }
            grpc.fallback(|request: axum::extract::Request| async move {
                unimplemented_if_grpc(&request).unwrap_or_else(|| {
                    (
                        http::StatusCode::NOT_FOUND,
                        "not found: this server has no web UI built\n",
                    )
                        .into_response()
                })
            })
        }
    };
    // Around the whole router rather than with `Router::layer`, which would wrap every route
    // on its own and cost each request a clone of one more boxed service (see `serve`).
    axum::Router::new().fallback_service(cors().layer(app))
}

/// `grpc` with the UI in `static_dir` behind it, every response of the UI with the browser
/// security headers.
fn with_ui(grpc: axum::Router, static_dir: &Path) -> axum::Router {
    tracing::info!(dir = %static_dir.display(), "serving the web UI");
    let index = static_dir.join("index.html");
    let policy = Arc::new(ContentSecurityPolicy::new(index.clone()));
    // Unknown paths get index.html with 200, so the single-page app's deep links work.
    let ui = ServiceBuilder::new()
        .layer(axum::middleware::from_fn(grpc_calls_are_not_for_the_ui))
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
        .service(ui_files(static_dir.to_owned(), index));
    grpc.fallback_service(ui)
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
/// Any other path is a page of the single-page app: index.html with 200, revalidated.
fn ui_files(
    static_dir: PathBuf,
    index: PathBuf,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    let assets = ServeDir::new(static_dir)
        .precompressed_br()
        .precompressed_gzip();
    let pages = assets.clone().fallback(
        ServeFile::new(index)
            .precompressed_br()
            .precompressed_gzip(),
    );
    tower::service_fn(move |request: axum::extract::Request| {
        let hashed = is_content_addressed(request.uri().path());
        let (assets, pages) = (assets.clone(), pages.clone());
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
            } else {
                let response = pages.oneshot(request).await?;
                (response.map(axum::body::Body::new), REVALIDATE)
            };
            response.headers_mut().insert(CACHE_CONTROL, cache);
            Ok(response)
        }
    })
}

/// Whether `path` names a file trunk named by its content hash: `<name>-<16 hex digits>`
/// before the extension, e.g. `/chat-web-0123456789abcdef_bg.wasm` or
/// `/style-0123456789abcdef.css`.
fn is_content_addressed(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or_default();
    let stem = file.split('.').next().unwrap_or_default();
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-').is_some_and(|(name, hash)| {
        !name.is_empty() && hash.len() == 16 && hash.bytes().all(|byte| byte.is_ascii_hexdigit())
    })
}

/// A gRPC or gRPC-web call that matched no route (a service this server does not have) gets
/// UNIMPLEMENTED, as tonic answers an unknown method of a known service, rather than the UI's
/// index.html or a 404 page, which a gRPC client could only report as a baffling content type.
fn unimplemented_if_grpc(request: &axum::extract::Request) -> Option<axum::response::Response> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .filter(|value| value.as_bytes().starts_with(b"application/grpc"))?;
    let status = tonic::Status::unimplemented(format!(
        "this server has no service at {}",
        request.uri().path()
    ));
    let mut response = status.into_http::<axum::body::Body>();
    // A gRPC-web client expects its own content type back, errors included.
    response
        .headers_mut()
        .insert(CONTENT_TYPE, content_type.clone());
    Some(response)
}

/// [`unimplemented_if_grpc`] in front of the UI's files.
async fn grpc_calls_are_not_for_the_ui(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match unimplemented_if_grpc(&request) {
        Some(response) => response,
        None => next.run(request).await,
    }
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
            "/chat-web-0123456789abcde.js",
        ] {
            assert!(!is_content_addressed(page), "{page}");
        }
    }
}
