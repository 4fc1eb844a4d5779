//! `POST /submit/{form}`: check where it comes from and what it is, validate, queue to the
//! writer, and answer `303` only once the record is durable.

use super::answer::{self, After};
use super::cookie::{self, Signer};
use super::validate::{self, Posted, Valid};
use super::writer::{Job, Msg, Outcome};
use super::{Collector, FormRuntime, Forms};
use crate::record::{Meta, Ref};
use crate::text::first_chars;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use http::{header, HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use std::borrow::Cow;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc::error::TrySendError, oneshot};

fn rejected(reason: &'static str) {
    metrics::counter!("cofferdam_collect_rejected_total", "reason" => reason).increment(1);
}

/// Whether the front hands a request straight to [`Collector::post`]: a `POST /submit/{form}`
/// whose form name needs no decoding (a name with escapes, and any other method on the path, go
/// through the router's `/submit/{form}`, which decodes and answers them alike).
pub fn is_order_post(method: &Method, path: &str) -> bool {
    method == Method::POST && submitted_form(path).is_some()
}

fn submitted_form(path: &str) -> Option<&str> {
    let form = path.strip_prefix("/submit/")?;
    (!form.is_empty() && !form.contains(['/', '%'])).then_some(form)
}

impl Collector {
    /// `POST /submit/{form}` from `ip`, for which [`is_order_post`] holds, straight from the
    /// front. `launch` is the build this request was pinned to when it came in: its form,
    /// prices and pages decide the post, even if a reload swaps another in meanwhile.
    ///
    /// Made before the front's future, which takes it whole: a future that took the request
    /// and handed it to this one would keep room for it twice (bench/README.md, 2026-12-08).
    pub fn post(
        self: &Arc<Self>,
        launch: Arc<Forms>,
        ip: Option<IpAddr>,
        req: Request,
    ) -> impl Future<Output = Response> + Send + 'static {
        answer_post(self.clone(), launch, None, ip, req)
    }
}

/// The router's `POST /submit/{form}`: a form name with escapes, or a post through the router.
pub async fn submit(
    State(c): State<Arc<Collector>>,
    Extension(launch): Extension<Arc<Forms>>,
    Path(form): Path<String>,
    req: Request,
) -> Response {
    let ip = req.extensions().get::<crate::serve::ClientIp>().map(|ip| ip.0);
    answer_post(c, launch, Some(form), ip, req).await
}

/// Records how long a post of a known form took, whatever its answer (the admin page's p50 and
/// p99), when its answer is done, or abandoned: a post whose visitor left was a post too, and
/// may still have become a record.
struct Timer<'a> {
    seconds: &'a metrics::Histogram,
    started: std::time::Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.seconds.record(self.started.elapsed().as_secs_f64());
    }
}

/// A post of form `named` (none: the one its path names, which needs no decoding). Not an
/// `async fn`: the request is split before the future is made, which then holds its parts
/// once, where an `async fn` would keep room for the request beside them.
fn answer_post(
    c: Arc<Collector>,
    launch: Arc<Forms>,
    named: Option<String>,
    ip: Option<IpAddr>,
    req: Request,
) -> impl Future<Output = Response> + Send + 'static {
    let started = std::time::Instant::now();
    let (request, body) = req.into_parts();
    async move {
        let form = named.as_deref().or_else(|| submitted_form(request.uri.path()));
        let Some(rt) = form.and_then(|form| launch.forms.get(form)) else {
            rejected("unknown_form");
            return launch.pages.not_found();
        };
        let _timer = Timer { seconds: &rt.post_seconds, started };
        if let Some(refusal) = refused_sender(&launch, &request) {
            return refusal;
        }
        let bytes = match read_body(body, c.max_body_bytes).await {
            Ok(b) => b,
            Err(status) => {
                rejected(if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "body" });
                return launch.pages.refuse(status, "The form could not be read. Please try again.");
            }
        };
        let (after, answer) = match queue(&c, &launch, rt, ip, request, bytes) {
            Queued::Waiting(after, answer) => (after, answer),
            Queued::Answered(refusal) => return refusal,
        };
        settle(&c, &launch, rt, after, answer.await)
    }
}

/// The answer to a post the writer has decided.
fn settle(
    c: &Collector,
    launch: &Forms,
    rt: &FormRuntime,
    after: After,
    outcome: Result<Outcome, oneshot::error::RecvError>,
) -> Response {
    match outcome {
        Ok(Outcome::Accepted(record) | Outcome::Duplicate(record)) => after.see_other(c, launch, rt, record),
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

/// The refusal of a post from elsewhere, or of something other than a form, before its body
/// is read.
fn refused_sender(launch: &Forms, request: &http::request::Parts) -> Option<Response> {
    let headers = &request.headers;
    if !origin_allowed(launch, headers, request.uri.authority()) {
        rejected("origin");
        return Some(launch.pages.refuse(StatusCode::FORBIDDEN, "This form can only be sent from our own site."));
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form {
        rejected("content_type");
        return Some(launch.pages.refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Please send the form from its page."));
    }
    None
}

/// A post handed to the writer, with what its answer needs, or the answer it gets at once.
enum Queued {
    Waiting(After, oneshot::Receiver<Outcome>),
    Answered(Response),
}

/// The post validated and queued to the writer, with what its answer needs; or the answer now.
/// Not part of `answer_post`: what an `async fn` holds across its wait for the writer lives in
/// the connection's future until the batch is durable, and is out of the cache by then (with
/// 1,024 connections, ~20 ms later). The request and its body are dropped here instead.
fn queue(
    c: &Collector,
    launch: &Forms,
    rt: &FormRuntime,
    ip: Option<IpAddr>,
    request: http::request::Parts,
    bytes: Bytes,
) -> Queued {
    let form_name: &str = &rt.name;
    let headers = &request.headers;
    let posted = match validate::parse_body(&bytes) {
        Ok(p) => p,
        Err(e) => {
            rejected("encoding");
            return Queued::Answered(
                launch.pages.refuse(StatusCode::BAD_REQUEST, &format!("The form could not be read: {e}.")),
            );
        }
    };
    let form = &rt.form;
    if posted.value(&form.honeypot).is_some_and(|v| !v.trim().is_empty()) {
        // A bot: tell it all went well, store nothing.
        rejected("honeypot");
        return Queued::Answered(answer::see_other(rt.thanks.clone(), None));
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
            return Queued::Answered(launch.pages.invalid(form_name, &posted.to_map(), &errors, json, referer));
        }
    };
    let parent_ref = match &form.links_to {
        None => None,
        Some(parent) => match linked_ref(&c.signer, parent, headers) {
            Some(r) => Some(r),
            None => {
                rejected("cookie");
                return Queued::Answered(launch.pages.refuse(
                    StatusCode::FORBIDDEN,
                    "This offer belongs to an order placed in this browser; place the order first.",
                ));
            }
        },
    };
    let ip = ip.map(ip_text);
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
    let meta = Meta {
        ip,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| first_chars(s, 256).to_owned()),
        duplicate_of: None,
    };
    if c.closed.load(Ordering::Relaxed) {
        return Queued::Answered(launch.pages.busy());
    }
    let after = After::new(c, parent_ref.as_ref(), headers);
    let (reply, answer) = oneshot::channel();
    let job =
        Job { form: rt.name.clone(), valid, parent_ref, meta, received_at: jiff::Timestamp::now(), dedupe_key, reply };
    match c.queue.try_send(Msg::Job(job)) {
        Ok(()) => Queued::Waiting(after, answer),
        Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => {
            rejected("busy");
            c.shared.oplog.shed();
            Queued::Answered(launch.pages.busy())
        }
    }
}

/// The body, read frame by frame: a post whose body comes in one frame (as a form post's
/// does) is that frame's bytes, with no copy. More than `limit` bytes is `413`, a body past its
/// deadline `408`, any other failure to read it `400`.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, StatusCode> {
    let mut first = Bytes::new();
    let mut joined: Vec<u8> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|e| read_error(&e))?.into_data() else { continue };
        len += data.len();
        if len > limit {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        if first.is_empty() && joined.is_empty() {
            first = data;
        } else {
            if joined.is_empty() {
                joined.reserve(len.min(limit));
                joined.extend_from_slice(&first);
            }
            joined.extend_from_slice(&data);
        }
    }
    Ok(if joined.is_empty() { first } else { Bytes::from(joined) })
}

/// The status for a body that could not be read.
fn read_error(e: &axum::Error) -> StatusCode {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return StatusCode::PAYLOAD_TOO_LARGE;
        }
        if s.to_string().contains("timed out") {
            return StatusCode::REQUEST_TIMEOUT;
        }
        source = s.source();
    }
    StatusCode::BAD_REQUEST
}

/// `ip` as `Display` writes it; an IPv4 address without the formatting machinery, which costs
/// more than the few digits.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
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
        Some(o) => Cow::Borrowed(o),
        None => match headers.get(header::REFERER).and_then(|v| v.to_str().ok()) {
            Some(r) => Cow::Owned(crate::config::origin_of(r)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_is_what_display_writes() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.9.99.100", "255.255.255.255", "192.168.1.20", "::1", "2001:db8::7"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn only_a_plain_form_name_skips_the_router() {
        assert!(is_order_post(&Method::POST, "/submit/order"));
        assert!(!is_order_post(&Method::GET, "/submit/order"));
        assert!(!is_order_post(&Method::POST, "/submit/"));
        assert!(!is_order_post(&Method::POST, "/submit/order/"));
        assert!(!is_order_post(&Method::POST, "/submit/or%64er"));
        assert!(!is_order_post(&Method::POST, "/submitorder"));
    }
}
