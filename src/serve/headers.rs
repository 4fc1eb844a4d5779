//! Cache and security headers, the same on every response.

use crate::config::ServerConfig;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// No inline script anywhere; forms post only to this origin; never framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'";

pub fn cache_control(fingerprinted: bool, config: &ServerConfig) -> HeaderValue {
    if fingerprinted {
        HeaderValue::from_static("public, max-age=31536000, immutable")
    } else {
        HeaderValue::from_str(&format!("public, max-age={}", config.html_max_age)).expect("digits")
    }
}

/// Adds the security headers that are not there yet.
pub fn add_security(h: &mut HeaderMap, config: &ServerConfig) {
    let set = |h: &mut HeaderMap, name: HeaderName, value: HeaderValue| {
        h.entry(name).or_insert(value);
    };
    let csp = if config.payment_origins.is_empty() {
        HeaderValue::from_static(CSP)
    } else {
        // A form whose 303 goes to a payment page submits to it, as far as the CSP goes.
        let to = format!("form-action 'self' {}", config.payment_origins.join(" "));
        HeaderValue::from_str(&CSP.replacen("form-action 'self'", &to, 1)).expect("origins are checked URLs")
    };
    set(h, header::CONTENT_SECURITY_POLICY, csp);
    set(h, header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    set(h, header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    set(h, header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin"));
    if let Some(age) = config.hsts_max_age {
        set(
            h,
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_str(&format!("max-age={age}; includeSubDomains")).expect("digits"),
        );
    }
}
