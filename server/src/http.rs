//! Everything on the one port: native gRPC (HTTP/2), gRPC-web (HTTP/1.1) for browsers, and
//! the built web UI as static files, with CORS around it all.

use std::path::Path;
use std::time::Duration;

use http::Method;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName};
use tonic::service::Routes;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};

/// Headers a browser may send with gRPC-web calls. Listed one by one: a wildcard does not
/// cover `authorization`.
const ALLOWED_HEADERS: [&str; 5] = [
    "chat-id",
    "user-id",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
];
/// Response headers browser code may read; gRPC-web puts status in headers on early errors.
const EXPOSED_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// Builds the router: gRPC services (with the gRPC-web translation applied to them only,
/// since it answers 400 to anything else on HTTP/1.1), then the static UI as the fallback.
pub fn router(grpc: Routes, static_dir: &Path) -> axum::Router {
    let grpc = grpc
        .into_axum_router()
        .layer(tonic_web::GrpcWebLayer::new());
    let index = static_dir.join("index.html");
    let app = if index.is_file() {
        tracing::info!(dir = %static_dir.display(), "serving the web UI");
        // Unknown paths get index.html with 200, so the single-page app's deep links work.
        grpc.fallback_service(ServeDir::new(static_dir).fallback(ServeFile::new(index)))
    } else {
        tracing::info!(dir = %static_dir.display(), "no index.html there: serving the API only");
        grpc.fallback(|| async {
            (
                http::StatusCode::NOT_FOUND,
                "not found: this server has no web UI built\n",
            )
        })
    };
    app.layer(cors())
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
