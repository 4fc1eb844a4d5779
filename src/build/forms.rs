//! Forms rendered from their definitions in `cofferdam.toml` as plain HTML forms that work with
//! JavaScript off: HTML5 validation attributes, static options, a hidden honeypot field.

use crate::config::{Field, FieldKind, Form, Product};
use std::collections::BTreeMap;
use std::fmt::Write;

/// A post that did not validate, shown again: what the buyer typed, and an error per field.
pub struct Filled<'a> {
    pub values: &'a BTreeMap<String, String>,
    /// Field name → message.
    pub errors: &'a BTreeMap<String, String>,
}

/// The form as the build writes it into its pages.
pub fn render(name: &str, form: &Form, catalog: &[Product]) -> String {
    render_with(name, form, catalog, None)
}

/// The form with the buyer's values and each error beside its field (the 422 answer), and a
/// summary at the top linking to the fields.
pub fn render_filled(name: &str, form: &Form, catalog: &[Product], filled: &Filled) -> String {
    render_with(name, form, catalog, Some(filled))
}

fn render_with(name: &str, form: &Form, catalog: &[Product], filled: Option<&Filled>) -> String {
    let mut h = String::with_capacity(2048);
    let _ = writeln!(
        h,
        "<form class=\"cd-form\" id=\"form-{n}\" method=\"post\" action=\"/submit/{n}\" accept-charset=\"utf-8\">",
        n = esc(name)
    );
    if let Some(f) = filled.filter(|f| !f.errors.is_empty()) {
        h.push_str("<div class=\"cd-errors\" role=\"alert\"><p>Please check the marked fields:</p><ul>");
        for field in form.fields.iter().filter(|x| f.errors.contains_key(&*x.name)) {
            let _ = write!(
                h,
                "<li><a href=\"#{}-{}\">{}</a></li>",
                esc(name),
                esc(&field.name),
                esc(&f.errors[&*field.name])
            );
        }
        h.push_str("</ul></div>\n");
    }
    for field in &form.fields {
        field_html(&mut h, name, field, catalog, filled);
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

fn field_html(h: &mut String, form: &str, f: &Field, catalog: &[Product], filled: Option<&Filled>) {
    let id = format!("{}-{}", esc(form), esc(&f.name));
    let error = filled.and_then(|x| x.errors.get(&*f.name));
    // What to show: what the buyer sent, else the configured default.
    let shown = match filled {
        Some(x) => x.values.get(&*f.name).map(String::as_str),
        None => f.default.as_deref(),
    };
    let mut attrs = format!(" id=\"{id}\" name=\"{}\"", esc(&f.name));
    if f.required {
        attrs.push_str(" required");
    }
    if let Some(a) = &f.autocomplete {
        let _ = write!(attrs, " autocomplete=\"{}\"", esc(a));
    }
    let invalid = if error.is_some() { " cd-invalid" } else { "" };
    if error.is_some() {
        let _ = write!(attrs, " aria-invalid=\"true\" aria-describedby=\"{id}-error\"");
    }
    let mut help = f.help.as_ref().map(|t| format!("<small>{}</small>", esc(t))).unwrap_or_default();
    if let Some(e) = error {
        // Beside its field, "E-mail: not an e-mail address" needs no "E-mail: ".
        let e = e.strip_prefix(&format!("{}: ", f.label())).map(capitalized).unwrap_or_else(|| e.to_string());
        let _ = write!(help, "<p class=\"cd-error\" id=\"{id}-error\">{}</p>", esc(&e));
    }
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
            let value = shown.map(esc).unwrap_or_default();
            let input = match f.kind {
                FieldKind::Textarea => format!("<textarea{attrs} rows=\"3\">{value}</textarea>"),
                FieldKind::Email => format!("<input{attrs} type=\"email\" value=\"{value}\">"),
                _ => format!("<input{attrs} type=\"text\" value=\"{value}\">"),
            };
            let _ = writeln!(h, "<div class=\"cd-field{invalid}\">{label}{input}{help}</div>");
        }
        FieldKind::Int => {
            if let Some(n) = f.min {
                let _ = write!(attrs, " min=\"{n}\"");
            }
            if let Some(n) = f.max {
                let _ = write!(attrs, " max=\"{n}\"");
            }
            let value = shown.map(esc).unwrap_or_default();
            let _ = writeln!(
                h,
                "<div class=\"cd-field cd-int{invalid}\">{label}<input{attrs} type=\"number\" inputmode=\"numeric\" step=\"1\" value=\"{value}\">{help}</div>"
            );
        }
        FieldKind::Select => {
            let choices: Vec<(&str, &str)> = f.options.iter().map(|o| (o.value(), o.label())).collect();
            // A required choice with one option is that option; otherwise nothing is chosen for
            // the buyer unless the config says so.
            let chosen = shown.or((f.required && choices.len() == 1).then(|| choices[0].0));
            let mut options = String::new();
            if chosen.is_none() || !choices.iter().any(|(v, _)| Some(*v) == chosen) {
                let _ = write!(options, "<option value=\"\">Choose…</option>");
            }
            for (value, text) in choices {
                let selected = if chosen == Some(value) { " selected" } else { "" };
                let _ = write!(options, "<option value=\"{}\"{selected}>{}</option>", esc(value), esc(text));
            }
            let _ =
                writeln!(h, "<div class=\"cd-field{invalid}\">{label}<select{attrs}>{options}</select>{help}</div>");
        }
        FieldKind::Sku => {
            // Products as radio cards: name and price in plain sight (not inside a dropdown),
            // wrapping on a phone instead of being cut.
            let products = sku_products(f, catalog);
            let chosen = shown.or((products.len() == 1).then(|| &*products[0].sku));
            let _ = write!(
                h,
                "<fieldset class=\"cd-field cd-sku{invalid}\" id=\"{id}\"{described}><legend>{}</legend>",
                esc(f.label()),
                described = if error.is_some() { format!(" aria-describedby=\"{id}-error\"") } else { String::new() }
            );
            for p in products {
                let checked = if chosen == Some(&*p.sku) { " checked" } else { "" };
                let required = if f.required { " required" } else { "" };
                let _ = write!(
                    h,
                    "<label class=\"cd-choice\"><input type=\"radio\" id=\"{id}-{sku}\" name=\"{}\" value=\"{sku}\"{required}{checked}>\
                     <span class=\"cd-choice-name\">{}</span><span class=\"cd-choice-price\">{}</span></label>",
                    esc(&f.name),
                    esc(&p.name),
                    format_price(p.price_cents, &p.currency),
                    sku = esc(&p.sku),
                );
            }
            let _ = writeln!(h, "{help}</fieldset>");
        }
        FieldKind::Checkbox => {
            let on = shown.is_some_and(|v| matches!(v, "on" | "true" | "1" | "yes"));
            let checked = if on { " checked" } else { "" };
            let _ = writeln!(
                h,
                "<div class=\"cd-field cd-check{invalid}\"><input{attrs} type=\"checkbox\" value=\"on\"{checked}><label for=\"{id}\">{}</label>{help}</div>",
                esc(f.label())
            );
        }
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The products a `sku` field offers: its options, else the whole catalog.
fn sku_products<'a>(f: &Field, catalog: &'a [Product]) -> Vec<&'a Product> {
    if f.options.is_empty() {
        catalog.iter().collect()
    } else {
        f.options.iter().filter_map(|o| catalog.iter().find(|p| *p.sku == *o.value())).collect()
    }
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
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn order_form_is_plain_html_with_validation_and_honeypot() {
        let config = Config::parse(include_str!("../../cofferdam.toml"), Path::new("cofferdam.toml")).unwrap();
        let html = render("order", &config.forms["order"], &config.catalog);
        assert!(html.contains("action=\"/submit/order\" "), "{html}");
        assert!(
            html.contains("name=\"email\" required autocomplete=\"email\" maxlength=\"254\" type=\"email\""),
            "{html}"
        );
        assert!(html.contains("<option value=\"DE\">Germany</option>"), "{html}");
        assert!(
            html.contains(
                "<input type=\"radio\" id=\"order-sku-AURORA-EB\" name=\"sku\" value=\"AURORA-EB\" required checked>\
                 <span class=\"cd-choice-name\">Aurora lamp — early bird</span><span class=\"cd-choice-price\">€89.00</span>"
            ),
            "{html}"
        );
        assert!(html.contains("type=\"number\"") && html.contains("min=\"1\" max=\"5\""), "{html}");
        assert!(html.contains("name=\"website\" type=\"text\" value=\"\" tabindex=\"-1\""), "{html}");
        assert!(!html.contains("<script"), "{html}");
        let offer = render("offer", &config.forms["offer"], &config.catalog);
        assert!(offer.contains("value=\"BULB-2PK\" required checked>"), "the only product is chosen: {offer}");
        assert!(offer.contains("<span class=\"cd-choice-price\">€19.00</span>"), "{offer}");
    }

    #[test]
    fn a_refused_post_shows_what_was_typed_escaped_with_each_error_beside_its_field() {
        let config = Config::parse(include_str!("../../cofferdam.toml"), Path::new("cofferdam.toml")).unwrap();
        let values: BTreeMap<String, String> = [
            ("name", "Ada \"<script>alert(1)</script>"),
            ("email", "not-an-email"),
            ("country", "FR"),
            ("street", "Rue <b>1</b>"),
            ("city", "Paris"),
            ("sku", "AURORA"),
            ("quantity", "9"),
            ("newsletter", "on"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let errors: BTreeMap<String, String> = [
            ("email".to_string(), "E-mail: not an e-mail address".to_string()),
            ("quantity".to_string(), "Quantity: must be between 1 and 5".to_string()),
        ]
        .into();
        let html = render_filled(
            "order",
            &config.forms["order"],
            &config.catalog,
            &Filled { values: &values, errors: &errors },
        );
        assert!(html.contains("value=\"Ada &quot;&lt;script&gt;alert(1)&lt;/script&gt;\""), "{html}");
        assert!(!html.contains("<script>") && !html.contains("<b>"), "{html}");
        assert!(html.contains("value=\"Rue &lt;b&gt;1&lt;/b&gt;\""), "{html}");
        assert!(html.contains("<option value=\"FR\" selected>France</option>"), "{html}");
        assert!(html.contains("value=\"AURORA\" required checked>"), "{html}");
        assert!(!html.contains("value=\"AURORA-EB\" required checked>"), "the default gives way to the choice: {html}");
        assert!(html.contains("type=\"checkbox\" value=\"on\" checked>"), "{html}");
        assert!(
            html.contains("aria-invalid=\"true\" aria-describedby=\"order-email-error\" maxlength=\"254\" type=\"email\" value=\"not-an-email\"><p class=\"cd-error\" id=\"order-email-error\">Not an e-mail address</p>"),
            "{html}"
        );
        assert!(html.contains("<li><a href=\"#order-quantity\">Quantity: must be between 1 and 5</a></li>"), "{html}");
        assert!(html.contains("name=\"website\" type=\"text\" value=\"\""), "the honeypot stays empty: {html}");
    }
}
