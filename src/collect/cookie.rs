//! The signed reference cookie that links a follow-up form (a one-time offer) to the record
//! before it, with no database and no JavaScript: `{ref}.{base64url(HMAC-SHA256)}`.

use crate::record::Ref;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const EXAMPLE_KEY: &str = "example-signing-key-change-me";

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
        format!("cofferdam_ref_{form}")
    }

    fn mac(&self, form: &str, reference: &str) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        // The form is signed too, so a cookie of one form cannot stand in for another's.
        mac.update(form.as_bytes());
        mac.update(b"\0");
        mac.update(reference.as_bytes());
        mac
    }

    pub fn sign(&self, form: &str, reference: &Ref) -> String {
        self.sign_text(form, &reference.to_string())
    }

    /// The reference in `value` if its signature is right (compared in constant time).
    pub fn verify(&self, form: &str, value: &str) -> Option<Ref> {
        self.verify_text(form, value)?.parse().ok()
    }

    /// `{text}.{tag}` for a cookie-safe `text`, signed under `context` (a form's name, or a
    /// context no form can be named, such as `cofferdam:receipt`).
    pub fn sign_text(&self, context: &str, text: &str) -> String {
        let tag = self.mac(context, text).finalize().into_bytes();
        format!("{text}.{}", URL_SAFE_NO_PAD.encode(tag))
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
        let v = s.sign("order", &r);
        assert_eq!(s.verify("order", &v), Some(r));
        assert_eq!(s.verify("offer", &v), None, "another form's cookie");
        assert_eq!(s.verify("order", &v.replace("n1-42", "n1-43")), None, "tampered ref");
        assert_eq!(Signer::new(b"other").verify("order", &v), None, "forged with another key");
        assert_eq!(s.verify("order", "n1-42"), None);
        assert_eq!(find("a=1; cofferdam_ref_order=x.y; b=2", "cofferdam_ref_order"), Some("x.y"));
    }
}
