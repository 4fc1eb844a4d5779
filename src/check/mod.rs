//! `cofferdam check`: a launch-readiness report on the built site.
//!
//! It reads `dist/` through the [`manifest`](crate::manifest) (building first when `dist/` is
//! missing or older than its sources), scans every page with a small tag scanner ([`html`]),
//! and runs one file of rules per concern: [`landing`] (weight, requests and external calls of
//! the landing path), [`links`] (broken links, missing assets, cache-busting), [`forms`] (forms
//! that need JavaScript, honeypots, thank-you pages), [`images`], [`social`] (the preview a shared
//! link shows) and [`settings`] (stock caps, signing key, the public address, special pages). Any error-level finding makes the command exit 1.

mod findings;
mod forms;
mod html;
mod images;
mod landing;
mod links;
mod settings;
mod social;

pub use findings::{Budget, Finding, PageWeight, Report, Severity};

use crate::config::Site;
use crate::manifest::{Manifest, Page};
use html::Tag;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The site folder (holding cofferdam.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Check the existing `dist/` as it is, even when it is older than its sources.
    #[arg(long)]
    pub no_build: bool,
}

pub fn cli(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let site = Site::load(&args.site)?;
    let report = check_site(&site, !args.no_build)?;
    match args.format {
        Format::Text => print!("{}", report.to_text()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
}

/// Checks the built site of `site`; with `build`, (re)builds it first when `dist/` is missing
/// or older than `cofferdam.toml`, `content/` or `templates/`.
pub fn check_site(site: &Site, build: bool) -> Result<Report, CheckError> {
    let dist = site.output_dir();
    let stale = staleness(site, &dist);
    let mut notes = Vec::new();
    if build && stale.is_some() {
        let report = crate::build::build_site(site, None)?;
        notes.push(Finding {
            severity: Severity::Info,
            code: "built",
            page: "-".into(),
            location: None,
            message: format!(
                "built {} pages into {} first ({})",
                report.pages,
                shown(&dist),
                stale.as_deref().unwrap_or("")
            ),
            fix: String::new(),
        });
    } else if let Some(why) = &stale {
        if dist.join(crate::manifest::MANIFEST_PATH).exists() {
            notes.push(Finding {
                severity: Severity::Warning,
                code: "stale-build",
                page: "-".into(),
                location: None,
                message: format!(
                    "{} is older than its sources ({why}): this report is about the old site",
                    shown(&dist)
                ),
                fix: "run `cofferdam build` (or `cofferdam check` without --no-build)".into(),
            });
        }
    }
    let manifest = Manifest::load(&dist)?;
    let ctx = Ctx::new(site, &manifest, &dist);
    let mut findings = notes;
    let (path, weights) = landing::check(&ctx, &mut findings);
    links::check(&ctx, &mut findings);
    forms::check(&ctx, &mut findings);
    images::check(&ctx, &path, &mut findings);
    settings::check(&ctx, &mut findings);
    social::check(&ctx, &mut findings);
    let c = &site.config.check;
    let budget =
        Budget { page_weight_bytes: c.page_weight_budget, requests: c.request_budget, image_bytes: c.image_budget };
    Ok(Report::new(manifest.site.title.clone(), shown(&dist), budget, weights, findings))
}

/// The landing path as a fresh visitor fetches it, for `rehearse`.
#[derive(Debug, Clone)]
pub struct VisitPlan {
    /// Each page of the landing path: its route and the files of `dist/` it loads, as site
    /// paths (`/style.1a2b3c4d.css`), each listed once.
    pub pages: Vec<(String, Vec<String>)>,
    /// The order form on the path (name) and the page that shows it.
    pub form: Option<(String, String)>,
    /// Subresources from other hosts, which a rehearsal on loopback leaves out.
    pub external: usize,
}

/// Reads the built site of `site` (as `check` does) and lists what a visitor loads.
pub fn visit_plan(site: &Site, manifest: &Manifest) -> VisitPlan {
    let ctx = Ctx::new(site, manifest, &site.output_dir());
    let mut external = 0;
    let pages = landing::path(&ctx)
        .into_iter()
        .filter_map(|route| {
            let doc = ctx.doc(&route)?;
            let mut files: Vec<String> = Vec::new();
            for r in doc.refs.iter().filter(|r| r.kind.loads_with_page()) {
                match &r.target {
                    Target::File(p) if !files.iter().any(|f| f[1..] == *p) => files.push(format!("/{p}")),
                    Target::External { .. } => external += 1,
                    _ => {}
                }
            }
            Some((route, files))
        })
        .collect();
    VisitPlan { pages, form: landing::order_form(&ctx), external }
}

/// Builds `site` when its `dist/` is missing or older than its sources; says why it did.
pub fn build_if_stale(site: &Site) -> Result<Option<String>, crate::build::BuildError> {
    match staleness(site, &site.output_dir()) {
        Some(why) => {
            crate::build::build_site(site, None)?;
            Ok(Some(why))
        }
        None => Ok(None),
    }
}

/// Why `dist/` needs a build, if it does.
fn staleness(site: &Site, dist: &Path) -> Option<String> {
    let built = match std::fs::metadata(dist.join(crate::manifest::MANIFEST_PATH)).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(_) => return Some(format!("{} has no manifest", shown(dist))),
    };
    let newer = |path: &Path| -> Option<PathBuf> {
        walkdir::WalkDir::new(path)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .find(|e| e.metadata().ok().and_then(|m| m.modified().ok()).is_some_and(|t| t > built))
            .map(|e| e.path().to_path_buf())
    };
    [site.config_path.clone(), site.content_dir(), site.templates_dir()]
        .iter()
        .find_map(|p| newer(p))
        .map(|p| format!("{} changed since the last build", shown(&p)))
}

/// A path as the user would type it: without a leading `./`.
fn shown(p: &Path) -> String {
    let s = p.display().to_string();
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

/// What kind of request a reference makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A navigation (`<a href>`), not loaded with the page.
    Link,
    Script,
    Style,
    Font,
    Image,
    Media,
    Frame,
    Icon,
    /// `preconnect` / `dns-prefetch`: a connection, not a file.
    Connect,
    Other,
}

impl Kind {
    pub fn loads_with_page(self) -> bool {
        !matches!(self, Kind::Link | Kind::Connect)
    }
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Link => "link",
            Kind::Script => "script",
            Kind::Style => "stylesheet",
            Kind::Font => "font",
            Kind::Image => "image",
            Kind::Media => "media file",
            Kind::Frame => "frame",
            Kind::Icon => "icon",
            Kind::Connect => "connection",
            Kind::Other => "file",
        }
    }
}

/// Where a URL leads, as the server would answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A fragment, `mailto:`, `data:` and the like: nothing to fetch.
    Skip,
    /// `javascript:`.
    Script,
    External {
        host: String,
    },
    /// A file of `dist/` (relative path).
    File(String),
    /// A page's route.
    Page(String),
    /// A redirect the server answers (a bare route, an alias).
    Redirect(String),
    /// `POST /submit/{form}`.
    Submit(String),
    /// Nothing there: the server answers 404. The resolved path.
    Missing(String),
}

/// One URL a page or stylesheet refers to.
#[derive(Debug, Clone)]
pub(crate) struct Ref {
    pub kind: Kind,
    pub url: String,
    pub line: usize,
    pub target: Target,
    /// `Some(file)` when the reference is in a stylesheet rather than the page itself.
    pub via: Option<String>,
}

/// A parsed page.
pub(crate) struct Doc<'a> {
    pub page: &'a Page,
    pub tags: Vec<Tag>,
    /// References made by the page, then by the stylesheets it loads (each stylesheet once).
    pub refs: Vec<Ref>,
}

/// Everything the rules read.
pub(crate) struct Ctx<'a> {
    pub site: &'a Site,
    pub manifest: &'a Manifest,
    pub dist: PathBuf,
    /// `cofferdam.toml`'s text, for line numbers.
    pub config_text: String,
    /// Pages by route, in manifest order.
    pub docs: Vec<Doc<'a>>,
    own_host: Option<String>,
}

impl<'a> Ctx<'a> {
    fn new(site: &'a Site, manifest: &'a Manifest, dist: &Path) -> Ctx<'a> {
        let own_host = host_of(&manifest.site.base_url);
        let mut ctx = Ctx {
            site,
            manifest,
            dist: dist.to_path_buf(),
            config_text: std::fs::read_to_string(&site.config_path).unwrap_or_default(),
            docs: Vec::new(),
            own_host,
        };
        let mut css_cache: HashMap<String, Vec<(String, usize)>> = HashMap::new();
        let docs = manifest
            .pages
            .iter()
            .map(|page| {
                let text = std::fs::read(dist.join(&page.file))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let tags = html::tags(&text);
                let mut refs = ctx.page_refs(page, &tags);
                ctx.stylesheet_refs(&mut refs, &mut css_cache);
                Doc { page, tags, refs }
            })
            .collect();
        ctx.docs = docs;
        ctx
    }

    pub fn doc(&self, route: &str) -> Option<&Doc<'a>> {
        self.docs.iter().find(|d| d.page.route == route)
    }

    /// `dist/order/index.html:12 (content/order.md via templates/page.html)`
    pub fn page_location(&self, page: &Page, line: usize) -> String {
        let templates = &self.site.config.build.templates_dir;
        format!(
            "{}:{line}, from {} via {}",
            shown(&self.dist.join(&page.file)),
            page.source,
            shown(&templates.join(&page.template))
        )
    }

    pub fn ref_location(&self, page: &Page, r: &Ref) -> String {
        match &r.via {
            Some(css) => format!("{}:{}", shown(&self.dist.join(css)), r.line),
            None => self.page_location(page, r.line),
        }
    }

    /// `cofferdam.toml:LINE` of the first line matching `pred`, or just the file.
    pub fn config_location(&self, pred: impl Fn(&str) -> bool) -> String {
        let file = shown(&self.site.config_path);
        match self.config_text.lines().position(|l| pred(l.trim())) {
            Some(n) => format!("{file}:{}", n + 1),
            None => file,
        }
    }

    /// `cofferdam.toml:LINE` of `key = ...` in the table whose header line is `header`.
    pub fn config_key_location(&self, header: &str, key: &str) -> String {
        let lines: Vec<&str> = self.config_text.lines().collect();
        let Some(start) = lines.iter().position(|l| l.trim() == header) else {
            return shown(&self.site.config_path);
        };
        let end = (start + 1..lines.len()).find(|&n| lines[n].trim_start().starts_with('[')).unwrap_or(lines.len());
        let is_key = |l: &str| l.trim().strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('='));
        let n = (start + 1..end).find(|&n| is_key(lines[n])).unwrap_or(start);
        format!("{}:{}", shown(&self.site.config_path), n + 1)
    }

    fn page_refs(&self, page: &Page, tags: &[Tag]) -> Vec<Ref> {
        let base = match page.route.rfind('/') {
            Some(i) => page.route[..=i].to_string(),
            None => "/".into(),
        };
        let mut refs = Vec::new();
        let mut add = |kind: Kind, url: &str, line: usize| {
            refs.push(Ref { kind, url: url.to_string(), line, target: self.resolve(&base, url), via: None });
        };
        for t in tags.iter().filter(|t| !t.end) {
            let attr = |n: &str| t.attr(n).filter(|v| !v.trim().is_empty());
            match t.name.as_str() {
                "a" | "area" => {
                    if let Some(h) = t.attr("href") {
                        add(Kind::Link, h, t.line);
                    }
                }
                "link" => {
                    let rel = t.attr("rel").unwrap_or("").to_ascii_lowercase();
                    let rels: Vec<&str> = rel.split_whitespace().collect();
                    let kind = if rels.contains(&"stylesheet") {
                        Some(Kind::Style)
                    } else if rels.iter().any(|r| r.ends_with("icon")) {
                        Some(Kind::Icon)
                    } else if rels.iter().any(|r| matches!(*r, "preload" | "modulepreload" | "prefetch")) {
                        Some(match t.attr("as").unwrap_or("") {
                            "font" => Kind::Font,
                            "script" => Kind::Script,
                            "style" => Kind::Style,
                            "image" => Kind::Image,
                            _ if rels.contains(&"modulepreload") => Kind::Script,
                            _ => Kind::Other,
                        })
                    } else if rels.iter().any(|r| matches!(*r, "preconnect" | "dns-prefetch")) {
                        Some(Kind::Connect)
                    } else if rels.contains(&"manifest") {
                        Some(Kind::Other)
                    } else {
                        None // canonical, alternate, ...: not fetched by the page
                    };
                    if let (Some(kind), Some(h)) = (kind, attr("href")) {
                        add(kind, h, t.line);
                    }
                }
                "script" => {
                    if let Some(s) = attr("src") {
                        add(Kind::Script, s, t.line);
                    }
                }
                "img" | "source" | "video" | "audio" | "track" | "iframe" | "frame" | "embed" | "object" | "input" => {
                    if t.name == "input" && t.attr("type").map(str::to_ascii_lowercase).as_deref() != Some("image") {
                        continue;
                    }
                    let kind = match t.name.as_str() {
                        "img" | "input" => Kind::Image,
                        "iframe" | "frame" => Kind::Frame,
                        _ => Kind::Media,
                    };
                    for a in ["src", "data"] {
                        if let Some(v) = attr(a) {
                            add(kind, v, t.line);
                        }
                    }
                    if let Some(p) = attr("poster") {
                        add(Kind::Image, p, t.line);
                    }
                    if let Some(set) = attr("srcset") {
                        for candidate in set.split(',') {
                            if let Some(u) = candidate.split_whitespace().next() {
                                add(Kind::Image, u, t.line);
                            }
                        }
                    }
                }
                _ => {}
            }
            if let Some(style) = t.attr("style") {
                for (u, _) in html::css_urls(style) {
                    add(css_kind(&u), &u, t.line);
                }
            }
            if t.name == "style" {
                for (u, l) in html::css_urls(&t.raw) {
                    add(css_kind(&u), &u, t.line + l - 1);
                }
            }
        }
        refs
    }

    /// Appends the references of every local stylesheet in `refs` (recursively, each once).
    fn stylesheet_refs(&self, refs: &mut Vec<Ref>, cache: &mut HashMap<String, Vec<(String, usize)>>) {
        let mut i = 0;
        let mut seen = std::collections::HashSet::new();
        while i < refs.len() {
            if let (Kind::Style, Target::File(path)) = (refs[i].kind, &refs[i].target) {
                let path = path.clone();
                if seen.insert(path.clone()) {
                    let urls = cache
                        .entry(path.clone())
                        .or_insert_with(|| {
                            let text = std::fs::read_to_string(self.dist.join(&path)).unwrap_or_default();
                            html::css_urls(&text)
                        })
                        .clone();
                    let base = match path.rfind('/') {
                        Some(i) => format!("/{}", &path[..=i]),
                        None => "/".into(),
                    };
                    for (u, line) in urls {
                        let target = self.resolve(&base, &u);
                        refs.push(Ref { kind: css_kind(&u), url: u, line, target, via: Some(path.clone()) });
                    }
                }
            }
            i += 1;
        }
    }

    /// Resolves `url` as found on a page (or stylesheet) whose folder is `base` (`/order/`).
    pub fn resolve(&self, base: &str, url: &str) -> Target {
        let u = url.trim();
        if u.is_empty() || u.starts_with('#') {
            return Target::Skip;
        }
        let scheme_end = u.find(':').filter(|&c| !u[..c].contains(['/', '?', '#']));
        let path = if let Some(c) = scheme_end {
            match u[..c].to_ascii_lowercase().as_str() {
                "javascript" => return Target::Script,
                "http" | "https" => match self.same_host(&u[c + 1..]) {
                    Ok(path) => path,
                    Err(host) => return Target::External { host },
                },
                _ => return Target::Skip, // mailto:, tel:, data:, ...
            }
        } else if u.starts_with("//") {
            match self.same_host(u) {
                Ok(path) => path,
                Err(host) => return Target::External { host },
            }
        } else {
            u.to_string()
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        let joined = if path.starts_with('/') {
            path.to_string()
        } else if path.is_empty() {
            return Target::Skip; // `?x=1` on the same page
        } else {
            format!("{base}{path}")
        };
        let path = normalize(&percent_encoding::percent_decode_str(&joined).decode_utf8_lossy());
        self.lookup(&path)
    }

    /// `//host/path` → the path when the host is ours, else the host.
    fn same_host(&self, rest: &str) -> Result<String, String> {
        let rest = rest.trim_start_matches('/');
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let host = rest[..end].to_ascii_lowercase();
        if self.own_host.as_deref() == Some(host.as_str()) {
            let path = &rest[end..];
            Ok(if path.starts_with('/') { path.to_string() } else { format!("/{path}") })
        } else {
            Err(host)
        }
    }

    fn lookup(&self, path: &str) -> Target {
        let m = self.manifest;
        if m.page(path).is_some() {
            return Target::Page(path.to_string());
        }
        let rel = path.trim_start_matches('/');
        if !rel.is_empty() && m.file(rel).is_some() {
            return Target::File(rel.to_string());
        }
        if m.page(&format!("{path}/")).is_some() || m.redirects.iter().any(|r| r.from == path) {
            return Target::Redirect(path.to_string());
        }
        if let Some(form) = path.strip_prefix("/submit/") {
            return Target::Submit(form.trim_end_matches('/').to_string());
        }
        Target::Missing(path.to_string())
    }

    /// The output file of a target a browser would download, if it is in `dist/`.
    pub fn file_of(&self, target: &Target) -> Option<&'a crate::manifest::FileEntry> {
        match target {
            Target::File(p) => self.manifest.file(p),
            Target::Page(route) => self.manifest.page(route).and_then(|p| self.manifest.file(&p.file)),
            _ => None,
        }
    }
}

fn css_kind(url: &str) -> Kind {
    let path = url.split(['?', '#']).next().unwrap_or("").to_ascii_lowercase();
    if [".woff2", ".woff", ".ttf", ".otf", ".eot"].iter().any(|e| path.ends_with(e)) {
        Kind::Font
    } else if path.ends_with(".css") || url.contains("fonts.googleapis.com") {
        Kind::Style
    } else {
        Kind::Image
    }
}

/// `https://Shop.example:8443/x` → `shop.example:8443`
fn host_of(url: &str) -> Option<String> {
    let origin = crate::config::origin_of(url);
    let host = origin.split_once("://")?.1;
    Some(host.to_ascii_lowercase()).filter(|h| !h.is_empty())
}

/// Resolves `.` and `..` segments; keeps a trailing slash.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if path.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

/// Findings about one URL on many pages are reported once, naming the pages.
pub(crate) fn pages_phrase(routes: &[String]) -> String {
    match routes.len() {
        0 => String::new(),
        1 => format!("on {}", routes[0]),
        2..=3 => format!("on {}", routes.join(", ")),
        n => format!("on {} and {} more pages", routes[..2].join(", "), n - 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_and_hosts_parse() {
        assert_eq!(normalize("/order/../thanks/"), "/thanks/");
        assert_eq!(normalize("/a/./b.css"), "/a/b.css");
        assert_eq!(normalize("/../x"), "/x");
        assert_eq!(host_of("https://Shop.example:8443/x").as_deref(), Some("shop.example:8443"));
        assert_eq!(css_kind("f.woff2?v=1"), Kind::Font);
        assert_eq!(pages_phrase(&["/".into(), "/a/".into(), "/b/".into(), "/c/".into()]), "on /, /a/ and 2 more pages");
    }
}
