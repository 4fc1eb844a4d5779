//! The landing path (landing page → order form page → thank-you page): what each page weighs
//! and how many requests it makes for a fresh visitor, against the `[check]` budget, and every
//! call it makes to another host.

use super::findings::{kb, Finding, PageWeight, Severity};
use super::{Ctx, Doc, Kind, Target};
use crate::config::FieldKind;
use std::collections::BTreeSet;

/// The routes of the landing path, in visiting order, without repeats.
pub(crate) fn path(ctx: &Ctx) -> Vec<String> {
    let m = ctx.manifest;
    let mut routes = vec![m.landing.clone()];
    if let Some((name, page)) = order_form(ctx) {
        routes.push(page);
        routes.push(m.forms[&name].thanks.clone());
    }
    routes.dedup();
    routes.retain(|r| m.page(r).is_some());
    routes
}

/// The form a visitor of the landing page is there for, and the page showing it: a primary
/// (not follow-up) form, preferably one that sells (has a `sku` field), preferably on a page
/// the landing page links to, else on the landing page itself.
pub(crate) fn order_form(ctx: &Ctx) -> Option<(String, String)> {
    let m = ctx.manifest;
    let linked: BTreeSet<String> = ctx
        .doc(&m.landing)
        .map(|d| {
            d.refs
                .iter()
                .filter(|r| r.kind == Kind::Link)
                .filter_map(|r| match &r.target {
                    Target::Page(p) => Some(p.clone()),
                    Target::Redirect(p) => Some(format!("{p}/")),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut candidates: Vec<(u8, String, String)> = Vec::new();
    for (name, form) in m.forms.iter().filter(|(_, f)| f.links_to.is_none()) {
        let sells = form.fields.iter().any(|f| f.kind == FieldKind::Sku);
        for route in m.form_pages(name) {
            let where_ = if linked.contains(route) {
                0
            } else if route == m.landing {
                1
            } else {
                2
            };
            candidates.push((if sells { 0 } else { 3 } + where_, name.clone(), route.to_string()));
        }
    }
    candidates.sort();
    candidates.into_iter().next().map(|(_, n, r)| (n, r))
}

pub(crate) fn check(ctx: &Ctx, out: &mut Vec<Finding>) -> (Vec<String>, Vec<PageWeight>) {
    let m = ctx.manifest;
    let budget = &ctx.site.config.check;
    let routes = path(ctx);
    if m.page(&m.landing).is_none() {
        out.push(Finding {
            severity: Severity::Error,
            code: "no-landing-page",
            page: m.landing.clone(),
            location: None,
            message: "there is no landing page: visitors of the site's address get a 404".into(),
            fix: "add content/index.md".into(),
        });
    }
    if let Some((_, page)) = order_form(ctx) {
        let linked = ctx.doc(&m.landing).is_some_and(|d| {
            d.refs.iter().any(|r| r.kind == Kind::Link && matches!(&r.target, Target::Page(p) if *p == page))
        });
        if page != m.landing && !linked {
            out.push(Finding {
                severity: Severity::Warning,
                code: "form-not-linked",
                page: m.landing.clone(),
                location: None,
                message: format!("the landing page does not link to the order form on {page}"),
                fix: format!("add a link such as [Order now]({page}) to content/index.md"),
            });
        }
    }
    let mut weights = Vec::new();
    for route in &routes {
        let Some(doc) = ctx.doc(route) else { continue };
        let w = weigh(ctx, doc);
        if w.compressed_bytes > budget.page_weight_budget {
            out.push(Finding {
                severity: Severity::Error,
                code: "page-weight",
                page: route.clone(),
                location: Some(ctx.page_location(doc.page, 1)),
                message: format!(
                    "weighs {} over the wire ({} uncompressed) for a fresh visitor, over the budget of {}",
                    kb(w.compressed_bytes),
                    kb(w.identity_bytes),
                    kb(budget.page_weight_budget)
                ),
                fix: format!(
                    "cut {} from this page: shrink or drop images (see the image findings), trim CSS and fonts, \
                     move long content off the landing path; or raise [check] page_weight_budget",
                    kb(w.compressed_bytes - budget.page_weight_budget)
                ),
            });
        }
        if w.requests > budget.request_budget {
            out.push(Finding {
                severity: Severity::Error,
                code: "request-count",
                page: route.clone(),
                location: Some(ctx.page_location(doc.page, 1)),
                message: format!("makes {} requests for a fresh visitor, over the budget of {}", w.requests, budget.request_budget),
                fix: "merge stylesheets, inline small icons as SVG, drop what the page can do without; or raise [check] request_budget".into(),
            });
        }
        external_calls(ctx, doc, out);
        weights.push(w);
    }
    if weights.len() > 1 {
        let total = |f: fn(&PageWeight) -> u64| weights.iter().map(f).sum::<u64>();
        out.push(Finding {
            severity: Severity::Info,
            code: "landing-path",
            page: routes.join(" → "),
            location: None,
            message: format!(
                "the whole landing path weighs {} compressed ({} uncompressed) if nothing were cached",
                kb(total(|w| w.compressed_bytes)),
                kb(total(|w| w.identity_bytes))
            ),
            fix: String::new(),
        });
    }
    (routes, weights)
}

/// The page and each distinct subresource it loads, as a fresh visitor would.
fn weigh(ctx: &Ctx, doc: &Doc) -> PageWeight {
    let mut w = PageWeight {
        route: doc.page.route.clone(),
        requests: 1,
        compressed_bytes: 0,
        identity_bytes: 0,
        external_requests: 0,
    };
    if let Some(f) = ctx.manifest.file(&doc.page.file) {
        w.identity_bytes += f.size;
        w.compressed_bytes += f.br_size.or(f.gz_size).unwrap_or(f.size).min(f.size);
    }
    let mut seen = BTreeSet::new();
    for r in doc.refs.iter().filter(|r| r.kind.loads_with_page()) {
        let key = match &r.target {
            Target::Skip | Target::Script | Target::Submit(_) => continue,
            Target::External { .. } => r.url.clone(),
            Target::File(p) | Target::Page(p) | Target::Redirect(p) | Target::Missing(p) => p.clone(),
        };
        if !seen.insert(key) {
            continue;
        }
        w.requests += 1;
        if matches!(r.target, Target::External { .. }) {
            w.external_requests += 1;
        }
        if let Some(f) = ctx.file_of(&r.target) {
            w.identity_bytes += f.size;
            w.compressed_bytes += f.br_size.or(f.gz_size).unwrap_or(f.size).min(f.size);
        }
    }
    w
}

/// Scripts, stylesheets, fonts, images, frames from other hosts on a landing-path page.
fn external_calls(ctx: &Ctx, doc: &Doc, out: &mut Vec<Finding>) {
    let mut seen = BTreeSet::new();
    for r in &doc.refs {
        let Target::External { host } = &r.target else {
            continue;
        };
        if !r.kind.loads_with_page() && r.kind != Kind::Connect {
            continue;
        }
        if !seen.insert(r.url.clone()) {
            continue;
        }
        // What blocks rendering or breaks the page when the host is slow is an error.
        let severity = match r.kind {
            Kind::Script | Kind::Style | Kind::Font | Kind::Frame => Severity::Error,
            _ => Severity::Warning,
        };
        out.push(Finding {
            severity,
            code: "external-call",
            page: doc.page.route.clone(),
            location: Some(ctx.ref_location(doc.page, r)),
            message: format!(
                "loads a {} from {host} ({}): on launch day that host's speed and uptime become this page's",
                r.kind.noun(),
                r.url
            ),
            fix: match r.kind {
                Kind::Connect => "drop the preconnect along with whatever it was for".into(),
                Kind::Font => "self-host the font: put the .woff2 file in content/ and reference it from your CSS, or use a system font stack".into(),
                _ => format!(
                    "copy the {} into content/ and reference it with {{{{ asset(path=\"...\") }}}}, or drop it",
                    r.kind.noun()
                ),
            },
        });
    }
}
