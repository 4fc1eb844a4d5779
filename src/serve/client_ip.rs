//! The client's address, resolved once per request and in this one place: the first address
//! in `server.client_ip_header` when that is set and parses (behind a proxy), else the peer's.
//! The rate limit, the double-submit key and a record's `meta.ip` all read this one value.

use http::{HeaderMap, HeaderName};
use std::net::{IpAddr, SocketAddr};

/// Resolved by the [`Front`](super::front::Front), which holds it to `server.rate_limit_per_ip`
/// and hands it to the collector (or puts it in the extensions of a request for the router).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    pub fn resolve(proxy_header: Option<&HeaderName>, headers: &HeaderMap, peer: SocketAddr) -> ClientIp {
        let forwarded = proxy_header
            .and_then(|name| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|first| first.trim().parse().ok());
        ClientIp(forwarded.unwrap_or(peer.ip()))
    }
}
