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
    // Read when scraped, from the same answer as /healthz: present from start-up, and right
    // even when the writer thread is gone and can no longer report.
    ::metrics::gauge!("cofferdam_collect_healthy").set(if app.collector.healthy() { 1.0 } else { 0.0 });
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render())
}
