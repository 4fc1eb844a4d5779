//! A form post checked against its definition: types, lengths, patterns, options, catalog SKUs
//! and quantity bounds. Prices come from the catalog; the client never sets one.

use crate::config::{FieldKind, Form, Product};
use crate::record::Line;
use serde::Serialize;
use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A body that is not a form post at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not valid UTF-8")]
    NotUtf8,
}

/// What a form post's fields are read through: a post as it came
/// ([`FormBody`]) or a stored record's fields, re-validated at import.
pub trait Posted {
    /// The value posted under `name`, if any.
    fn value(&self, name: &str) -> Option<&str>;
}

impl<K: Borrow<str> + Ord> Posted for BTreeMap<K, String> {
    fn value(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// A decoded `application/x-www-form-urlencoded` body, in the order it came: names and values
/// that need no decoding borrow the body's bytes (most do), so a post costs no allocation per
/// field before validation. The first value of a repeated name wins.
#[derive(Debug, Clone, PartialEq)]
pub struct FormBody<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl Posted for FormBody<'_> {
    fn value(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_ref())
    }
}

impl FormBody<'_> {
    /// Every name with its (first) value: what the form page is filled in again with.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        for (k, v) in &self.pairs {
            map.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
        map
    }
}

/// Decodes `application/x-www-form-urlencoded`, strictly: a percent-escape that does not
/// decode to UTF-8 is an error rather than a silent replacement character.
pub fn parse_body(body: &[u8]) -> Result<FormBody<'_>, BodyError> {
    // Checked for UTF-8 once, as a whole: the separators are ASCII, so each name and value of
    // a UTF-8 body is UTF-8 too, and one pass costs less than one a piece.
    let mut rest = std::str::from_utf8(body).map_err(|_| BodyError::NotUtf8)?;
    let mut pairs = Vec::with_capacity(16);
    while !rest.is_empty() {
        let (pair, after) = split_at_byte(rest, b'&').unwrap_or((rest, ""));
        rest = after;
        if pair.is_empty() {
            continue;
        }
        let (k, v) = split_at_byte(pair, b'=').unwrap_or((pair, ""));
        pairs.push((form_decode(k)?, form_decode(v)?));
    }
    Ok(FormBody { pairs })
}

/// `s` before and after the first `separator` (ASCII), if there is one.
fn split_at_byte(s: &str, separator: u8) -> Option<(&str, &str)> {
    let at = s.bytes().position(|b| b == separator)?;
    Some((&s[..at], &s[at + 1..]))
}

/// One name or value: `+` is a space, `%XX` a byte (a `%` not followed by two hex digits stays
/// as it is), and the decoded bytes must be UTF-8.
fn form_decode(text: &str) -> Result<Cow<'_, str>, BodyError> {
    let s = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    if !s.iter().any(|&b| b == b'+' || b == b'%') {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| BodyError::NotUtf8)
}

/// What a valid post yields: the stored fields (every field of the form, in the form's terms)
/// and the priced order lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Valid {
    pub fields: BTreeMap<Arc<str>, String>,
    pub lines: Vec<Line>,
    pub total_cents: Option<u64>,
    pub currency: Option<Arc<str>>,
}

pub fn validate(form: &Form, catalog: &[Product], posted: &impl Posted) -> Result<Valid, Vec<FieldError>> {
    let mut errors = Vec::new();
    // Gathered in a vector and made a map at once: a map built from all its pairs costs less
    // than one insert (with its key comparisons) a field.
    let mut fields = Vec::with_capacity(form.fields.len());
    let mut err = |field: &str, message: String| errors.push(FieldError { field: field.to_string(), message });
    let mut sku = None;
    for f in &form.fields {
        let raw = posted.value(&f.name).unwrap_or("");
        let value =
            if f.kind == FieldKind::Textarea { raw.trim().replace("\r\n", "\n") } else { raw.trim().to_string() };
        let label = f.label();
        if f.kind == FieldKind::Checkbox {
            // "false" is how a stored record says "unticked", so re-validation accepts it.
            match value.as_str() {
                "" | "false" => {
                    if f.required {
                        err(&f.name, format!("{label}: please tick this box"));
                    }
                    fields.push((f.name.clone(), "false".into()));
                }
                "on" | "true" | "1" | "yes" => {
                    fields.push((f.name.clone(), "true".into()));
                }
                _ => err(&f.name, format!("{label}: not a checkbox value")),
            }
            continue;
        }
        if value.is_empty() {
            if f.required {
                err(&f.name, format!("{label} is required"));
            }
            fields.push((f.name.clone(), String::new()));
            continue;
        }
        let (chars, control) = measure(&value, f.kind == FieldKind::Textarea);
        if control {
            err(&f.name, format!("{label}: contains control characters"));
            continue;
        }
        match f.kind {
            FieldKind::Text | FieldKind::Textarea | FieldKind::Email => {
                if let Some(min) = f.min_len {
                    if chars < min {
                        err(&f.name, format!("{label}: at least {min} characters"));
                        continue;
                    }
                }
                let max = f.effective_max_len();
                if chars > max {
                    err(&f.name, format!("{label}: at most {max} characters"));
                    continue;
                }
                if f.kind == FieldKind::Email && !plausible_email(&value) {
                    err(&f.name, format!("{label}: not an e-mail address"));
                    continue;
                }
                if let Some(p) = &f.pattern {
                    if !matches_pattern(p, &value) {
                        err(&f.name, format!("{label}: not in the expected format"));
                        continue;
                    }
                }
            }
            FieldKind::Int => {
                let Ok(n) = value.parse::<i64>() else {
                    err(&f.name, format!("{label}: not a whole number"));
                    continue;
                };
                // A quantity below one is never an order, whatever the config says.
                let is_quantity = form.quantity_field.as_deref() == Some(&*f.name);
                let min = f.min.or(is_quantity.then_some(1));
                if min.is_some_and(|m| n < m) || f.max.is_some_and(|m| n > m) {
                    let range = match (min, f.max) {
                        (Some(a), Some(b)) => format!("between {a} and {b}"),
                        (Some(a), None) => format!("at least {a}"),
                        (None, Some(b)) => format!("at most {b}"),
                        (None, None) => unreachable!(),
                    };
                    err(&f.name, format!("{label}: must be {range}"));
                    continue;
                }
            }
            FieldKind::Select => {
                if !f.options.iter().any(|o| o.value() == value) {
                    err(&f.name, format!("{label}: not one of the choices"));
                    continue;
                }
            }
            FieldKind::Sku => {
                let offered = f.options.is_empty() || f.options.iter().any(|o| o.value() == value);
                match catalog.iter().find(|p| *p.sku == *value) {
                    Some(p) if offered => sku = Some(p),
                    _ => {
                        err(&f.name, format!("{label}: unknown product"));
                        continue;
                    }
                }
            }
            FieldKind::Checkbox => unreachable!("handled above"),
        }
        fields.push((f.name.clone(), value));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let fields: BTreeMap<Arc<str>, String> = fields.into_iter().collect();
    let (lines, total_cents, currency) = match sku {
        Some(p) => {
            let quantity = form
                .quantity_field
                .as_ref()
                .and_then(|q| fields.get(q.as_str()))
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1);
            let total = p.price_cents * quantity as u64;
            let line = Line {
                sku: p.sku.clone(),
                name: p.name.clone(),
                quantity,
                unit_cents: p.price_cents,
                total_cents: total,
            };
            (vec![line], Some(total), Some(p.currency.clone()))
        }
        None => (Vec::new(), None, None),
    };
    Ok(Valid { fields, lines, total_cents, currency })
}

/// Whether `value` matches a field's `pattern`, anchored as HTML5 `pattern` is. Patterns are
/// checked at config load; each is compiled once per thread, not once per post.
fn matches_pattern(pattern: &str, value: &str) -> bool {
    thread_local! {
        static COMPILED: std::cell::RefCell<std::collections::HashMap<String, regex::Regex>> = Default::default();
    }
    COMPILED.with_borrow_mut(|compiled| {
        if let Some(re) = compiled.get(pattern) {
            return re.is_match(value);
        }
        let re = regex::Regex::new(&format!("^(?:{pattern})$")).expect("pattern checked at load");
        let matched = re.is_match(value);
        compiled.insert(pattern.to_string(), re);
        matched
    })
}

/// How many characters `value` has, and whether one of them is a control character (a
/// textarea may hold line breaks and tabs). A value of printable ASCII (most are) is found so
/// in one pass over its bytes and counted by its length; any other is decoded once.
fn measure(value: &str, textarea: bool) -> (u32, bool) {
    // `b - 0x20 < 0x5f` is 0x20..=0x7e in one compare; `&` and `|`, not `&&` and `||`, keep the
    // fold free of branches.
    let printable_ascii = value
        .bytes()
        .fold(true, |ok, b| ok & ((b.wrapping_sub(0x20) < 0x5f) | textarea & ((b == b'\n') | (b == b'\t'))));
    if printable_ascii {
        return (value.len() as u32, false);
    }
    let allowed = |c: char| textarea && (c == '\n' || c == '\t');
    let (mut count, mut control) = (0, false);
    for c in value.chars() {
        count += 1;
        control |= c.is_control() && !allowed(c);
    }
    (count, control)
}

/// Deliberately loose (the only real check is a mail that arrives): one `@`, a dotted domain,
/// no spaces.
fn plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn config() -> Config {
        Config::parse(include_str!("../../cofferdam.toml"), Path::new("cofferdam.toml")).unwrap()
    }

    fn post(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("name", "Ada Lovelace"),
            ("email", "ada@example.org"),
            ("country", "DE"),
            ("street", "Hauptstr. 1"),
            ("postcode", "10115"),
            ("city", "Berlin"),
            ("sku", "AURORA-EB"),
            ("quantity", "2"),
        ]
    }

    #[test]
    fn valid_order_is_priced_from_the_catalog_only() {
        let c = config();
        let mut p = post(&good());
        p.insert("total_cents".into(), "1".into());
        p.insert("price_cents".into(), "1".into());
        let v = validate(&c.forms["order"], &c.catalog, &p).unwrap();
        assert_eq!(v.total_cents, Some(17800));
        assert_eq!(v.lines[0].unit_cents, 8900);
        assert!(!v.fields.contains_key("total_cents") && !v.fields.contains_key("price_cents"));
        assert_eq!(v.fields["newsletter"], "false");
    }

    #[test]
    fn each_bad_field_is_named() {
        let c = config();
        let long_name = "ë".repeat(101);
        let cases: &[(&str, &str, &str)] = &[
            ("sku", "NOPE", "unknown product"),
            ("quantity", "-1", "between 1 and 5"),
            ("quantity", "9", "between 1 and 5"),
            ("quantity", "two", "whole number"),
            ("email", "not-an-email", "e-mail"),
            ("country", "XX", "choices"),
            ("name", "A", "at least 2"),
            ("name", "", "required"),
            // Characters, not bytes: 100 two-byte letters fit, 101 do not.
            ("name", &long_name, "at most 100 characters"),
            ("name", "Zo\u{7}e", "control characters"),
            ("name", "Zo\u{85}ë", "control characters"),
        ];
        for (field, value, expect) in cases {
            let mut p = post(&good());
            p.insert(field.to_string(), value.to_string());
            let errors = validate(&c.forms["order"], &c.catalog, &p).unwrap_err();
            assert_eq!(errors.len(), 1, "{field}={value}: {errors:?}");
            assert_eq!(errors[0].field, *field);
            assert!(errors[0].message.contains(expect), "{field}={value}: {}", errors[0].message);
        }
    }

    #[test]
    fn characters_are_counted_and_controls_found_in_ascii_and_beyond() {
        assert_eq!(measure("Zoe", false), (3, false));
        assert_eq!(measure("Zoë", false), (3, false));
        assert_eq!(measure(&"ë".repeat(100), false), (100, false));
        assert_eq!(measure("a\tb", false), (3, true), "a tab outside a textarea");
        assert_eq!(measure("a\tb\nc", true), (5, false), "tabs and line breaks in a textarea");
        assert_eq!(measure("a\rb", true), (3, true));
        assert_eq!(measure("Zoë\u{7f}", false), (4, true), "DEL beside a non-ASCII letter");
        assert_eq!(measure("Zoë\u{85}", true), (4, true), "a C1 control");
        assert_eq!(measure("ë\n", true), (2, false));
    }

    #[test]
    fn a_pattern_must_match_the_whole_value_every_time() {
        let mut c = config();
        let form = c.forms.get_mut("newsletter").unwrap();
        form.fields[0].kind = FieldKind::Text;
        form.fields[0].pattern = Some("[0-9]{5}".into());
        let form = &c.forms["newsletter"];
        // Twice each: the second answer comes from the compiled pattern kept for this thread.
        for _ in 0..2 {
            assert!(validate(form, &c.catalog, &post(&[("email", "10115")])).is_ok());
            for bad in ["1011", "10115x", "x10115"] {
                let errors = validate(form, &c.catalog, &post(&[("email", bad)])).unwrap_err();
                assert!(errors[0].message.contains("not in the expected format"), "{bad}: {errors:?}");
            }
        }
    }

    #[test]
    fn body_decoding_is_strict_about_utf8() {
        assert_eq!(parse_body(b"a=1+2&b=%C3%A9&a=3").unwrap().to_map(), post(&[("a", "1 2"), ("b", "é")]));
        assert_eq!(parse_body(b"a=1+2&b=%C3%A9&a=3").unwrap().value("a"), Some("1 2"), "the first value wins");
        assert_eq!(parse_body(b"a=%FF"), Err(BodyError::NotUtf8));
        assert_eq!(parse_body(&[b'a', b'=', 0xff]), Err(BodyError::NotUtf8));
        assert_eq!(parse_body(&[0xc3, b'=', b'1']), Err(BodyError::NotUtf8), "a name's bytes too");
        assert_eq!(parse_body(&[b'a', b'=', 0xc3, 0xa9, b'&', b'&', 0xe2]), Err(BodyError::NotUtf8), "a cut sequence");
        assert_eq!(parse_body("n=Zoë&&c=DE".as_bytes()).unwrap().to_map(), post(&[("n", "Zoë"), ("c", "DE")]));
        // A '%' without two hex digits is kept; an escaped '+' is a plus, a bare one a space.
        assert_eq!(
            parse_body(b"a=50%&b=%zz%4&c=%2B+&d").unwrap().to_map(),
            post(&[("a", "50%"), ("b", "%zz%4"), ("c", "+ "), ("d", "")])
        );
    }
}
