//! TOML front matter between `+++` lines, as in Zola and Hugo.

use super::BuildError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontMatter {
    pub title: Option<String>,
    pub description: Option<String>,
    /// Tera template, default `page.html`.
    pub template: Option<String>,
    /// One form shown on the page...
    pub form: Option<String>,
    /// ...or several.
    #[serde(default)]
    pub forms: Vec<String>,
    /// The social preview image (`og:image`): a file of `content/`, relative to the page, or
    /// an absolute URL; default `site.image`.
    pub image: Option<String>,
    /// Old paths that redirect (301) here.
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

const KEYS: &[&str] = &["title", "description", "template", "form", "forms", "image", "aliases", "extra"];

impl FrontMatter {
    pub fn template(&self) -> &str {
        self.template.as_deref().unwrap_or("page.html")
    }
    pub fn forms(&self) -> impl Iterator<Item = &str> {
        self.form.iter().chain(self.forms.iter()).map(|s| s.as_str())
    }
}

/// Splits a page into its front matter, its Markdown body and the body's first line number.
pub fn split<'a>(text: &'a str, source: &Path) -> Result<(FrontMatter, &'a str, usize), BuildError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = text.strip_prefix("+++\n").or_else(|| text.strip_prefix("+++\r\n")) else {
        return Ok((FrontMatter::default(), text, 1));
    };
    let end = rest
        .match_indices("+++")
        .find(|(i, _)| *i == 0 || rest.as_bytes()[i - 1] == b'\n')
        .map(|(i, _)| i)
        .ok_or_else(|| BuildError::at(source, Some(1), "front matter: opening `+++` has no closing `+++` line"))?;
    let toml_src = &rest[..end];
    let after = &rest[end + 3..];
    let body = after.strip_prefix("\r\n").or_else(|| after.strip_prefix('\n')).unwrap_or(after);
    let body_line = 2 + toml_src.matches('\n').count() + 1;
    let front: FrontMatter = toml::from_str(toml_src).map_err(|e| {
        // +1: the opening `+++` line comes before the TOML.
        let line = e.span().map(|s| toml_src[..s.start].matches('\n').count() + 2);
        BuildError::at(source, line, format!("front matter: {}", describe(&e, toml_src)))
    })?;
    Ok((front, body, body_line))
}

/// toml's message, with a suggestion when a key is misspelt.
fn describe(e: &toml::de::Error, src: &str) -> String {
    let msg = e.message().trim_end().to_string();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some(key) = rest.split('`').next() {
            let hint = KEYS
                .iter()
                .map(|k| (crate::suggest::edit_distance(key, k), k))
                .filter(|(d, _)| *d <= 2)
                .min()
                .map(|(_, k)| format!(" (did you mean \"{k}\"?)"))
                .unwrap_or_else(|| format!(" (valid keys: {})", KEYS.join(", ")));
            return format!("unknown key \"{key}\"{hint}");
        }
    }
    let _ = src;
    msg
}

/// The line (1-based) of `key = ...` in the page's front matter, for errors found later.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines().position(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key)).map(|n| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_key_is_named_with_its_line_and_a_suggestion() {
        let src = "+++\ntitle = \"x\"\ntempalte = \"y\"\n+++\nbody\n";
        let err = split(src, Path::new("content/index.md")).unwrap_err().to_string();
        assert_eq!(err, "content/index.md:3: front matter: unknown key \"tempalte\" (did you mean \"template\"?)");
    }

    #[test]
    fn body_and_its_first_line_are_returned() {
        let src = "+++\ntitle = \"x\"\n+++\n# Hi\n";
        let (fm, body, line) = split(src, Path::new("a.md")).unwrap();
        assert_eq!(fm.title.as_deref(), Some("x"));
        assert_eq!(body, "# Hi\n");
        assert_eq!(line, 4);
    }

    #[test]
    fn unclosed_front_matter_is_an_error() {
        let err = split("+++\ntitle = \"x\"\n", Path::new("a.md")).unwrap_err().to_string();
        assert!(err.contains("a.md:1: front matter: opening"), "{err}");
    }
}
