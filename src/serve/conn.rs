//! The accept loop: HTTP/1.1, and HTTP/2 with prior knowledge (h2c, as load balancers and CDNs
//! speak to an origin), with a header size limit, a total deadline for a request's head
//! (slowloris), a connection cap answered with a fast 503, and graceful shutdown that lets
//! in-flight requests finish.

use super::metrics::ServeMetrics;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// Answers a request without the router when it can: the prebuilt 200 of a static hit, the
/// request a spike is made of, gains nothing from routing and layers.
pub type FastPath = Arc<dyn Fn(&hyper::Request<Incoming>) -> Option<Response> + Send + Sync>;

/// The answer to a connection over the cap: the site's busy page.
pub type Busy = Arc<dyn Fn() -> Response + Send + Sync>;

pub struct Limits {
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// How long a connection over the cap may take to send its request before it is closed
/// unanswered: its 503 must not hold a socket as long as a visitor's request may.
const BUSY_DEADLINE: Duration = Duration::from_secs(2);

/// Serves `app` on `listener` until `stop` changes, then waits (bounded) for open requests.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    fast: Option<FastPath>,
    busy: Busy,
    limits: Limits,
    metrics: Arc<ServeMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Connections being told "busy" are capped too, so a flood cannot run us out of sockets.
    let busy_slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let http = builder(&limits, true);
    let busy_http = builder(&limits, false);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            if let Ok(slot) = busy_slots.clone().try_acquire_owned() {
                let busy = busy.clone();
                // Every request on it gets the busy page, and it is closed.
                let service = hyper::service::service_fn(move |_req: hyper::Request<Incoming>| {
                    let mut response = busy();
                    response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                    std::future::ready(Ok::<_, std::convert::Infallible>(response))
                });
                let conn = busy_http.serve_connection(TokioIo::new(stream), service).into_owned();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(BUSY_DEADLINE, conn).await;
                    drop(slot);
                });
            }
            continue;
        };
        let app = app.clone();
        let fast = fast.clone();
        // One connection's requests: a malformed `Host` is refused, a static hit answered on
        // the fast path, everything else by the router.
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let answered = super::host::refuse(&req).or_else(|| fast.as_ref().and_then(|f| f(&req)));
            if answered.is_none() {
                // Only the router reads it; a static hit need not allocate its extension map.
                req.extensions_mut().insert(ConnectInfo(peer));
            }
            let app = app.clone();
            async move {
                match answered {
                    Some(response) => Ok(response),
                    None => app.oneshot(req).await,
                }
            }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            metrics.connections.add(1);
            let _ = conn.await;
            metrics.connections.add(-1);
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open 10 s after shutdown began");
    }
}

/// HTTP/1.1 or HTTP/2, told apart by the client's first bytes (the h2 preface).
fn builder(limits: &Limits, keep_alive: bool) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper answers 431 when a request head outgrows this buffer; 8 KiB is its minimum.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(keep_alive);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes.max(8192) as u32)
        .max_concurrent_streams(256)
        // An idle h2 connection that stops answering pings is closed, as a stalled one is.
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    b
}
