//! Settings that bite on the day: products without a stock cap, the example signing key, a
//! public address that is not one, and the pages the server answers with on its own (busy, sold
//! out).

use super::findings::{Finding, Severity};
use super::Ctx;
use crate::collect::EXAMPLE_KEY;

pub(crate) fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let config = &ctx.site.config;
    let config_file = super::shown(&ctx.site.config_path);
    for p in &ctx.manifest.catalog {
        if p.stock.is_none() {
            out.push(Finding {
                severity: Severity::Warning,
                code: "no-stock-cap",
                page: format!("SKU {}", p.sku),
                location: Some(ctx.config_location(|l| {
                    l.strip_prefix("sku")
                        .is_some_and(|r| r.trim_start().trim_start_matches('=').trim() == format!("\"{}\"", p.sku))
                })),
                message: format!(
                    "{} ({}) has no stock cap: the server takes every order for it, however many you can deliver",
                    p.sku, p.name
                ),
                fix: format!(
                    "set `stock = N` under its [[catalog]] entry in {config_file} (the writer then never oversells)"
                ),
            });
        }
    }

    let c = &config.collect;
    let key = c.signing_key();
    let key = key.as_deref();
    let key_at = ctx.config_key_location("[collect]", "signing_key");
    let severity = if c.production { Severity::Error } else { Severity::Warning };
    let mode = if c.production {
        "collect.production is on, so `cofferdam serve` refuses to start"
    } else {
        "anyone who reads this repository can forge the cookie that links an offer to an order; in production mode the server refuses it"
    };
    let fix = format!(
        "set ${} to a long random secret on the server (e.g. `openssl rand -hex 32`) and remove collect.signing_key from {config_file}",
        c.signing_key_env
    );
    match key {
        Some(k) if k == EXAMPLE_KEY => out.push(Finding {
            severity,
            code: "example-signing-key",
            page: "[collect]".into(),
            location: Some(key_at),
            message: format!("the signing key is the example one ({EXAMPLE_KEY:?}): {mode}"),
            fix,
        }),
        Some(k) if k.len() < 16 => out.push(Finding {
            severity,
            code: "weak-signing-key",
            page: "[collect]".into(),
            location: Some(key_at),
            message: format!("the signing key is {} characters long: short enough to guess", k.len()),
            fix,
        }),
        Some(_) => {}
        None => out.push(Finding {
            severity,
            code: "no-signing-key",
            page: "[collect]".into(),
            location: Some(key_at),
            message: if c.production {
                "no signing key is set and collect.production is on: `cofferdam serve` refuses to start".into()
            } else {
                "no signing key is set: each server process makes up its own, so an offer cannot be linked to an order \
                 taken by another node or before a restart"
                    .into()
            },
            fix,
        }),
    }

    if let Some(why) = not_public(&config.site.base_url) {
        // The example site runs on loopback by design; production mode is the launch.
        let severity = if c.production { Severity::Error } else { Severity::Warning };
        out.push(Finding {
            severity,
            code: "base-url-not-public",
            page: "[site]".into(),
            location: Some(ctx.config_key_location("[site]", "base_url")),
            message: format!(
                "site.base_url is {:?}, {why}: posts from the public address are refused by the Origin check, \
                 and shared links and og:url/og:image point at it{}",
                config.site.base_url,
                if c.production { "" } else { " (an error once collect.production is on)" }
            ),
            fix: format!(
                "set site.base_url in {config_file} to the public https:// address, e.g. \"https://shop.example\""
            ),
        });
    }

    let paying: Vec<&String> = config.forms.iter().filter(|(_, f)| f.payment.is_some()).map(|(n, _)| n).collect();
    match &config.payments.stripe {
        None if !paying.is_empty() => out.push(Finding {
            severity: Severity::Warning,
            code: "payment-unconfirmed",
            page: format!("form {}", paying[0]),
            location: Some(ctx.config_location(|l| l == format!("[forms.{}.payment]", paying[0]))),
            message: format!(
                "{} hand buyers to a payment page, but no webhook confirms the payments: `stats` and `import` see every order unpaid",
                paying.iter().map(|n| format!("form {n:?}")).collect::<Vec<_>>().join(", ")
            ),
            fix: format!(
                "add [payments.stripe] to {config_file} and point the provider's webhook at POST /hook/stripe"
            ),
        }),
        Some(stripe) if stripe.secrets().is_empty() => out.push(Finding {
            severity: if c.production { Severity::Error } else { Severity::Warning },
            code: "no-webhook-secret",
            page: "[payments.stripe]".into(),
            location: Some(ctx.config_location(|l| l == "[payments.stripe]")),
            message: format!(
                "${} is not set here: the webhook refuses every event (400){}",
                stripe.secret_env,
                if c.production { ", and in production `cofferdam serve` refuses to start" } else { "" }
            ),
            fix: format!("set ${} on the server to the endpoint's signing secret (`whsec_…`)", stripe.secret_env),
        }),
        _ => {}
    }

    let special = &ctx.manifest.special;
    if special.busy.is_none() {
        out.push(Finding {
            severity: Severity::Warning,
            code: "no-busy-page",
            page: "/busy/".into(),
            location: None,
            message:
                "there is no busy page: when the server sheds load (503) the visitor gets a bare message instead of \
                      \"your order was not taken yet, try again\""
                    .into(),
            fix: "add content/busy.md".into(),
        });
    }
    if special.sold_out.is_none() && ctx.manifest.catalog.iter().any(|p| p.stock.is_some()) {
        out.push(Finding {
            severity: Severity::Warning,
            code: "no-sold-out-page",
            page: "/sold-out/".into(),
            location: None,
            message: "stock is capped but there is no sold-out page to show once it is gone".into(),
            fix: "add content/sold-out.md".into(),
        });
    }
}

/// Why `base_url` is not the address of a launched site: loopback, or not https.
fn not_public(base_url: &str) -> Option<&'static str> {
    let rest = base_url.strip_prefix("https://").or_else(|| base_url.strip_prefix("http://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if loopback {
        Some("a loopback address")
    } else if base_url.starts_with("http://") {
        Some("plain http")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::not_public;

    #[test]
    fn loopback_and_plain_http_are_not_a_public_address() {
        assert_eq!(not_public("http://127.0.0.1:8080"), Some("a loopback address"));
        assert_eq!(not_public("https://localhost"), Some("a loopback address"));
        assert_eq!(not_public("http://[::1]:8080/"), Some("a loopback address"));
        assert_eq!(not_public("http://shop.example"), Some("plain http"));
        assert_eq!(not_public("https://shop.example"), None);
        assert_eq!(not_public("https://shop.example:8443/x"), None);
    }
}
