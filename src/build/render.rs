//! Tera: loads `templates/` (with inheritance) and renders each page with the site, the page,
//! its forms and the catalog; `asset(path=...)` gives an asset's fingerprinted URL.

use super::assets::Assets;
use super::content::Page;
use super::forms;
use super::BuildError;
use crate::config::Site;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub struct Renderer {
    tera: tera::Tera,
    templates_dir: PathBuf,
    site: Value,
    forms: BTreeMap<String, String>,
    catalog: Value,
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
                let msg = chain(&e);
                return Err(BuildError::at(
                    shown_dir.join(name),
                    pest_line(&msg),
                    format!("template syntax error: {msg}"),
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
        let forms =
            config.forms.iter().map(|(name, form)| (name.clone(), forms::render(name, form, &config.catalog))).collect();
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
        Ok(Renderer { tera, templates_dir: shown_dir, site: site_value, forms, catalog })
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
        let mut ctx = tera::Context::new();
        ctx.insert("site", &self.site);
        ctx.insert(
            "page",
            &json!({
                "title": page.title(), "description": page.front.description, "route": page.route,
                "content": content, "extra": page.front.extra,
                "forms": page.front.forms().collect::<Vec<_>>(),
            }),
        );
        ctx.insert("forms", &self.forms);
        ctx.insert("catalog", &self.catalog);
        self.tera.render(template, &ctx).map_err(|e| {
            BuildError::at(
                &page.source,
                None,
                format!("rendering with {}: {}", Path::new(&self.templates_dir).join(template).display(), chain(&e)),
            )
        })
    }
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
