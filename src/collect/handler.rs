//! `POST /submit/{form}`: check where it comes from and what it is, validate, queue to the
//! writer, and answer `303` only once the record is durable.

use super::answer::{self, After};
use super::cookie::{self, Signer};
use super::validate::{self, Valid};
use super::writer::{Job, Msg, Outcome};
use super::{Collector, Forms};
use crate::record::{Meta, Ref};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::Extension;
use http::{header, HeaderMap, StatusCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc::error::TrySendError, oneshot};

fn rejected(reason: &'static str) {
    metrics::counter!("cofferdam_collect_rejected_total", "reason" => reason).increment(1);
}

/// Times every post of a known form, whatever its answer (the admin page's p50/p99).
pub async fn submit(
    state: State<Arc<Collector>>,
    launch: Extension<Arc<Forms>>,
    form: Path<String>,
    req: Request,
) -> Response {
    let started = std::time::Instant::now();
    let timer = launch.forms.get(form.as_str()).map(|rt| rt.post_seconds.clone());
    let response = answer_post(state, launch, form, req).await;
    if let Some(timer) = timer {
        timer.record(started.elapsed().as_secs_f64());
    }
    response
}

/// `launch` is the build this request was pinned to when it came in: its form, prices and
/// pages decide the post, even if a reload swaps another in meanwhile.
async fn answer_post(
    State(c): State<Arc<Collector>>,
    Extension(launch): Extension<Arc<Forms>>,
    Path(form_name): Path<String>,
    req: Request,
) -> Response {
    let Some(rt) = launch.forms.get(&form_name) else {
        rejected("unknown_form");
        return launch.pages.not_found();
    };
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    if !origin_allowed(&launch, headers, parts.uri.authority()) {
        rejected("origin");
        return launch.pages.refuse(StatusCode::FORBIDDEN, "This form can only be sent from our own site.");
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form {
        rejected("content_type");
        return launch.pages.refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Please send the form from its page.");
    }
    let bytes = match read_body(body, c.max_body_bytes).await {
        Ok(b) => b,
        Err(status) => {
            rejected(if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "body" });
            return launch.pages.refuse(status, "The form could not be read. Please try again.");
        }
    };
    let posted = match validate::parse_body(&bytes) {
        Ok(p) => p,
        Err(e) => {
            rejected("encoding");
            return launch.pages.refuse(StatusCode::BAD_REQUEST, &format!("The form could not be read: {e}."));
        }
    };
    let form = &rt.form;
    if posted.get(&form.honeypot).is_some_and(|v| !v.trim().is_empty()) {
        // A bot: tell it all went well, store nothing.
        rejected("honeypot");
        return answer::see_other(&form.thanks, Vec::new());
    }
    let valid: Valid = match validate::validate(form, &launch.catalog, &posted) {
        Ok(v) => v,
        Err(errors) => {
            rejected("invalid");
            let json = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/json"));
            let referer = headers.get(header::REFERER).and_then(|v| v.to_str().ok());
            return launch.pages.invalid(&form_name, &posted, &errors, json, referer);
        }
    };
    let parent_ref = match &form.links_to {
        None => None,
        Some(parent) => match linked_ref(&c.signer, parent, headers) {
            Some(r) => Some(r),
            None => {
                rejected("cookie");
                return launch.pages.refuse(
                    StatusCode::FORBIDDEN,
                    "This offer belongs to an order placed in this browser; place the order first.",
                );
            }
        },
    };
    let ip = parts.extensions.get::<crate::serve::ClientIp>().map(|ip| ip.0.to_string());
    let meta = Meta {
        ip: ip.clone(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        duplicate_of: None,
    };
    let dedupe_key = {
        // One buffer hashed once: blake3 pays per call, and a post has a dozen short fields.
        let mut seen = Vec::with_capacity(256);
        seen.extend_from_slice(form_name.as_bytes());
        for (k, v) in &valid.fields {
            seen.push(0);
            seen.extend_from_slice(k.as_bytes());
            seen.push(b'=');
            seen.extend_from_slice(v.as_bytes());
        }
        seen.push(0);
        seen.extend_from_slice(ip.as_deref().unwrap_or("").as_bytes());
        if let Some(p) = &parent_ref {
            seen.extend_from_slice(p.to_string().as_bytes());
        }
        *blake3::hash(&seen).as_bytes()
    };
    if c.closed.load(Ordering::Relaxed) {
        return launch.pages.busy();
    }
    let after = After::new(rt, &valid, parent_ref.as_ref());
    let (reply, answer) = oneshot::channel();
    let job =
        Job { form: rt.name.clone(), valid, parent_ref, meta, received_at: jiff::Timestamp::now(), dedupe_key, reply };
    match c.queue.try_send(Msg::Job(job)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => {
            rejected("busy");
            c.oplog.shed();
            return launch.pages.busy();
        }
    }
    match answer.await {
        Ok(Outcome::Accepted(r)) => {
            c.oplog.accepted(&rt.name);
            after.see_other(&c, &launch, rt, &r, headers)
        }
        Ok(Outcome::Duplicate(r)) => after.see_other(&c, &launch, rt, &r, headers),
        Ok(Outcome::FollowedUp) => {
            rejected("followed_up");
            launch.pages.refuse(StatusCode::CONFLICT, "This offer was already added to your order.")
        }
        Ok(Outcome::SoldOut) => {
            rejected("sold_out");
            launch.pages.sold_out()
        }
        Ok(Outcome::Failed) | Err(_) => {
            rejected("write_failed");
            launch.pages.busy()
        }
    }
}

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, StatusCode> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let mut source: Option<&dyn std::error::Error> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(StatusCode::PAYLOAD_TOO_LARGE);
                }
                if s.to_string().contains("timed out") {
                    return Err(StatusCode::REQUEST_TIMEOUT);
                }
                source = s.source();
            }
            Err(StatusCode::BAD_REQUEST)
        }
    }
}

fn linked_ref(signer: &Signer, parent: &str, headers: &HeaderMap) -> Option<Ref> {
    let name = Signer::cookie_name(parent);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| cookie::find(h, &name))
        .and_then(|v| signer.verify(parent, v, jiff::Timestamp::now()))
}

/// `Origin`, or `Referer` when a browser sends no `Origin`, must be this site: the request's
/// own host (`Host`, or HTTP/2's `:authority`), `site.base_url` or one of `server.origins`. A post with neither is refused: every
/// browser sends `Origin` on a form post, so only scripts lack both.
fn origin_allowed(launch: &Forms, headers: &HeaderMap, authority: Option<&http::uri::Authority>) -> bool {
    let origin = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(o) => o.to_string(),
        None => match headers.get(header::REFERER).and_then(|v| v.to_str().ok()) {
            Some(r) => crate::config::origin_of(r),
            None => return false,
        },
    };
    if launch.origins.iter().any(|o| o.eq_ignore_ascii_case(&origin)) {
        return true;
    }
    // HTTP/2 names the host in the request's `:authority`, HTTP/1.1 in `Host`.
    let host = match headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
        Some(h) => h,
        None => authority.map(|a| a.as_str()).unwrap_or(""),
    };
    let bare = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
    !host.is_empty() && bare.eq_ignore_ascii_case(host)
}
