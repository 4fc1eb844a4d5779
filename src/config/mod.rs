//! `cofferdam.toml`, typed: the one place where a site's settings are read.
//!
//! Every section has defaults that work for the example site. Errors name the file, the line and
//! the key, and say what would be valid.

mod check;
pub mod expr;
mod import;
pub(crate) mod locate;
mod payments;
pub mod recipe;
mod replicate;

pub use check::CheckConfig;
pub use import::{
    Assign, Entity, EntityMap, ImportConfig, KeyColumns, KeyMatch, LookupSite, Mapping, Offset, TableMap, TableSpec,
};
pub use payments::{LinkTemplate, Part, PaymentLink, PaymentsConfig, StripeConfig};
pub use replicate::{AckPolicy, ReplicateConfig};

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const CONFIG_FILE: &str = "cofferdam.toml";

/// A configuration error, located as precisely as the source allows.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no {CONFIG_FILE} in {}: run `cofferdam init DIR` to make a new site, or pass `--site DIR` to name the folder holding one",
        shown_dir(.dir)
    )]
    NotASite { dir: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{}: {message}", .path.display(), .line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
    Invalid { path: PathBuf, line: Option<usize>, message: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub site: SiteConfig,
    #[serde(default)]
    pub build: BuildConfig,
    /// Forms by name; the name is the path segment in `POST /submit/{form}`.
    #[serde(default)]
    pub forms: BTreeMap<String, Form>,
    #[serde(default)]
    pub catalog: Vec<Product>,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub collect: CollectConfig,
    #[serde(default)]
    pub import: ImportConfig,
    #[serde(default)]
    pub check: CheckConfig,
    #[serde(default)]
    pub payments: PaymentsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteConfig {
    pub title: String,
    /// The public origin (`https://shop.example`): used for absolute links and the `Origin` check.
    pub base_url: String,
    pub language: String,
    /// The default social preview image (`og:image`) of every page: a file of `content/` or an
    /// absolute URL. A page's front matter `image` wins.
    pub image: Option<String>,
    /// Free values handed to every template as `site.extra`.
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl SiteConfig {
    /// `base_url`'s origin, as browsers send it in `Origin`: `https://shop.example/x/` →
    /// `https://shop.example`.
    pub fn origin(&self) -> String {
        origin_of(&self.base_url)
    }
}

/// A URL's origin, its scheme and host (with port) without path, query or fragment:
/// `https://shop.example/path?q` → `https://shop.example`. Text without a scheme stays as it is.
/// The one place an origin is parsed (the `Origin` check, `check`'s own-host test).
pub fn origin_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.trim_end_matches('/').to_string() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    format!("{scheme}://{}", &rest[..end])
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            title: "Launch".into(),
            base_url: "http://127.0.0.1:8080".into(),
            language: "en".into(),
            image: None,
            extra: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    pub content_dir: PathBuf,
    pub templates_dir: PathBuf,
    pub output_dir: PathBuf,
    /// Write `.br` and `.gz` twins of every text file.
    pub precompress: bool,
    /// Brotli quality 0..=11 (default 5; see `build::compress::brotli_bytes` for why).
    pub brotli_quality: u32,
    /// Gzip level 0..=9.
    pub gzip_level: u32,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            content_dir: "content".into(),
            templates_dir: "templates".into(),
            output_dir: "dist".into(),
            precompress: true,
            // 5, not 9: the same .br bytes within 0.2% at 1/25 of the time (bench/build.sh).
            brotli_quality: 5,
            gzip_level: 9,
        }
    }
}

/// One HTML form, rendered from this definition and validated against it by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Form {
    #[serde(default)]
    pub title: String,
    /// Where the visitor is sent (303) once the record is durable, e.g. `/thanks/`.
    pub thanks: String,
    #[serde(default = "default_submit_label")]
    pub submit_label: String,
    /// The log formats this form is written as.
    #[serde(default = "default_store")]
    pub store: Vec<StoreFormat>,
    /// Name of the hidden honeypot field; a post that fills it is accepted and not stored.
    #[serde(default = "default_honeypot")]
    pub honeypot: String,
    /// The field (type `int`) that holds the quantity of the `sku` field, if any.
    #[serde(default)]
    pub quantity_field: Option<String>,
    /// A form whose reference (from the signed cookie set after it) links this form's records,
    /// e.g. a one-time offer linked to its order.
    #[serde(default)]
    pub links_to: Option<String>,
    /// The provider's hosted payment page the 303 goes to instead of `thanks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentLink>,
    pub fields: Vec<Field>,
}

impl Form {
    /// The one store format a form's records are counted from (stock, stats, import, the
    /// stream): its first. The others are copies of the same records.
    pub fn primary_store(&self) -> StoreFormat {
        self.store.first().copied().unwrap_or_default()
    }
}

fn default_submit_label() -> String {
    "Send".into()
}
fn default_store() -> Vec<StoreFormat> {
    vec![StoreFormat::Jsonl]
}
fn default_honeypot() -> String {
    "website".into()
}

/// A log format; JSONL by default, and for the records of a form no config names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreFormat {
    #[default]
    Jsonl,
    Csv,
}

impl StoreFormat {
    pub fn extension(self) -> &'static str {
        match self {
            StoreFormat::Jsonl => "jsonl",
            StoreFormat::Csv => "csv",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Shared by every record's fields, so a post does not copy the names it stores.
    pub name: Arc<str>,
    #[serde(default)]
    pub label: String,
    #[serde(rename = "type")]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub min_len: Option<u32>,
    #[serde(default)]
    pub max_len: Option<u32>,
    /// A regular expression the whole value must match (also rendered as HTML5 `pattern`).
    #[serde(default)]
    pub pattern: Option<String>,
    /// Bounds of an `int` field (quantities).
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    /// Allowed values of a `select` field, or the allowed SKUs of a `sku` field (all of the
    /// catalog when empty).
    #[serde(default)]
    pub options: Vec<Choice>,
    #[serde(default)]
    pub placeholder: Option<String>,
    #[serde(default)]
    pub default: Option<String>,
    /// HTML `autocomplete` hint (`name`, `email`, `country`, ...).
    #[serde(default)]
    pub autocomplete: Option<String>,
    #[serde(default)]
    pub help: Option<String>,
}

impl Field {
    pub fn label(&self) -> &str {
        if self.label.is_empty() {
            &self.name
        } else {
            &self.label
        }
    }

    /// The longest value accepted, whether or not configured: every field is bounded.
    pub fn effective_max_len(&self) -> u32 {
        self.max_len.unwrap_or(match self.kind {
            FieldKind::Textarea => 2000,
            FieldKind::Email => 254,
            _ => 200,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    Text,
    Textarea,
    Email,
    Int,
    Select,
    Sku,
    Checkbox,
}

impl FieldKind {
    pub const ALL: &'static str = "text, textarea, email, int, select, sku, checkbox";
}

/// An option of a `select`: either `"DE"` or `{ value = "DE", label = "Germany" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Choice {
    Plain(String),
    Labelled { value: String, label: String },
}

impl Choice {
    pub fn value(&self) -> &str {
        match self {
            Choice::Plain(v) => v,
            Choice::Labelled { value, .. } => value,
        }
    }
    pub fn label(&self) -> &str {
        match self {
            Choice::Plain(v) => v,
            Choice::Labelled { label, .. } => label,
        }
    }
}

/// A product that can be ordered. Prices are integers in the currency's minor unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    // Shared with every order line that names the product, as the form field names are.
    pub sku: Arc<str>,
    pub name: Arc<str>,
    pub price_cents: u64,
    #[serde(default = "default_currency")]
    pub currency: Arc<str>,
    /// The most that may ever be sold ("the first 5000"); `None` is unlimited.
    #[serde(default)]
    pub stock: Option<u64>,
    #[serde(default)]
    pub description: Option<String>,
}

fn default_currency() -> Arc<str> {
    "EUR".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Health and metrics; loopback by default, never on the public address.
    pub admin: String,
    /// This node's name, in every reference (`{node}-{seq}`) and segment file name.
    pub node: String,
    /// `Cache-Control: max-age` for HTML, in seconds (short, so a CDN picks up a rebuild).
    pub html_max_age: u32,
    /// `Strict-Transport-Security: max-age`, sent only when set (behind TLS).
    pub hsts_max_age: Option<u32>,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub max_connections: usize,
    /// Requests per second per client IP; unlimited when unset.
    pub rate_limit_per_ip: Option<u32>,
    /// Files larger than this stream from disk with `Range` support instead of living in memory.
    pub stream_threshold_bytes: u64,
    /// Origins accepted on form posts besides `site.base_url` and the request's own host.
    pub origins: Vec<String>,
    /// Header carrying the client IP when behind a proxy (e.g. `X-Forwarded-For`).
    pub client_ip_header: Option<String>,
    /// The origins of the forms' payment links, which the CSP's `form-action` must allow:
    /// derived from `forms.*.payment` when the config loads, never set in the file.
    #[serde(skip)]
    pub payment_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            admin: "127.0.0.1:9090".into(),
            node: "n1".into(),
            html_max_age: 60,
            hsts_max_age: None,
            max_header_bytes: 8 * 1024,
            max_body_bytes: 16 * 1024,
            header_timeout_ms: 5_000,
            body_timeout_ms: 10_000,
            max_connections: 20_000,
            rate_limit_per_ip: None,
            stream_threshold_bytes: 1024 * 1024,
            origins: Vec::new(),
            client_ip_header: None,
            payment_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    pub dir: PathBuf,
    /// A segment is sealed and a new one opened past this size...
    pub segment_max_bytes: u64,
    /// ...or this age.
    pub segment_max_age_secs: u64,
    /// Requests waiting per form writer before the server sheds load with 503.
    pub queue_capacity: usize,
    /// Most records written under one fsync.
    pub max_batch: usize,
    /// Key for the signed reference cookie; `signing_key_env` is read first.
    pub signing_key: Option<String>,
    pub signing_key_env: String,
    /// In production a missing or example signing key is a start-up error.
    pub production: bool,
    /// A second identical post within this window is recorded once.
    pub double_submit_window_secs: u64,
    /// The part of each catalog stock cap this node may sell (several nodes split a cap).
    pub stock_share: f64,
    /// Replicate every record to NATS JetStream and share stock caps across nodes.
    pub replicate: Option<ReplicateConfig>,
    /// Seconds between the operator's summary lines while posts come in (0: none).
    pub log_every_secs: u64,
}

impl CollectConfig {
    /// The key cookies are signed with (and derived import values keyed by): the environment's
    /// `signing_key_env` when set and not empty, else `collect.signing_key`. `serve`, `import`
    /// and `check` all read it here.
    pub fn signing_key(&self) -> Option<String> {
        std::env::var(&self.signing_key_env).ok().filter(|k| !k.is_empty()).or_else(|| self.signing_key.clone())
    }
}

impl Default for CollectConfig {
    fn default() -> Self {
        CollectConfig {
            dir: "collected".into(),
            segment_max_bytes: 64 * 1024 * 1024,
            segment_max_age_secs: 3600,
            queue_capacity: 8192,
            max_batch: 2048,
            signing_key: None,
            signing_key_env: "COFFERDAM_SIGNING_KEY".into(),
            production: false,
            double_submit_window_secs: 600,
            stock_share: 1.0,
            replicate: None,
            log_every_secs: 5,
        }
    }
}

/// A loaded site: its root folder, the config and where the config came from.
#[derive(Debug, Clone)]
pub struct Site {
    pub root: PathBuf,
    pub config_path: PathBuf,
    pub config: Config,
}

impl Site {
    /// Loads `DIR/cofferdam.toml` and validates it.
    pub fn load(root: &Path) -> Result<Site, ConfigError> {
        let config_path = root.join(CONFIG_FILE);
        let source = std::fs::read_to_string(&config_path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ConfigError::NotASite { dir: root.to_path_buf() },
            _ => ConfigError::Read { path: config_path.clone(), source },
        })?;
        let config = Config::parse(&source, &config_path)?;
        Ok(Site { root: root.to_path_buf(), config_path, config })
    }

    pub fn content_dir(&self) -> PathBuf {
        self.root.join(&self.config.build.content_dir)
    }
    pub fn templates_dir(&self) -> PathBuf {
        self.root.join(&self.config.build.templates_dir)
    }
    pub fn output_dir(&self) -> PathBuf {
        self.root.join(&self.config.build.output_dir)
    }
    pub fn collected_dir(&self) -> PathBuf {
        self.root.join(&self.config.collect.dir)
    }
}

impl Config {
    /// Parses and validates; `path` is only used in messages.
    pub fn parse(source: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |e: &toml::de::Error, key: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: e.span().map(|s| locate::line_of_offset(source, s.start)),
            message: if key.is_empty() {
                e.message().trim_end().to_string()
            } else {
                format!("{key}: {}", e.message().trim_end())
            },
        };
        let de = toml::Deserializer::parse(source).map_err(|e| invalid(&e, String::new()))?;
        let config: Config =
            serde_path_to_error::deserialize(de).map_err(|e| invalid(e.inner(), key_path(e.path())))?;
        config.validate().map_err(|(key, message)| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: locate::line_of_key(source, &key),
            message: format!("{}: {message}", key.join(".")),
        })?;
        let mut config = config;
        let origins: BTreeSet<String> = config
            .forms
            .values()
            .filter_map(|f| f.payment.as_ref())
            .flat_map(|p| p.templates().map(|(_, t)| t.origin().to_string()).collect::<Vec<_>>())
            .collect();
        config.server.payment_origins = origins.into_iter().collect();
        config.import.mapping = import::compile(&config).map_err(|p| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: p.offset.map(|o| locate::line_of_offset(source, o)).or_else(|| locate::line_of_key(source, &p.key)),
            message: format!("{}: {}", p.key.join("."), p.message),
        })?;
        Ok(config)
    }

    pub fn product(&self, sku: &str) -> Option<&Product> {
        self.catalog.iter().find(|p| *p.sku == *sku)
    }

    /// Semantic checks serde cannot express. The error is (key path, message).
    fn validate(&self) -> Result<(), (Vec<String>, String)> {
        let key = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let b = &self.build;
        if b.brotli_quality > 11 {
            return Err((key(&["build", "brotli_quality"]), "must be 0..=11".into()));
        }
        if b.gzip_level > 9 {
            return Err((key(&["build", "gzip_level"]), "must be 0..=9".into()));
        }
        if !valid_name(&self.server.node) {
            return Err((
                key(&["server", "node"]),
                format!("{:?} is not a valid node name (letters, digits, `_` and `-`)", self.server.node),
            ));
        }
        if !(self.collect.stock_share > 0.0 && self.collect.stock_share <= 1.0) {
            return Err((key(&["collect", "stock_share"]), "must be in (0, 1]".into()));
        }
        if let Some(r) = &self.collect.replicate {
            r.validate().map_err(|(k, m)| (key(&["collect", "replicate", k]), m))?;
            if self.collect.stock_share != 1.0 {
                return Err((
                    key(&["collect", "stock_share"]),
                    "with [collect.replicate] every node sells from one shared cap: remove stock_share".into(),
                ));
            }
        }
        let mut skus = BTreeSet::new();
        for (i, p) in self.catalog.iter().enumerate() {
            let at = |k: &str| vec!["catalog".to_string(), i.to_string(), k.to_string()];
            if !valid_name(&p.sku) {
                return Err((at("sku"), format!("{:?} is not a valid SKU (letters, digits, `_` and `-`)", p.sku)));
            }
            if !skus.insert(&*p.sku) {
                return Err((at("sku"), format!("SKU {:?} is listed twice", p.sku)));
            }
            if p.currency.len() != 3 || !p.currency.chars().all(|c| c.is_ascii_uppercase()) {
                return Err((at("currency"), format!("{:?} is not an ISO 4217 code like \"EUR\"", p.currency)));
            }
        }
        for (name, form) in &self.forms {
            let at = |k: &[&str]| {
                let mut v = vec!["forms".to_string(), name.clone()];
                v.extend(k.iter().map(|s| s.to_string()));
                v
            };
            if !valid_name(name) {
                return Err((at(&[]), format!("{name:?} is not a valid form name (letters, digits, `_` and `-`)")));
            }
            if name == crate::payment::PAYMENTS_DIR {
                return Err((
                    at(&[]),
                    format!("{name:?} is reserved for the payment log (collected/{name}/): rename the form"),
                ));
            }
            if !form.thanks.starts_with('/') {
                return Err((at(&["thanks"]), format!("{:?} must be a site path starting with `/`", form.thanks)));
            }
            if form.store.is_empty() {
                return Err((at(&["store"]), "needs at least one of \"jsonl\", \"csv\"".into()));
            }
            if let Some(link) = &form.links_to {
                if !self.forms.contains_key(link) {
                    return Err((at(&["links_to"]), format!("unknown form {link:?} (forms: {})", self.form_names())));
                }
            }
            let mut seen = BTreeSet::new();
            for (i, f) in form.fields.iter().enumerate() {
                let idx = i.to_string();
                let fat = |k: &str| at(&["fields", &idx, k]);
                if !valid_name(&f.name) {
                    return Err((fat("name"), format!("{:?} is not a valid field name", f.name)));
                }
                if !seen.insert(&*f.name) {
                    return Err((fat("name"), format!("field {:?} is defined twice", f.name)));
                }
                if *f.name == *form.honeypot {
                    return Err((fat("name"), format!("field {:?} has the honeypot's name", f.name)));
                }
                if let (Some(lo), Some(hi)) = (f.min_len, f.max_len) {
                    if lo > hi {
                        return Err((fat("min_len"), format!("min_len {lo} is above max_len {hi}")));
                    }
                }
                if let (Some(lo), Some(hi)) = (f.min, f.max) {
                    if lo > hi {
                        return Err((fat("min"), format!("min {lo} is above max {hi}")));
                    }
                }
                if let Some(p) = &f.pattern {
                    if let Err(e) = regex::Regex::new(&format!("^(?:{p})$")) {
                        return Err((fat("pattern"), format!("not a valid regular expression: {e}")));
                    }
                }
                match f.kind {
                    FieldKind::Select if f.options.is_empty() => {
                        return Err((fat("options"), "a select needs at least one option".into()));
                    }
                    FieldKind::Sku => {
                        if self.catalog.is_empty() {
                            return Err((fat("type"), "a sku field needs a [[catalog]] entry".into()));
                        }
                        for o in &f.options {
                            if self.product(o.value()).is_none() {
                                return Err((
                                    fat("options"),
                                    format!("unknown SKU {:?} (catalog: {})", o.value(), self.sku_names()),
                                ));
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let Some(payment) = &form.payment {
                for (key, template) in payment.templates() {
                    let mut key_at: Vec<&str> = vec!["payment"];
                    key_at.extend(key.iter().map(String::as_str));
                    for part in &template.parts {
                        if let Part::Field(f) = part {
                            if !form.fields.iter().any(|x| *x.name == **f) {
                                return Err((at(&key_at), format!("{{field:{f}}}: no field named {f:?} in this form")));
                            }
                        }
                    }
                }
                let sku_field = form.fields.iter().find(|f| f.kind == FieldKind::Sku);
                for sku in payment.sku_links.keys() {
                    let offered = sku_field.is_some_and(|f| {
                        (f.options.is_empty() && self.product(sku).is_some())
                            || f.options.iter().any(|o| o.value() == sku)
                    });
                    if !offered {
                        return Err((at(&["payment", "sku_links"]), format!("{sku:?} is not a SKU this form sells")));
                    }
                }
            }
            if form.fields.iter().filter(|f| f.kind == FieldKind::Sku).count() > 1 {
                return Err((at(&["fields"]), "a form takes at most one sku field".into()));
            }
            if let Some(q) = &form.quantity_field {
                match form.fields.iter().find(|f| *f.name == **q) {
                    Some(f) if f.kind == FieldKind::Int => {}
                    Some(_) => return Err((at(&["quantity_field"]), format!("field {q:?} must be of type \"int\""))),
                    None => return Err((at(&["quantity_field"]), format!("no field named {q:?} in this form"))),
                }
            }
        }
        Ok(())
    }

    pub(crate) fn form_names(&self) -> String {
        self.forms.keys().cloned().collect::<Vec<_>>().join(", ")
    }
    fn sku_names(&self) -> String {
        self.catalog.iter().map(|p| &*p.sku).collect::<Vec<_>>().join(", ")
    }
}

/// `catalog.0.price_cents`: where a type error is, in the terms of the file.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let parts: Vec<String> = path
        .iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect();
    parts.join(".")
}

/// `.` as "the current folder (/abs/path)", other folders as given.
fn shown_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() || dir == Path::new(".") {
        let here = std::env::current_dir().map(|d| format!(" ({})", d.display())).unwrap_or_default();
        return format!("the current folder{here}");
    }
    dir.display().to_string()
}

/// Names that end up in URLs, file names and references.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Config, String> {
        Config::parse(src, Path::new("cofferdam.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn example_site_config_is_valid() {
        let src = include_str!("../../cofferdam.toml");
        let config = parse(src).unwrap();
        assert_eq!(config.forms["order"].fields.len(), 10);
        assert_eq!(config.forms["offer"].links_to.as_deref(), Some("order"));
        assert_eq!(config.product("AURORA-EB").unwrap().stock, Some(5000));
    }

    #[test]
    fn empty_config_takes_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:8080");
        assert_eq!(config.import.to, "sqlite://main.db");
    }

    #[test]
    fn unknown_key_names_file_line_and_valid_keys() {
        let err = parse("[site]\ntitle = \"x\"\ntitel = \"y\"\n").unwrap_err();
        assert!(err.starts_with("cofferdam.toml:3: "), "{err}");
        assert!(err.contains("titel") && err.contains("base_url"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_line() {
        let err = parse("[server]\nmax_body_bytes = \"big\"\n").unwrap_err();
        assert!(err.starts_with("cofferdam.toml:2: "), "{err}");
    }

    #[test]
    fn unknown_field_type_lists_valid_types() {
        let src = "[forms.a]\nthanks = \"/t/\"\n[[forms.a.fields]]\nname = \"x\"\ntype = \"emial\"\n";
        let err = parse(src).unwrap_err();
        assert!(err.starts_with("cofferdam.toml:5: "), "{err}");
        assert!(err.contains("email"), "{err}");
    }

    /// The example config with `from` replaced by `to`, and the line `to` is on.
    fn example_with(from: &str, to: &str) -> (String, usize) {
        let src = include_str!("../../cofferdam.toml");
        assert!(src.contains(from), "{from}");
        let changed = src.replacen(from, to, 1);
        let line = changed[..changed.find(to).unwrap()].matches('\n').count() + 1;
        (changed, line)
    }

    #[test]
    fn mapping_errors_name_file_line_key_and_what_is_valid() {
        let cases = [
            (
                "given_name = \"split_name(field.name).given\"",
                "given_name = \"split_name(field.nmae).given\"",
                "import.forms.order.0.columns.given_name: form \"order\" has no field \"nmae\" (did you mean field.name?); its fields: name, email,",
            ),
            (
                "user_id = \"id(users)\"",
                "user_id = \"id(order_items)\"",
                "import.forms.order.1.columns.user_id: id(order_items): no earlier entity of form \"order\" writes order_items (earlier: users); entities are written in order",
            ),
            (
                "item_count = \"sum(line.quantity)\"",
                "item_count = \"line.quantity\"",
                "import.forms.order.1.columns.item_count: line values need per = \"line\" (one row per order line), or sum(…) over the lines",
            ),
            (
                "number = \"template('R{:09}', reserved_id)\"",
                "number = \"template('R{:09}' reserved_id)\"",
                "import.forms.order.1.columns.number: expected `,` or `)` (at \"reserved_id)\" in \"template('R{:09}' reserved_id)\")",
            ),
            (
                "order_id = \"parent(orders)\"",
                "order_id = \"parent(order)\"",
                "import.forms.offer.0.columns.order_id: parent(order): the parent form \"order\" writes no order row",
            ),
            (
                "email = \"lower(trim(field.email))\"\ngiven_name",
                "email = \"lower(trim(id(users)))\"\ngiven_name",
                "import.forms.order.0.columns.email: id(users): no earlier entity of form \"order\" writes users (earlier: none)",
            ),
            (
                "update = \"parent\"",
                "update = \"parents\"",
                "import.forms.offer.1.update: \"parents\": the only value is \"parent\"",
            ),
        ];
        for (from, to, expected) in cases {
            let (src, line) = example_with(from, to);
            let err = parse(&src).unwrap_err();
            let want = format!("cofferdam.toml:{line}: {expected}");
            assert!(err.starts_with(&want), "\n got: {err}\nwant: {want}");
        }
    }

    #[test]
    fn semantic_errors_name_key_and_line() {
        let src = "[[catalog]]\nsku = \"A\"\nname = \"a\"\nprice_cents = 1\n\n[forms.a]\nthanks = \"/t/\"\n[[forms.a.fields]]\nname = \"x\"\ntype = \"text\"\n[[forms.a.fields]]\nname = \"s\"\ntype = \"sku\"\noptions = [\"B\"]\n";
        let err = parse(src).unwrap_err();
        assert_eq!(err, "cofferdam.toml:14: forms.a.fields.1.options: unknown SKU \"B\" (catalog: A)");
        let err = parse("[forms.a]\nthanks = \"t\"\nfields = []\n").unwrap_err();
        assert!(err.starts_with("cofferdam.toml:2: forms.a.thanks"), "{err}");
        let err = parse("[forms.a]\nthanks = \"/t\"\nlinks_to = \"b\"\nfields = []\n").unwrap_err();
        assert!(err.contains(":3: forms.a.links_to: unknown form \"b\""), "{err}");
    }
}
