//! Forms rendered from their definitions in `cofferdam.toml` as plain HTML forms that work with
//! JavaScript off: HTML5 validation attributes, static options, a hidden honeypot field.

use crate::config::{Config, Field, FieldKind, Form, Product};
use std::fmt::Write;

pub fn render(name: &str, form: &Form, config: &Config) -> String {
    let mut h = String::with_capacity(2048);
    let _ = writeln!(
        h,
        "<form class=\"cd-form\" id=\"form-{n}\" method=\"post\" action=\"/submit/{n}\" accept-charset=\"utf-8\">",
        n = esc(name)
    );
    for field in &form.fields {
        field_html(&mut h, name, field, config);
    }
    // A bot fills every field; a person never sees this one.
    let _ = writeln!(
        h,
        "<div class=\"cd-hp\" aria-hidden=\"true\"><label for=\"{n}-{hp}\">Leave this empty</label>\
         <input id=\"{n}-{hp}\" name=\"{hp}\" type=\"text\" value=\"\" tabindex=\"-1\" autocomplete=\"off\"></div>",
        n = esc(name),
        hp = esc(&form.honeypot)
    );
    let _ = write!(h, "<button type=\"submit\">{}</button>\n</form>\n", esc(&form.submit_label));
    h
}

fn field_html(h: &mut String, form: &str, f: &Field, config: &Config) {
    let id = format!("{}-{}", esc(form), esc(&f.name));
    let mut attrs = format!(" id=\"{id}\" name=\"{}\"", esc(&f.name));
    if f.required {
        attrs.push_str(" required");
    }
    if let Some(a) = &f.autocomplete {
        let _ = write!(attrs, " autocomplete=\"{}\"", esc(a));
    }
    let help = f.help.as_ref().map(|t| format!("<small>{}</small>", esc(t))).unwrap_or_default();
    let label = format!("<label for=\"{id}\">{}</label>", esc(f.label()));
    match f.kind {
        FieldKind::Text | FieldKind::Email | FieldKind::Textarea => {
            if let Some(n) = f.min_len {
                let _ = write!(attrs, " minlength=\"{n}\"");
            }
            let _ = write!(attrs, " maxlength=\"{}\"", f.effective_max_len());
            if let Some(p) = &f.pattern {
                let _ = write!(attrs, " pattern=\"{}\"", esc(p));
            }
            if let Some(p) = &f.placeholder {
                let _ = write!(attrs, " placeholder=\"{}\"", esc(p));
            }
            let value = f.default.as_deref().map(esc).unwrap_or_default();
            let input = match f.kind {
                FieldKind::Textarea => format!("<textarea{attrs} rows=\"3\">{value}</textarea>"),
                FieldKind::Email => format!("<input{attrs} type=\"email\" value=\"{value}\">"),
                _ => format!("<input{attrs} type=\"text\" value=\"{value}\">"),
            };
            let _ = writeln!(h, "<div class=\"cd-field\">{label}{input}{help}</div>");
        }
        FieldKind::Int => {
            if let Some(n) = f.min {
                let _ = write!(attrs, " min=\"{n}\"");
            }
            if let Some(n) = f.max {
                let _ = write!(attrs, " max=\"{n}\"");
            }
            let value = f.default.as_deref().map(esc).unwrap_or_default();
            let _ = writeln!(
                h,
                "<div class=\"cd-field cd-int\">{label}<input{attrs} type=\"number\" inputmode=\"numeric\" step=\"1\" value=\"{value}\">{help}</div>"
            );
        }
        FieldKind::Select | FieldKind::Sku => {
            let choices: Vec<(String, String)> = if f.kind == FieldKind::Sku {
                sku_choices(f, config)
            } else {
                f.options.iter().map(|o| (o.value().to_string(), o.label().to_string())).collect()
            };
            let mut options = String::new();
            if f.default.is_none() {
                let _ = write!(options, "<option value=\"\">Choose…</option>");
            }
            for (value, text) in choices {
                let selected = if f.default.as_deref() == Some(value.as_str()) { " selected" } else { "" };
                let _ = write!(options, "<option value=\"{}\"{selected}>{}</option>", esc(&value), esc(&text));
            }
            let _ = writeln!(h, "<div class=\"cd-field\">{label}<select{attrs}>{options}</select>{help}</div>");
        }
        FieldKind::Checkbox => {
            let checked = if f.default.as_deref() == Some("on") { " checked" } else { "" };
            let _ = writeln!(
                h,
                "<div class=\"cd-field cd-check\"><input{attrs} type=\"checkbox\" value=\"on\"{checked}><label for=\"{id}\">{}</label>{help}</div>",
                esc(f.label())
            );
        }
    }
}

fn sku_choices(f: &Field, config: &Config) -> Vec<(String, String)> {
    let products: Vec<&Product> = if f.options.is_empty() {
        config.catalog.iter().collect()
    } else {
        f.options.iter().filter_map(|o| config.product(o.value())).collect()
    };
    products
        .into_iter()
        .map(|p| (p.sku.clone(), format!("{} — {}", p.name, format_price(p.price_cents, &p.currency))))
        .collect()
}

/// `8900, "EUR"` → `€89.00`.
pub fn format_price(cents: u64, currency: &str) -> String {
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    match currency {
        "EUR" => format!("€{amount}"),
        "USD" => format!("${amount}"),
        "GBP" => format!("£{amount}"),
        other => format!("{amount} {other}"),
    }
}

pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn order_form_is_plain_html_with_validation_and_honeypot() {
        let config = Config::parse(include_str!("../../cofferdam.toml"), Path::new("cofferdam.toml")).unwrap();
        let html = render("order", &config.forms["order"], &config);
        assert!(html.contains("action=\"/submit/order\" "), "{html}");
        assert!(
            html.contains("name=\"email\" required autocomplete=\"email\" maxlength=\"254\" type=\"email\""),
            "{html}"
        );
        assert!(html.contains("<option value=\"DE\">Germany</option>"), "{html}");
        assert!(
            html.contains("<option value=\"AURORA-EB\" selected>Aurora lamp — early bird — €89.00</option>"),
            "{html}"
        );
        assert!(html.contains("type=\"number\"") && html.contains("min=\"1\" max=\"5\""), "{html}");
        assert!(html.contains("name=\"website\" type=\"text\" value=\"\" tabindex=\"-1\""), "{html}");
        assert!(!html.contains("<script"), "{html}");
    }
}
