//! The `303` once a record is durable: where it sends the buyer (the thank-you page, or the
//! provider's payment page carrying the reference) and the cookies it sets (the signed
//! reference a follow-up form links to, and the buyer's receipt).

use super::receipt::{Receipt, Unplaced};
use super::validate::Valid;
use super::{Collector, FormRuntime, Forms};
use crate::payment::link;
use crate::record::Ref;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};

/// What the answer needs of a post, kept before the post goes to the writer.
pub struct After {
    receipt: Option<Unplaced>,
    /// For the payment link: the post as validated.
    order: Option<Valid>,
    parent: Option<Ref>,
}

impl After {
    pub fn new(rt: &FormRuntime, valid: &Valid, parent: Option<&Ref>) -> After {
        After {
            receipt: Unplaced::of(&rt.name, valid),
            order: rt.form.payment.as_ref().map(|_| valid.clone()),
            parent: parent.cloned(),
        }
    }

    /// The 303 for the record `reference`.
    pub fn see_other(
        self,
        c: &Collector,
        launch: &Forms,
        rt: &FormRuntime,
        reference: &Ref,
        request: &HeaderMap,
    ) -> Response {
        let location = match (&rt.form.payment, &self.order) {
            (Some(payment), Some(v)) => link::url(
                payment,
                &link::Order {
                    reference,
                    fields: &v.fields,
                    lines: &v.lines,
                    total_cents: v.total_cents,
                    currency: v.currency.as_deref(),
                },
            ),
            _ => rt.form.thanks.clone(),
        };
        let mut cookies = Vec::new();
        if rt.sets_cookie {
            cookies.push(cookie(launch, &[super::cookie::REF_COOKIE_PREFIX, &rt.name], |out| {
                c.signer.sign_into(&rt.name, reference, jiff::Timestamp::now(), out)
            }));
        }
        if let Some(unplaced) = self.receipt {
            let previous = Receipt::from_headers(&c.signer, request);
            let receipt = Receipt::after(previous, unplaced.placed(reference.clone()), self.parent.as_ref());
            cookies.push(cookie(launch, &[super::receipt::COOKIE], |out| receipt.encode_into(&c.signer, out)));
        }
        see_other(&location, cookies)
    }
}

pub fn see_other(location: &str, cookies: Vec<HeaderValue>) -> Response {
    // Room for these and the security headers the front adds, so the map never regrows.
    let mut headers = HeaderMap::with_capacity(16);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::LOCATION, HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/")));
    for c in cookies {
        headers.append(header::SET_COOKIE, c);
    }
    let mut r = StatusCode::SEE_OTHER.into_response();
    *r.headers_mut() = headers;
    r
}

/// A `Set-Cookie` value, written in place into one buffer: the name (its `parts`), the value
/// `write` appends, and the attributes.
fn cookie(launch: &Forms, name: &[&str], write: impl FnOnce(&mut String)) -> HeaderValue {
    let mut value = String::with_capacity(512);
    for part in name {
        value.push_str(part);
    }
    value.push('=');
    write(&mut value);
    value.push_str("; Path=/; HttpOnly; SameSite=Lax; Max-Age=");
    value.push_str(itoa::Buffer::new().format(super::cookie::REF_MAX_AGE_SECS));
    if launch.secure_cookie {
        value.push_str("; Secure");
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).expect("names, refs and base64url are header-safe")
}
