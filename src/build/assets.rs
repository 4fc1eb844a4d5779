//! Colocated assets: copied under a content-hashed name (`style.3f9c2a1b.css`) so they can be
//! cached for a year, with references between them (CSS `url()`) rewritten first.

use super::output::Output;
use super::{relative, BuildError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files that must keep their well-known name.
const VERBATIM: &[&str] = &["robots.txt", "favicon.ico", "humans.txt"];

#[derive(Clone)]
pub struct Assets {
    /// Source path relative to `content/` → output path relative to the output folder.
    pub map: BTreeMap<String, String>,
}

impl Assets {
    /// The site URL of the asset `reference` made from a page or stylesheet in `from_dir`
    /// (relative to `content/`), or `None` if no such asset exists.
    pub fn resolve(&self, from_dir: &str, reference: &str) -> Option<String> {
        let key = if let Some(abs) = reference.strip_prefix('/') {
            normalize(abs)?
        } else if from_dir.is_empty() {
            normalize(reference)?
        } else {
            normalize(&format!("{from_dir}/{reference}"))?
        };
        self.map.get(&key).map(|out| format!("/{out}"))
    }

    pub fn fingerprinted_paths(&self) -> BTreeMap<String, ()> {
        self.map.iter().filter(|(src, out)| src != out).map(|(_, out)| (out.clone(), ())).collect()
    }
}

/// Whether a URL in a page or stylesheet should be an asset of the site (and so must exist).
pub fn is_local_file_reference(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() || url.starts_with("//") || url.contains(':') {
        return false;
    }
    // Page links (`/order/`, `thanks.md`) are routes, not assets.
    let last = path.rsplit('/').next().unwrap_or("");
    last.contains('.') && !last.ends_with(".md") && !last.ends_with(".html")
}

fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

/// Writes every asset into `out`, fingerprinted; stylesheets last, after their references
/// were rewritten, so a stylesheet's hash covers the names it points at.
pub fn process(root: &Path, content_dir: &Path, sources: &[PathBuf], out: &Output) -> Result<Assets, BuildError> {
    let mut assets = Assets { map: BTreeMap::new() };
    let (css, other): (Vec<&PathBuf>, Vec<&PathBuf>) =
        sources.iter().partition(|p| p.extension().is_some_and(|e| e == "css"));
    let url_re = regex::Regex::new(r#"url\(\s*(['"]?)([^'")]+)(['"]?)\s*\)"#).expect("valid regex");
    for source in other.into_iter().chain(css) {
        let full = root.join(source);
        let rel = relative(content_dir, &full);
        let mut bytes = std::fs::read(&full).map_err(BuildError::io(&full))?;
        if rel.ends_with(".css") {
            let text = String::from_utf8(bytes).map_err(|_| BuildError::at(source, None, "stylesheet is not UTF-8"))?;
            let dir = rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let mut missing = None;
            let rewritten = url_re.replace_all(&text, |caps: &regex::Captures| {
                let url = &caps[2];
                if !is_local_file_reference(url) {
                    return caps[0].to_string();
                }
                match assets.resolve(dir, url) {
                    Some(target) => format!("url({}{target}{})", &caps[1], &caps[3]),
                    None => {
                        if missing.is_none() {
                            let at = caps.get(0).unwrap().start();
                            missing = Some((url.to_string(), text[..at].matches('\n').count() + 1));
                        }
                        caps[0].to_string()
                    }
                }
            });
            if let Some((url, line)) = missing {
                return Err(BuildError::at(
                    source,
                    Some(line),
                    format!("url({url}): no such file in the content folder"),
                ));
            }
            bytes = rewritten.into_owned().into_bytes();
        }
        let name = if VERBATIM.contains(&rel.as_str()) || rel.starts_with(".well-known/") {
            rel.clone()
        } else {
            fingerprinted_name(&rel, &bytes)
        };
        out.write(&name, &bytes)?;
        assets.map.insert(rel, name);
    }
    Ok(assets)
}

/// `img/lamp.svg` → `img/lamp.1a2b3c4d.svg`
fn fingerprinted_name(rel: &str, bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes).to_hex();
    let short = &hash.as_str()[..8];
    let (dir, file) = match rel.rsplit_once('/') {
        Some((d, f)) => (format!("{d}/"), f),
        None => (String::new(), rel),
    };
    match file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{dir}{stem}.{short}.{ext}"),
        _ => format!("{dir}{file}.{short}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_hash_before_the_extension() {
        let name = fingerprinted_name("img/lamp.svg", b"x");
        assert!(
            name.starts_with("img/lamp.") && name.ends_with(".svg") && name.len() == "img/lamp.12345678.svg".len(),
            "{name}"
        );
    }

    #[test]
    fn references_resolve_relative_and_absolute() {
        let assets = Assets { map: [("img/a.png".to_string(), "img/a.1.png".to_string())].into() };
        assert_eq!(assets.resolve("", "img/a.png").as_deref(), Some("/img/a.1.png"));
        assert_eq!(assets.resolve("img", "a.png").as_deref(), Some("/img/a.1.png"));
        assert_eq!(assets.resolve("blog", "../img/a.png").as_deref(), Some("/img/a.1.png"));
        assert_eq!(assets.resolve("blog", "/img/a.png").as_deref(), Some("/img/a.1.png"));
        assert_eq!(assets.resolve("", "b.png"), None);
        assert!(is_local_file_reference("lamp.svg"));
        assert!(!is_local_file_reference("/order/"));
        assert!(!is_local_file_reference("https://x.test/a.png"));
        assert!(!is_local_file_reference("data:image/png;base64,xx"));
    }
}
