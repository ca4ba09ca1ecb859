//! The Content-Security-Policy of the web UI: derived from its `index.html`, whose inline
//! loader script (written by trunk, different in every build) it allows by hash.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderValue;
use sha2::{Digest, Sha256};

use crate::files::FromFile;

/// What the UI may load and run: its own files only, WebAssembly compilation
/// ('wasm-unsafe-eval'), and the inline loader script trunk writes into index.html, allowed by
/// its hash, since it differs with every build. No other inline script, no `eval`, no plugin,
/// no framing, no form posting elsewhere, no `<base>`: markup injected into the page could
/// neither run nor send anything anywhere.
const POLICY_WITHOUT_SCRIPTS: &str = "default-src 'none'; connect-src 'self'; img-src 'self' data:; \
     style-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// The Content-Security-Policy of the UI, derived from index.html and derived again whenever
/// the file changes (a new build deployed under a running server has a new loader script).
pub struct ContentSecurityPolicy(FromFile<HeaderValue>);

impl ContentSecurityPolicy {
    pub fn new(index: PathBuf) -> Self {
        Self(FromFile::new(index, policy_for))
    }

    pub fn header(&self) -> HeaderValue {
        self.0.get()
    }
}

/// The policy for a page whose inline scripts are those of `html`.
fn policy_for(html: &str) -> HeaderValue {
    let hashes: String = inline_scripts(html)
        .map(|script| format!(" 'sha256-{}'", BASE64.encode(Sha256::digest(script))))
        .collect();
    let policy = format!("script-src 'self' 'wasm-unsafe-eval'{hashes}; {POLICY_WITHOUT_SCRIPTS}");
    // Only base64, quotes and ASCII words: always a valid header value.
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// The contents of the `<script>` elements of `html` that have no `src`, exactly as written,
/// since a CSP hash covers the exact text.
fn inline_scripts(html: &str) -> impl Iterator<Item = &str> {
    let lower = html.to_ascii_lowercase();
    let mut scripts = Vec::new();
    let mut from = 0;
    while let Some(start) = lower[from..].find("<script").map(|at| from + at) {
        let Some(open_end) = lower[start..].find('>').map(|at| start + at + 1) else {
            break;
        };
        let Some(close) = lower[open_end..].find("</script").map(|at| open_end + at) else {
            break;
        };
        if !lower[start..open_end].contains(" src=") {
            scripts.push(&html[open_end..close]);
        }
        from = close;
    }
    scripts.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_found_exactly_and_external_ones_skipped() {
        let html = "<html><head><SCRIPT type=\"module\">\nimport init from '/a.js';\n</SCRIPT>\
                    <script src=\"/b.js\"></script><script>x()</script></head></html>";
        assert_eq!(
            inline_scripts(html).collect::<Vec<_>>(),
            ["\nimport init from '/a.js';\n", "x()"]
        );
        assert_eq!(inline_scripts("<p>no scripts</p>").count(), 0);
        assert_eq!(inline_scripts("<script>unterminated").count(), 0);
    }

    #[test]
    fn the_policy_allows_each_inline_script_by_hash_and_nothing_else_inline() {
        let policy = policy_for("<script>x()</script>");
        let policy = policy.to_str().unwrap();
        // echo -n 'x()' | openssl dgst -sha256 -binary | base64
        assert!(
            policy.starts_with(
                "script-src 'self' 'wasm-unsafe-eval' 'sha256-D6IGS8VMvCoyaR/l0h9tERrBTATY01CoPS7l6xDv0kI='; "
            ),
            "{policy}"
        );
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.contains("default-src 'none'"), "{policy}");
    }
}
