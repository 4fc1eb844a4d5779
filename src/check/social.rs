//! How the site looks when it is shared (a launch spreads on social networks first): the
//! landing page's preview tags (`og:title`, `og:image`, `twitter:card`), with absolute URLs.

use super::findings::{Finding, Severity};
use super::Ctx;

pub(crate) fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let m = ctx.manifest;
    let Some(doc) = ctx.doc(&m.landing) else { return };
    let meta = |key: &str| {
        doc.tags.iter().filter(|t| t.name == "meta" && !t.end).find_map(|t| {
            let name = t.attr("property").or(t.attr("name"))?;
            name.eq_ignore_ascii_case(key).then(|| (t.attr("content").unwrap_or("").trim().to_string(), t.line))
        })
    };
    let missing: Vec<&str> =
        ["og:title", "og:image", "twitter:card"].into_iter().filter(|k| meta(k).is_none()).collect();
    if !missing.is_empty() {
        out.push(Finding {
            severity: Severity::Warning,
            code: "no-social-preview",
            page: m.landing.clone(),
            location: Some(ctx.page_location(doc.page, 1)),
            message: format!(
                "the landing page has no {}: shared on a social network it shows as a bare link, without picture or title",
                missing.join(", ")
            ),
            fix: "set `image = \"share.png\"` under [site] in cofferdam.toml (1200×630 px, in content/) and render \
                  `page.image`, `page.url`, `page.title` as og:image, og:url, og:title and twitter:card in the \
                  template's <head> (as the example's templates/base.html does)"
                .into(),
        });
        return;
    }
    if let Some((image, line)) = meta("og:image") {
        if !(image.starts_with("https://") || image.starts_with("http://")) {
            out.push(Finding {
                severity: Severity::Warning,
                code: "no-social-preview",
                page: m.landing.clone(),
                location: Some(ctx.page_location(doc.page, line)),
                message: format!("og:image is {image:?}: social networks only fetch an absolute URL"),
                fix: "use the image's full URL (`page.image` is one)".into(),
            });
        }
    }
}
