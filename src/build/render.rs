//! Tera: loads `templates/` (with inheritance) and renders each page with the site, the page,
//! its forms and the catalog; `asset(path=...)` gives an asset's fingerprinted URL.

use super::assets::Assets;
use super::content::Page;
use super::forms;
use super::BuildError;
use crate::config::Site;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

pub struct Renderer {
    tera: tera::Tera,
    templates_dir: PathBuf,
    site: Value,
    forms: BTreeMap<String, String>,
    catalog: Value,
    assets: Assets,
    /// Each template's name and text, to point a rendering error at its line.
    sources: Vec<(String, String)>,
    /// `site.base_url` without its trailing `/`, for the absolute URLs social previews need.
    base_url: String,
    /// `site.image` as an absolute URL.
    site_image: Option<String>,
}

impl Renderer {
    pub fn new(site: &Site, assets: &Assets) -> Result<Renderer, BuildError> {
        let templates_dir = site.templates_dir();
        let shown_dir = site.config.build.templates_dir.clone();
        let mut sources = Vec::new();
        if templates_dir.is_dir() {
            for entry in walkdir::WalkDir::new(&templates_dir).sort_by_file_name() {
                let entry = entry.map_err(|e| BuildError::Io { path: templates_dir.clone(), source: e.into() })?;
                if entry.file_type().is_file() && !entry.file_name().to_string_lossy().starts_with('.') {
                    let name = super::relative(&templates_dir, entry.path());
                    let text = std::fs::read_to_string(entry.path()).map_err(BuildError::io(entry.path()))?;
                    sources.push((name, text));
                }
            }
        }
        // Parse each file on its own first, so a syntax error names its file and line.
        for (name, text) in &sources {
            if let Err(e) = tera::Template::new(name, None, text) {
                // pest draws the line and a caret under the spot: keep its lines.
                let detail = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.to_string());
                let indented: Vec<String> = detail.lines().map(|l| format!("  {l}")).collect();
                return Err(BuildError::at(
                    shown_dir.join(name),
                    pest_line(&detail),
                    format!("template syntax error:\n{}", indented.join("\n")),
                ));
            }
        }
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![".html", ".htm", ".xml"]);
        tera.add_raw_templates(sources.iter().map(|(n, t)| (n.as_str(), t.as_str())))
            .map_err(|e| BuildError::at(&shown_dir, None, format!("templates: {}", chain(&e))))?;
        let map = assets.map.clone();
        let urls: HashMap<String, String> =
            map.keys().filter_map(|k| assets.resolve("", k).map(|u| (k.clone(), u))).collect();
        tera.register_function("asset", AssetUrl(urls));
        let config = &site.config;
        let forms = config
            .forms
            .iter()
            .map(|(name, form)| (name.clone(), forms::render(name, form, &config.catalog)))
            .collect();
        let catalog = Value::Array(
            config
                .catalog
                .iter()
                .map(|p| {
                    json!({
                        "sku": p.sku, "name": p.name, "price_cents": p.price_cents, "currency": p.currency,
                        "price": forms::format_price(p.price_cents, &p.currency),
                        "stock": p.stock, "description": p.description,
                    })
                })
                .collect(),
        );
        let site_value = json!({
            "title": config.site.title, "base_url": config.site.base_url,
            "language": config.site.language, "extra": config.site.extra,
        });
        let base_url = config.site.base_url.trim_end_matches('/').to_string();
        let site_image = match &config.site.image {
            Some(image) => Some(absolute_image(&base_url, assets, "", image).ok_or_else(|| {
                let text = std::fs::read_to_string(&site.config_path).unwrap_or_default();
                BuildError::at(
                    &site.config_path,
                    super::front_matter::line_of_key(&text, "image"),
                    format!("site.image {image:?}: no such file in the content folder"),
                )
            })?),
            None => None,
        };
        Ok(Renderer {
            tera,
            templates_dir: shown_dir,
            site: site_value,
            forms,
            catalog,
            assets: assets.clone(),
            sources,
            base_url,
            site_image,
        })
    }

    pub fn render(&self, page: &Page, content: &str) -> Result<String, BuildError> {
        let template = page.front.template();
        if !self.tera.get_template_names().any(|n| n == template) {
            let mut known: Vec<_> = self.tera.get_template_names().collect();
            known.sort();
            let text = std::fs::read_to_string(&page.source).unwrap_or_default();
            return Err(BuildError::at(
                &page.source,
                super::front_matter::line_of_key(&text, "template"),
                format!(
                    "unknown template {template:?} (templates in {}: {})",
                    self.templates_dir.display(),
                    known.join(", ")
                ),
            ));
        }
        let image = match &page.front.image {
            Some(image) => Some(absolute_image(&self.base_url, &self.assets, &page.dir, image).ok_or_else(|| {
                let text = std::fs::read_to_string(&page.source).unwrap_or_default();
                BuildError::at(
                    &page.source,
                    super::front_matter::line_of_key(&text, "image"),
                    format!("front matter: image {image:?}: no such file in the content folder"),
                )
            })?),
            None => self.site_image.clone(),
        };
        let mut ctx = tera::Context::new();
        ctx.insert("site", &self.site);
        ctx.insert(
            "page",
            &json!({
                "title": page.title(), "description": page.front.description, "route": page.route,
                "content": content, "extra": page.front.extra,
                "forms": page.front.forms().collect::<Vec<_>>(),
                "url": format!("{}{}", self.base_url, page.route), "image": image,
            }),
        );
        ctx.insert("forms", &self.forms);
        ctx.insert("catalog", &self.catalog);
        self.tera.render(template, &ctx).map_err(|e| {
            // Tera names no line: find the template line holding what it names.
            let msg = chain(&e);
            let cause = msg.rsplit(": ").next().unwrap_or(&msg).to_string();
            match locate(&self.sources, template, &cause) {
                Some((name, line)) => BuildError::at(
                    self.templates_dir.join(name),
                    Some(line),
                    format!("rendering {}: {cause}", page.source.display()),
                ),
                None => BuildError::at(
                    &page.source,
                    None,
                    format!("rendering with {}: {msg}", self.templates_dir.join(template).display()),
                ),
            }
        })
    }
}

/// The absolute URL of a social preview image: an `http(s)` URL as it is, else a colocated
/// asset (relative to `dir` in `content/`) under its fingerprinted name.
fn absolute_image(base_url: &str, assets: &Assets, dir: &str, image: &str) -> Option<String> {
    if image.starts_with("https://") || image.starts_with("http://") {
        return Some(image.to_string());
    }
    assets.resolve(dir, image).map(|url| format!("{base_url}{url}"))
}

/// Tera keeps the useful part of an error in its source chain.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ").replace('\n', " ")
}

/// The template and line of what a rendering error names (`` Variable `page.titel` `` or
/// `Filter 'upper'`): in the template rendered first, then in any other (a parent or include),
/// on a line with a tag, as the name is written there.
fn locate<'a>(sources: &'a [(String, String)], template: &str, cause: &str) -> Option<(&'a str, usize)> {
    let quoted = |q: char| cause.split(q).nth(1).filter(|s| !s.is_empty() && !s.contains(' '));
    let token = quoted('`').or_else(|| quoted('\''))?;
    // `'landing.html'` in "while rendering 'landing.html'" is not what failed.
    if sources.iter().any(|(n, _)| n == token) {
        return None;
    }
    let named = sources.iter().filter(|(n, _)| n == template);
    let others = sources.iter().filter(|(n, _)| n != template);
    named.chain(others).find_map(|(name, text)| {
        text.lines()
            .position(|l| (l.contains("{{") || l.contains("{%")) && contains_word(l, token))
            .map(|i| (name.as_str(), i + 1))
    })
}

/// `token` in `line`, not as part of a longer name (`page.title` is not in `page.titles`).
fn contains_word(line: &str, token: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    line.match_indices(token).any(|(i, _)| {
        let before = line[..i].chars().next_back().is_none_or(|c| !ident(c));
        let after = line[i + token.len()..].chars().next().is_none_or(|c| !ident(c));
        before && after
    })
}

/// The line of a pest parse error (` --> 3:5`).
fn pest_line(msg: &str) -> Option<usize> {
    let at = msg.find("--> ")?;
    msg[at + 4..].split(':').next()?.trim().parse().ok()
}

/// `asset(path="style.css")` → `/style.3f9c2a1b.css`. Its output is a URL we made, so it is
/// marked safe: Tera would otherwise escape every `/`.
struct AssetUrl(HashMap<String, String>);

impl tera::Function for AssetUrl {
    fn call(&self, args: &HashMap<String, Value>) -> tera::Result<Value> {
        let path =
            args.get("path").and_then(Value::as_str).ok_or_else(|| tera::Error::msg("asset() takes path=\"file\""))?;
        self.0
            .get(path.trim_start_matches('/'))
            .map(|u| Value::String(u.clone()))
            .ok_or_else(|| tera::Error::msg(format!("asset(path=\"{path}\"): no such file in the content folder")))
    }

    fn is_safe(&self) -> bool {
        true
    }
}
