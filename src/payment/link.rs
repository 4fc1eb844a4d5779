//! A form's payment link filled for one order: where its 303 goes once the record is durable.

use crate::config::{LinkTemplate, Part, PaymentLink};
use crate::record::{Line, Ref};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything but RFC 3986's unreserved characters is encoded: a filled value can never end
/// the parameter it stands in or add one of its own.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// What a link is filled with: the record as the writer accepted it.
pub struct Order<'a> {
    pub reference: &'a Ref,
    pub fields: &'a BTreeMap<Arc<str>, String>,
    pub lines: &'a [Line],
    pub total_cents: Option<u64>,
    pub currency: Option<&'a str>,
}

pub fn url(link: &PaymentLink, order: &Order) -> String {
    let line = order.lines.first();
    fill(link.template(line.map(|l| &*l.sku)), order)
}

fn fill(template: &LinkTemplate, order: &Order) -> String {
    let line = order.lines.first();
    let mut out = String::with_capacity(template.as_str().len() + 64);
    for part in &template.parts {
        let value = match part {
            Part::Text(t) => {
                out.push_str(t);
                continue;
            }
            Part::Ref => order.reference.to_string(),
            Part::TotalCents => order.total_cents.map(|t| t.to_string()).unwrap_or_default(),
            Part::Amount => order.total_cents.map(|t| format!("{}.{:02}", t / 100, t % 100)).unwrap_or_default(),
            Part::Currency => order.currency.unwrap_or_default().to_string(),
            Part::Sku => line.map(|l| l.sku.to_string()).unwrap_or_default(),
            Part::Quantity => line.map(|l| l.quantity.to_string()).unwrap_or_default(),
            Part::Field(f) => order.fields.get(f.as_str()).cloned().unwrap_or_default(),
        };
        out.extend(utf8_percent_encode(&value, VALUE));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_carries_the_reference_and_encoded_values_only() {
        let link: PaymentLink = toml::from_str(
            "link = \"https://buy.stripe.com/test_a?client_reference_id={ref}&prefilled_email={field:email}\"\n\
             sku_links = { AURORA = \"https://www.paypal.com/x?invoice={ref}&amount={amount}&currency_code={currency}\" }",
        )
        .unwrap();
        let reference: Ref = "n1-42".parse().unwrap();
        let fields: BTreeMap<Arc<str>, String> = [("email".into(), "a+b@example.org&x=1".to_string())].into();
        let line =
            |sku: &str| Line { sku: sku.into(), name: "x".into(), quantity: 2, unit_cents: 4450, total_cents: 8900 };
        let lines = vec![line("AURORA-EB")];
        let order = Order {
            reference: &reference,
            fields: &fields,
            lines: &lines,
            total_cents: Some(8900),
            currency: Some("EUR"),
        };
        assert_eq!(
            url(&link, &order),
            "https://buy.stripe.com/test_a?client_reference_id=n1-42&prefilled_email=a%2Bb%40example.org%26x%3D1"
        );
        let lines = vec![line("AURORA")];
        let order = Order { lines: &lines, ..order };
        assert_eq!(url(&link, &order), "https://www.paypal.com/x?invoice=n1-42&amount=89.00&currency_code=EUR");
    }
}
