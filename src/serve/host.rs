//! `Host` (RFC 9112 3.2): an HTTP/1.1 request must carry exactly one, or get 400. HTTP/2 names
//! its authority in the request line (`:authority`) and HTTP/1.0 may omit it.

use axum::response::{IntoResponse, Response};
use http::{header, StatusCode, Version};

/// The 400 for a request whose `Host` is missing or repeated; none for a good one.
pub fn refuse<B>(req: &http::Request<B>) -> Option<Response> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let one = hosts.next().is_some() && hosts.next().is_none();
    if one {
        return None;
    }
    Some(
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
            "<!doctype html><title>Bad request</title><h1>Bad request</h1><p>An HTTP/1.1 request needs one Host header.</p>",
        )
            .into_response(),
    )
}
