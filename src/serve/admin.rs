//! The admin listener (loopback by default): `/healthz`, Prometheus `/metrics`, and the live
//! admin page on `/` ([`dashboard`](super::dashboard)).

use super::dashboard;
use super::samples::Samples;
use super::App;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// What the admin page draws from: the ring of samples and what it says about the server.
pub struct Board {
    pub samples: Arc<Samples>,
    pub info: dashboard::Info,
}

pub fn router(app: Arc<App>, board: Arc<Board>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(app.clone())
        .merge(axum::Router::new().route("/", get(page)).with_state((app, board)))
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

async fn page(State((app, board)): State<(Arc<App>, Arc<Board>)>) -> impl IntoResponse {
    let now = std::time::Instant::now();
    // The forms and caps of the launch serving now: a reload may have added a form or a cap.
    let info = board.info.clone().of_launch(&app.launch.load().source.config);
    let html = board.samples.with(|ring| dashboard::render(ring, now, &info));
    let csp = format!("{}; frame-ancestors 'none'", crate::chart::html::content_security_policy());
    (
        [
            (http::header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (http::header::CACHE_CONTROL, "no-store".into()),
            (http::header::CONTENT_SECURITY_POLICY, csp),
            (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
            (http::header::REFERRER_POLICY, "no-referrer".into()),
        ],
        html,
    )
}
