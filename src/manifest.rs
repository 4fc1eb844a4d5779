//! `dist/_cofferdam/manifest.json`: the build → serve contract.
//!
//! Written once by `cofferdam build`, read by `serve`, `check` and `rehearse`. It is versioned,
//! and its maps are sorted, so that a build is byte-for-byte reproducible.

use crate::config::{Form, Product};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const MANIFEST_VERSION: u32 = 1;
/// Relative to the output folder.
pub const MANIFEST_PATH: &str = "_cofferdam/manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub v: u32,
    pub site: SiteInfo,
    /// The landing page's route, normally `/`.
    pub landing: String,
    /// Every rendered page, sorted by route.
    pub pages: Vec<Page>,
    /// Every file in the output folder except the manifest and the `.br`/`.gz` twins, sorted by path.
    pub files: Vec<FileEntry>,
    /// The settings the `.br`/`.gz` twins were made with; absent when the build made none (and
    /// in manifests written before it was recorded). The next build keeps a twin of unchanged
    /// bytes only when these match its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twins: Option<Twins>,
    /// Source asset path (relative to `content/`) → fingerprinted output path.
    pub assets: BTreeMap<String, String>,
    pub forms: BTreeMap<String, Form>,
    pub catalog: Vec<Product>,
    pub special: SpecialPages,
    pub redirects: Vec<Redirect>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteInfo {
    pub title: String,
    pub base_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// `/`, `/thanks/`, `/404.html`.
    pub route: String,
    /// Output file relative to the output folder: `index.html`, `thanks/index.html`.
    pub file: String,
    /// Source relative to the site root: `content/thanks.md`.
    pub source: String,
    pub title: String,
    pub template: String,
    /// The forms rendered on this page (front matter `form = "order"` or `forms = [...]`).
    pub forms: Vec<String>,
}

impl Page {
    /// Every address the page is served at: its route (`/order/`) and its file
    /// (`/order/index.html`), the same for `/`, which is also `/index.html`.
    pub fn addresses(&self) -> [String; 2] {
        [self.route.clone(), format!("/{}", self.file)]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to the output folder, `/`-separated.
    pub path: String,
    pub content_type: String,
    pub size: u64,
    /// blake3 of the identity bytes, hex.
    pub hash: String,
    /// The name carries a content hash, so the file may be cached for a year.
    pub fingerprinted: bool,
    /// Sizes of the precompressed twins `path.br` / `path.gz`, when written.
    pub br_size: Option<u64>,
    pub gz_size: Option<u64>,
}

/// How the twins were compressed (`[build] brotli_quality` and `gzip_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Twins {
    pub brotli_quality: u32,
    pub gzip_level: u32,
}

/// Output files (relative paths) of the pages the server answers with on its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialPages {
    /// `content/404.md` → 404 answers.
    pub not_found: Option<String>,
    /// `content/busy.md` → 503 when the server sheds load.
    pub busy: Option<String>,
    /// `content/sold-out.md` → once the stock is gone.
    pub sold_out: Option<String>,
    /// `content/invalid.md` → 422 when a form post does not validate.
    pub invalid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    pub from: String,
    pub to: String,
    /// 301 or 308.
    pub status: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: no built site here (run `cofferdam build` first): {source}")]
    Missing {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a cofferdam manifest: {source}")]
    Malformed {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: manifest version {found}, this cofferdam reads version {MANIFEST_VERSION}: rebuild with `cofferdam build`")]
    Version { path: String, found: u32 },
}

impl Manifest {
    /// Reads `OUT/_cofferdam/manifest.json`.
    pub fn load(output_dir: &Path) -> Result<Manifest, ManifestError> {
        let path = output_dir.join(MANIFEST_PATH);
        let shown = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|source| ManifestError::Missing { path: shown.clone(), source })?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|source| ManifestError::Malformed { path: shown.clone(), source })?;
        if manifest.v != MANIFEST_VERSION {
            return Err(ManifestError::Version { path: shown, found: manifest.v });
        }
        Ok(manifest)
    }

    /// Pretty, sorted JSON with a trailing newline: what `build` writes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        out.push(b'\n');
        out
    }

    pub fn page(&self, route: &str) -> Option<&Page> {
        self.pages.iter().find(|p| p.route == route)
    }

    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.binary_search_by(|f| f.path.as_str().cmp(path)).ok().map(|i| &self.files[i])
    }

    pub fn product(&self, sku: &str) -> Option<&Product> {
        self.catalog.iter().find(|p| *p.sku == *sku)
    }

    /// Routes of the pages that show `form`.
    pub fn form_pages<'a>(&'a self, form: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pages.iter().filter(move |p| p.forms.iter().any(|f| f == form)).map(|p| p.route.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITHOUT_TWINS: &str = r#"{
  "v": 1,
  "site": { "title": "T", "base_url": "https://example.org" },
  "landing": "/",
  "pages": [],
  "files": [],
  "assets": {},
  "forms": {},
  "catalog": [],
  "special": { "not_found": null, "busy": null, "sold_out": null, "invalid": null },
  "redirects": []
}"#;

    #[test]
    fn a_manifest_written_before_twins_were_recorded_still_reads_and_round_trips() {
        let old: Manifest = serde_json::from_str(WITHOUT_TWINS).unwrap();
        assert_eq!(old.twins, None);
        assert!(!String::from_utf8(old.to_json()).unwrap().contains("twins"));
        let new = Manifest { twins: Some(Twins { brotli_quality: 5, gzip_level: 9 }), ..old };
        let json = new.to_json();
        assert!(String::from_utf8_lossy(&json).contains("\"brotli_quality\": 5"));
        assert_eq!(serde_json::from_slice::<Manifest>(&json).unwrap(), new);
    }
}
