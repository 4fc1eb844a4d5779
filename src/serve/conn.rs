//! The accept loop: HTTP/1.1 with a header size limit, a header read timeout (slowloris), a
//! connection cap, and graceful shutdown that lets in-flight requests finish.

use super::metrics::ServeMetrics;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// Answers a request without the router when it can: the prebuilt 200 of a static hit, the
/// request a spike is made of, gains nothing from routing and layers.
pub type FastPath = Arc<dyn Fn(&hyper::Request<Incoming>) -> Option<axum::response::Response> + Send + Sync>;

pub struct Limits {
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `stop` changes, then waits (bounded) for open requests.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    fast: Option<FastPath>,
    limits: Limits,
    metrics: Arc<ServeMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper answers 431 when a request head outgrows this buffer; 8 KiB is its minimum.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let fast = fast.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let answered = fast.as_ref().and_then(|f| f(&req));
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
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
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
