//! `cofferdam build`: `content/` + `templates/` → `dist/` + manifest.
//!
//! The pipeline, one file per stage: [`content`] finds pages and assets, [`front_matter`] and
//! [`markdown`] read a page, [`assets`] fingerprints files and rewrites references, [`forms`]
//! renders form definitions as plain HTML, [`render`] runs Tera, [`compress`] writes the `.br`
//! and `.gz` twins. Everything is written into a folder beside the output that replaces it
//! only once the whole build has succeeded; [`output`] keeps the replaced one, and the next
//! build writes over it, creating only the files that changed.

mod assets;
mod compress;
mod content;
pub(crate) mod forms;
mod front_matter;
mod init;
mod markdown;
mod output;
mod render;

pub use forms::{esc as escape_html, format_price, render as render_form, render_filled as render_filled_form, Filled};
pub use init::init_cli;

use crate::config::{ConfigError, Site};
use crate::manifest::{FileEntry, Manifest, SiteInfo, SpecialPages, MANIFEST_PATH, MANIFEST_VERSION};
use output::Output;
use rayon::prelude::*;
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
/// previous output is untouched and nothing half-built is left behind. The output it replaces
/// is kept beside it (`.cofferdam-previous-dist`) for the next build to write over.
pub fn build_site(site: &Site, out: Option<&Path>) -> Result<BuildReport, BuildError> {
    let started = Instant::now();
    let output = out.map(Path::to_path_buf).unwrap_or_else(|| site.output_dir());
    let staging = Output::prepare(&output)?;

    let manifest = build_into(site, &staging)?;
    let bytes = manifest.files.iter().map(|f| f.size).sum();
    let report = BuildReport {
        output: output.clone(),
        pages: manifest.pages.len(),
        files: manifest.files.len(),
        bytes,
        elapsed: Duration::ZERO,
    };
    staging.swap_into_place(&output)?;
    Ok(BuildReport { elapsed: started.elapsed(), ..report })
}

/// Renders the whole site into `out` and returns the manifest written there.
fn build_into(site: &Site, out: &Output) -> Result<Manifest, BuildError> {
    let config = &site.config;
    let sources = content::discover(&site.root, &site.content_dir())?;
    let assets = assets::process(&site.root, &site.content_dir(), &sources.assets, out)?;
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
            out.write(&page.file, html.as_bytes())?;
            let entry = describe(page.file.clone(), html.as_bytes(), false);
            compress::write_twins(out, entry, html.as_bytes(), &config.build)
        })
        .collect::<Result<Vec<FileEntry>, BuildError>>()?;

    let written: std::collections::HashSet<&str> = page_files.iter().map(|f| f.path.as_str()).collect();
    let others = describe_assets(out.dir(), &assets, &written)?;
    let mut files = compress::twins(out, others, &config.build)?;
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
        twins: compress::settings(&config.build),
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
    // Written anew even when unchanged: its time is the build's, which `check` and `serve`
    // compare the sources against.
    out.write_anew(MANIFEST_PATH, &manifest.to_json())?;
    out.finish(&made(&manifest))?;
    Ok(manifest)
}

/// Every file a build with this manifest made: the files, their twins and the manifest.
fn made(manifest: &Manifest) -> std::collections::HashSet<String> {
    let mut made: std::collections::HashSet<String> = manifest
        .files
        .iter()
        .flat_map(|f| {
            let br = f.br_size.map(|_| format!("{}.br", f.path));
            let gz = f.gz_size.map(|_| format!("{}.gz", f.path));
            [Some(f.path.clone()), br, gz].into_iter().flatten()
        })
        .collect();
    made.insert(MANIFEST_PATH.to_string());
    made
}

/// One entry per asset written into `dir` and not in `written` (pages, described already with
/// their twins), sorted by path.
fn describe_assets(
    dir: &Path,
    assets: &assets::Assets,
    written: &std::collections::HashSet<&str>,
) -> Result<Vec<FileEntry>, BuildError> {
    let fingerprinted = assets.fingerprinted_paths();
    let outputs: std::collections::BTreeSet<&String> = assets.map.values().collect();
    let mut out = Vec::new();
    for rel in outputs {
        let twin_of = rel.strip_suffix(".br").or_else(|| rel.strip_suffix(".gz"));
        if written.contains(rel.as_str()) || twin_of.is_some_and(|p| written.contains(p)) {
            continue;
        }
        let path = dir.join(rel);
        let bytes = std::fs::read(&path).map_err(BuildError::io(&path))?;
        out.push(describe(rel.clone(), &bytes, fingerprinted.contains_key(rel)));
    }
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
