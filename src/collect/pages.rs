//! The pages a visitor gets instead of the thank-you page: busy (503), sold out (409), invalid
//! (422), and plain 4xx pages. Never a stack trace, a path or a version.
//!
//! A 422 shows the form's own page again, with what the buyer typed and each error beside its
//! field: the prebuilt page is cut around the form as the build rendered it, and the form is
//! rendered again, filled. Where that form cannot be found in its page (a template that
//! rewrites it), the static invalid page lists the errors instead.

use super::validate::FieldError;
use crate::build::{render_filled_form, render_form, Filled};
use crate::config::{Form, Product};
use crate::manifest::Manifest;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const ERRORS_MARKER: &str = "<!-- cofferdam:errors -->";

pub struct Pages {
    busy: Bytes,
    sold_out: Bytes,
    invalid: String,
    not_found: Bytes,
    /// Form → the pages showing it, cut around the form.
    form_pages: HashMap<String, Vec<FormPage>>,
    forms: BTreeMap<String, Form>,
    catalog: Vec<Product>,
}

/// A prebuilt page around the place of its form.
struct FormPage {
    route: String,
    before: String,
    after: String,
}

fn fallback(title: &str, text: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title><h1>{title}</h1><p>{text}</p>{ERRORS_MARKER}<p><a href=\"/\">Back to the start</a></p></html>"
    )
}

impl Pages {
    pub fn load(manifest: &Manifest, dist: &Path) -> Pages {
        let read = |file: &Option<String>| file.as_ref().and_then(|f| std::fs::read_to_string(dist.join(f)).ok());
        Pages {
            busy: read(&manifest.special.busy)
                .unwrap_or_else(|| {
                    fallback("Busy, try again", "Your form was not sent yet. Please try again in a few seconds.")
                })
                .into(),
            sold_out: read(&manifest.special.sold_out)
                .unwrap_or_else(|| fallback("Sold out", "Everything is gone, sorry."))
                .into(),
            invalid: read(&manifest.special.invalid)
                .filter(|p| p.contains(ERRORS_MARKER))
                .unwrap_or_else(|| fallback("Please check the form", "Some fields need another look:")),
            not_found: read(&manifest.special.not_found)
                .unwrap_or_else(|| fallback("Not found", "There is no such form."))
                .into(),
            form_pages: form_pages(manifest, dist),
            forms: manifest.forms.clone(),
            catalog: manifest.catalog.clone(),
        }
    }

    pub fn busy(&self) -> Response {
        let mut r = html(StatusCode::SERVICE_UNAVAILABLE, self.busy.clone());
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        r
    }

    pub fn sold_out(&self) -> Response {
        html(StatusCode::CONFLICT, self.sold_out.clone())
    }

    pub fn not_found(&self) -> Response {
        html(StatusCode::NOT_FOUND, self.not_found.clone())
    }

    /// The 422: the form's page again, filled, with the errors beside the fields (the page the
    /// post came from, when it shows the form); JSON for a client that asks for it.
    pub fn invalid(
        &self,
        form: &str,
        posted: &BTreeMap<String, String>,
        errors: &[FieldError],
        json: bool,
        referer: Option<&str>,
    ) -> Response {
        if json {
            let body = serde_json::json!({ "errors": errors });
            return (StatusCode::UNPROCESSABLE_ENTITY, [(header::CACHE_CONTROL, "no-store")], axum::Json(body))
                .into_response();
        }
        let pages = self.form_pages.get(form).map(Vec::as_slice).unwrap_or_default();
        let from = referer.map(path_of);
        let page = pages.iter().find(|p| Some(p.route.as_str()) == from).or(pages.first());
        if let (Some(page), Some(def)) = (page, self.forms.get(form)) {
            // One message per field: the first, as validation stops at it.
            let mut by_field = BTreeMap::new();
            for e in errors {
                by_field.entry(e.field.clone()).or_insert_with(|| e.message.clone());
            }
            let filled = Filled { values: posted, errors: &by_field };
            let form_html = render_filled_form(form, def, &self.catalog, &filled);
            let body = [page.before.as_str(), &form_html, &page.after].concat();
            return html(StatusCode::UNPROCESSABLE_ENTITY, body.into());
        }
        let mut list = String::from("<ul class=\"errors\">");
        for e in errors {
            list.push_str("<li>");
            list.push_str(&crate::build::escape_html(&e.message));
            list.push_str("</li>");
        }
        list.push_str("</ul>");
        html(StatusCode::UNPROCESSABLE_ENTITY, self.invalid.replacen(ERRORS_MARKER, &list, 1).into())
    }

    /// A plain page for the other refusals (400, 403, 413, 415).
    pub fn refuse(&self, status: StatusCode, text: &str) -> Response {
        let title = status.canonical_reason().unwrap_or("Error");
        html(status, fallback(title, &crate::build::escape_html(text)).replacen(ERRORS_MARKER, "", 1).into())
    }
}

/// Every page showing a form, cut around the form as the build rendered it.
fn form_pages(manifest: &Manifest, dist: &Path) -> HashMap<String, Vec<FormPage>> {
    let mut out: HashMap<String, Vec<FormPage>> = HashMap::new();
    for (name, form) in &manifest.forms {
        let rendered = render_form(name, form, &manifest.catalog);
        for page in manifest.pages.iter().filter(|p| p.forms.contains(name)) {
            let Ok(text) = std::fs::read_to_string(dist.join(&page.file)) else { continue };
            if let Some(at) = text.find(&rendered) {
                out.entry(name.clone()).or_default().push(FormPage {
                    route: page.route.clone(),
                    before: text[..at].to_string(),
                    after: text[at + rendered.len()..].to_string(),
                });
            }
        }
    }
    out
}

/// `https://shop.example/order/?x` → `/order/`
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
    path.split(['?', '#']).next().unwrap_or(path)
}

fn html(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], body)
        .into_response()
}
