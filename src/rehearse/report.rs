//! `rehearse --report FILE.html`: the rehearsal as a page of its own (inline SVG, no script,
//! nothing from elsewhere), drawn from the same [`Report`] the JSON output serialises, so the
//! two always agree.

use super::Report;
use crate::chart::{escape, html, Chart};
use std::fmt::Write;

pub fn to_html(r: &Report) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Rehearsal: {}</h1><p class=\"sub\">{} on loopback · {:.1} s · p99 budget {} ms per request{}</p>",
        escape(&r.site),
        escape(&r.server),
        r.seconds,
        r.latency_budget_ms,
        r.rate_limit.map(|n| format!(" · at most {n} visits/s")).unwrap_or_default()
    );
    tiles(&mut body, r);
    broke(&mut body, r);
    charts(&mut body, r);
    steps_table(&mut body, r);
    let _ = write!(
        body,
        "<h2>One visitor</h2><p>{}</p><p class=\"sub\">Over loopback: no network or TLS cost is in these figures.</p>",
        escape(&r.path.join(" → "))
    );
    html::page(&format!("Rehearsal: {}", r.site), "", &body)
}

fn tiles(body: &mut String, r: &Report) {
    body.push_str("<div class=\"tiles\">");
    let tile = |body: &mut String, id: &str, label: &str, value: String, note: &str| {
        let _ = write!(
            body,
            "<div class=\"tile\"><span>{}</span><b><data id=\"{id}\" value=\"{value}\">{value}</data></b><span>{}</span></div>",
            escape(label),
            escape(note)
        );
    };
    match &r.capacity {
        Some(c) => {
            let at = format!("at {} visitors at once", c.visitors);
            tile(
                body,
                "landing-pages-per-sec",
                "landing pages/s within budget",
                c.landing_pages_per_sec.to_string(),
                &at,
            );
            tile(body, "orders-per-sec", "orders/s within budget", c.orders_per_sec.to_string(), &at);
            tile(body, "buyers-per-hour", "buyers per hour", c.buyers_per_hour.to_string(), "on this machine");
        }
        None => body.push_str("<div class=\"tile\"><span>capacity</span><b class=\"bad\">none within budget</b></div>"),
    }
    let check = if r.acknowledged_orders_lost == 0 {
        "<span class=\"ok\">none lost</span>"
    } else {
        "<span class=\"bad\">ACKNOWLEDGED ORDERS MISSING</span>"
    };
    let _ = write!(
        body,
        "<div class=\"tile\"><span>orders acknowledged (303) / on disk</span><b><data id=\"acknowledged\" value=\"{0}\">{0}</data> / <data id=\"on-disk\" value=\"{1}\">{1}</data></b>{check}</div>",
        r.acknowledged_orders, r.orders_on_disk
    );
    body.push_str("</div>");
}

fn broke(body: &mut String, r: &Report) {
    body.push_str("<h2>Where it broke</h2><p id=\"broke\">");
    match &r.broke_first {
        Some(b) => {
            let _ = write!(body, "Broke first {}.", escape(b));
        }
        None => {
            let top = r.steps.last().map(|s| s.visitors).unwrap_or(0);
            let _ = write!(
                body,
                "Did not break up to {top} visitors at once: a lower bound, as the visitors share this machine's CPU with the server."
            );
        }
    }
    body.push_str("</p>");
}

/// Landing pages/s, orders/s and p99 against concurrency (a log scale: the ramp doubles).
fn charts(body: &mut String, r: &Report) {
    let x: Vec<f64> = r.steps.iter().map(|s| (s.visitors as f64).log2()).collect();
    let ticks: Vec<(f64, String)> = r.steps.iter().zip(&x).map(|(s, &x)| (x, s.visitors.to_string())).collect();
    let chart = |id: &str, title: &str| {
        let mut c = Chart::new(id, title, x.clone()).x_ticks(ticks.clone()).dots();
        if let Some((_, at)) = r.steps.iter().zip(&x).find(|(s, _)| s.broke.is_some()) {
            c = c.mark(*at, "broke");
        }
        c
    };
    let values = |f: fn(&super::StepReport) -> f64| r.steps.iter().map(f).collect::<Vec<f64>>();
    let landing = chart("chart-landing", "Landing pages per second, by visitors at once")
        .series("landing pages/s", values(|s| s.landing_pages_per_sec));
    let orders = chart("chart-orders", "Orders per second, by visitors at once")
        .series("orders/s", values(|s| s.orders_per_sec));
    let p99 = chart("chart-p99", "p99 latency (ms), by visitors at once")
        .series("GET p99", values(|s| s.get_p99_ms))
        .series("POST p99", values(|s| s.post_p99_ms))
        .level(r.latency_budget_ms as f64, &format!("budget {} ms", r.latency_budget_ms));
    body.push_str("<h2>Against concurrency</h2><div class=\"charts\">");
    for c in [landing, orders, p99] {
        let _ = write!(body, "<figure>{}</figure>", c.to_svg());
    }
    body.push_str("</div>");
}

fn steps_table(body: &mut String, r: &Report) {
    body.push_str(
        "<h2>Steps</h2><div class=\"wide\"><table><tr><th class=\"n\">visitors</th><th class=\"n\">seconds</th>\
         <th class=\"n\">landing pages/s</th><th class=\"n\">orders/s</th><th class=\"n\">GET p50</th><th class=\"n\">GET p99</th>\
         <th class=\"n\">POST p50</th><th class=\"n\">POST p99</th><th class=\"n\">503</th><th class=\"n\">429</th><th class=\"n\">errors</th><th>broke</th></tr>",
    );
    for s in &r.steps {
        let _ = write!(
            body,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} ms</td><td class=\"n\">{} ms</td><td class=\"n\">{} ms</td><td class=\"n\">{} ms</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            s.visitors,
            s.seconds,
            s.landing_pages_per_sec,
            s.orders_per_sec,
            s.get_p50_ms,
            s.get_p99_ms,
            s.post_p50_ms,
            s.post_p99_ms,
            s.busy_503,
            s.rate_limited_429,
            s.errors,
            s.broke.as_deref().map(escape).unwrap_or_default()
        );
    }
    body.push_str("</table></div>");
}
