//! Links that 404, assets that are not in `dist/`, assets loaded under names that cannot be
//! cached for long (no fingerprint), and links that need JavaScript.

use super::findings::{clip, Finding, Severity};
use super::{pages_phrase, Ctx, Kind, Target};
use std::collections::BTreeMap;

/// One problem about one URL, and every page it shows up on.
struct Group {
    severity: Severity,
    code: &'static str,
    message: String,
    fix: String,
    location: String,
    routes: Vec<String>,
}

pub(crate) fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let mut groups: BTreeMap<(&'static str, String), Group> = BTreeMap::new();
    for doc in &ctx.docs {
        for r in &doc.refs {
            let found = match (&r.target, r.kind) {
                (Target::Missing(path), Kind::Link) => Some((
                    Severity::Error,
                    "broken-link",
                    format!("links to {}, which is not in the built site: visitors get a 404", both(&r.url, path)),
                    link_fix(ctx, path),
                )),
                (Target::Missing(path), kind) => Some((
                    Severity::Error,
                    "missing-asset",
                    format!("loads the {} {}, which is not in the built site", kind.noun(), both(&r.url, path)),
                    asset_fix(ctx, path),
                )),
                (Target::File(path), kind) if kind.loads_with_page() => {
                    let f = ctx.manifest.file(path);
                    let is_page = f.is_some_and(|f| f.content_type.starts_with("text/html"));
                    if f.is_some_and(|f| !f.fingerprinted) && !is_page {
                        Some((
                            Severity::Warning,
                            "no-cache-busting",
                            format!(
                                "loads the {} {} by a name without a content hash: it can only be cached briefly, \
                                 so every visit asks for it again, and a change may be served stale",
                                kind.noun(),
                                r.url
                            ),
                            format!(
                                "put it in content/ under a name the build fingerprints (not one of robots.txt, \
                                 favicon.ico, humans.txt, .well-known/) and reference it with {{{{ asset(path=\"{}\") }}}}",
                                path.rsplit('/').next().unwrap_or(path)
                            ),
                        ))
                    } else {
                        None
                    }
                }
                (Target::Script, Kind::Link) => Some((
                    Severity::Warning,
                    "js-link",
                    format!("has a link that only runs script ({}): with JavaScript off it does nothing", clip(&r.url)),
                    "make it a real link to a page, or a form button".into(),
                )),
                _ => None,
            };
            if let Some((severity, code, message, fix)) = found {
                let key = (code, r.url.clone());
                groups
                    .entry(key)
                    .or_insert_with(|| Group {
                        severity,
                        code,
                        message,
                        fix,
                        location: ctx.ref_location(doc.page, r),
                        routes: Vec::new(),
                    })
                    .routes
                    .push(doc.page.route.clone());
            }
        }
    }
    for g in groups.into_values() {
        let mut routes = g.routes;
        routes.dedup();
        out.push(Finding {
            severity: g.severity,
            code: g.code,
            page: routes[0].clone(),
            location: Some(g.location),
            message: if routes.len() > 1 { format!("{} ({})", g.message, pages_phrase(&routes)) } else { g.message },
            fix: g.fix,
        });
    }
}

fn link_fix(ctx: &Ctx, path: &str) -> String {
    let near = closest(path, ctx.manifest.pages.iter().map(|p| p.route.as_str()));
    match near {
        Some(route) => {
            format!("link to {route} instead (did you mean it?), or add the page to content/")
        }
        None => "fix the link, or add the page to content/".into(),
    }
}

fn asset_fix(ctx: &Ctx, path: &str) -> String {
    let rel = path.trim_start_matches('/');
    let name = rel.rsplit('/').next().unwrap_or(rel);
    // The usual slip: the source name written where the fingerprinted one belongs.
    let by_source = ctx
        .manifest
        .assets
        .iter()
        .find(|(src, _)| src.as_str() == rel)
        .or_else(|| ctx.manifest.assets.iter().find(|(src, _)| src.rsplit('/').next() == Some(name)));
    match by_source {
        Some((src, out)) => format!(
            "the build names it /{out}: write {{{{ asset(path=\"{src}\") }}}} in templates (Markdown links to it are rewritten)"
        ),
        None => "add the file to content/ and reference it with {{ asset(path=\"...\") }}, or remove the reference".into(),
    }
}

/// The route most like `path` (by edit distance), when it is close.
fn closest<'a>(path: &str, routes: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    routes
        .map(|r| (crate::suggest::edit_distance(path, r), r))
        .filter(|(d, r)| *d <= 2.max(r.len() / 4))
        .min()
        .map(|(_, r)| r)
}

/// `url` as written, and where it leads when that differs (`../x` → `/x`).
fn both(url: &str, path: &str) -> String {
    if url.split(['?', '#']).next() == Some(path) {
        url.to_string()
    } else {
        format!("{url} ({path})")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn closest_route_suggests_typos_only() {
        let routes = ["/", "/order/", "/thanks/"];
        assert_eq!(super::closest("/ordr/", routes.iter().copied()), Some("/order/"));
        assert_eq!(super::closest("/completely-else/", routes.iter().copied()), None);
    }
}
