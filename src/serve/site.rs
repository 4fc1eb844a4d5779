//! The built site in memory: every file of `dist/` as prebuilt responses, one per encoding,
//! so that a hit does no file I/O and builds no header it could have built at start-up.
//! Files over `server.stream_threshold_bytes` keep only their headers here and stream from disk.

use super::headers;
use super::negotiate::Encoding;
use crate::config::ServerConfig;
use crate::manifest::{FileEntry, Manifest};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a representation's bytes are.
pub enum Source {
    Memory(Bytes),
    /// Large media: read per request, so start-up and memory do not grow with the videos.
    Disk {
        path: PathBuf,
        len: u64,
    },
}

impl Source {
    pub fn len(&self) -> u64 {
        match self {
            Source::Memory(b) => b.len() as u64,
            Source::Disk { len, .. } => *len,
        }
    }
}

/// One representation of a file: its bytes and every header it is served with.
pub struct Representation {
    pub body: Source,
    pub headers: HeaderMap,
    /// The ETag, to compare with `If-None-Match` without parsing headers.
    pub etag: HeaderValue,
}

/// A file, in each encoding it exists in.
pub struct Entry {
    pub identity: Representation,
    pub br: Option<Representation>,
    pub gzip: Option<Representation>,
    pub is_html: bool,
    /// The page has a receipt slot: a request with a receipt cookie gets it filled.
    pub receipt: Option<super::receipt::Slot>,
}

impl Entry {
    pub fn pick(&self, encoding: Encoding) -> &Representation {
        match encoding {
            Encoding::Br => self.br.as_ref().unwrap_or(&self.identity),
            Encoding::Gzip => self.gzip.as_ref().unwrap_or(&self.identity),
            Encoding::Identity => &self.identity,
        }
    }
    pub fn has(&self, encoding: Encoding) -> bool {
        match encoding {
            Encoding::Br => self.br.is_some(),
            Encoding::Gzip => self.gzip.is_some(),
            Encoding::Identity => true,
        }
    }
}

pub struct StaticSite {
    /// URL path → entry. Pages are reachable by their route (`/thanks/`) and file path.
    /// foldhash rather than SipHash: every request looks its path up here, and the keys are
    /// the build's own, never a visitor's (SipHash was ~170 instructions of a 11,500 GET).
    pub routes: hashbrown::HashMap<String, Arc<Entry>>,
    /// `/thanks` → `/thanks/` and the manifest's redirects.
    pub redirects: HashMap<String, (u16, HeaderValue)>,
    pub not_found: Option<Arc<Entry>>,
    pub sold_out: Option<Arc<Entry>>,
    pub files: usize,
    /// Identity bytes held in memory.
    pub bytes: u64,
    /// Files left on disk, over the stream threshold.
    pub streamed: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", .path.display())]
pub struct LoadError {
    path: std::path::PathBuf,
    #[source]
    source: std::io::Error,
}

impl StaticSite {
    pub fn load(dist: &Path, manifest: &Manifest, config: &ServerConfig) -> Result<StaticSite, LoadError> {
        let mut by_file: HashMap<&str, Arc<Entry>> = HashMap::new();
        let mut bytes = 0u64;
        let mut streamed = 0;
        for file in &manifest.files {
            let on_disk = file.size > config.stream_threshold_bytes;
            let read = |rel: &str| {
                let path = dist.join(rel);
                if on_disk {
                    // Checked now so that a broken `dist/` still fails at start-up.
                    let len =
                        std::fs::metadata(&path).map_err(|source| LoadError { path: path.clone(), source })?.len();
                    Ok(Source::Disk { path, len })
                } else {
                    std::fs::read(&path)
                        .map(|b| Source::Memory(Bytes::from(b)))
                        .map_err(|source| LoadError { path, source })
                }
            };
            let identity = read(&file.path)?;
            if on_disk {
                streamed += 1;
            } else {
                bytes += identity.len();
            }
            let twin = |ext: &str, size: Option<u64>| -> Result<Option<Source>, LoadError> {
                size.map(|_| read(&format!("{}.{ext}", file.path))).transpose()
            };
            let br = twin("br", file.br_size)?;
            let gz = twin("gz", file.gz_size)?;
            let is_html = file.content_type.starts_with("text/html");
            let receipt = match &identity {
                Source::Memory(b) if is_html => super::receipt::Slot::find(b),
                _ => None,
            };
            let mut entry = Entry {
                is_html,
                br: br.map(|b| representation(file, b, Some("br"), config)),
                gzip: gz.map(|b| representation(file, b, Some("gzip"), config)),
                identity: representation(file, identity, None, config),
                receipt,
            };
            if entry.receipt.is_some() {
                // Its address also answers with one buyer's receipt: no shared cache may keep it.
                for rep in [Some(&mut entry.identity), entry.br.as_mut(), entry.gzip.as_mut()].into_iter().flatten() {
                    rep.headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(super::receipt::CACHE_CONTROL));
                    rep.headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding, Cookie"));
                }
            }
            by_file.insert(file.path.as_str(), Arc::new(entry));
        }
        let mut routes = hashbrown::HashMap::new();
        let mut redirects = HashMap::new();
        for (path, entry) in &by_file {
            routes.insert(format!("/{path}"), entry.clone());
        }
        for page in &manifest.pages {
            if let Some(entry) = by_file.get(page.file.as_str()) {
                for address in page.addresses() {
                    routes.insert(address, entry.clone());
                }
                if let Some(bare) = page.route.strip_suffix('/').filter(|b| !b.is_empty()) {
                    redirects
                        .insert(bare.to_string(), (308, HeaderValue::from_str(&page.route).expect("routes are ASCII")));
                }
            }
        }
        for r in &manifest.redirects {
            if let Ok(to) = HeaderValue::from_str(&r.to) {
                redirects.insert(r.from.clone(), (r.status, to));
            }
        }
        let special = |file: &Option<String>| file.as_deref().and_then(|f| by_file.get(f).cloned());
        Ok(StaticSite {
            not_found: special(&manifest.special.not_found),
            sold_out: special(&manifest.special.sold_out),
            files: manifest.files.len(),
            bytes,
            streamed,
            routes,
            redirects,
        })
    }
}

fn representation(file: &FileEntry, body: Source, encoding: Option<&str>, config: &ServerConfig) -> Representation {
    // Strong ETag per representation: the content hash plus the encoding.
    let etag = HeaderValue::from_str(&format!(
        "\"{}{}\"",
        &file.hash[..16],
        encoding.map(|e| format!("-{e}")).unwrap_or_default()
    ))
    .expect("hex is a valid header value");
    let mut h = HeaderMap::with_capacity(12);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&file.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, headers::cache_control(file.fingerprinted, config));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if file.br_size.is_some() || file.gz_size.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if let Some(e) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(if e == "br" { "br" } else { "gzip" }));
    }
    headers::add_security(&mut h, config);
    // In the map, not added per answer: an insert into the answer's clone (whose entries are
    // exactly full) doubles them, and hyper keeps that map for as long as the connection lives.
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Representation { body, headers: h, etag }
}
