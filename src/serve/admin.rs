//! The admin listener (loopback by default): `/healthz` and Prometheus `/metrics`.

use super::App;
use axum::extract::State;
use axum::routing::get;
use std::sync::Arc;

pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).with_state(app)
}

async fn healthz(State(app): State<Arc<App>>) -> (http::StatusCode, &'static str) {
    if app.collector.healthy() {
        (http::StatusCode::OK, "ok\n")
    } else {
        (http::StatusCode::SERVICE_UNAVAILABLE, "collector cannot write\n")
    }
}

async fn metrics(State(app): State<Arc<App>>) -> ([(http::HeaderName, &'static str); 1], String) {
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render())
}
