//! A small, careful HTML tag scanner: start and end tags with their attributes and lines.
//!
//! `check` needs tags and attributes, not a DOM: which forms post where, which URLs a page
//! loads. The scanner skips comments, doctypes and the raw text of `<script>`, `<style>`,
//! `<textarea>` and `<title>` (so a `<form>` inside a script is not a form), decodes character
//! references in attribute values, and never fails: malformed markup yields what it can.

/// One tag as written in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Lower-case element name.
    pub name: String,
    /// `</name>`.
    pub end: bool,
    /// Attributes in source order, names lower-cased, values decoded; a bare attribute has "".
    pub attrs: Vec<(String, String)>,
    /// 1-based line of the `<`.
    pub line: usize,
    /// The raw text of a `<script>` or `<style>` element (empty for others).
    pub raw: String,
}

impl Tag {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

const RAW_TEXT: &[&str] = &["script", "style", "textarea", "title"];

/// Every tag of `html`, in order.
pub fn tags(html: &str) -> Vec<Tag> {
    let b = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let mut counted = 0; // bytes up to here have been counted into `line`
    let line_at = |pos: usize, line: &mut usize, counted: &mut usize| {
        *line += b[*counted..pos].iter().filter(|&&c| c == b'\n').count();
        *counted = pos;
        *line
    };
    while let Some(off) = memchr(b'<', &b[i..]) {
        let start = i + off;
        let rest = &html[start..];
        if rest.starts_with("<!--") {
            i = find(html, start + 4, "-->").map(|e| e + 3).unwrap_or(b.len());
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            i = find(html, start, ">").map(|e| e + 1).unwrap_or(b.len());
            continue;
        }
        let (end, name_from) = if rest.starts_with("</") { (true, start + 2) } else { (false, start + 1) };
        if !b.get(name_from).is_some_and(u8::is_ascii_alphabetic) {
            // A lone `<` in text.
            i = start + 1;
            continue;
        }
        let mut j = name_from;
        while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' && b[j] != b'/' {
            j += 1;
        }
        let name = html[name_from..j].to_ascii_lowercase();
        let (attrs, after) = attributes(html, j);
        let line_no = line_at(start, &mut line, &mut counted);
        let mut tag = Tag { name, end, attrs: if end { Vec::new() } else { attrs }, line: line_no, raw: String::new() };
        i = after;
        if !end && RAW_TEXT.contains(&tag.name.as_str()) {
            let close = find_ci(html, i, &format!("</{}", tag.name)).unwrap_or(b.len());
            if tag.name == "script" || tag.name == "style" {
                tag.raw = html[i..close].to_string();
            }
            i = close;
        }
        out.push(tag);
    }
    out
}

/// Parses attributes from `i` up to the closing `>`; returns them and the index after `>`.
fn attributes(html: &str, mut i: usize) -> (Vec<(String, String)>, usize) {
    let b = html.as_bytes();
    let mut attrs = Vec::new();
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() {
            return (attrs, b.len());
        }
        if b[i] == b'>' {
            return (attrs, i + 1);
        }
        let name_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let name = html[name_start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let from = i + 1;
                let to = memchr(q, &b[from..]).map(|o| from + o).unwrap_or(b.len());
                value = decode(&html[from..to]);
                i = (to + 1).min(b.len());
            } else {
                let from = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                    i += 1;
                }
                value = decode(&html[from..i]);
            }
        }
        if !name.is_empty() && !attrs.iter().any(|(n, _)| *n == name) {
            // The first of duplicate attributes wins, as in browsers.
            attrs.push((name, value));
        }
    }
}

/// Decodes the character references that occur in attribute values.
pub fn decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let semi = rest[..rest.len().min(12)].find(';');
        let decoded = semi.and_then(|e| {
            let body = &rest[1..e];
            let c = match body {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => body
                    .strip_prefix("#x")
                    .or_else(|| body.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| body.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `url(...)` and `@import "..."` references of a stylesheet, with their lines.
pub fn css_urls(css: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let lower = css.to_ascii_lowercase();
    let mut i = 0;
    while i < css.len() {
        let url = lower[i..].find("url(").map(|o| (i + o, true));
        let import = lower[i..].find("@import").map(|o| (i + o, false));
        let next = match (url, import) {
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        let Some((at, is_url)) = next else { break };
        let line = css[..at].matches('\n').count() + 1;
        if is_url {
            let from = at + 4;
            let to = css[from..].find(')').map(|o| from + o).unwrap_or(css.len());
            let v = css[from..to].trim().trim_matches(|c| c == '"' || c == '\'').trim();
            if !v.is_empty() {
                out.push((v.to_string(), line));
            }
            i = to;
        } else {
            // `@import "x.css";` (the `@import url(x.css)` form is caught as a url()).
            let from = at + 7;
            let s = css[from..].trim_start();
            if let Some(q) = s.chars().next().filter(|c| *c == '"' || *c == '\'') {
                if let Some(end) = s[1..].find(q) {
                    out.push((s[1..1 + end].to_string(), line));
                }
            }
            i = from;
        }
    }
    out
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&c| c == needle)
}

fn find(html: &str, from: usize, pat: &str) -> Option<usize> {
    html.get(from..)?.find(pat).map(|o| from + o)
}

fn find_ci(html: &str, from: usize, pat: &str) -> Option<usize> {
    let hay = html.get(from..)?.as_bytes();
    let pat = pat.as_bytes();
    hay.windows(pat.len()).position(|w| w.eq_ignore_ascii_case(pat)).map(|o| from + o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_quoted_unquoted_bare_and_decoded() {
        let t = tags("<p>\n<INPUT Type=email name='e' required value=\"a&amp;b&#39;&#x41;\" data-x=\"1>2\">");
        assert_eq!(t.len(), 2);
        let input = &t[1];
        assert_eq!((input.name.as_str(), input.line), ("input", 2));
        assert_eq!(input.attr("type"), Some("email"));
        assert_eq!(input.attr("name"), Some("e"));
        assert_eq!(input.attr("required"), Some(""));
        assert_eq!(input.attr("value"), Some("a&b'A"));
        assert_eq!(input.attr("data-x"), Some("1>2"));
    }

    #[test]
    fn comments_scripts_and_self_closing_are_not_tags() {
        let html = "<!doctype html><!-- <form> --><script>if (a<b) document.write('<form>')</script>\
                    <img src=x.png/><br/><textarea><b></textarea></form>";
        let names: Vec<_> = tags(html).iter().map(|t| (t.name.clone(), t.end)).collect();
        assert_eq!(
            names,
            [
                ("script", false),
                ("script", true),
                ("img", false),
                ("br", false),
                ("textarea", false),
                ("textarea", true),
                ("form", true)
            ]
            .map(|(n, e)| (n.to_string(), e))
        );
        assert!(tags(html)[0].raw.contains("document.write"));
        assert_eq!(tags("<img src=x.png/>")[0].attr("src"), Some("x.png/"));
        assert_eq!(tags("<img src=\"x.png\"/>")[0].attr("src"), Some("x.png"));
    }

    #[test]
    fn broken_markup_yields_what_it_can() {
        assert!(tags("a < b and <").is_empty());
        let t = tags("<a href=\"/x");
        assert_eq!(t[0].attr("href"), Some("/x"));
        assert_eq!(decode("&bogus; & &amp"), "&bogus; & &amp");
    }

    #[test]
    fn css_references() {
        let css = "@import \"a.css\";\n@font-face{src:url( 'f.woff2' ) format('woff2')}\nb{background:URL(/i.png)}";
        assert_eq!(css_urls(css), vec![("a.css".into(), 1), ("f.woff2".into(), 2), ("/i.png".into(), 3)]);
    }
}
