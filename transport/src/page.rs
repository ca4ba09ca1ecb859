//! The single-page app's page with the server's settings on its root element: attributes the
//! server adds to `<html>` (`data-sign-up="closed"` on a server whose sign-up is closed), so
//! that the style sheet follows the server's settings without a request or a line of the
//! app's code (whose bundle has a byte budget): the sign-in page then offers "Sign in" only.
//!
//! Such a page is not the built file, whose precompressed copies no longer match it: it is
//! served from memory, uncompressed (about 1.6 KB), with an ETag of its own, and made again
//! whenever the file changes (a new build deployed under a running server). A server that adds
//! nothing serves the file itself with its copies (`router::ui_files`).

use std::path::PathBuf;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::files::FromFile;

pub struct Page(FromFile<Rendered>);

/// The page as served, with the ETag of exactly these bytes.
#[derive(Clone)]
struct Rendered {
    html: Bytes,
    etag: HeaderValue,
}

impl Page {
    /// The page of `index` with `attributes` (written as in HTML) added to its root element.
    pub fn new(index: PathBuf, attributes: &'static str) -> Self {
        Self(FromFile::new(index, move |file| {
            let html = Bytes::from(with_root_attributes(file, attributes));
            let digest = Sha256::digest(&html);
            let hex: String = digest[..12]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            let etag = HeaderValue::from_str(&format!("\"page-{hex}\""))
                .unwrap_or_else(|_| HeaderValue::from_static("\"page\""));
            Rendered { html, etag }
        }))
    }

    /// The answer to a request for the page: the page, or 304 when the browser's copy (its
    /// `If-None-Match`) is current; 405 to anything but GET and HEAD, as for the files.
    pub fn respond(&self, method: &Method, headers: &HeaderMap) -> axum::response::Response {
        if method != Method::GET && method != Method::HEAD {
            let mut response = axum::response::Response::new(axum::body::Body::empty());
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET,HEAD"));
            return response;
        }
        let Rendered { html, etag } = self.0.get();
        let current = headers
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|list| list.split(','))
            .any(|tag| tag.trim() == etag || tag.trim() == "*");
        let mut response = if current {
            let mut response = axum::response::Response::new(axum::body::Body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            let mut response = axum::response::Response::new(axum::body::Body::from(html));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        };
        // `ui_files` adds the Cache-Control of every page (`no-cache`).
        response.headers_mut().insert(ETAG, etag);
        response
    }
}

/// `html` with `attributes` added to its `<html>` start tag, or, for a page that has none
/// (the element is then implied), with one carrying them after the doctype.
fn with_root_attributes(html: &str, attributes: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let root = lower.match_indices("<html").map(|(at, _)| at).find(|&at| {
        lower[at + "<html".len()..]
            .chars()
            .next()
            .is_some_and(|next| next.is_ascii_whitespace() || next == '>' || next == '/')
    });
    match root {
        Some(at) => {
            let name_end = at + "<html".len();
            format!("{} {attributes}{}", &html[..name_end], &html[name_end..])
        }
        None => {
            let after_doctype = lower
                .starts_with("<!doctype")
                .then(|| lower.find('>').map(|end| end + 1))
                .flatten()
                .unwrap_or(0);
            format!(
                "{}<html {attributes}>{}",
                &html[..after_doctype],
                &html[after_doctype..]
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attributes_go_on_the_root_element_whatever_its_case_or_absence() {
        let closed = r#"data-sign-up="closed""#;
        assert_eq!(
            with_root_attributes(
                "<!doctype html>\n<html lang=\"en\"><body></body></html>",
                closed
            ),
            "<!doctype html>\n<html data-sign-up=\"closed\" lang=\"en\"><body></body></html>"
        );
        assert_eq!(
            with_root_attributes("<!DOCTYPE html><HTML><p>x</p></HTML>", closed),
            "<!DOCTYPE html><HTML data-sign-up=\"closed\"><p>x</p></HTML>"
        );
        // `<htmlx>` is not the root element; a page without one gets one.
        assert_eq!(
            with_root_attributes("<!doctype html><title>t</title><htmlx>", closed),
            "<!doctype html><html data-sign-up=\"closed\"><title>t</title><htmlx>"
        );
        assert_eq!(
            with_root_attributes("<p>bare</p>", closed),
            "<html data-sign-up=\"closed\"><p>bare</p>"
        );
    }
}
