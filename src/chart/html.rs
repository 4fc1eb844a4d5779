//! A whole page around charts: one inline style sheet, allowed by its hash in the page's
//! Content-Security-Policy; no script and nothing loaded from anywhere else, so the page works
//! offline, as a file, and with JavaScript off.

use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const CSS: &str = "\
:root{font-family:system-ui,sans-serif;color:#222;background:#f6f6f4}\
body{margin:0 auto;max-width:1240px;padding:14px}\
h1{font-size:20px;margin:0 0 2px}h2{font-size:16px;margin:22px 0 8px}\
p.sub{color:#555;margin:0 0 14px;font-size:14px}\
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:10px}\
.tile{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 10px}\
.tile b{display:block;font-size:22px;font-variant-numeric:tabular-nums}\
.tile span{color:#555;font-size:13px}\
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(480px,100%),1fr));gap:12px}\
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}\
figure svg{width:100%;height:auto;display:block}\
figcaption{font-size:13px;color:#444;margin-top:4px}\
.wide{overflow-x:auto}\
table{border-collapse:collapse;background:#fff;font-size:14px}\
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.bad,.tile .bad{color:#b00;font-weight:600}.ok,.tile .ok{color:#070;font-weight:600}";

/// The policy for a chart page: nothing but its own style sheet.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS.as_bytes()));
        format!("default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'")
    })
}

/// `<!doctype html>…`: `title` (escaped here), `head` (trusted markup, e.g. a refresh) and
/// `body` (markup whose text the caller escaped).
pub fn page(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">{head}<title>{}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n",
        content_security_policy(),
        super::escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_page_style_sheet() {
        let html = page("a <b>", "", "<p>x</p>");
        let style = html.split("<style>").nth(1).unwrap().split("</style>").next().unwrap();
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style.as_bytes()));
        assert!(content_security_policy().contains(&format!("style-src 'sha256-{hash}'")));
        assert!(content_security_policy().starts_with("default-src 'none'"));
        assert!(!content_security_policy().contains("script-src") && !html.contains("<script"));
        assert!(html.contains("<title>a &lt;b&gt;</title>"));
    }
}
