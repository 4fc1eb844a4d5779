//! Finds the pages (`.md`) and assets (everything else) of `content/`, and gives each page its
//! route and output file.

use super::front_matter::{self, FrontMatter};
use super::{relative, BuildError};
use crate::config::{Config, Site};
use crate::manifest::{self, Redirect};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The source files of a site, sorted, as paths relative to the site root.
pub struct Sources {
    pub pages: Vec<PathBuf>,
    pub assets: Vec<PathBuf>,
}

pub fn discover(root: &Path, content_dir: &Path) -> Result<Sources, BuildError> {
    if !content_dir.is_dir() {
        return Err(BuildError::at(content_dir, None, "no content folder here (build.content_dir)"));
    }
    let mut pages = Vec::new();
    let mut assets = Vec::new();
    // Editor droppings, hidden files and everything inside a hidden folder (`.git/`, `.cache/`)
    // are not part of the site: a folder is skipped whole, not just its own name.
    let hidden = |e: &walkdir::DirEntry| {
        let name = e.file_name().to_string_lossy();
        e.depth() > 0 && (name.starts_with('.') || name.ends_with('~'))
    };
    for entry in walkdir::WalkDir::new(content_dir).sort_by_file_name().into_iter().filter_entry(|e| !hidden(e)) {
        let entry = entry.map_err(|e| BuildError::Io { path: content_dir.to_path_buf(), source: e.into() })?;
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path().strip_prefix(root).unwrap_or(entry.path()).to_path_buf();
        if name.ends_with(".md") {
            pages.push(path);
        } else {
            assets.push(path);
        }
    }
    Ok(Sources { pages, assets })
}

/// A page ready to render.
pub struct Page {
    /// Source, relative to the site root.
    pub source: PathBuf,
    /// Folder of the source relative to `content/`, for resolving relative asset references.
    pub dir: String,
    pub route: String,
    pub file: String,
    pub front: FrontMatter,
    /// Markdown after the front matter, and the line it starts on.
    pub body: String,
    pub body_line: usize,
    /// `404`, `busy`, `sold-out` or `invalid` for the pages the server answers with itself.
    pub special: Option<String>,
}

const SPECIAL: &[&str] = &["404", "busy", "sold-out", "invalid"];

pub fn read_page(root: &Path, source: &Path, config: &Config) -> Result<Page, BuildError> {
    let text = std::fs::read_to_string(root.join(source))
        .map_err(|e| BuildError::at(source, None, format!("cannot read as UTF-8 text: {e}")))?;
    let (front, body, body_line) = front_matter::split(&text, source)?;
    let in_content = relative(&root.join(&config.build.content_dir), &root.join(source));
    let stem = in_content.trim_end_matches(".md");
    let (route, file) = if stem == "404" {
        ("/404.html".to_string(), "404.html".to_string())
    } else if stem == "index" {
        ("/".to_string(), "index.html".to_string())
    } else {
        let stem = stem.strip_suffix("/index").unwrap_or(stem);
        (format!("/{stem}/"), format!("{stem}/index.html"))
    };
    for form in front.forms() {
        if !config.forms.contains_key(form) {
            let known = config.forms.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(BuildError::at(
                source,
                front_matter::line_of_key(&text, "form").or(front_matter::line_of_key(&text, "forms")),
                format!("front matter: unknown form {form:?} (forms in cofferdam.toml: {known})"),
            ));
        }
    }
    let dir = match in_content.rsplit_once('/') {
        Some((d, _)) => d.to_string(),
        None => String::new(),
    };
    Ok(Page {
        source: source.to_path_buf(),
        dir,
        special: SPECIAL.contains(&stem).then(|| stem.to_string()),
        route,
        file,
        front,
        body: body.to_string(),
        body_line,
    })
}

impl Page {
    pub fn title(&self) -> &str {
        self.front.title.as_deref().unwrap_or("")
    }

    pub fn manifest_entry(&self) -> manifest::Page {
        manifest::Page {
            route: self.route.clone(),
            file: self.file.clone(),
            source: self.source.to_string_lossy().replace('\\', "/"),
            title: self.title().to_string(),
            template: self.front.template().to_string(),
            forms: self.front.forms().map(String::from).collect(),
        }
    }

    pub fn redirects(&self) -> impl Iterator<Item = Redirect> + '_ {
        self.front.aliases.iter().map(|from| Redirect { from: from.clone(), to: self.route.clone(), status: 301 })
    }
}

/// Every form's `thanks` is a page of the site (or one of its aliases): the buyer's 303 after
/// an order must not land on a 404.
pub fn check_thanks(site: &Site, pages: &[Page]) -> Result<(), BuildError> {
    let routes: std::collections::BTreeSet<&str> = pages
        .iter()
        .flat_map(|p| std::iter::once(p.route.as_str()).chain(p.front.aliases.iter().map(|a| a.as_str())))
        .collect();
    for (name, form) in &site.config.forms {
        let path = form.thanks.split(['?', '#']).next().unwrap_or("");
        let slashed = format!("{}/", path.trim_end_matches('/'));
        if routes.contains(path) || routes.contains(slashed.as_str()) {
            continue;
        }
        let source = std::fs::read_to_string(&site.config_path).unwrap_or_default();
        let key = ["forms", name, "thanks"].map(String::from);
        return Err(BuildError::at(
            &site.config_path,
            crate::config::locate::line_of_key(&source, &key),
            format!(
                "forms.{name}.thanks: form {name:?} sends buyers to {} after a post, and no page has that route \
                 (add content/{}.md, or point forms.{name}.thanks at an existing page)",
                form.thanks,
                path.trim_matches('/'),
            ),
        ));
    }
    Ok(())
}

/// Two sources claiming one route (or an alias shadowing a page) is an error naming both.
pub fn check_routes(pages: &[Page]) -> Result<(), BuildError> {
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for page in pages {
        let claims = std::iter::once(page.route.as_str()).chain(page.front.aliases.iter().map(|a| a.as_str()));
        for route in claims {
            if let Some(first) = seen.insert(route, &page.source) {
                return Err(BuildError::at(
                    &page.source,
                    None,
                    format!("route {route:?} is also produced by {}", first.display()),
                ));
            }
        }
        for alias in &page.front.aliases {
            if !alias.starts_with('/') {
                return Err(BuildError::at(
                    &page.source,
                    None,
                    format!("front matter: alias {alias:?} must start with `/`"),
                ));
            }
        }
    }
    Ok(())
}
