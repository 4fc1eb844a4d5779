//! The buyer's receipt, carried by the buyer's own browser: the 303 after an order sets a
//! signed, HttpOnly cookie with its reference and lines, and the server fills the receipt slot of
//! a prebuilt page (`<!-- cofferdam:receipt -->`) from it. No JavaScript, no database, nothing
//! kept per buyer on the server; a cookie that does not verify shows nothing, so no buyer can
//! see another's order. A follow-up form (the one-time offer) adds its lines to its order's
//! receipt, so the offer's pages show the combined order.

use super::cookie::{self, Signer};
use crate::build::{escape_html, format_price};
use crate::config::Product;
use crate::json;
use crate::record::{Record, Ref};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

pub const COOKIE: &str = "cofferdam_receipt";
/// Signed under a context no form can be named (`:`), so no reference cookie can pass for it.
const CONTEXT: &str = "cofferdam:receipt";
const VERSION: u32 = 1;
/// Orders kept in one cookie (an order and its follow-ups); older ones fall out.
const MAX_ORDERS: usize = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub v: u32,
    pub orders: Vec<Placed>,
}

/// One accepted record with lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub form: Arc<str>,
    #[serde(rename = "ref")]
    pub reference: Ref,
    pub lines: Vec<Item>,
    pub currency: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub sku: Arc<str>,
    pub quantity: u32,
    pub unit_cents: u64,
}

impl Placed {
    /// What an accepted record adds to a receipt, taken out of it; none when it sells nothing
    /// (a sign-up).
    pub fn of(record: Record) -> Option<Placed> {
        let currency = record.currency?;
        let lines: Vec<Item> = record
            .lines
            .into_iter()
            .map(|l| Item { sku: l.sku, quantity: l.quantity, unit_cents: l.unit_cents })
            .collect();
        (!lines.is_empty()).then_some(Placed { form: record.form, reference: record.reference, lines, currency })
    }
}

impl Receipt {
    /// The receipt after `placed`: a first order starts a new one; a follow-up of an order on
    /// the buyer's receipt joins it (a repeated post replaces its earlier self).
    pub fn after(previous: Option<Receipt>, placed: Placed, parent: Option<&Ref>) -> Receipt {
        let mut orders = match (previous, parent) {
            (Some(r), Some(p)) if r.orders.iter().any(|o| &o.reference == p) => r.orders,
            _ => Vec::new(),
        };
        orders.retain(|o| o.reference != placed.reference);
        orders.push(placed);
        let excess = orders.len().saturating_sub(MAX_ORDERS);
        orders.drain(..excess);
        Receipt { v: VERSION, orders }
    }

    /// The cookie's value: base64url JSON, signed.
    pub fn encode(&self, signer: &Signer) -> String {
        let mut value = String::with_capacity(512);
        self.encode_into(signer, &mut value);
        value
    }

    /// [`Receipt::encode`], appended to `out` (a `Set-Cookie` value being written).
    pub fn encode_into(&self, signer: &Signer, out: &mut String) {
        let mut json = Vec::with_capacity(256);
        self.write_json(&mut json);
        let start = out.len();
        URL_SAFE_NO_PAD.encode_string(json, out);
        signer.sign_tail(CONTEXT, out, start);
    }

    /// The receipt as serde_json writes it, by hand: every order's 303 writes one, and serde's
    /// writer cost more than the cookie's signature (a test holds the two equal).
    fn write_json(&self, out: &mut Vec<u8>) {
        let Receipt { v, orders } = self;
        out.extend_from_slice(b"{\"v\":");
        json::uint(out, *v);
        out.extend_from_slice(b",\"orders\":");
        json::array(out, orders, |out, Placed { form, reference, lines, currency }| {
            out.extend_from_slice(b"{\"form\":");
            json::string(out, form);
            out.extend_from_slice(b",\"ref\":");
            json::reference(out, reference);
            out.extend_from_slice(b",\"lines\":");
            json::array(out, lines, |out, Item { sku, quantity, unit_cents }| {
                out.extend_from_slice(b"{\"sku\":");
                json::string(out, sku);
                out.extend_from_slice(b",\"quantity\":");
                json::uint(out, *quantity);
                out.extend_from_slice(b",\"unit_cents\":");
                json::uint(out, *unit_cents);
                out.push(b'}');
            });
            out.extend_from_slice(b",\"currency\":");
            json::string(out, currency);
            out.push(b'}');
        });
        out.push(b'}');
    }

    pub fn decode(signer: &Signer, value: &str) -> Option<Receipt> {
        let text = signer.verify_text(CONTEXT, value)?;
        let receipt: Receipt = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
        (receipt.v == VERSION && !receipt.orders.is_empty()).then_some(receipt)
    }

    /// The receipt in the request's cookies, if one verifies.
    pub fn from_headers(signer: &Signer, headers: &HeaderMap) -> Option<Receipt> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|h| cookie::find(h, COOKIE))
            .find_map(|v| Receipt::decode(signer, v))
    }

    /// The receipt as HTML for the page's slot: the first order's reference, every line with
    /// its quantity and price, the total (per currency, should an order mix them).
    pub fn to_html(&self, catalog: &[Product]) -> String {
        let name = |sku: &str| catalog.iter().find(|p| *p.sku == *sku).map(|p| &*p.name).unwrap_or(sku).to_string();
        let main = &self.orders[0];
        let mut h = String::with_capacity(1024);
        let _ = write!(
            h,
            "<section class=\"cd-receipt\" aria-labelledby=\"cd-receipt-title\">\n\
             <h2 id=\"cd-receipt-title\">Your order <span class=\"cd-ref\">{}</span></h2>\n\
             <table class=\"cd-lines\">\n<thead><tr><th scope=\"col\">Item</th><th scope=\"col\" class=\"cd-num\">Qty</th>\
             <th scope=\"col\" class=\"cd-num\">Price</th></tr></thead>\n<tbody>\n",
            escape_html(&main.reference.to_string())
        );
        let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
        for order in &self.orders {
            let added = if order.reference == main.reference {
                String::new()
            } else {
                format!(" <small>added, {}</small>", escape_html(&order.reference.to_string()))
            };
            for l in &order.lines {
                let sum = l.unit_cents * l.quantity as u64;
                *totals.entry(&*order.currency).or_default() += sum;
                let _ = writeln!(
                    h,
                    "<tr><td>{}{added}</td><td class=\"cd-num\">{}</td><td class=\"cd-num\">{}</td></tr>",
                    escape_html(&name(&l.sku)),
                    l.quantity,
                    format_price(sum, &order.currency)
                );
            }
        }
        h.push_str("</tbody>\n<tfoot>");
        for (currency, cents) in &totals {
            let _ = write!(
                h,
                "<tr><th scope=\"row\" colspan=\"2\">Total</th><td class=\"cd-num\">{}</td></tr>",
                format_price(*cents, currency)
            );
        }
        h.push_str("</tfoot>\n</table>\n</section>\n");
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(form: &str, r: &str, sku: &str, quantity: u32, unit_cents: u64) -> Placed {
        Placed {
            form: form.into(),
            reference: r.parse().unwrap(),
            lines: vec![Item { sku: sku.into(), quantity, unit_cents }],
            currency: "EUR".into(),
        }
    }

    #[test]
    fn a_follow_up_joins_its_order_and_a_new_order_starts_over() {
        let order = Receipt::after(None, placed("order", "n1-1", "LAMP", 1, 8900), None);
        let parent: Ref = "n1-1".parse().unwrap();
        let both = Receipt::after(Some(order.clone()), placed("offer", "n1-2", "BULB", 2, 1900), Some(&parent));
        assert_eq!(both.orders.len(), 2);
        let again = Receipt::after(Some(both.clone()), placed("offer", "n1-2", "BULB", 2, 1900), Some(&parent));
        assert_eq!(again, both, "a repeated post replaces itself");
        let stranger: Ref = "n1-9".parse().unwrap();
        let alone = Receipt::after(Some(order), placed("offer", "n1-3", "BULB", 1, 1900), Some(&stranger));
        assert_eq!(alone.orders.len(), 1, "a follow-up of an order not on this receipt stands alone");
        let next = Receipt::after(Some(both), placed("order", "n1-4", "LAMP", 1, 8900), None);
        assert_eq!(next.orders.len(), 1);
    }

    #[test]
    fn only_a_receipt_signed_here_is_read() {
        let signer = Signer::new(b"key");
        let r = Receipt::after(None, placed("order", "n1-1", "LAMP", 2, 8900), None);
        let value = r.encode(&signer);
        assert!(value.len() < 400, "{value}");
        assert_eq!(Receipt::decode(&signer, &value), Some(r.clone()));
        assert_eq!(Receipt::decode(&Signer::new(b"other"), &value), None);
        let (payload, tag) = value.rsplit_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD
            .encode(String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap().replace("n1-1", "n1-7"));
        assert_eq!(Receipt::decode(&signer, &format!("{forged}.{tag}")), None);
        // A reference cookie, signed for a form, is no receipt.
        assert_eq!(
            Receipt::decode(&signer, &signer.sign("order", &"n1-1".parse().unwrap(), jiff::Timestamp::now())),
            None
        );
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, format!("a=1; {COOKIE}={value}").parse().unwrap());
        assert_eq!(Receipt::from_headers(&signer, &headers), Some(r));
    }

    #[test]
    fn the_receipt_lists_lines_and_total_escaped() {
        let catalog = vec![Product {
            sku: "LAMP".into(),
            name: "Lamp <b>".into(),
            price_cents: 8900,
            currency: "EUR".into(),
            stock: None,
            description: None,
        }];
        let parent: Ref = "n1-1".parse().unwrap();
        let r = Receipt::after(None, placed("order", "n1-1", "LAMP", 2, 8900), None);
        let r = Receipt::after(Some(r), placed("offer", "n1-2", "BULB", 1, 1900), Some(&parent));
        let html = r.to_html(&catalog);
        assert!(html.contains("Your order <span class=\"cd-ref\">n1-1</span>"), "{html}");
        assert!(
            html.contains("<td>Lamp &lt;b&gt;</td><td class=\"cd-num\">2</td><td class=\"cd-num\">€178.00</td>"),
            "{html}"
        );
        assert!(html.contains("<td>BULB <small>added, n1-2</small></td>"), "{html}");
        assert!(html.contains("Total</th><td class=\"cd-num\">€197.00</td>"), "{html}");
    }

    #[test]
    fn the_hand_written_receipt_is_what_serde_json_writes_and_reads_back() {
        let signer = Signer::new(b"key");
        let mut receipt = Receipt::after(None, placed("order", "n1-1", "LAMP", 2, 8900), None);
        for text in ["", "q\"uote\\", "\u{1}\n\t", "Zoë/🚀", &"x".repeat(40)] {
            let mut order = placed(text, "node-b-18446744073709551615", text, u32::MAX, u64::MAX);
            order.lines.push(Item { sku: format!("{text}-2").into(), quantity: 0, unit_cents: 0 });
            order.currency = text.into();
            receipt.orders.push(order);
            let mut ours = Vec::new();
            receipt.write_json(&mut ours);
            assert_eq!(String::from_utf8_lossy(&ours), serde_json::to_string(&receipt).unwrap());
            assert_eq!(Receipt::decode(&signer, &receipt.encode(&signer)), Some(receipt.clone()));
        }
    }
}
