//! The floor: the least a server must do for the bench's two requests, as a yardstick for
//! `cofferdam serve` (issue 15, `bench/floor.sh`).
//!
//! - `GET` anything: one prebuilt page from memory (the bytes given with `--page`, sent with
//!   `--encoding` as Content-Encoding when set). No routing, no negotiation, no other headers.
//! - `POST` anything: read the body, decode it as `application/x-www-form-urlencoded`, check
//!   that `name` is not empty (422 if it is), serialise the fields as one JSON line, hand it to
//!   the one writer thread and answer `303 /thanks/` once the writer has appended the line and
//!   `fdatasync`ed the file. The writer takes every line queued (up to 2,048) per `fdatasync`:
//!   the same group commit as cofferdam's collector, without validation, references, stock,
//!   cookies or metrics.
//!
//! With `--post-headers FILE` and `--get-headers FILE` (lines `name: value`, as `curl -D`
//! writes them) it adds those headers to its 303 and its page: cofferdam's own answers, so the
//! same bytes go out and the ratio to this second floor is what cofferdam does beyond its answer.
//!
//! Same runtime as cofferdam (tokio's multi-thread scheduler, one worker per core the process
//! may run on) and the same HTTP/1.1 stack (hyper), so the ratio measures what cofferdam adds.
//!
//! Usage: `floor --listen 127.0.0.1:PORT --page dist/index.html.br --encoding br --log FILE
//! [--post-headers FILE] [--get-headers FILE]`

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// A JSON line and who waits for it to be durable.
type Job = (Vec<u8>, oneshot::Sender<bool>);

/// cofferdam's defaults (`collect.max_batch`, `collect.queue_capacity`).
const MAX_BATCH: usize = 2048;
const QUEUE: usize = 8192;
const MAX_BODY: usize = 16 * 1024;

struct Args {
    listen: String,
    page: Bytes,
    encoding: Option<HeaderValue>,
    log: File,
    answer: Answer,
}

/// Headers added to every answer: made once from static bytes, so a clone per request is a
/// pointer's copy.
#[derive(Default)]
struct Answer {
    post: Vec<(HeaderName, HeaderValue)>,
    get: Vec<(HeaderName, HeaderValue)>,
}

/// The `name: value` lines of `path` (a `curl -D` dump: its status line, blank lines and the
/// headers hyper writes itself are skipped).
fn headers_from(path: &str) -> Vec<(HeaderName, HeaderValue)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| usage(&format!("{path}: {e}")));
    let text: &'static str = Box::leak(text.into_boxed_str());
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| {
            !["date", "content-length", "transfer-encoding"].contains(&name.to_ascii_lowercase().as_str())
        })
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .unwrap_or_else(|_| usage(&format!("{path}: bad name {name}")));
            let value = HeaderValue::from_maybe_shared(Bytes::from_static(value.trim().as_bytes()))
                .unwrap_or_else(|_| usage(&format!("{path}: bad value for {name}")));
            (name, value)
        })
        .collect()
}

fn args() -> Args {
    let mut listen = "127.0.0.1:8088".to_string();
    let (mut page, mut encoding, mut log) = (None, None, None);
    let mut answer = Answer::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--listen" => listen = value,
            "--page" => page = Some(std::fs::read(&value).unwrap_or_else(|e| usage(&format!("{value}: {e}")))),
            "--encoding" => encoding = Some(HeaderValue::from_str(&value).unwrap_or_else(|_| usage("bad --encoding"))),
            "--log" => {
                let file = OpenOptions::new().create(true).append(true).open(&value);
                log = Some(file.unwrap_or_else(|e| usage(&format!("{value}: {e}"))));
            }
            "--post-headers" => answer.post = headers_from(&value),
            "--get-headers" => answer.get = headers_from(&value),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    let page = Bytes::from(page.unwrap_or_else(|| usage("--page is required")));
    Args { listen, page, encoding, log: log.unwrap_or_else(|| usage("--log is required")), answer }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "floor: {problem}\nusage: floor --listen ADDR --page FILE [--encoding br] --log FILE [--post-headers FILE] [--get-headers FILE]"
    );
    std::process::exit(2)
}

fn main() {
    let args = args();
    let (tx, rx) = mpsc::channel::<Job>(QUEUE);
    let log = args.log;
    std::thread::spawn(move || writer(log, rx));
    let page = Arc::new(Page { body: args.page, encoding: args.encoding, answer: args.answer });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(&args.listen).await.expect("bind --listen");
        println!("floor: listening on http://{}", listener.local_addr().expect("local address"));
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let (page, tx) = (page.clone(), tx.clone());
            let service = hyper::service::service_fn(move |req| handle(req, page.clone(), tx.clone()));
            tokio::spawn(async move {
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}

struct Page {
    body: Bytes,
    encoding: Option<HeaderValue>,
    answer: Answer,
}

/// `r` with `extra` appended (none, unless the floor was given cofferdam's answer).
fn with(mut r: Response<Full<Bytes>>, extra: &[(HeaderName, HeaderValue)]) -> Response<Full<Bytes>> {
    for (name, value) in extra {
        r.headers_mut().append(name.clone(), value.clone());
    }
    r
}

async fn handle(
    req: Request<Incoming>,
    page: Arc<Page>,
    tx: mpsc::Sender<Job>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST {
        let mut r = Response::new(Full::new(page.body.clone()));
        if page.answer.get.is_empty() {
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            if let Some(e) = &page.encoding {
                r.headers_mut().insert(header::CONTENT_ENCODING, e.clone());
            }
        }
        return Ok(with(r, &page.answer.get));
    }
    let Ok(body) = Limited::new(req.into_body(), MAX_BODY).collect().await else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let body = body.to_bytes();
    let fields: BTreeMap<_, _> = form_urlencoded::parse(&body).collect();
    if fields.get("name").is_none_or(|n| n.trim().is_empty()) {
        return Ok(status(StatusCode::UNPROCESSABLE_ENTITY));
    }
    let mut line = serde_json::to_vec(&fields).expect("strings serialise");
    line.push(b'\n');
    let (done, durable) = oneshot::channel();
    if tx.send((line, done)).await.is_err() || !durable.await.unwrap_or(false) {
        return Ok(status(StatusCode::SERVICE_UNAVAILABLE));
    }
    let mut r = status(StatusCode::SEE_OTHER);
    if page.answer.post.is_empty() {
        r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/thanks/"));
    }
    Ok(with(r, &page.answer.post))
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// The group commit: whatever is queued, one write, one `fdatasync`, then every answer.
fn writer(mut log: File, mut rx: mpsc::Receiver<Job>) {
    // As cofferdam's writer (collect/writer.rs): no wake-up preemption, so on a busy core the
    // posts being handled are queued before a batch is taken.
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a system call about the calling thread (0) with a valid parameter.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut buf = Vec::with_capacity(MAX_BATCH * 256);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        buf.clear();
        for (line, _) in &batch {
            buf.extend_from_slice(line);
        }
        let ok = log.write_all(&buf).and_then(|()| log.sync_data()).is_ok();
        for (_, done) in batch.drain(..) {
            let _ = done.send(ok);
        }
    }
}
