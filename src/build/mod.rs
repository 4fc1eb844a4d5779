//! `cofferdam build`: `content/` + `templates/` → `dist/` + manifest.
//!
//! The pipeline, one file per stage: [`content`] finds pages and assets, [`front_matter`] and
//! [`markdown`] read a page, [`assets`] fingerprints files and rewrites references, [`forms`]
//! renders form definitions as plain HTML, [`render`] runs Tera, [`compress`] writes the `.br`
//! and `.gz` twins. Everything is written into a temporary folder that replaces the output
//! folder only once the whole build has succeeded.

mod assets;
mod compress;
mod content;
pub(crate) mod forms;
mod front_matter;
mod init;
mod markdown;
mod render;

pub use forms::{esc as escape_html, format_price, render as render_form, render_filled as render_filled_form, Filled};
pub use init::init_cli;

use crate::config::{ConfigError, Site};
use crate::manifest::{FileEntry, Manifest, SiteInfo, SpecialPages, MANIFEST_PATH, MANIFEST_VERSION};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// The site folder (holding cofferdam.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Output folder (default: `build.output_dir`, i.e. `dist/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Folder to create the new site in.
    pub dir: PathBuf,
    /// Import into this shop's own tables: the site's [import] is its recipe (README, "Recipes").
    #[arg(long, value_enum)]
    pub shop: Option<crate::config::recipe::Shop>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Something wrong in a source file, located as precisely as the source allows.
    #[error("{}{}: {message}", .file.display(), .line.map(|l| format!(":{l}")).unwrap_or_default())]
    Source { file: PathBuf, line: Option<usize>, message: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    pub(crate) fn at(file: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> Self {
        BuildError::Source { file: file.into(), line, message: message.into() }
    }
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
        move |source| BuildError::Io { path: path.to_path_buf(), source }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub output: PathBuf,
    pub pages: usize,
    pub files: usize,
    pub bytes: u64,
    pub elapsed: Duration,
}

pub fn cli(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let site = Site::load(&args.site)?;
    let report = build_site(&site, args.out.as_deref())?;
    println!(
        "built {} pages, {} files ({} bytes) into {} in {} ms",
        report.pages,
        report.files,
        report.bytes,
        report.output.display(),
        report.elapsed.as_millis()
    );
    Ok(ExitCode::SUCCESS)
}

/// Builds `site` into `out` (default: the configured output folder), atomically: on error the
/// previous output is untouched and nothing half-built is left behind.
pub fn build_site(site: &Site, out: Option<&Path>) -> Result<BuildReport, BuildError> {
    let started = Instant::now();
    let output = out.map(Path::to_path_buf).unwrap_or_else(|| site.output_dir());
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(BuildError::io(&parent))?;
    let staging =
        tempfile::Builder::new().prefix(".cofferdam-build-").tempdir_in(&parent).map_err(BuildError::io(&parent))?;

    let manifest = build_into(site, staging.path())?;
    let bytes = manifest.files.iter().map(|f| f.size).sum();
    let report = BuildReport {
        output: output.clone(),
        pages: manifest.pages.len(),
        files: manifest.files.len(),
        bytes,
        elapsed: Duration::ZERO,
    };
    swap_into_place(staging, &output)?;
    Ok(BuildReport { elapsed: started.elapsed(), ..report })
}

/// Renders the whole site into `dir` (empty) and returns the manifest written there.
fn build_into(site: &Site, dir: &Path) -> Result<Manifest, BuildError> {
    let config = &site.config;
    let sources = content::discover(&site.root, &site.content_dir())?;
    let assets = assets::process(&site.root, &site.content_dir(), &sources.assets, dir)?;
    let pages =
        sources.pages.par_iter().map(|p| content::read_page(&site.root, p, config)).collect::<Result<Vec<_>, _>>()?;
    content::check_routes(&pages)?;
    content::check_thanks(site, &pages)?;

    let renderer = render::Renderer::new(site, &assets)?;
    // Each page is described and compressed from memory as it is written: reading 10,000
    // pages back for their hash and twins cost as much as writing them (bench/README.md).
    let page_files = pages
        .par_iter()
        .map(|page| {
            let body = markdown::to_html(page, &assets)?;
            let html = renderer.render(page, &body)?;
            let target = dir.join(&page.file);
            if let Some(p) = target.parent() {
                std::fs::create_dir_all(p).map_err(BuildError::io(p))?;
            }
            std::fs::write(&target, &html).map_err(BuildError::io(&target))?;
            let entry = describe(relative(dir, &target), html.as_bytes(), false);
            compress::write_twins(dir, entry, html.as_bytes(), &config.build)
        })
        .collect::<Result<Vec<FileEntry>, BuildError>>()?;

    let written: std::collections::HashSet<&str> = page_files.iter().map(|f| f.path.as_str()).collect();
    let others = describe_files(dir, &assets.fingerprinted_paths(), &written)?;
    let mut files = compress::twins(dir, others, &config.build)?;
    files.extend(page_files);
    files.sort_by(|a, b| a.path.cmp(&b.path));

    let special = |name: &str| pages.iter().find(|p| p.special.as_deref() == Some(name)).map(|p| p.file.clone());
    let mut redirects: Vec<_> = pages.iter().flat_map(|p| p.redirects()).collect();
    redirects.sort_by(|a, b| a.from.cmp(&b.from));
    let mut manifest_pages: Vec<_> = pages.iter().map(|p| p.manifest_entry()).collect();
    manifest_pages.sort_by(|a, b| a.route.cmp(&b.route));
    let manifest = Manifest {
        v: MANIFEST_VERSION,
        site: SiteInfo { title: config.site.title.clone(), base_url: config.site.base_url.clone() },
        landing: "/".into(),
        pages: manifest_pages,
        files,
        assets: assets.map.clone(),
        forms: config.forms.clone(),
        catalog: config.catalog.clone(),
        special: SpecialPages {
            not_found: special("404"),
            busy: special("busy"),
            sold_out: special("sold-out"),
            invalid: special("invalid"),
        },
        redirects,
    };
    let path = dir.join(MANIFEST_PATH);
    std::fs::create_dir_all(path.parent().unwrap()).map_err(BuildError::io(&path))?;
    std::fs::write(&path, manifest.to_json()).map_err(BuildError::io(&path))?;
    Ok(manifest)
}

/// One entry per output file not in `written` (described already, with their twins), sorted
/// by path.
fn describe_files(
    dir: &Path,
    fingerprinted: &BTreeMap<String, ()>,
    written: &std::collections::HashSet<&str>,
) -> Result<Vec<FileEntry>, BuildError> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| BuildError::Io { path: dir.to_path_buf(), source: e.into() })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = relative(dir, entry.path());
        let twin_of = rel.strip_suffix(".br").or_else(|| rel.strip_suffix(".gz"));
        if written.contains(rel.as_str()) || twin_of.is_some_and(|p| written.contains(p)) {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(BuildError::io(entry.path()))?;
        let fingerprinted = fingerprinted.contains_key(&rel);
        out.push(describe(rel, &bytes, fingerprinted));
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The manifest's entry for an output file of these bytes (twins not written yet).
fn describe(rel: String, bytes: &[u8], fingerprinted: bool) -> FileEntry {
    FileEntry {
        content_type: content_type(&rel),
        size: bytes.len() as u64,
        hash: blake3::hash(bytes).to_hex().to_string(),
        fingerprinted,
        br_size: None,
        gz_size: None,
        path: rel,
    }
}

/// `/`-separated path of `path` below `dir`.
pub(crate) fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn content_type(path: &str) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    match mime.type_() {
        mime_guess::mime::TEXT => format!("{mime}; charset=utf-8"),
        _ if mime.subtype() == mime_guess::mime::JAVASCRIPT || mime.subtype() == mime_guess::mime::JSON => {
            format!("{mime}; charset=utf-8")
        }
        _ => mime.to_string(),
    }
}

/// Replaces `output` by the finished `staging` folder with two renames, so a reader sees the
/// old tree or the new one, and a failed build never touches the old one.
fn swap_into_place(staging: tempfile::TempDir, output: &Path) -> Result<(), BuildError> {
    let parent = output.parent().unwrap_or(Path::new("."));
    let old = if output.exists() {
        let old = tempfile::Builder::new()
            .prefix(".cofferdam-old-")
            .tempdir_in(if parent.as_os_str().is_empty() { Path::new(".") } else { parent })
            .map_err(BuildError::io(parent))?;
        let old_path = old.path().join("dist");
        std::fs::rename(output, &old_path).map_err(BuildError::io(output))?;
        Some(old)
    } else {
        None
    };
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, output) {
        // Put the old site back rather than leave none.
        if let Some(old) = &old {
            let _ = std::fs::rename(old.path().join("dist"), output);
        }
        let _ = std::fs::remove_dir_all(&staged);
        return Err(BuildError::Io { path: output.to_path_buf(), source: e });
    }
    drop(old);
    Ok(())
}
