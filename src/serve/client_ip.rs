//! The client's address, resolved once per request and in this one place: the first address
//! in `server.client_ip_header` when that is set and parses (behind a proxy), else the peer's.
//! The rate limit, the double-submit key and a record's `meta.ip` all read this one value.

use super::App;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderName, StatusCode};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Put in every request's extensions by [`resolve_and_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    pub fn resolve(proxy_header: Option<&HeaderName>, headers: &HeaderMap, ext: &http::Extensions) -> Option<ClientIp> {
        let forwarded = proxy_header
            .and_then(|name| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|first| first.trim().parse().ok());
        forwarded.or_else(|| ext.get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip())).map(ClientIp)
    }
}

/// Every request of the public router, posts included: resolve the client, then hold it to
/// `server.rate_limit_per_ip`.
pub async fn resolve_and_limit(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let ip = ClientIp::resolve(app.client_ip_header.as_ref(), req.headers(), req.extensions());
    if let Some(ip) = ip {
        req.extensions_mut().insert(ip);
        if app.limiter.as_ref().is_some_and(|limiter| !limiter.allow(ip.0)) {
            app.metrics.rate_limited.inc();
            return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "").into_response();
        }
    }
    next.run(req).await
}
