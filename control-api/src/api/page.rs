//! `GET /`: the status page, one file of HTML, CSS and JavaScript (`page.html`) embedded in the
//! binary. No build step, and nothing loaded from elsewhere: the page reads the public API
//! (`/api/v1/vlans`, `ports`, `stats`, `fdb` and `events`) with `fetch`, and nothing else.
//!
//! The page needs no token; the API calls it makes do, when one is configured: the page asks
//! for it and keeps it in the tab's `sessionStorage`. It is served with a Content-Security-Policy
//! that allows its one inline script and one inline style by their SHA-256 hashes, computed here
//! from the embedded file, and connections to its own origin only.

use std::sync::LazyLock;

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use sha2::{Digest, Sha256};

/// The page.
pub const PAGE: &str = include_str!("page.html");

/// The Content-Security-Policy the page is served with (see [`csp`]).
pub static CSP: LazyLock<String> = LazyLock::new(|| csp(PAGE));

/// The policy for `page`: nothing but its own inline `<script>` and `<style>` (by hash) and
/// requests to its own origin; no plugin, frame, form target, base URL or embedding elsewhere.
/// An element that is missing gets `'none'`.
pub fn csp(page: &str) -> String {
    let hash = |tag| {
        inline(page, tag).map_or_else(
            || "'none'".to_string(),
            |body| format!("'sha256-{}'", base64(&Sha256::digest(body.as_bytes()))),
        )
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash("script"),
        hash("style")
    )
}

/// The text of the first `<tag>...</tag>` element (no attributes) of `page`: what a browser
/// hashes for a CSP hash source.
fn inline<'a>(page: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = page.find(&open)? + open.len();
    let len = page[start..].find(&format!("</{tag}>"))?;
    Some(&page[start..start + len])
}

/// Standard base64 with padding (RFC 4648, section 4), as CSP hash sources are written.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The status page: VLANs with their ports, live rates, drops and the event stream.
#[utoipa::path(get, path = "/", tag = "page", security(()),
    responses((status = 200, content_type = "text/html", body = String,
        description = "the status page (HTML, CSS and JavaScript in one document, nothing \
            loaded from elsewhere). It needs no token; the API routes it reads do, when one is \
            configured: it asks for it and keeps it in the tab's sessionStorage",
        headers(
            ("Content-Security-Policy" = String, description = "only the page's own inline \
                script and style (by SHA-256 hash) and requests to its own origin"),
            ("X-Content-Type-Options" = String, description = "`nosniff`"),
            ("Cache-Control" = String, description = "`no-store`"),
            ("Referrer-Policy" = String, description = "`no-referrer`"),
        ))))]
pub(super) async fn page() -> impl IntoResponse {
    let csp = HeaderValue::from_str(&CSP).unwrap_or(HeaderValue::from_static("default-src 'none'"));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, csp),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, out) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), out, "{input:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xfe]), "+//+");
    }

    #[test]
    fn the_policy_allows_exactly_the_pages_script_and_style() {
        // The hash of `alert(1)`, as the CSP specification's examples and browsers compute it.
        let p = csp("<style>b{}</style><script>alert(1)</script>");
        assert!(
            p.contains("script-src 'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"),
            "{p}"
        );
        assert!(p.starts_with("default-src 'none';"), "{p}");
        assert!(!p.contains("unsafe"), "{p}");
        assert!(csp("<p>no script</p>").contains("script-src 'none'"));
        // The real page has one of each, and the policy names both.
        for tag in ["script", "style"] {
            assert_eq!(
                PAGE.matches(&format!("<{tag}")).count(),
                1,
                "<{tag}> elements"
            );
            assert!(inline(PAGE, tag).is_some_and(|s| s.len() > 100), "<{tag}>");
        }
        assert!(!CSP.contains("'none'; style") && !CSP.contains("style-src 'none'"));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_writes_no_markup_from_data() {
        let lower = PAGE.to_ascii_lowercase();
        for banned in [
            "http://",
            "https://",
            "//cdn",
            "@import",
            "@font-face",
            "url(",
            "src=",
            "innerhtml",
            "outerhtml",
            "insertadjacenthtml",
            "document.write",
            "localstorage",
            "document.cookie",
            "eval(",
            "new function",
        ] {
            assert!(!lower.contains(banned), "the page contains {banned:?}");
        }
        assert!(PAGE.contains("sessionStorage"));
        assert!(PAGE.contains("credentials: \"omit\""));
    }
}
