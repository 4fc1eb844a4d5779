//! The small static pages a visitor gets instead of the thank-you page: busy (503), sold out
//! (409), invalid (422, with the field errors filled in), and plain 4xx pages. Never a stack
//! trace, a path or a version.

use super::validate::FieldError;
use crate::manifest::Manifest;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use std::path::Path;

pub const ERRORS_MARKER: &str = "<!-- cofferdam:errors -->";

pub struct Pages {
    busy: Bytes,
    sold_out: Bytes,
    invalid: String,
    not_found: Bytes,
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

    pub fn invalid(&self, errors: &[FieldError], json: bool) -> Response {
        if json {
            let body = serde_json::json!({ "errors": errors });
            return (StatusCode::UNPROCESSABLE_ENTITY, [(header::CACHE_CONTROL, "no-store")], axum::Json(body))
                .into_response();
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

fn html(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], body)
        .into_response()
}
