//! The signed reference cookie that links a follow-up form (a one-time offer) to the record
//! before it, with no database and no JavaScript: `{ref}.{base64url(HMAC-SHA256)}`.

use crate::record::Ref;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const EXAMPLE_KEY: &str = "example-signing-key-change-me";

/// The signed reference cookie of form `f` is `cofferdam_ref_f`.
pub const REF_COOKIE_PREFIX: &str = "cofferdam_ref_";

/// How long an order's cookie takes its follow-up, and the cookies' `Max-Age`.
pub const REF_MAX_AGE_SECS: i64 = 86_400;
const CLOCK_SKEW_SECS: i64 = 300;

#[derive(Clone)]
pub struct Signer {
    /// HMAC keyed once: each signature starts from a copy instead of hashing the key again.
    keyed: Hmac<Sha256>,
}

impl Signer {
    pub fn new(key: &[u8]) -> Signer {
        Signer { keyed: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length") }
    }

    pub fn cookie_name(form: &str) -> String {
        format!("{REF_COOKIE_PREFIX}{form}")
    }

    fn mac(&self, form: &str, reference: &str) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        // The form is signed too, so a cookie of one form cannot stand in for another's.
        mac.update(form.as_bytes());
        mac.update(b"\0");
        mac.update(reference.as_bytes());
        mac
    }

    /// `{ref}.{issued, in Unix seconds}.{tag}`: the issue time is signed with the reference,
    /// so the cookie expires on the server's word, whatever the browser keeps.
    pub fn sign(&self, form: &str, reference: &Ref, issued: jiff::Timestamp) -> String {
        let mut value = String::with_capacity(80);
        self.sign_into(form, reference, issued, &mut value);
        value
    }

    /// [`Signer::sign`], appended to `out` (a `Set-Cookie` value being written).
    pub fn sign_into(&self, form: &str, reference: &Ref, issued: jiff::Timestamp, out: &mut String) {
        let start = out.len();
        reference.push_to(out);
        out.push('.');
        out.push_str(itoa::Buffer::new().format(issued.as_second()));
        self.sign_tail(form, out, start);
    }

    /// The reference in `value` if its signature is right (compared in constant time) and it
    /// was issued at most [`REF_MAX_AGE_SECS`] before `now`.
    pub fn verify(&self, form: &str, value: &str, now: jiff::Timestamp) -> Option<Ref> {
        let (reference, issued) = self.verify_text(form, value)?.rsplit_once('.')?;
        let age = now.as_second() - issued.parse::<i64>().ok()?;
        // A little room for clocks of nodes behind one balancer that disagree.
        if !(-CLOCK_SKEW_SECS..=REF_MAX_AGE_SECS).contains(&age) {
            return None;
        }
        reference.parse().ok()
    }

    /// `{text}.{tag}` for a cookie-safe `text`, signed under `context` (a form's name, or a
    /// context no form can be named, such as `cofferdam:receipt`).
    pub fn sign_text(&self, context: &str, text: &str) -> String {
        let mut value = String::with_capacity(text.len() + 44);
        value.push_str(text);
        self.sign_tail(context, &mut value, 0);
        value
    }

    /// Signs `out[start..]` as [`Signer::sign_text`] does its text, appending `.{tag}`.
    pub fn sign_tail(&self, context: &str, out: &mut String, start: usize) {
        let tag = self.mac(context, &out[start..]).finalize().into_bytes();
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, out);
    }

    pub fn verify_text<'v>(&self, context: &str, value: &'v str) -> Option<&'v str> {
        let (text, tag) = value.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(context, text).verify_slice(&tag).ok()?;
        Some(text)
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn find<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').map(str::trim).find_map(|c| c.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_ref_verifies_and_tampering_does_not() {
        let s = Signer::new(b"k");
        let r: Ref = "n1-42".parse().unwrap();
        let now = jiff::Timestamp::now();
        let v = s.sign("order", &r, now);
        assert_eq!(s.verify("order", &v, now), Some(r));
        assert_eq!(s.verify("offer", &v, now), None, "another form's cookie");
        assert_eq!(s.verify("order", &v.replace("n1-42", "n1-43"), now), None, "tampered ref");
        assert_eq!(Signer::new(b"other").verify("order", &v, now), None, "forged with another key");
        assert_eq!(s.verify("order", "n1-42", now), None);
        assert_eq!(s.verify("order", &s.sign_text("order", "n1-42"), now), None, "no issue time");
        assert_eq!(find("a=1; cofferdam_ref_order=x.y; b=2", "cofferdam_ref_order"), Some("x.y"));
    }

    #[test]
    fn offer_cookie_is_refused_a_day_after_its_order() {
        let s = Signer::new(b"k");
        let r: Ref = "n1-42".parse().unwrap();
        let ordered: jiff::Timestamp = "2026-12-01T09:00:00Z".parse().unwrap();
        let v = s.sign("order", &r, ordered);
        let after = |secs: i64| ordered + jiff::SignedDuration::from_secs(secs);
        assert_eq!(s.verify("order", &v, after(REF_MAX_AGE_SECS)), Some(r), "within the day");
        assert_eq!(s.verify("order", &v, after(REF_MAX_AGE_SECS + 1)), None, "a day and a second later");
        assert_eq!(s.verify("order", &v, after(-3600)), None, "issued an hour in the future");
        let moved = v.replacen(&ordered.as_second().to_string(), &after(3600).as_second().to_string(), 1);
        assert_eq!(s.verify("order", &moved, after(REF_MAX_AGE_SECS + 1)), None, "issue time is signed");
    }
}
