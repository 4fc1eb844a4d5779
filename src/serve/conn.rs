//! The accept loop: HTTP/1.1, and HTTP/2 with prior knowledge (h2c, as load balancers and CDNs
//! speak to an origin), with a header size limit, a total deadline for a request's head
//! (slowloris), a connection cap answered with a fast 503, and graceful shutdown that lets
//! in-flight requests finish.
//!
//! The protocol is told apart by the client's first bytes (at most the 24 of the h2 preface),
//! read here within the header deadline; the connection is then served by hyper's HTTP/1 or
//! HTTP/2 machinery alone, so an idle HTTP/1 connection holds no HTTP/2 state.

use super::metrics::ServeMetrics;
use axum::response::Response;
use futures_util::future::{Either, FutureExt};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{watch, Notify, Semaphore};
use tower::ServiceExt;

/// What answers the requests of a listener's connections (once a malformed `Host` is refused).
pub trait Handler: Send + Sync + 'static {
    /// The answer to `req`, sent from `peer`.
    fn answer(
        self: &Arc<Self>,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send + use<Self>;
}

/// A router answers as it is (the admin listener's).
impl Handler for axum::Router {
    fn answer(
        self: &Arc<Self>,
        req: hyper::Request<Incoming>,
        _: SocketAddr,
    ) -> impl Future<Output = Response> + Send + use<> {
        let router = axum::Router::clone(self);
        async move {
            match router.oneshot(req).await {
                Ok(response) => response,
                Err(infallible) => match infallible {},
            }
        }
    }
}

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

/// What an HTTP/2 client with prior knowledge sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves `handler` on `listener` until `stop` changes, then waits (bounded) for open requests.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    busy: Busy,
    limits: Limits,
    metrics: Arc<ServeMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let drain = Arc::new(Drain::default());
    // A cap past u32::MAX is no cap; clamped so that shutdown can wait for every slot at once.
    let cap = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(cap as usize));
    // Connections being told "busy" are capped too, so a flood cannot run us out of sockets.
    let busy_slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let http = Arc::new(Protocols::new(&limits, true));
    let busy_http = Arc::new(Protocols::new(&limits, false));
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
                    std::future::ready(Ok::<_, Infallible>(response))
                });
                let (busy_http, drain) = (busy_http.clone(), drain.clone());
                tokio::spawn(async move {
                    let conn = busy_http.serve(stream, service, None, drain);
                    let _ = tokio::time::timeout(BUSY_DEADLINE, conn).await;
                    drop(slot);
                });
            }
            continue;
        };
        let handler = handler.clone();
        let clock = Arc::new(HeadClock::new(Instant::now()));
        let answering = clock.clone();
        // One connection's requests: a malformed `Host` is refused, everything else answered
        // by the handler.
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            answering.head_read();
            let answer = match super::host::refuse(&req) {
                Some(refused) => Either::Left(std::future::ready(refused)),
                None => Either::Right(handler.answer(req, peer)),
            };
            let answering = answering.clone();
            answer.map(move |response| {
                answering.answered();
                Ok::<_, Infallible>(response)
            })
        });
        let (http, metrics, drain) = (http.clone(), metrics.clone(), drain.clone());
        tokio::spawn(async move {
            metrics.connections.add(1);
            http.serve(stream, service, Some(clock), drain).await;
            metrics.connections.add(-1);
            drop(slot);
        });
    }
    drop(listener);
    drain.begin();
    // Every connection gives its slot back when it ends.
    if tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(cap)).await.is_err() {
        tracing::warn!("some connections were still open 10 s after shutdown began");
    }
}

/// hyper's HTTP/1.1 and HTTP/2 servers, configured once per listener.
struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    header_timeout: Duration,
}

impl Protocols {
    fn new(limits: &Limits, keep_alive: bool) -> Protocols {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            // The head deadline is the connection's own (`HeadClock`); a connection over the
            // cap has its whole answer's deadline instead.
            .header_read_timeout(None)
            // hyper answers 431 when a request head outgrows this buffer; 8 KiB is its minimum.
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(keep_alive);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes.max(8192) as u32)
            .max_concurrent_streams(256)
            // An idle h2 connection that stops answering pings is closed, as a stalled one is.
            .keep_alive_interval(limits.header_timeout)
            .keep_alive_timeout(limits.header_timeout);
        Protocols { h1, h2, header_timeout: limits.header_timeout }
    }

    /// Serves one connection until it closes. Its first bytes, read within the header deadline,
    /// choose the protocol; at shutdown (`drain`) a connection still being read then is
    /// dropped, one being served finishes the requests in flight; `clock` (told by `service`
    /// of its requests) drops an HTTP/1 connection whose next head is overdue and sends an
    /// HTTP/2 one GOAWAY.
    async fn serve<S>(&self, stream: TcpStream, service: S, clock: Option<Arc<HeadClock>>, drain: Arc<Drain>)
    where
        S: hyper::service::Service<hyper::Request<Incoming>, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        let sniffed = tokio::select! {
            sniffed = tokio::time::timeout(self.header_timeout, sniff(stream)) => sniffed,
            _ = drain.stopped() => return,
        };
        // Silent for the whole header deadline, closed before a byte, or a read error: the
        // connection is dropped, as hyper drops one that times out before its first byte.
        let Ok(Ok(Some((io, h2)))) = sniffed else { return };
        if h2 {
            // Boxed: the HTTP/2 connection's state is large, and most connections are HTTP/1.
            let served = Graceful::new(self.h2.serve_connection(TokioIo::new(io), service), drain);
            match clock {
                Some(clock) => {
                    // Its writes do not count, a client's pings being answered with writes:
                    // a connection with no request for the head deadline is told to go away.
                    clock.answers_count.store(true, Ordering::Relaxed);
                    Box::pin(UntilHeadOverdue::new(served, clock, self.header_timeout, Overdue::GoAway)).await
                }
                None => {
                    let _ = Box::pin(served).await;
                }
            }
        } else {
            let mut io = io;
            io.clock = clock.clone();
            // Not an async block: one that took the connection would hold it twice, its state
            // being most of its task's size.
            let served = Graceful::new(self.h1.serve_connection(TokioIo::new(io), service), drain);
            match clock {
                Some(clock) => UntilHeadOverdue::new(served, clock, self.header_timeout, Overdue::Drop).await,
                // A connection over the cap: its whole answer has a deadline instead.
                None => {
                    let _ = served.await;
                }
            }
        }
    }
}

/// A listener's shutdown, as its connections see it: each is woken once when it begins and
/// otherwise reads a flag, where hyper-util's `Watcher` polls a `watch` channel's future at
/// every wake-up of every connection (~150 instructions a request, bench/README.md).
#[derive(Default)]
struct Drain {
    stopping: AtomicBool,
    wake: Arc<Notify>,
}

impl Drain {
    fn begin(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Resolves once shutdown has begun.
    async fn stopped(&self) {
        let woken = self.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if !self.is_stopping() {
            woken.await;
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection that, once its listener's shutdown begins, finishes the requests in flight
    /// and closes (hyper's graceful shutdown: an idle HTTP/1 connection closes at once, an
    /// HTTP/2 one is sent GOAWAY).
    struct Graceful<C> {
        #[pin]
        conn: C,
        #[pin]
        woken: OwnedNotified,
        drain: Arc<Drain>,
        registered: bool,
        stopping: bool,
    }
}

impl<C> Graceful<C> {
    fn new(conn: C, drain: Arc<Drain>) -> Self {
        // Made before the first poll: a shutdown that begins in between still wakes it.
        let woken = drain.wake.clone().notified_owned();
        Graceful { conn, woken, drain, registered: false, stopping: false }
    }
}

impl<C: GracefulConnection> Graceful<C> {
    /// Finishes the requests in flight and closes, whatever the listener does.
    fn stop(self: Pin<&mut Self>) {
        let this = self.project();
        if !*this.stopping {
            *this.stopping = true;
            this.conn.graceful_shutdown();
        }
    }
}

impl<C: GracefulConnection> Future for Graceful<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        if !self.stopping {
            let this = self.as_mut().project();
            // Polled once, to register the task's waker (a tokio task's stays the same), and
            // the flag read after that: reading costs less than a poll.
            let woken = !*this.registered && this.woken.poll(cx).is_ready();
            *this.registered = true;
            if woken || this.drain.is_stopping() {
                self.as_mut().stop();
            }
        }
        self.project().conn.poll(cx)
    }
}

/// The head deadline of a connection, kept by the connection rather than by hyper: hyper arms
/// a timer for every HTTP/1 request head (a boxed `Sleep` put into tokio's timer wheel and
/// taken out again, ~1,300 instructions a request, bench/README.md), and none for HTTP/2; this
/// is one timer for the connection's life, moved only when it fires. The wait for a head counts
/// from the accept, the last head read or the last byte written (HTTP/2: the last answer),
/// whichever is latest, and not while a request is being answered or an answer waits for the
/// client to read it. Those moments are read off the coarse clock ([`coarse_nanos`]).
pub struct HeadClock {
    origin: tokio::time::Instant,
    /// `origin` on the coarse clock.
    coarse_origin: u64,
    /// Requests being answered (one at a time on HTTP/1).
    answering: AtomicU32,
    /// Nanoseconds after `origin` of the last head read or byte written (HTTP/2: answer done).
    since: AtomicU64,
    /// The last write waited for the client to read.
    write_blocked: AtomicBool,
    /// An answer done restarts the wait (HTTP/2, whose writes are not counted).
    answers_count: AtomicBool,
}

impl HeadClock {
    fn new(accepted: Instant) -> HeadClock {
        HeadClock {
            origin: tokio::time::Instant::from_std(accepted),
            coarse_origin: coarse_nanos(),
            answering: AtomicU32::new(0),
            since: AtomicU64::new(0),
            write_blocked: AtomicBool::new(false),
            answers_count: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        self.since.store(coarse_nanos().saturating_sub(self.coarse_origin), Ordering::Relaxed);
    }

    fn head_read(&self) {
        self.answering.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    fn answered(&self) {
        self.answering.fetch_sub(1, Ordering::Relaxed);
        if self.answers_count.load(Ordering::Relaxed) {
            self.touch();
        }
    }

    /// A write went out, or (`blocked`) waits for the client to read.
    fn wrote(&self, blocked: bool) {
        self.write_blocked.store(blocked, Ordering::Relaxed);
        if !blocked {
            self.touch();
        }
    }

    /// When the wait for a head ends if nothing happens before; `None`: it has ended.
    fn deadline(&self, timeout: Duration) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let busy = self.answering.load(Ordering::Relaxed) > 0 || self.write_blocked.load(Ordering::Relaxed);
        let deadline = if busy {
            now + timeout
        } else {
            self.origin + Duration::from_nanos(self.since.load(Ordering::Relaxed)) + timeout
        };
        (deadline > now).then_some(deadline)
    }
}

/// Nanoseconds on a monotonic clock that is cheap to read: Linux's coarse clock, the time of the
/// last scheduler tick (1 to 10 ms behind), read from the vDSO without the TSC. Every request
/// moves its connection's head deadline twice (head read, answer written), and a deadline of
/// seconds is indifferent to a tick.
#[cfg(target_os = "linux")]
fn coarse_nanos() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a timespec to write; the clock is one every Linux since 2.6.32 has, so
    // the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(not(target_os = "linux"))]
fn coarse_nanos() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What becomes of a connection whose next head is overdue.
#[derive(Clone, Copy, PartialEq)]
enum Overdue {
    /// Dropped unanswered, as hyper drops an HTTP/1 connection whose head is late.
    Drop,
    /// Told to go away (HTTP/2's GOAWAY), its streams in flight finishing.
    GoAway,
    /// Told already: the deadline no longer matters.
    Going,
}

pin_project_lite::pin_project! {
    /// A connection served until it ends or its next head is overdue. A struct rather than an
    /// async fn, which would hold the connection twice (as its argument and as the pinned
    /// future), the connection's state being most of its task's size.
    struct UntilHeadOverdue<C> {
        #[pin]
        conn: Graceful<C>,
        #[pin]
        timer: tokio::time::Sleep,
        clock: Arc<HeadClock>,
        timeout: Duration,
        armed: bool,
        overdue: Overdue,
    }
}

impl<C> UntilHeadOverdue<C> {
    fn new(conn: Graceful<C>, clock: Arc<HeadClock>, timeout: Duration, overdue: Overdue) -> Self {
        let timer = tokio::time::sleep_until(clock.origin + timeout);
        UntilHeadOverdue { conn, timer, clock, timeout, armed: false, overdue }
    }
}

impl<C: GracefulConnection> Future for UntilHeadOverdue<C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if this.conn.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if *this.overdue == Overdue::Going {
            return Poll::Pending;
        }
        // The timer is polled to arm it and once it has fired, not at each of the connection's
        // wake-ups: checking costs less than a poll, and a tokio task's waker stays the same.
        loop {
            if *this.armed && !this.timer.is_elapsed() {
                return Poll::Pending;
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                *this.armed = true;
                return Poll::Pending;
            }
            match this.clock.deadline(*this.timeout) {
                Some(at) => {
                    this.timer.as_mut().reset(at);
                    *this.armed = false;
                }
                None if *this.overdue == Overdue::Drop => return Poll::Ready(()),
                None => {
                    *this.overdue = Overdue::Going;
                    this.conn.as_mut().stop();
                    // Polled again, for the connection to send its GOAWAY.
                    return this.conn.poll(cx).map(|_| ());
                }
            }
        }
    }
}

/// Reads the client's first bytes until they are the h2 preface or cannot be; returns them
/// with the socket, and whether the client speaks HTTP/2. `None` when it closed first.
async fn sniff(mut stream: TcpStream) -> io::Result<Option<(Replay, bool)>> {
    let mut head = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    loop {
        let n = stream.read(&mut head[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
        if head[..len] != H2_PREFACE[..len] || len == H2_PREFACE.len() {
            break;
        }
    }
    if len == 0 {
        return Ok(None);
    }
    let h2 = head[..len] == H2_PREFACE[..];
    Ok(Some((Replay { stream, head, pos: 0, len: len as u8, clock: None }, h2)))
}

/// A socket whose first bytes were already read: they are handed out again before anything
/// more is read from it. It tells its connection's [`HeadClock`], if any, of its writes.
struct Replay {
    stream: TcpStream,
    head: [u8; H2_PREFACE.len()],
    pos: u8,
    len: u8,
    clock: Option<Arc<HeadClock>>,
}

impl Replay {
    fn wrote<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Some(clock) = &self.clock {
            clock.wrote(poll.is_pending());
        }
        poll
    }
}

impl AsyncRead for Replay {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.len {
            let rest = &this.head[this.pos as usize..this.len as usize];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n as u8;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
