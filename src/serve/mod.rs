//! `cofferdam serve`: `dist/` from memory, form posts to the collector.
//!
//! Start-up builds (unless `--no-build`), loads the manifest and every file into prebuilt
//! responses ([`site`]; large media stays on disk, [`stream`]), recovers the collector's logs,
//! then serves until SIGTERM/SIGINT.
//! SIGHUP reloads the whole launch ([`reload`]): it rebuilds from today's `cofferdam.toml` and
//! content and swaps static files, forms, prices, pages and stock caps in together, without
//! dropping a request.

mod admin;
mod client_ip;
mod conn;
mod dashboard;
mod deadline;
mod front;
mod headers;
mod host;
mod listening;
mod metrics;
mod negotiate;
mod range;
mod ratelimit;
mod receipt;
mod reload;
mod samples;
mod site;
mod stream;

use crate::collect::{Collector, Forms};
use crate::config::{ServerConfig, Site};
use crate::manifest::Manifest;
use anyhow::Context;
use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use site::{Entry, Representation, Source, StaticSite};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

pub use client_ip::ClientIp;
pub use listening::Listening;
pub use metrics::ServeMetrics;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The site folder (holding cofferdam.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Public address (default: `server.listen`).
    #[arg(long)]
    pub listen: Option<String>,
    /// Admin address for the admin page, /healthz and /metrics (default: `server.admin`).
    #[arg(long)]
    pub admin: Option<String>,
    /// Serve the existing `dist/` as it is.
    #[arg(long)]
    pub no_build: bool,
    /// Once listening, write the bound addresses to this file as JSON (`{"public": …, "admin": …}`),
    /// for programs that start the server on port 0.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

/// One build of the site, as served: its static files and the collector's forms, prices and
/// pages. Swapped whole on reload, and pinned by each request when it comes in, so no request
/// sees half of one launch and half of another.
pub struct Launch {
    pub site: StaticSite,
    pub forms: Arc<Forms>,
    /// The site (config included) it was built from: a reload compares the next one with it.
    source: Site,
}

/// What every request handler sees.
pub struct App {
    pub launch: ArcSwap<Launch>,
    pub collector: Arc<Collector>,
    pub config: ServerConfig,
    pub metrics: Arc<ServeMetrics>,
    pub limiter: Option<ratelimit::RateLimiter>,
    /// `server.client_ip_header`, parsed.
    pub client_ip_header: Option<http::HeaderName>,
}

/// A running server: where it listens, and the way to reload or stop it.
pub struct Serving {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub app: Arc<App>,
    args: ServeArgs,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub fn cli(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args.clone()))?;
    Ok(ExitCode::SUCCESS)
}

async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Taken before the start-up line says we serve, so a signal sent on reading it is ours.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let serving = start(args).await?;
    let launch = serving.app.launch.load();
    println!(
        "cofferdam: serving \"{}\" ({} files, {} bytes in memory, {} streamed from disk) on http://{}  admin http://{}/  collecting into {}",
        launch.source.config.site.title,
        launch.site.files,
        launch.site.bytes,
        launch.site.streamed,
        serving.public,
        serving.admin,
        launch.source.collected_dir().display()
    );
    drop(launch);
    if let Some(path) = &serving.args.ready_file {
        let listening = Listening { public: serving.public, admin: serving.admin };
        listening.write(path).with_context(|| format!("cannot write {} (--ready-file)", path.display()))?;
    }
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => serving.reload().await,
        }
    }
    serving.stop().await;
    Ok(())
}

/// Builds (unless `--no-build`), loads the launch, recovers the collector and listens: the
/// addresses may be port 0, [`Serving`] holds the ones bound.
pub async fn start(args: ServeArgs) -> anyhow::Result<Serving> {
    let site = load_site(&args)?;
    let dist = site.output_dir();
    if !args.no_build {
        let report = crate::build::build_site(&site, None)?;
        tracing::info!("built {} pages in {} ms", report.pages, report.elapsed.as_millis());
    }
    let manifest = Manifest::load(&dist)?;
    let config = site.config.server.clone();
    let static_site = StaticSite::load(&dist, &manifest, &config)?;
    // Before the collector starts: it takes its metric handles and sets figures (stock left)
    // at start-up.
    metrics::recorder();
    let collector = Collector::start(&site, &manifest).await?;
    let board = admin_board(&site, &manifest);
    let admin_collected = site.collected_dir();
    let forms = Arc::new(Forms::new(&site.config, &manifest, &dist));
    let metrics = Arc::new(ServeMetrics::default());
    let app = Arc::new(App {
        launch: ArcSwap::from_pointee(Launch { site: static_site, forms, source: site }),
        collector,
        limiter: config.rate_limit_per_ip.map(ratelimit::RateLimiter::new),
        client_ip_header: config.client_ip_header.as_deref().and_then(|h| h.parse().ok()),
        config: config.clone(),
        metrics: metrics.clone(),
    });

    let public = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (server.listen)", config.listen))?;
    let admin = TcpListener::bind(&config.admin)
        .await
        .with_context(|| format!("cannot listen on {} (server.admin)", config.admin))?;
    let (public_addr, admin_addr) = (public.local_addr()?, admin.local_addr()?);
    let (stop, stop_rx) = watch::channel(false);
    let limits = conn::Limits {
        max_header_bytes: config.max_header_bytes,
        header_timeout: Duration::from_millis(config.header_timeout_ms),
        max_connections: config.max_connections,
    };
    let busy_app = app.clone();
    let busy: conn::Busy = Arc::new(move || busy_app.launch.load().forms.busy());
    let public_task =
        tokio::spawn(conn::serve(public, Arc::new(front(app.clone())), busy, limits, metrics.clone(), stop_rx.clone()));
    let admin_limits =
        conn::Limits { max_header_bytes: 8192, header_timeout: Duration::from_secs(5), max_connections: 64 };
    let admin_busy: conn::Busy =
        Arc::new(|| (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "busy\n").into_response());
    tokio::spawn(board.samples.clone().run(metrics.clone(), admin_collected, stop_rx.clone()));
    let admin_task = tokio::spawn(conn::serve(
        admin,
        Arc::new(admin::router(app.clone(), board)),
        admin_busy,
        admin_limits,
        // The admin listener counts its connections apart: a scrape is no visitor.
        Arc::new(ServeMetrics::default()),
        stop_rx,
    ));
    Ok(Serving { public: public_addr, admin: admin_addr, app, args, stop, tasks: vec![public_task, admin_task] })
}

/// The admin page's ring (one sample a second, ten minutes) and what the page says.
fn admin_board(site: &Site, manifest: &Manifest) -> Arc<admin::Board> {
    let c = &site.config;
    let info = dashboard::Info {
        site: manifest.site.title.clone(),
        node: c.server.node.clone(),
        collected: site.collected_dir(),
        forms: Vec::new(),
        caps: BTreeMap::new(),
        replication: c.collect.replicate.as_ref().map(|r| r.ack),
        refresh_secs: 5,
    }
    .of_launch(c);
    let samples = samples::Samples::new(Duration::from_secs(1), Duration::from_secs(600));
    Arc::new(admin::Board { samples: Arc::new(samples), info })
}

/// The site's config, with the addresses given on the command line.
fn load_site(args: &ServeArgs) -> anyhow::Result<Site> {
    let mut site = Site::load(&args.site)?;
    if let Some(listen) = &args.listen {
        site.config.server.listen = listen.clone();
    }
    if let Some(admin) = &args.admin {
        site.config.server.admin = admin.clone();
    }
    Ok(site)
}

impl Serving {
    /// Rebuilds from today's config and content and swaps the whole launch in; a change that
    /// cannot be applied live is refused and the running launch stays (see [`reload`]).
    pub async fn reload(&self) {
        reload::reload(&self.app, &self.args).await
    }

    /// Stops accepting, lets open requests finish, then flushes and seals the collector's logs.
    pub async fn stop(self) {
        tracing::info!("shutting down: finishing open requests");
        let _ = self.stop.send(true);
        let mut tasks = self.tasks.into_iter();
        if let Some(public) = tasks.next() {
            let _ = public.await;
        }
        self.app.collector.shutdown().await;
        for task in tasks {
            let _ = task.await;
        }
        tracing::info!("stopped");
    }
}

/// What answers the public listener: the collector's routes, everything else from memory, all
/// through the one [`front::Front`].
fn front(app: Arc<App>) -> front::Front {
    let routes = app.collector.router().fallback(static_file).with_state(app.clone());
    front::Front::new(app, routes)
}

/// A GET or HEAD of a file held in memory, answered 200 in full, straight from its prebuilt
/// representation. Anything else (conditional or range requests, rate limits, sold-out pages,
/// redirects, 404s, posts) goes through the rest of the [`front::Front`].
fn fast_path<B>(app: &App, req: &http::Request<B>) -> Option<Response> {
    let head = req.method() == Method::HEAD;
    if !(req.method() == Method::GET || head) || app.limiter.is_some() {
        return None;
    }
    let h = req.headers();
    if h.contains_key(header::IF_NONE_MATCH) || h.contains_key(header::RANGE) {
        return None;
    }
    let path = req.uri().path();
    let launch = app.launch.load();
    let entry = launch.site.routes.get(path)?;
    if entry.is_html && app.collector.shows_sold_out(&launch.forms, path) {
        return None;
    }
    if entry.receipt.is_some() && h.contains_key(header::COOKIE) {
        return None;
    }
    // Not `respond`: the headers it would look for (If-None-Match, Range) are known absent.
    let rep = negotiated(entry, h);
    if !matches!(rep.body, Source::Memory(_)) {
        return None;
    }
    match send(app, rep, StatusCode::OK, 0, rep.body.len(), head) {
        Reply::Ready(response) => Some(response),
        Reply::Disk(_) => None,
    }
}

fn internal_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        "<!doctype html><title>Error</title><h1>Something went wrong</h1><p>Please try again.</p>",
    )
        .into_response()
}

async fn static_file(
    State(app): State<Arc<App>>,
    axum::Extension(launch): axum::Extension<Arc<Launch>>,
    req: Request,
) -> Response {
    let m = &app.metrics;
    m.in_flight.add(1);
    let response = match answer(&app, &launch, &req) {
        Reply::Ready(response) => response,
        Reply::Disk(pending) => {
            let count = pending.count;
            match pending.open().await {
                Ok(response) => {
                    m.bytes_out.add(count);
                    response
                }
                Err((path, e)) => vanished(&app, &launch, &req, &path, e),
            }
        }
    };
    m.in_flight.add(-1);
    response
}

/// A response, or its headers with a body still to be opened on disk (which needs an await).
enum Reply {
    Ready(Response),
    Disk(stream::Pending),
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply::Ready(response)
    }
}

/// A streamed file that is gone from disk gets the site's 404 page (anything else wrong with it
/// a 500): the path and error go to the log only.
fn vanished(app: &App, launch: &Launch, req: &Request, path: &std::path::Path, e: std::io::Error) -> Response {
    tracing::warn!("{}: cannot stream: {e} (rebuild and reload with SIGHUP)", path.display());
    if e.kind() != std::io::ErrorKind::NotFound {
        return internal_error();
    }
    app.metrics.not_found.inc();
    let page = launch
        .site
        .not_found
        .as_ref()
        .map(|entry| respond(app, entry, req.headers(), req.method() == Method::HEAD, StatusCode::NOT_FOUND));
    match page {
        Some(Reply::Ready(response)) => response,
        _ => (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Not found\n")
            .into_response(),
    }
}

fn answer(app: &App, launch: &Launch, req: &Request) -> Reply {
    let m = &app.metrics;
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        m.method_not_allowed.inc();
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD")], "").into_response().into();
    }
    let site = &launch.site;
    let path = req.uri().path();
    if let Some(entry) = site.routes.get(path) {
        if entry.is_html && app.collector.shows_sold_out(&launch.forms, path) {
            if let Some(sold_out) = &site.sold_out {
                m.sold_out_pages.inc();
                return respond(app, sold_out, req.headers(), head, StatusCode::OK);
            }
        }
        if let Some(page) = entry.receipt.as_ref().and_then(|slot| receipt::respond(app, &launch.forms, slot, req)) {
            return page.into();
        }
        return respond(app, entry, req.headers(), head, StatusCode::OK);
    }
    if let Some((status, to)) = site.redirects.get(path) {
        m.redirects.inc();
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::PERMANENT_REDIRECT);
        return (status, [(header::LOCATION, to.clone())]).into_response().into();
    }
    m.not_found.inc();
    match &site.not_found {
        Some(entry) => respond(app, entry, req.headers(), head, StatusCode::NOT_FOUND),
        None => (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Not found\n")
            .into_response()
            .into(),
    }
}

fn respond(app: &App, entry: &Entry, req: &HeaderMap, head: bool, status: StatusCode) -> Reply {
    let rep = negotiated(entry, req);
    if status == StatusCode::OK && etag_matches(req.get(header::IF_NONE_MATCH), &rep.etag) {
        app.metrics.not_modified.inc();
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        let h = response.headers_mut();
        for name in [header::ETAG, header::CACHE_CONTROL, header::VARY] {
            if let Some(v) = rep.headers.get(&name) {
                h.insert(name, v.clone());
            }
        }
        return response.into();
    }
    let total = rep.body.len();
    // Range is defined for GET only (RFC 9110 14.2), and never slices an error page.
    let slice = if status == StatusCode::OK && !head {
        range::Slice::of(req.get(header::RANGE), req.get(header::IF_RANGE), &rep.etag, total)
    } else {
        range::Slice::Full
    };
    let (status, start, count) = match slice {
        range::Slice::Full => (status, 0, total),
        range::Slice::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        range::Slice::Unsatisfiable => {
            app.metrics.range_not_satisfiable.inc();
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            response.headers_mut().insert(header::CONTENT_RANGE, range::unsatisfied_range(total));
            response.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return response.into();
        }
    };
    send(app, rep, status, start, count, head)
}

/// The representation of `entry` that the request's `Accept-Encoding` prefers.
fn negotiated<'e>(entry: &'e Entry, req: &HeaderMap) -> &'e Representation {
    entry.pick(negotiate::choose(req.get(header::ACCEPT_ENCODING).map(|v| v.as_bytes()), |e| entry.has(e)))
}

/// `rep` answered with `status`: its bytes from `start`, `count` of them (all, or a range's),
/// under its prebuilt headers.
fn send(app: &App, rep: &Representation, status: StatusCode, start: u64, count: u64, head: bool) -> Reply {
    match status {
        StatusCode::OK => app.metrics.static_ok.inc(),
        StatusCode::PARTIAL_CONTENT => app.metrics.partial_content.inc(),
        _ => {}
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    // One clone of the prebuilt map (Content-Length of the whole body included): cheaper than
    // inserting its headers one by one.
    *response.headers_mut() = rep.headers.clone();
    if status == StatusCode::PARTIAL_CONTENT {
        let h = response.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
        h.insert(header::CONTENT_RANGE, range::content_range(start, start + count - 1, rep.body.len()));
    }
    if head {
        return response.into();
    }
    match &rep.body {
        Source::Memory(bytes) => {
            app.metrics.bytes_out.add(count);
            *response.body_mut() = Body::from(bytes.slice(start as usize..(start + count) as usize));
            response.into()
        }
        Source::Disk { path, len } => {
            Reply::Disk(stream::Pending { response, path: path.clone(), len: *len, start, count })
        }
    }
}

/// `If-None-Match` uses the weak comparison (RFC 9110 13.1.2): `W/` prefixes are ignored.
fn etag_matches(header: Option<&HeaderValue>, etag: &HeaderValue) -> bool {
    let Some(value) = header.and_then(|h| h.to_str().ok()) else { return false };
    let ours = etag.to_str().unwrap_or("");
    value.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}
