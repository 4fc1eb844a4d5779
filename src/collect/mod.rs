//! Form posts → durable, rotated logs in `collected/` (group commit), stock caps, recovery.
//!
//! The server hands `POST /submit/{form}` (and the payment webhook, [`crate::payment`]) to
//! [`Collector::router`]. A post is validated ([`validate`]), queued to the [`writer`], and
//! answered `303` only once its record is on disk ([`answer`]: to the thank-you or payment page,
//! with the signed reference and [`receipt`] cookies); a refused one gets its form back
//! ([`pages`]). The [`oplog`] sums up what flows in for the operator.

mod answer;
mod cookie;
mod dedupe;
mod failures;
mod handler;
mod oplog;
mod pages;
mod receipt;
pub(crate) mod recover;
pub(crate) mod segment;
mod stats;
mod stock;
mod validate;
mod writer;

pub use cookie::{Signer, EXAMPLE_KEY};
pub use handler::is_order_post;
pub use receipt::{Receipt, COOKIE as RECEIPT_COOKIE};
pub use stats::{collect_stats, Stats};
pub use validate::{validate, FieldError};

use crate::config::{FieldKind, Form, Product, Site};
use crate::manifest::Manifest;
use crate::payment::Payments;
use crate::replicate;
use pages::Pages;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use writer::{Msg, Shared};

/// The running collector: the request side of the one writer thread.
pub struct Collector {
    queue: mpsc::Sender<Msg>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// `ack = "local"`: the task sending the log to the stream behind the 303s.
    shipper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    shared: Arc<Shared>,
    signer: Signer,
    max_body_bytes: usize,
    /// The stock caps the writer holds now (this node's share is taken from them).
    caps: Mutex<Caps>,
    /// Caps are shared through the stream (`[collect.replicate]`): they cannot change live.
    replicated: bool,
    closed: Arc<AtomicBool>,
    /// The payment webhook and its log, when a provider is configured.
    payments: Option<Arc<Payments>>,
}

/// Capped SKU → its cap, as in the catalog.
type Caps = BTreeMap<String, u64>;

/// What one build of the site tells the collector: its forms, the catalog and its prices, the
/// pages it answers with, the routes that turn into "sold out", where posts may come from.
/// The server pins one per request and swaps a new one in on reload, together with the static
/// files of the same build, so a post is validated, priced and answered by one launch.
pub struct Forms {
    /// By name; a B-tree, as each post looks its form up and a site has a few.
    forms: BTreeMap<String, FormRuntime>,
    catalog: Vec<Product>,
    pages: Pages,
    /// Address → the SKUs whose selling out turns that page into the sold-out page.
    sold_out_routes: HashMap<String, BTreeSet<String>>,
    origins: Vec<String>,
    secure_cookie: bool,
}

struct FormRuntime {
    form: Form,
    name: Arc<str>,
    /// Another form `links_to` this one: an accepted post sets the signed cookie.
    sets_cookie: bool,
    /// `form.thanks` as a `Location`, made once: a clone shares its bytes.
    thanks: http::HeaderValue,
    /// `cofferdam_collect_post_seconds{form}`: every post's time to its answer (the handle is
    /// taken once, so a post does not look its metric up).
    post_seconds: metrics::Histogram,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{}: cannot recover the collected logs: {source}", .path.display())]
    Recover {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("collect.production is on but no signing key is set: set ${env} (or collect.signing_key) to a long random secret")]
    MissingKey { env: String },
    #[error("collect.production is on but the signing key is the example one: set ${env} to a long random secret")]
    ExampleKey { env: String },
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
    #[error("collect.replicate: {0}")]
    Replicate(crate::replicate::ReplicateError),
    #[error(transparent)]
    Payments(#[from] crate::payment::PaymentError),
}

/// Why a reload cannot be applied to the running collector.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("catalog stock caps changed ({0}) but caps are shared through collect.replicate: restart every node to change them")]
    ReplicatedCaps(String),
    #[error("the writer has stopped")]
    Stopped,
}

impl Collector {
    /// Recovers the logs under `site`'s collected folder and starts the writer. What a post is
    /// checked against and answered with comes with each request ([`Forms`]).
    pub async fn start(site: &Site, manifest: &Manifest) -> Result<Arc<Collector>, CollectError> {
        let config = &site.config;
        let c = &config.collect;
        let dir = site.collected_dir();
        let node = config.server.node.clone();
        let recovered = recover::recover(&dir, &node, &manifest.forms, c.max_batch.max(1))
            .map_err(|source| CollectError::Recover { path: dir.clone(), source })?;
        tracing::info!(
            "collector: {} records of node {node} in {}, next reference {node}-{}",
            recovered.records,
            dir.display(),
            recovered.next_seq
        );
        let caps = caps_of(manifest);
        let (stock, replicator, shipper, next_seq) = match &c.replicate {
            None => (stock::Stock::local(shares(&caps, c.stock_share), recovered.sold), None, None, recovered.next_seq),
            Some(r) => {
                let skus: Vec<String> = caps.keys().cloned().collect();
                let listed = caps.iter().map(|(s, n)| (s.clone(), *n)).collect();
                let started = replicate::start(r, &node, listed, &dir, &manifest.forms, recovered.next_seq)
                    .await
                    .map_err(CollectError::Replicate)?;
                let pool = replicate::Pool::new(started.link.clone(), tokio::runtime::Handle::current());
                let stock = stock::Stock::shared(skus, pool, r.stock_block);
                (stock, Some(started.replicator), started.shipper, started.next_seq)
            }
        };
        let signer = Signer::new(&signing_key(c)?);

        let shared = Arc::new(Shared::default());
        let settings = writer::Settings {
            dir: dir.clone(),
            node,
            forms: manifest.forms.clone(),
            segment_max_bytes: c.segment_max_bytes,
            segment_max_age: Duration::from_secs(c.segment_max_age_secs),
            max_batch: c.max_batch.max(1),
            dedupe_window: Duration::from_secs(c.double_submit_window_secs),
            followed_up: recovered.followed_up,
        };
        let (tx, rx) = mpsc::channel(c.queue_capacity.max(1));
        let w = writer::Writer::new(settings, next_seq, stock, replicator, shared.clone());
        let shipper = shipper.map(|s| tokio::spawn(s.run()));
        let handle = std::thread::Builder::new()
            .name("cofferdam-writer".into())
            .spawn(move || w.run(rx))
            .map_err(CollectError::Thread)?;

        let payments = Payments::start(site)?;
        let closed = Arc::new(AtomicBool::new(false));
        if c.log_every_secs > 0 {
            let every = Duration::from_secs(c.log_every_secs);
            tokio::spawn(oplog::run(shared.clone(), closed.clone(), every));
        }
        Ok(Arc::new(Collector {
            queue: tx,
            writer: Mutex::new(Some(handle)),
            shipper: Mutex::new(shipper),
            shared,
            signer,
            max_body_bytes: config.server.max_body_bytes,
            caps: Mutex::new(caps),
            replicated: c.replicate.is_some(),
            closed,
            payments,
        }))
    }

    /// Hands a new build's forms and stock caps to the writer, and returns once it holds them:
    /// a record is written with the form definition of its launch, and counts already sold
    /// stay sold (a cap lowered below them leaves nothing to sell; nothing sold is undone).
    pub async fn reload(&self, config: &crate::config::Config, manifest: &Manifest) -> Result<(), ReloadError> {
        let caps = caps_of(manifest);
        let changed = {
            let now = self.caps.lock().unwrap_or_else(|e| e.into_inner());
            changed_caps(&now, &caps)
        };
        if self.replicated && !changed.is_empty() {
            return Err(ReloadError::ReplicatedCaps(changed));
        }
        let (done, wait) = oneshot::channel();
        let reload = writer::Reload {
            forms: manifest.forms.clone(),
            shares: (!self.replicated).then(|| shares(&caps, config.collect.stock_share)),
            done,
        };
        self.queue.send(Msg::Reload(reload)).await.map_err(|_| ReloadError::Stopped)?;
        wait.await.map_err(|_| ReloadError::Stopped)?;
        *self.caps.lock().unwrap_or_else(|e| e.into_inner()) = caps;
        Ok(())
    }

    /// `POST /submit/{form}`, as routes the server adds its own state and fallback to.
    /// `POST /hook/{provider}` too when a payment webhook is configured.
    pub fn router<S: Clone + Send + Sync + 'static>(self: &Arc<Self>) -> axum::Router<S> {
        let router =
            axum::Router::new().route("/submit/{form}", axum::routing::post(handler::submit)).with_state(self.clone());
        match &self.payments {
            Some(p) => router.merge(p.router()),
            None => router,
        }
    }

    /// The buyer's receipt as HTML, from the request's signed receipt cookie; none without
    /// one that verifies.
    pub fn receipt_html(&self, forms: &Forms, headers: &http::HeaderMap) -> Option<String> {
        Receipt::from_headers(&self.signer, headers).map(|r| r.to_html(&forms.catalog))
    }

    /// Whether the writer can write: false after a write error until a write succeeds again,
    /// and for good once the writer thread is gone (its end of the queue closes as it dies).
    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed) && !self.queue.is_closed()
    }

    /// Whether a GET of `route` must answer with the sold-out page instead (the landing page
    /// and the pages of order forms, once every SKU they sell is gone).
    pub fn shows_sold_out(&self, forms: &Forms, route: &str) -> bool {
        if !self.shared.any_sold_out.load(Ordering::Relaxed) {
            return false;
        }
        let Some(skus) = forms.sold_out_routes.get(route) else { return false };
        let gone = self.shared.sold_out.read().unwrap_or_else(|e| e.into_inner());
        skus.iter().all(|s| gone.contains(s))
    }

    /// Stops taking posts, flushes, fsyncs and seals every open segment.
    pub async fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let (done, wait) = oneshot::channel();
        if self.queue.send(Msg::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        // The writer is gone, so the shipper sends what is left (bounded) and stops.
        let shipper = self.shipper.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(s) = shipper {
            let _ = s.await;
        }
        if let Some(p) = &self.payments {
            p.shutdown().await;
        }
    }
}

impl Forms {
    /// The collector's side of the build in `dist` (its `manifest`), under `config`.
    pub fn new(config: &crate::config::Config, manifest: &Manifest, dist: &Path) -> Forms {
        let linked: BTreeSet<&str> = manifest.forms.values().filter_map(|f| f.links_to.as_deref()).collect();
        let forms = manifest
            .forms
            .iter()
            .map(|(name, form)| {
                let rt = FormRuntime {
                    form: form.clone(),
                    name: name.as_str().into(),
                    sets_cookie: linked.contains(name.as_str()),
                    thanks: answer::location(&form.thanks),
                    post_seconds: metrics::histogram!("cofferdam_collect_post_seconds", "form" => name.clone()),
                };
                (name.clone(), rt)
            })
            .collect();
        let mut origins = vec![config.site.origin()];
        origins.extend(config.server.origins.iter().map(|o| crate::config::origin_of(o)));
        Forms {
            sold_out_routes: sold_out_routes(manifest),
            forms,
            catalog: manifest.catalog.clone(),
            pages: Pages::load(manifest, dist),
            origins,
            secure_cookie: config.site.base_url.starts_with("https://"),
        }
    }

    /// The busy page (503), as the server answers a connection over its cap.
    pub fn busy(&self) -> axum::response::Response {
        self.pages.busy()
    }
}

/// Capped SKU → cap, from the catalog.
fn caps_of(manifest: &Manifest) -> Caps {
    manifest.catalog.iter().filter_map(|p| Some((p.sku.to_string(), p.stock?))).collect()
}

/// This node's share of each cap (`collect.stock_share`, for nodes that split caps).
fn shares(caps: &Caps, stock_share: f64) -> HashMap<String, u64> {
    caps.iter().map(|(sku, cap)| (sku.clone(), (*cap as f64 * stock_share).floor() as u64)).collect()
}

/// `A 50 → 80, B none → 10`: the caps that differ, for the operator.
fn changed_caps(old: &Caps, new: &Caps) -> String {
    let show = |n: Option<&u64>| n.map_or("none".to_string(), |n| n.to_string());
    let skus: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let changed: Vec<String> = skus
        .into_iter()
        .filter(|s| old.get(*s) != new.get(*s))
        .map(|s| format!("{s} {} → {}", show(old.get(s)), show(new.get(s))))
        .collect();
    changed.join(", ")
}

/// The SKUs that must all be gone before a page shows "sold out": for an order form's pages,
/// what that form sells; for the landing page, everything the primary order forms sell.
/// Follow-up forms (`links_to`) never turn a page into "sold out": the thank-you page must stay.
fn sold_out_routes(manifest: &Manifest) -> HashMap<String, BTreeSet<String>> {
    let sells = |form: &Form| -> BTreeSet<String> {
        let capped = |sku: &str| manifest.product(sku).is_some_and(|p| p.stock.is_some());
        form.fields
            .iter()
            .filter(|f| f.kind == FieldKind::Sku)
            .flat_map(|f| {
                if f.options.is_empty() {
                    manifest.catalog.iter().map(|p| p.sku.to_string()).collect::<Vec<_>>()
                } else {
                    f.options.iter().map(|o| o.value().to_string()).collect()
                }
            })
            .filter(|s| capped(s))
            .collect()
    };
    let mut routes: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut landing = BTreeSet::new();
    for (name, form) in &manifest.forms {
        let skus = sells(form);
        if form.links_to.is_some() || skus.is_empty() {
            continue;
        }
        // A product without a cap never sells out, so neither does a form offering it.
        let uncapped = form.fields.iter().any(|f| {
            f.kind == FieldKind::Sku
                && f.options.iter().any(|o| manifest.product(o.value()).is_some_and(|p| p.stock.is_none()))
        });
        if uncapped {
            continue;
        }
        for page in manifest.pages.iter().filter(|p| p.forms.contains(name)) {
            for address in page.addresses() {
                routes.entry(address).or_default().extend(skus.iter().cloned());
            }
        }
        landing.extend(skus);
    }
    // Every address of a page (its route and its file) turns, or none would.
    let landing_page = manifest.pages.iter().find(|p| p.route == manifest.landing);
    let landing_addresses = landing_page.map_or_else(|| vec![manifest.landing.clone()], |p| p.addresses().to_vec());
    if !landing.is_empty() {
        for address in landing_addresses {
            routes.entry(address).or_default().extend(landing.iter().cloned());
        }
    }
    routes
}

fn signing_key(c: &crate::config::CollectConfig) -> Result<Vec<u8>, CollectError> {
    let key = c.signing_key();
    let env = c.signing_key_env.clone();
    match key {
        Some(k) if c.production && k == EXAMPLE_KEY => Err(CollectError::ExampleKey { env }),
        Some(k) => Ok(k.into_bytes()),
        None if c.production => Err(CollectError::MissingKey { env }),
        None => {
            tracing::warn!(
                "no signing key (${env} or collect.signing_key): using a random one, so cookies end with this process"
            );
            let mut k = vec![0u8; 32];
            getrandom::fill(&mut k).map_err(|e| CollectError::Thread(std::io::Error::other(e.to_string())))?;
            Ok(k)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn health_turns_unhealthy_when_the_writer_thread_dies() {
        let tmp = tempfile::tempdir().unwrap();
        let mut site = Site::load(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        site.config.build.output_dir = tmp.path().join("dist");
        site.config.collect.dir = tmp.path().join("collected");
        crate::build::build_site(&site, None).unwrap();
        let dist = site.output_dir();
        let manifest = Manifest::load(&dist).unwrap();
        let c = Collector::start(&site, &manifest).await.unwrap();
        assert!(c.healthy());
        // A job for a form the writer does not know makes it panic: a writer bug, for real.
        let (reply, answer) = oneshot::channel();
        let valid = validate::Valid { fields: Default::default(), lines: vec![], total_cents: None, currency: None };
        let job = writer::Job {
            form: "no-such-form".into(),
            valid,
            parent_ref: None,
            meta: crate::record::Meta::default(),
            received_at: jiff::Timestamp::now(),
            dedupe_key: [0; 32],
            reply,
        };
        c.queue.send(Msg::Job(job)).await.unwrap();
        assert!(answer.await.is_err(), "the writer died without answering");
        let handle = c.writer.lock().unwrap().take().unwrap();
        assert!(tokio::task::spawn_blocking(move || handle.join()).await.unwrap().is_err(), "it panicked");
        assert!(!c.healthy(), "/healthz must not say ok while every post is answered 503");
    }
}
