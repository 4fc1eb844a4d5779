//! Pages with a receipt slot (`<!-- cofferdam:receipt -->`, optionally closed by
//! `<!-- /cofferdam:receipt -->` around generic text): served prebuilt to everyone, except to a
//! request carrying a receipt cookie that verifies, which gets the page with its receipt in the
//! slot. Both are `private, no-store`, so no cache ever hands one buyer's page to another.

use super::App;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};

pub const OPEN: &str = "<!-- cofferdam:receipt -->";
pub const CLOSE: &str = "<!-- /cofferdam:receipt -->";
pub const CACHE_CONTROL: &str = "private, no-store";

/// A page cut around its receipt slot.
pub struct Slot {
    before: Bytes,
    after: Bytes,
}

impl Slot {
    /// The slot of an HTML page, if it has one: the marker, or the markers and what is between.
    pub fn find(html: &Bytes) -> Option<Slot> {
        let text = std::str::from_utf8(html).ok()?;
        let start = text.find(OPEN)?;
        let end = match text[start..].find(CLOSE) {
            Some(i) => start + i + CLOSE.len(),
            None => start + OPEN.len(),
        };
        Some(Slot { before: html.slice(..start), after: html.slice(end..) })
    }
}

/// The page with the buyer's receipt, when the request carries one; none otherwise (the
/// prebuilt page answers).
pub fn respond(app: &App, forms: &crate::collect::Forms, slot: &Slot, req: &Request) -> Option<Response> {
    if !req.headers().contains_key(header::COOKIE) {
        return None;
    }
    let receipt = app.collector.receipt_html(forms, req.headers())?;
    app.metrics.static_ok.inc();
    let len = slot.before.len() + receipt.len() + slot.after.len();
    let body = if req.method() == Method::HEAD {
        Body::empty()
    } else {
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&slot.before);
        b.extend_from_slice(receipt.as_bytes());
        b.extend_from_slice(&slot.after);
        Body::from(b)
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    h.insert(header::VARY, HeaderValue::from_static("Cookie"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Some(response)
}
