//! `POST /hook/stripe`: the second dynamic endpoint. The raw body is verified against
//! `Stripe-Signature` before anything is parsed; a bad signature gets 400 and nothing is stored.
//! A payment event is answered 200 only once it is on disk; an event type the log does not
//! track is acknowledged and dropped.

use super::log::Stored;
use super::stripe::{self, Parsed};
use super::Payments;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use std::sync::Arc;

/// Stripe's events are a few KiB; this is far above any of them.
const MAX_BODY_BYTES: usize = 256 * 1024;

fn answer(status: StatusCode, outcome: &'static str, text: &'static str) -> Response {
    metrics::counter!("cofferdam_payments_hook_total", "outcome" => outcome).increment(1);
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], text)
        .into_response()
}

pub async fn stripe(State(p): State<Arc<Payments>>, req: Request) -> Response {
    let config = &p.stripe;
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return answer(StatusCode::BAD_REQUEST, "body", "unreadable body\n"),
    };
    let signature = parts.headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    let now = jiff::Timestamp::now();
    if let Err(e) = stripe::verify(signature, &body, &config.secrets, config.tolerance_secs, now.as_second()) {
        tracing::warn!("payments: refused a Stripe event (400): {e}");
        return answer(StatusCode::BAD_REQUEST, "bad_signature", "bad signature\n");
    }
    match stripe::parse_event(&body, now) {
        Err(e) => {
            tracing::warn!("payments: a signed Stripe body is no event this log reads: {e}");
            answer(StatusCode::BAD_REQUEST, "malformed", "not an event\n")
        }
        Ok(Parsed::Ignored(kind)) => {
            tracing::debug!("payments: {kind} acknowledged, not stored");
            answer(StatusCode::OK, "ignored", "ignored\n")
        }
        Ok(Parsed::Store(payment)) => match p.log.store(*payment).await {
            Stored::New => answer(StatusCode::OK, "stored", "stored\n"),
            Stored::Duplicate => answer(StatusCode::OK, "duplicate", "already stored\n"),
            Stored::Failed => {
                let mut r = answer(StatusCode::SERVICE_UNAVAILABLE, "failed", "not stored, retry\n");
                r.headers_mut().insert(header::RETRY_AFTER, http::HeaderValue::from_static("10"));
                r
            }
        },
    }
}
