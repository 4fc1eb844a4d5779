//! What every request the router answers goes through, in one service instead of a stack of
//! layers: it is pinned to the launch current when it came in, its client is resolved and held
//! to the rate limit, its body gets its deadline, a panic becomes a plain 500, and the security
//! headers are added to whatever answers it.
//!
//! One service rather than a tower layer each: axum clones every layer's boxed service on every
//! request, which cost an order post more than its validation did.

use super::{client_ip::ClientIp, deadline, App};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, FutureExt};
use http::{header, HeaderMap, StatusCode};
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::ServiceExt;

#[derive(Clone)]
pub struct Front {
    app: Arc<App>,
    /// The routes (the collector's posts, static files), with no layers of their own.
    routes: axum::Router,
    /// Added to every answer that does not set them itself.
    security: Arc<HeaderMap>,
    body_timeout: Duration,
}

impl Front {
    pub fn new(app: Arc<App>, routes: axum::Router) -> Front {
        let mut security = HeaderMap::new();
        super::headers::add_security(&mut security, &app.config);
        let body_timeout = Duration::from_millis(app.config.body_timeout_ms);
        Front { app, routes, security: Arc::new(security), body_timeout }
    }

    async fn answer(self, mut req: Request) -> Response {
        let app = &self.app;
        let mut response = 'answer: {
            if let Some(ip) = ClientIp::resolve(app.client_ip_header.as_ref(), req.headers(), req.extensions()) {
                req.extensions_mut().insert(ip);
                if app.limiter.as_ref().is_some_and(|limiter| !limiter.allow(ip.0)) {
                    app.metrics.rate_limited.inc();
                    break 'answer (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "").into_response();
                }
            }
            // Each request is decided by the launch current when it came in, whole.
            let launch = app.launch.load_full();
            req.extensions_mut().insert(launch.forms.clone());
            req.extensions_mut().insert(launch);
            let req = deadline::with_body_deadline(req, self.body_timeout);
            match AssertUnwindSafe(self.routes.oneshot(req)).catch_unwind().await {
                Ok(Ok(response)) => response,
                Ok(Err(infallible)) => match infallible {},
                Err(_) => super::internal_error(),
            }
        };
        let headers = response.headers_mut();
        headers.reserve(self.security.len());
        for (name, value) in self.security.iter() {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        response
    }
}

impl tower::Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let front = self.clone();
        Box::pin(async move { Ok(front.answer(req).await) })
    }
}
