//! The web console of `nfscope serve`: `/ui/` and its four views (`/ui/rules`, `/ui/trace`,
//! `/ui/graph`, `/ui/failures`), and the HTML form of `/` for browsers.
//!
//! Owns the routes of the console and its assets — one HTML shell, one stylesheet and a few
//! vanilla JavaScript files, all embedded in the binary with `include_str!` (no CDN, no fonts, no
//! build step) — and the headers they are served with: a Content-Security-Policy that allows only
//! this origin's scripts and styles (no inline script, no eval), `nosniff`, no referrer, no
//! framing. The pages are static and read-only; their scripts call the JSON API (`/api/rules`,
//! `/api/trace`, `/api/graph/data`, `/api/failures`) under that API's own limits and keep their
//! state in the URL. It does not own the API nor what it answers.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The policy every console response carries: only this origin's scripts, styles, images and
/// API calls; no inline script or style, no eval, no plugins, no framing, forms post nowhere else.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const SHELL: &str = include_str!("assets/shell.html");
const HOME: &str = include_str!("assets/home.html");
const INDEX_HTML: &str = include_str!("assets/index.html");

/// The embedded static files: name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    ),
    ("common.js", JS, include_str!("assets/common.js")),
    ("rules.js", JS, include_str!("assets/rules.js")),
    ("trace.js", JS, include_str!("assets/trace.js")),
    ("graph.js", JS, include_str!("assets/graph.js")),
    ("failures.js", JS, include_str!("assets/failures.js")),
];

const JS: &str = "text/javascript; charset=utf-8";

/// The console's views: path segment and title.
const VIEWS: &[(&str, &str)] = &[
    ("rules", "Rules"),
    ("trace", "Trace"),
    ("graph", "Graph"),
    ("failures", "Failures"),
];

/// The console's routes, to merge into the server's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { html(HOME.to_owned()) }))
        .route("/ui/static/{name}", get(asset));
    for &(view, title) in VIEWS {
        let page = shell(view, title);
        router = router.route(
            &format!("/ui/{view}"),
            get(move || async move { html(page) }),
        );
    }
    router
}

/// The shell page of one view: its title, its `data-view` and its script.
fn shell(view: &str, title: &str) -> String {
    SHELL.replace("{{VIEW}}", view).replace("{{TITLE}}", title)
}

/// `/` for a browser (`Accept` names `text/html`): the index as a page with the console's link;
/// `None` for everything else (curl, Prometheus), which keeps the plain-text index.
pub fn html_index(headers: &HeaderMap, text: &str) -> Option<Response> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    if !accept
        .split(',')
        .any(|kind| kind.trim().starts_with("text/html"))
    {
        return None;
    }
    let routes: String = text
        .lines()
        .filter(|l| l.starts_with('/'))
        .filter_map(|l| {
            let (path, what) = l.split_once(' ')?;
            Some(format!(
                "<tr><td><code>{}</code></td><td>{}</td></tr>\n",
                escape(path),
                escape(what.trim())
            ))
        })
        .collect();
    Some(html(INDEX_HTML.replace("{{ROUTES}}", &routes)))
}

/// HTML-escapes text for the server-made index (the console's pages escape in the browser).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some(&(_, content_type, body)) => with_headers(
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
                .into_response(),
        ),
        None => with_headers(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such console file\n",
            )
                .into_response(),
        ),
    }
}

fn html(body: String) -> Response {
    with_headers(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
    )
}

/// The console's security headers.
fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_loads_only_embedded_scripts_and_no_inline_code() {
        for &(view, title) in VIEWS {
            let page = shell(view, title);
            assert!(!page.contains("{{"), "{view}: unfilled placeholder");
            assert!(
                page.contains(&format!("src=\"/ui/static/{view}.js\"")),
                "{view}"
            );
            for page in [page.as_str(), HOME, INDEX_HTML] {
                // Every script has a src under /ui/static/ that is embedded; no inline script,
                // no inline handler, no inline style (the CSP would refuse them).
                for tag in page.split("<script").skip(1) {
                    let src = tag
                        .split("src=\"/ui/static/")
                        .nth(1)
                        .and_then(|s| s.split('"').next())
                        .unwrap_or_else(|| panic!("inline script in {view}: {tag}"));
                    assert!(
                        ASSETS.iter().any(|(n, _, _)| *n == src),
                        "{src} not embedded"
                    );
                    assert!(
                        tag.split_once('>')
                            .is_some_and(|(_, rest)| rest.starts_with("</script>"))
                    );
                }
                for forbidden in [
                    " onclick=",
                    " onload=",
                    " onerror=",
                    " style=",
                    "<style",
                    "http://",
                    "https://",
                ] {
                    assert!(!page.contains(forbidden), "{view}: {forbidden}");
                }
            }
        }
        for (name, _, body) in ASSETS {
            // The SVG namespace is a name, not a fetch.
            let body = body.replace("http://www.w3.org/2000/svg", "");
            for forbidden in [
                "eval(",
                "new Function",
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "http://",
                "https://",
            ] {
                assert!(!body.contains(forbidden), "{name} uses {forbidden}");
            }
        }
    }

    #[test]
    fn the_html_index_is_only_for_browsers_and_escapes_what_it_shows() {
        let text = "nfscope exporter\n\n/metrics   the <metrics> & more\n";
        assert!(html_index(&HeaderMap::new(), text).is_none());
        let mut curl = HeaderMap::new();
        curl.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(html_index(&curl, text).is_none());
        let mut browser = HeaderMap::new();
        browser.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        let response = html_index(&browser, text).expect("html for a browser");
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            HeaderValue::from_static(CSP)
        );
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }
}
