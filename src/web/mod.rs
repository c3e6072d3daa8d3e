//! The browser pages, embedded in the binary (no build step, no CDN): the
//! demo chat at `/` on the main listener (`[demo] enabled`) and the live
//! node dashboard at `/dashboard` wherever `/metrics` is served. The
//! dashboard's data comes over a WebSocket (`/dashboard/ws`) from the worker
//! that accepted it (`worker/app.rs`), not from polling `/metrics`.
//!
//! uPlot (MIT, `assets/vendor/uPlot.LICENSE`) draws the dashboard's charts.

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Request path it answers.
    pub path: &'static str,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! asset {
    ($path:expr, $ty:expr, $file:expr) => {
        Asset { path: $path, content_type: $ty, body: include_bytes!(concat!("assets/", $file)) }
    };
}

/// The demo chat (main listener, `[demo] enabled`).
static DEMO: &[Asset] = &[
    asset!("/", HTML, "demo/index.html"),
    asset!("/demo/chat.js", JS, "demo/chat.js"),
    asset!("/demo/style.css", CSS, "demo/style.css"),
];

/// The dashboard (the listener that serves `/metrics`).
static DASHBOARD: &[Asset] = &[
    asset!("/dashboard", HTML, "dashboard/index.html"),
    asset!("/dashboard/dashboard.js", JS, "dashboard/dashboard.js"),
    asset!("/demo/style.css", CSS, "demo/style.css"),
];

/// Shared by both pages.
static VENDOR: &[Asset] = &[
    asset!("/vendor/uPlot.iife.min.js", JS, "vendor/uPlot.iife.min.js"),
    asset!("/vendor/uPlot.min.css", CSS, "vendor/uPlot.min.css"),
];

/// The path of the dashboard's live feed (a WebSocket upgrade).
pub const DASHBOARD_WS: &str = "/dashboard/ws";

/// The embedded file for `path` (query string already removed), among the
/// demo's when `demo` and the dashboard's when `dashboard`.
pub fn find(path: &str, demo: bool, dashboard: bool) -> Option<&'static Asset> {
    let pick = |set: &'static [Asset]| set.iter().find(|a| a.path == path);
    let mut found = None;
    if demo {
        found = pick(DEMO);
    }
    if found.is_none() && dashboard {
        found = pick(DASHBOARD);
    }
    if found.is_none() && (demo || dashboard) {
        found = pick(VENDOR);
    }
    found
}

/// Headers sent with every page: no caching of a page that changes with the
/// binary, no MIME sniffing, and scripts, styles and sockets only from this
/// origin.
pub fn headers() -> [(&'static str, String); 3] {
    [
        ("Cache-Control", "no-cache".to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
        (
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
             style-src 'self' 'unsafe-inline'"
                .to_string(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_site_serves_only_its_pages() {
        assert!(find("/", true, false).is_some());
        assert!(find("/", false, true).is_none(), "the chat is not on the admin listener");
        assert!(find("/dashboard", false, true).is_some());
        assert!(find("/dashboard", true, false).is_none(), "no dashboard on the main listener");
        assert!(find("/vendor/uPlot.iife.min.js", false, true).is_some());
        assert!(find("/vendor/uPlot.iife.min.js", false, false).is_none());
        assert!(find("/etc/passwd", true, true).is_none());
    }

    #[test]
    fn pages_reference_only_embedded_files() {
        // Every local src/href in the HTML is an embedded asset, so the page
        // works without network access beyond this server.
        for (site, demo, dash) in [(DEMO, true, false), (DASHBOARD, false, true)] {
            for a in site.iter().filter(|a| a.content_type == HTML) {
                let html = std::str::from_utf8(a.body).unwrap();
                for attr in ["src=\"", "href=\""] {
                    for piece in html.split(attr).skip(1) {
                        let target = piece.split('"').next().unwrap();
                        assert!(!target.starts_with("http"), "{}: external {target}", a.path);
                        if target.starts_with('/') {
                            assert!(find(target, demo, dash).is_some(), "{}: {target}", a.path);
                        }
                    }
                }
            }
        }
    }
}
