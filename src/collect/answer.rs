//! The `303` once a record is durable: where it sends the buyer (the thank-you page, or the
//! provider's payment page carrying the reference) and the cookies it sets (the signed
//! reference a follow-up form links to, and the buyer's receipt).

use super::receipt::{Placed, Receipt};
use super::{Collector, FormRuntime, Forms};
use crate::payment::link;
use crate::record::{Record, Ref};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};

/// What the answer needs of the request, taken before the post goes to the writer: the
/// request itself is dropped then, while it is still in the cache (bench/README.md, 2026-12-07
/// evening). The rest comes with the record the writer hands back.
pub struct After {
    /// A follow-up's order and the receipt the buyer came with, which the follow-up joins.
    joins: Option<(Ref, Receipt)>,
}

impl After {
    pub fn new(c: &Collector, parent: Option<&Ref>, request: &HeaderMap) -> After {
        // Only a follow-up joins the receipt it came with; any other post starts a new one, so
        // only a follow-up's cookie is read (and its signature checked).
        let joins = parent.and_then(|p| Receipt::from_headers(&c.signer, request).map(|r| (p.clone(), r)));
        After { joins }
    }

    /// The 303 for `record`, just accepted or accepted before (a double submit).
    pub fn see_other(self, c: &Collector, launch: &Forms, rt: &FormRuntime, record: Record) -> Response {
        let location = match &rt.form.payment {
            Some(payment) => location(&link::url(
                payment,
                &link::Order {
                    reference: &record.reference,
                    fields: &record.fields,
                    lines: &record.lines,
                    total_cents: record.total_cents,
                    currency: record.currency.as_deref(),
                },
            )),
            None => rt.thanks.clone(),
        };
        // Issued when the post came in: the clock was read then, and the follow-up's day
        // counts from the order either way.
        let ref_cookie = rt.sets_cookie.then(|| {
            cookie(launch, &[super::cookie::REF_COOKIE_PREFIX, &rt.name], |out| {
                c.signer.sign_into(&rt.name, &record.reference, record.received_at, out)
            })
        });
        let receipt_cookie = Placed::of(record).map(|placed| {
            let (parent, previous) = self.joins.unzip();
            let receipt = Receipt::after(previous, placed, parent.as_ref());
            cookie(launch, &[super::receipt::COOKIE], |out| receipt.encode_into(&c.signer, out))
        });
        see_other(location, ref_cookie.into_iter().chain(receipt_cookie))
    }
}

/// `url` as a `Location` (every URL cofferdam makes is one; `/` should one not be).
pub fn location(url: &str) -> HeaderValue {
    HeaderValue::from_str(url).unwrap_or(HeaderValue::from_static("/"))
}

pub fn see_other(location: HeaderValue, cookies: impl IntoIterator<Item = HeaderValue>) -> Response {
    // Room for these and the security headers the front adds, so the map never regrows.
    let mut headers = HeaderMap::with_capacity(16);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::LOCATION, location);
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
