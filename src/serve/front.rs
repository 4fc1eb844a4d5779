//! What answers every request of the public listener, in one service instead of a stack of
//! layers: a static hit is answered from its prebuilt response; anything else is pinned to the
//! launch current when it came in, its client is resolved and held to the rate limit, its body
//! gets its deadline, a panic becomes a plain 500, and the security headers are added to
//! whatever answers it. An order post (`POST /submit/{form}`) then goes straight to the
//! collector, the rest to the router.
//!
//! One service rather than a tower layer each, and no router for the order post: axum clones
//! every layer's boxed service on every request, and its routing, extension map and `Path`
//! extractor cost an order post more than its validation did.

use super::conn::Handler;
use super::{client_ip::ClientIp, deadline, App};
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, FutureExt};
use http::{header, HeaderMap, StatusCode};
use hyper::body::Incoming;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

pub struct Front {
    app: Arc<App>,
    /// The routes (the payment webhook, static files, what else the collector routes), with no
    /// layers of their own.
    routes: axum::Router,
    /// Added to every answer that does not set them itself.
    security: HeaderMap,
    body_timeout: Duration,
}

impl Front {
    pub fn new(app: Arc<App>, routes: axum::Router) -> Front {
        let mut security = HeaderMap::new();
        super::headers::add_security(&mut security, &app.config);
        let body_timeout = Duration::from_millis(app.config.body_timeout_ms);
        Front { app, routes, security, body_timeout }
    }

    /// Everything but the static hit. Not an `async fn`, nor an `async` block: the request is
    /// looked at, wrapped and handed to what answers it before the answer's future is made, so
    /// that future (boxed, and moved whole, per request) holds it once, where a future that
    /// took it and handed it on would keep room for it twice (bench/README.md, 2026-12-08).
    fn full(
        self: &Arc<Self>,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send + use<> {
        let app = &self.app;
        let ip = ClientIp::resolve(app.client_ip_header.as_ref(), req.headers(), peer);
        if app.limiter.as_ref().is_some_and(|limiter| !limiter.allow(ip.0)) {
            app.metrics.rate_limited.inc();
            let refused = (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "").into_response();
            return Either::Left(std::future::ready(self.secured(refused)));
        }
        // Each request is decided by the launch current when it came in, whole.
        let launch = app.launch.load_full();
        let mut req = deadline::with_body_deadline(req, self.body_timeout);
        let answer = if crate::collect::is_order_post(req.method(), req.uri().path()) {
            Either::Left(app.collector.post(launch.forms.clone(), Some(ip.0), req))
        } else {
            req.extensions_mut().insert(ip);
            req.extensions_mut().insert(launch.forms.clone());
            req.extensions_mut().insert(launch);
            let routed = self.routes.clone().oneshot(req);
            Either::Right(routed.map(|r| r.unwrap_or_else(|infallible| match infallible {})))
        };
        let front = self.clone();
        Either::Right(
            AssertUnwindSafe(answer)
                .catch_unwind()
                .map(move |answered| front.secured(answered.unwrap_or_else(|_| super::internal_error()))),
        )
    }

    /// `response` with the security headers it does not set itself.
    fn secured(&self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        // One lookup a header, and no room reserved ahead: a page's prebuilt answer has them
        // all, and reserving more would double its exactly-full map, which hyper keeps for the
        // connection's life; an answer with room for them (a 303) never regrows.
        for (name, value) in self.security.iter() {
            headers.entry(name).or_insert_with(|| value.clone());
        }
        response
    }
}

impl Handler for Front {
    fn answer(
        self: &Arc<Self>,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send + use<> {
        // The request a spike is made of, the prebuilt 200 of a static hit, gains nothing from
        // the rest. The rest is boxed: hyper keeps room for a connection's request future for
        // as long as the connection lives, and an order post's future is kilobytes, which
        // 10,000 idle keep-alive connections would each hold.
        match super::fast_path(&self.app, &req) {
            // The request lives until hyper first polls its answer. hyper looks for the next
            // request's bytes before that, and while this one's head still shares its read
            // buffer, it reads into a fresh one that stays untouched until the next request:
            // an idle keep-alive connection then holds no dirty page of read buffer (~4 KiB).
            Some(response) => Either::Left(async move {
                drop(req);
                response
            }),
            None => Either::Right(Box::pin(self.full(req, peer))),
        }
    }
}
