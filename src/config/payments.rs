//! `[payments]` and `forms.NAME.payment`: the buyer is handed to a provider's hosted payment page
//! once the order is durable, and the provider's signed webhook confirms the payment.
//!
//! ```toml
//! [forms.order.payment]            # the 303 goes here instead of `thanks`
//! link = "https://buy.stripe.com/test_123?client_reference_id={ref}&prefilled_email={field:email}"
//! sku_links = { AURORA = "https://buy.stripe.com/test_456?client_reference_id={ref}" }
//!
//! [payments.stripe]                # POST /hook/stripe
//! secret_env = "STRIPE_WEBHOOK_SECRET"
//! tolerance_secs = 300
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Stripe's webhook at `POST /hook/stripe`; off when absent.
    pub stripe: Option<StripeConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeConfig {
    /// The variable holding the endpoint's signing secret (`whsec_…`); several secrets, separated
    /// by spaces, are all accepted (while one is rolled).
    pub secret_env: String,
    /// How far (seconds) an event's signed timestamp may be from now: older replays are refused.
    pub tolerance_secs: u64,
}

impl Default for StripeConfig {
    fn default() -> Self {
        // Stripe's own libraries default to 300 s.
        StripeConfig { secret_env: "STRIPE_WEBHOOK_SECRET".into(), tolerance_secs: 300 }
    }
}

impl StripeConfig {
    /// The signing secrets from the environment; empty when the variable is unset.
    pub fn secrets(&self) -> Vec<String> {
        std::env::var(&self.secret_env).unwrap_or_default().split_whitespace().map(String::from).collect()
    }
}

/// Where a form's 303 goes once its record is durable: a provider's hosted payment page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentLink {
    pub link: LinkTemplate,
    /// Another link for some SKUs: a Stripe Payment Link sells one price.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sku_links: BTreeMap<String, LinkTemplate>,
}

impl PaymentLink {
    /// The template for an order of `sku` (none for a form without a `sku` field).
    pub fn template(&self, sku: Option<&str>) -> &LinkTemplate {
        sku.and_then(|s| self.sku_links.get(s)).unwrap_or(&self.link)
    }

    pub fn templates(&self) -> impl Iterator<Item = (Vec<String>, &LinkTemplate)> {
        std::iter::once((vec!["link".to_string()], &self.link))
            .chain(self.sku_links.iter().map(|(sku, t)| (vec!["sku_links".to_string(), sku.clone()], t)))
    }
}

/// A URL with placeholders, parsed once when the config loads. Each filled value is
/// percent-encoded, so a buyer's input can never add a parameter of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkTemplate {
    source: String,
    pub parts: Vec<Part>,
    origin_end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// `{ref}`: the record's reference, e.g. `n1-42` (Stripe's `client_reference_id`).
    Ref,
    /// `{total_cents}`: `8900`.
    TotalCents,
    /// `{amount}`: `89.00`, for links that take a decimal amount (PayPal).
    Amount,
    /// `{currency}`: `EUR`.
    Currency,
    /// `{sku}` and `{quantity}` of the order line.
    Sku,
    Quantity,
    /// `{field:NAME}`: a validated field of the post (`prefilled_email={field:email}`).
    Field(String),
}

pub const PLACEHOLDERS: &str = "{ref}, {total_cents}, {amount}, {currency}, {sku}, {quantity}, {field:NAME}";

impl LinkTemplate {
    pub fn parse(source: &str) -> Result<LinkTemplate, String> {
        if !(source.starts_with("https://") || source.starts_with("http://"))
            || source.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"')
        {
            return Err(format!("{source:?} is not an http(s) URL"));
        }
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or_else(|| format!("{source:?}: a `{{` is never closed"))? + open;
            let name = &rest[open + 1..close];
            parts.push(match name {
                "ref" => Part::Ref,
                "total_cents" => Part::TotalCents,
                "amount" => Part::Amount,
                "currency" => Part::Currency,
                "sku" => Part::Sku,
                "quantity" => Part::Quantity,
                _ => match name.strip_prefix("field:") {
                    Some(f) if !f.is_empty() => Part::Field(f.to_string()),
                    _ => return Err(format!("unknown placeholder {{{name}}} (placeholders: {PLACEHOLDERS})")),
                },
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let host_at = source.find("://").map(|i| i + 3).unwrap_or(0);
        let origin_end = source[host_at..].find(['/', '?', '#']).map(|i| host_at + i).unwrap_or(source.len());
        if source[..origin_end].contains('{') || origin_end == host_at {
            return Err(format!("{source:?}: the scheme and host must be written out (a placeholder may follow them)"));
        }
        if !parts.contains(&Part::Ref) {
            return Err(format!(
                "{source:?} does not carry {{ref}}: the payment could never be matched to its order \
                 (Stripe: `?client_reference_id={{ref}}`)"
            ));
        }
        Ok(LinkTemplate { source: source.to_string(), parts, origin_end })
    }

    /// `https://buy.stripe.com`: where the link goes, for the CSP's `form-action`.
    pub fn origin(&self) -> &str {
        &self.source[..self.origin_end]
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl Serialize for LinkTemplate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for LinkTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<LinkTemplate, D::Error> {
        let s = String::deserialize(d)?;
        LinkTemplate::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_into_parts_and_refuse_what_cannot_work() {
        let t = LinkTemplate::parse("https://buy.stripe.com/x?client_reference_id={ref}&prefilled_email={field:email}")
            .unwrap();
        assert_eq!(t.parts[1], Part::Ref);
        assert_eq!(t.parts[3], Part::Field("email".into()));
        assert!(LinkTemplate::parse("https://pay.example/?amount={amount}").unwrap_err().contains("{ref}"));
        assert!(LinkTemplate::parse("https://pay.example/{ref}/{price}").unwrap_err().contains("{price}"));
        assert!(LinkTemplate::parse("https://pay.example/{ref").unwrap_err().contains("never closed"));
        assert!(LinkTemplate::parse("ftp://pay.example/{ref}").unwrap_err().contains("http"));
        assert!(LinkTemplate::parse("https://{field:x}.example/{ref}").unwrap_err().contains("host"));
        assert_eq!(LinkTemplate::parse("https://buy.stripe.com/x?r={ref}").unwrap().origin(), "https://buy.stripe.com");
        assert_eq!(LinkTemplate::parse("http://127.0.0.1:9/pay?r={ref}").unwrap().origin(), "http://127.0.0.1:9");
    }
}
