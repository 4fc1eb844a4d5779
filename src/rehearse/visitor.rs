//! One fresh visitor on the landing path, over one keep-alive HTTP/1.1 connection: the landing
//! page and its files, the order form page and what it adds, a valid order post with the
//! site's `Origin`, and the `303` followed to the thank-you page.

use crate::config::{FieldKind, Form};
use crate::manifest::Manifest;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// One request of the path, in order.
#[derive(Debug, Clone)]
pub enum Step {
    /// A page of the landing path (`landing` marks the first).
    Page {
        path: String,
        landing: bool,
    },
    Asset(String),
    /// The order post; the visitor then follows the `303`.
    Post {
        path: String,
    },
}

/// What a visit (or part of one) observed.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub landing_pages: u64,
    pub orders: u64,
    pub get_micros: Vec<u32>,
    pub post_micros: Vec<u32>,
    pub busy: u64,
    pub rate_limited: u64,
    pub sold_out: u64,
    /// Other unexpected statuses, connection failures and timeouts.
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.landing_pages += other.landing_pages;
        self.orders += other.orders;
        self.get_micros.extend(other.get_micros);
        self.post_micros.extend(other.post_micros);
        self.busy += other.busy;
        self.rate_limited += other.rate_limited;
        self.sold_out += other.sold_out;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

/// The requests of one visit: every page of the plan with the files it loads that an earlier
/// page of the visit did not (the browser cache), the post after the order form's page.
pub fn script(plan: &crate::check::VisitPlan) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut cached: Vec<&str> = Vec::new();
    let form = plan.form.as_ref();
    for (i, (route, files)) in plan.pages.iter().enumerate() {
        let after_post = form.is_some_and(|(_, page)| plan.pages[..i].iter().any(|(r, _)| r == page));
        if !after_post {
            steps.push(Step::Page { path: route.clone(), landing: i == 0 });
        }
        // After the post, the 303 brings the thank-you page itself; then come its new files.
        for f in files {
            if !cached.contains(&f.as_str()) {
                cached.push(f);
                steps.push(Step::Asset(f.clone()));
            }
        }
        if let Some((name, page)) = form {
            if page == route {
                steps.push(Step::Post { path: format!("/submit/{name}") });
            }
        }
    }
    steps
}

/// A valid post for `form`, unique per visitor `n` (so the double-submit guard keeps it).
pub fn order_body(form: &Form, manifest: &Manifest, n: u64) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for f in &form.fields {
        let fit = |v: String| -> String {
            let mut v = crate::text::first_chars(&v, f.effective_max_len() as usize).to_string();
            while (v.chars().count() as u32) < f.min_len.unwrap_or(0) {
                v.push('x');
            }
            v
        };
        let value = match f.kind {
            FieldKind::Text if f.pattern.is_some() => f.default.clone(),
            FieldKind::Text => Some(fit(format!("Rehearsal Visitor {n}"))),
            FieldKind::Textarea => Some(fit(format!("Rehearsal Street {n}, 10115 Berlin"))),
            FieldKind::Email => Some(fit(format!("visitor{n}@example.org"))),
            FieldKind::Int => {
                let v = f.default.as_deref().and_then(|d| d.parse::<i64>().ok()).or(f.min).unwrap_or(1);
                Some(v.clamp(f.min.unwrap_or(i64::MIN), f.max.unwrap_or(i64::MAX)).to_string())
            }
            FieldKind::Select => f.default.clone().or_else(|| f.options.first().map(|o| o.value().to_string())),
            FieldKind::Sku => f
                .default
                .clone()
                .or_else(|| f.options.first().map(|o| o.value().to_string()))
                .or_else(|| manifest.catalog.first().map(|p| p.sku.to_string())),
            FieldKind::Checkbox => f.required.then(|| "on".to_string()),
        };
        if let Some(v) = value {
            s.append_pair(&f.name, &v);
        }
    }
    // A browser sends the honeypot too, empty.
    s.append_pair(&form.honeypot, "");
    s.finish()
}

/// A visitor's connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, addr })
    }

    /// Sends one request and reads the whole body; returns status, `Location` and the time.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<(StatusCode, Option<String>, Duration), String> {
        if self.sender.is_closed() {
            *self = Conn::open(self.addr).await.map_err(|e| format!("reconnect: {e}"))?;
        }
        let host = self.addr.to_string();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &host)
            .header(header::USER_AGENT, "cofferdam-rehearse")
            .header(header::ACCEPT, "text/html,*/*")
            .header(header::ACCEPT_ENCODING, "br, gzip");
        let body = match body {
            Some(b) => {
                req = req
                    .header(header::ORIGIN, format!("http://{host}"))
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(b))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let exchange = async {
            self.sender.ready().await.map_err(|e| e.to_string())?;
            let resp = self.sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let location = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
            resp.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, location))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((status, location))) => Ok((status, location, started.elapsed())),
            Ok(Err(e)) => Err(format!("{path}: {e}")),
            Err(_) => Err(format!("{path}: no answer within {} ms", timeout.as_millis())),
        }
    }
}

/// Walks `steps` once on a fresh connection, stopping early at `until`.
pub async fn visit(addr: SocketAddr, steps: &[Step], body: String, until: Instant, tally: &mut Tally) {
    let timeout = |until: Instant| {
        until.saturating_duration_since(Instant::now()).max(Duration::from_millis(200)) + Duration::from_secs(1)
    };
    let mut conn = match Conn::open(addr).await {
        Ok(c) => c,
        Err(e) => return tally.error(format!("connect: {e}")),
    };
    let mut body = Some(body);
    for step in steps {
        if Instant::now() >= until {
            return;
        }
        let t = timeout(until).min(Duration::from_secs(5));
        match step {
            Step::Page { path, landing } => match conn.send(Method::GET, path, None, t).await {
                Ok((s, _, took)) => {
                    tally.get_micros.push(micros(took));
                    if !count_status(tally, s, path) {
                        return;
                    }
                    if *landing {
                        tally.landing_pages += 1;
                    }
                }
                Err(e) => return tally.error(e),
            },
            Step::Asset(path) => match conn.send(Method::GET, path, None, t).await {
                Ok((s, _, took)) => {
                    tally.get_micros.push(micros(took));
                    if !count_status(tally, s, path) {
                        return;
                    }
                }
                Err(e) => return tally.error(e),
            },
            Step::Post { path } => {
                let b = body.take().unwrap_or_default();
                match conn.send(Method::POST, path, Some(b), t).await {
                    Ok((StatusCode::SEE_OTHER, Some(to), took)) => {
                        tally.post_micros.push(micros(took));
                        tally.orders += 1;
                        if !to.starts_with('/') {
                            // A payment provider's page: not this server's to load.
                            return;
                        }
                        // Follow the redirect to the thank-you page.
                        match conn.send(Method::GET, &to, None, t).await {
                            Ok((s, _, took)) => {
                                tally.get_micros.push(micros(took));
                                if !count_status(tally, s, &to) {
                                    return;
                                }
                            }
                            Err(e) => return tally.error(e),
                        }
                    }
                    Ok((s, _, took)) => {
                        tally.post_micros.push(micros(took));
                        count_status(tally, s, path);
                        return;
                    }
                    Err(e) => return tally.error(e),
                }
            }
        }
    }
}

/// Counts a status that is not a success; returns whether the visit goes on.
fn count_status(tally: &mut Tally, status: StatusCode, path: &str) -> bool {
    match status.as_u16() {
        200..=299 | 304 => true,
        503 => {
            tally.busy += 1;
            false
        }
        429 => {
            tally.rate_limited += 1;
            false
        }
        409 => {
            tally.sold_out += 1;
            false
        }
        _ => {
            tally.error(format!("{path}: HTTP {status}"));
            false
        }
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}
