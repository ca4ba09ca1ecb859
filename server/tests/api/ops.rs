//! What operators and tools rely on besides the chat API: the gRPC health service, server
//! reflection (so `grpcurl` works without the proto file), and the web UI's static files on
//! the same port, with every unknown path answered by index.html for the single-page app.

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::helpers::*;

async fn get(app: &TestApp, path: &str) -> (http::response::Parts, Bytes) {
    let request = http::Request::builder()
        .method(Method::GET)
        .uri(app.url(path))
        .header("accept", "text/html")
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    http1(request).await
}

#[tokio::test]
async fn the_health_service_reports_serving() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel().await);

    let response = within(health.check(HealthCheckRequest {
        service: String::new(),
    }))
    .await
    .expect("health check")
    .into_inner();

    assert_eq!(response.status(), ServingStatus::Serving);
}

#[tokio::test]
async fn reflection_lists_the_services() {
    let app = spawn_app().await;
    let mut reflection = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };

    let mut responses = within(reflection.server_reflection_info(futures::stream::iter([request])))
        .await
        .expect("reflection")
        .into_inner();
    let response = within(responses.message())
        .await
        .expect("reflection failed")
        .expect("no answer");

    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a list of services: {response:?}");
    };
    let names: Vec<&str> = list
        .service
        .iter()
        .map(|service| service.name.as_str())
        .collect();
    for wanted in ["chat.Chat", "chat.Auth", "grpc.health.v1.Health"] {
        assert!(names.contains(&wanted), "{wanted} is not among {names:?}");
    }
}

#[tokio::test]
async fn the_static_folder_is_served_with_index_html_as_the_fallback() {
    let app = spawn_app().await;
    // Written after start-up: the folder is read per request, as a rebuilt UI would be.
    std::fs::write(app.static_dir().join("app.js"), "console.log('chat');").expect("write app.js");

    let (head, body) = get(&app, "/").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, INDEX_HTML);
    let content_type = head
        .headers
        .get("content-type")
        .and_then(|value| value.to_str().ok());
    assert!(
        content_type.is_some_and(|value| value.starts_with("text/html")),
        "{content_type:?}"
    );

    let (head, body) = get(&app, "/some/deep/link").await;
    assert_eq!(
        head.status,
        StatusCode::OK,
        "a client-side route must load the app"
    );
    assert_eq!(body, INDEX_HTML);

    let (head, body) = get(&app, "/app.js").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        body, "console.log('chat');",
        "a real file is served as itself"
    );
}

/// GET `path` with `headers`, as a browser asks for the UI's files.
async fn get_with(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::response::Parts, Bytes) {
    let mut request = http::Request::builder()
        .method(Method::GET)
        .uri(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    http1(
        request
            .body(Full::new(Bytes::new()))
            .expect("a valid request"),
    )
    .await
}

fn header<'a>(head: &'a http::response::Parts, name: &str) -> Option<&'a str> {
    head.headers.get(name).and_then(|value| value.to_str().ok())
}

#[tokio::test]
async fn ui_files_go_precompressed_by_accept_encoding_and_hashed_ones_are_cached_for_good() {
    let app = spawn_app().await;
    // As a release build leaves them: each file beside its brotli and gzip copies (distinct
    // contents here, so the body tells which copy was sent).
    let wasm = "chat-web-0123456789abcdef_bg.wasm";
    for (file, contents) in [
        (wasm.to_owned(), "raw module"),
        (format!("{wasm}.br"), "brotli module"),
        (format!("{wasm}.gz"), "gzip module"),
        ("index.html.br".to_owned(), "brotli page"),
    ] {
        std::fs::write(app.static_dir().join(file), contents).expect("write a UI file");
    }
    let path = format!("/{wasm}");

    for (accept, encoding, body) in [
        ("gzip, deflate, br, zstd", Some("br"), "brotli module"),
        ("gzip", Some("gzip"), "gzip module"),
        ("identity", None, "raw module"),
    ] {
        let (head, got) = get_with(&app, &path, &[("accept-encoding", accept)]).await;
        assert_eq!(head.status, StatusCode::OK, "{accept}");
        assert_eq!(got, body, "{accept}");
        assert_eq!(header(&head, "content-encoding"), encoding, "{accept}");
        assert_eq!(header(&head, "vary"), Some("accept-encoding"), "{accept}");
        assert_eq!(
            header(&head, "cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{accept}"
        );
        assert_eq!(
            header(&head, "content-type"),
            Some("application/wasm"),
            "the type of the file, not of its compressed copy"
        );
    }

    // Revalidation by ETag answers 304 without a body.
    let (head, _) = get_with(&app, &path, &[("accept-encoding", "br")]).await;
    let etag = header(&head, "etag").expect("an ETag").to_owned();
    let (head, body) = get_with(
        &app,
        &path,
        &[("accept-encoding", "br"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(head.status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());

    // The page itself and deep links: the same index.html, revalidated on every load.
    for page in ["/", "/chats/some-chat"] {
        let (head, _) = get_with(&app, page, &[("accept-encoding", "gzip")]).await;
        assert_eq!(head.status, StatusCode::OK, "{page}");
        assert_eq!(header(&head, "cache-control"), Some("no-cache"), "{page}");
        assert!(
            header(&head, "etag").is_some(),
            "{page}: an ETag to revalidate with"
        );
    }
    let (head, body) = get_with(&app, "/", &[("accept-encoding", "br")]).await;
    assert_eq!(header(&head, "content-encoding"), Some("br"));
    assert_eq!(body, "brotli page");

    // trunk writes its hashes without leading zeros: one build in sixteen has a shorter one,
    // and its files are cached for good all the same.
    let short = "chat-web-765ce255ef6b60c.js";
    std::fs::write(app.static_dir().join(short), "glue").expect("write a UI file");
    let (head, body) = get_with(&app, &format!("/{short}"), &[]).await;
    assert_eq!((head.status, body.as_ref()), (StatusCode::OK, &b"glue"[..]));
    assert_eq!(
        header(&head, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    // An asset of another build is missing, not the page: index.html must never be cached
    // for a year under an asset's name.
    let (head, body) = get_with(&app, "/chat-web-fedcba9876543210.js", &[]).await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    assert_eq!(header(&head, "cache-control"), Some("no-cache"));
    assert_ne!(body, INDEX_HTML);
}

#[tokio::test]
async fn a_server_with_sign_up_closed_says_so_on_its_page() {
    let app = spawn_app_with(&["--sign-up", "closed"]).await;
    let closed_page = |html: &str| html.replacen("<html", "<html data-sign-up=\"closed\"", 1);
    let first = r#"<!doctype html><html lang="en"><title>t</title><main>chat</main></html>"#;
    std::fs::write(app.static_dir().join("index.html"), first).expect("write the page");
    // Its precompressed copy is the file's, not this page's: never sent.
    std::fs::write(app.static_dir().join("index.html.br"), "brotli page").expect("write");

    let mut etag = String::new();
    for page in ["/", "/index.html", "/chats/some-chat"] {
        let (head, body) = get_with(&app, page, &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(head.status, StatusCode::OK, "{page}");
        assert_eq!(body, closed_page(first), "{page}");
        assert_eq!(header(&head, "content-encoding"), None, "{page}");
        assert_eq!(
            header(&head, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(header(&head, "cache-control"), Some("no-cache"), "{page}");
        assert!(
            header(&head, "content-security-policy").is_some(),
            "{page}: the UI's headers"
        );
        etag = header(&head, "etag").expect("an ETag").to_owned();
    }
    let (head, body) = get_with(&app, "/", &[("if-none-match", &etag)]).await;
    assert_eq!(head.status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());

    // A new build deployed under the running server: its page, under a new ETag.
    let second = r#"<!DOCTYPE html><HTML lang="fr"><title>v2</title></HTML>"#;
    std::fs::write(app.static_dir().join("index.html"), second).expect("write the page");
    let (head, body) = get_with(&app, "/", &[("if-none-match", &etag)]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        body,
        r#"<!DOCTYPE html><HTML data-sign-up="closed" lang="fr"><title>v2</title></HTML>"#
    );
    assert_ne!(header(&head, "etag"), Some(etag.as_str()));

    // Other files of the folder are still themselves.
    std::fs::write(app.static_dir().join("robots.txt"), "User-agent: *").expect("write");
    let (head, body) = get_with(&app, "/robots.txt", &[]).await;
    assert_eq!(
        (head.status, body.as_ref()),
        (StatusCode::OK, &b"User-agent: *"[..])
    );

    // A server open to sign-up sends the page as built.
    let open = spawn_app().await;
    let (_, body) = get_with(&open, "/", &[]).await;
    assert_eq!(body, INDEX_HTML);
}

#[tokio::test]
async fn the_ui_carries_security_headers_and_a_csp_allowing_its_loader_by_hash() {
    let app = spawn_app().await;
    let header = |head: &http::response::Parts, name: &str| {
        head.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_owned()
    };
    for path in ["/", "/some/deep/link"] {
        let (head, _) = get(&app, path).await;
        assert_eq!(header(&head, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&head, "referrer-policy"), "no-referrer", "{path}");
        let policy = header(&head, "content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self' 'wasm-unsafe-eval';",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
        ] {
            assert!(
                policy.contains(directive),
                "{path}: {directive} in {policy}"
            );
        }
        assert!(!policy.contains("unsafe-inline"), "{policy}");
    }

    // A new build replaces index.html, loader script and all, under the running server: the
    // policy follows, allowing exactly the new inline script.
    let loader = "\nimport init from '/chat-web-1234.js';\nawait init();\n";
    std::fs::write(
        app.static_dir().join("index.html"),
        format!("<!doctype html><script type=\"module\">{loader}</script><script src=\"/x.js\"></script>"),
    )
    .expect("rewrite index.html");
    let (head, _) = get(&app, "/").await;
    let policy = header(&head, "content-security-policy");
    let hash = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(loader))
    };
    assert!(
        policy.starts_with(&format!(
            "script-src 'self' 'wasm-unsafe-eval' 'sha256-{hash}';"
        )),
        "{policy}"
    );
}

/// A native call to `path` with an empty message, as a client built from another proto would
/// make it; returns its status.
async fn native_call(server: &impl Server, path: &'static str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    within(grpc.ready()).await.expect("ready");
    let path = http::uri::PathAndQuery::from_static(path);
    within(grpc.unary(tonic::Request::new(Bytes::new()), path, RawCodec))
        .await
        .expect_err("a call to a service the server does not have")
}

#[tokio::test]
async fn a_call_to_an_unknown_service_is_unimplemented_not_the_ui() {
    let app = spawn_app().await;
    let status = native_call(&app, "/chat.Nope/Do").await;
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("/chat.Nope/Do"), "{status:?}");
    // Unknown methods of known services were already tonic's UNIMPLEMENTED.
    let status = native_call(&app, "/chat.Chat/Nope").await;
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");

    // gRPC-web, as a browser would call it: the status in the headers, its content type kept.
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(app.url("/chat.Nope/Do"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .expect("a valid request");
    let (head, body) = http1(request).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.headers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"12"[..]),
        "{head:?}"
    );
    assert_eq!(
        head.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/grpc-web+proto"[..])
    );
    assert!(body.is_empty(), "no UI in a gRPC answer: {body:?}");

    // The same path from a browser's address bar is still a deep link into the app.
    let (head, body) = get(&app, "/chat.Nope/Do").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, INDEX_HTML);
}

#[tokio::test]
async fn without_a_ui_unknown_services_are_unimplemented_and_pages_not_found() {
    let server = spawn_process(&[]).await;
    let status = native_call(&server, "/chat.Nope/Do").await;
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    let request = http::Request::builder()
        .method(Method::GET)
        .uri(server.url("/index.html"))
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    let (head, _) = http1(request).await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
}
