//! Forms as a visitor with JavaScript off meets them: an action to post to, a submit button
//! that submits, `<select>`s with options in the HTML, the honeypot, the fields the server
//! requires; and for every form definition, a thank-you page to land on.

use super::findings::{clip, Finding, Severity};
use super::html::Tag;
use super::{Ctx, Doc, Target};
use std::collections::BTreeSet;

/// A `<form>` element as written on a page.
struct HtmlForm<'t> {
    tag: &'t Tag,
    /// Names of the controls inside.
    names: BTreeSet<String>,
    /// Submit buttons (and `<input type=submit|image>`).
    submits: Vec<&'t Tag>,
    /// `<select>`s with the number of `<option>`s each has.
    selects: Vec<(&'t Tag, usize)>,
}

fn html_forms(tags: &[Tag]) -> Vec<HtmlForm<'_>> {
    let mut out: Vec<HtmlForm> = Vec::new();
    let mut open = false;
    let mut in_select = false;
    for t in tags {
        match (t.name.as_str(), t.end) {
            ("form", false) => {
                out.push(HtmlForm { tag: t, names: BTreeSet::new(), submits: Vec::new(), selects: Vec::new() });
                open = true;
                in_select = false;
            }
            ("form", true) => open = false,
            _ if !open => {}
            ("select", false) => {
                let f = out.last_mut().expect("open form");
                f.selects.push((t, 0));
                in_select = true;
                if let Some(n) = t.attr("name") {
                    f.names.insert(n.to_string());
                }
            }
            ("select", true) => in_select = false,
            ("option", false) if in_select => {
                if let Some(s) = out.last_mut().and_then(|f| f.selects.last_mut()) {
                    s.1 += 1;
                }
            }
            ("input" | "textarea" | "button", false) => {
                let f = out.last_mut().expect("open form");
                let kind =
                    t.attr("type").unwrap_or(if t.name == "button" { "submit" } else { "text" }).to_ascii_lowercase();
                if (t.name == "button" || t.name == "input") && (kind == "submit" || kind == "image") {
                    f.submits.push(t);
                }
                if let Some(n) = t.attr("name") {
                    f.names.insert(n.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

pub(crate) fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let mut shown_forms = BTreeSet::new();
    for doc in &ctx.docs {
        for form in html_forms(&doc.tags) {
            if let Some(name) = check_form(ctx, doc, &form, out) {
                shown_forms.insert(name);
            }
        }
    }
    for (name, def) in &ctx.manifest.forms {
        let at = ctx.config_location(|l| l == format!("[forms.{name}]"));
        let thanks = ctx.resolve("/", &def.thanks);
        if !matches!(thanks, Target::Page(_) | Target::Redirect(_)) {
            out.push(Finding {
                severity: Severity::Error,
                code: "no-thanks-page",
                page: format!("form {name}"),
                location: Some(ctx.config_key_location(&format!("[forms.{name}]"), "thanks")),
                message: format!(
                    "form {name:?} sends buyers to {} after a post, and there is no such page: they see a 404 right after ordering",
                    def.thanks
                ),
                fix: format!(
                    "add content/{}.md, or set forms.{name}.thanks to an existing page",
                    def.thanks.trim_matches('/')
                ),
            });
        }
        if !shown_forms.contains(name) {
            out.push(Finding {
                severity: Severity::Info,
                code: "unused-form",
                page: format!("form {name}"),
                location: Some(at),
                message: format!("form {name:?} is defined but no page shows it"),
                fix: format!("add `form = \"{name}\"` to a page's front matter, or remove it from cofferdam.toml"),
            });
        }
    }
}

/// Checks one form; returns the cofferdam form it posts to, if any.
fn check_form(ctx: &Ctx, doc: &Doc, form: &HtmlForm, out: &mut Vec<Finding>) -> Option<String> {
    let route = &doc.page.route;
    let mut push = |severity, code, line: usize, message: String, fix: String| {
        out.push(Finding {
            severity,
            code,
            page: route.clone(),
            location: Some(ctx.page_location(doc.page, line)),
            message,
            fix,
        });
    };
    let t = form.tag;
    let label = match t.attr("id") {
        Some(id) => format!("the form #{id}"),
        None => "a form".to_string(),
    };
    let action = t.attr("action").map(str::trim).unwrap_or("");
    let target = ctx.resolve(&base_of(route), action);
    let posts_to = match &target {
        Target::Submit(name) => Some(name.clone()),
        _ => None,
    };
    if action.is_empty() {
        push(
            Severity::Error,
            "js-form",
            t.line,
            format!("{label} has no action: it only works when a script sends it; with JavaScript off it posts back to this page"),
            "render it with `form = \"NAME\"` in the page's front matter (it then posts to /submit/NAME), or set action=\"/submit/NAME\" method=\"post\"".into(),
        );
    } else if target == Target::Script {
        push(
            Severity::Error,
            "js-form",
            t.line,
            format!("{label} posts to a javascript: URL: with JavaScript off it does nothing"),
            "set action=\"/submit/NAME\" method=\"post\"".into(),
        );
    }
    if let Some(handler) = t.attr("onsubmit") {
        push(
            Severity::Error,
            "js-form",
            t.line,
            format!("{label} runs script on submit (onsubmit=\"{}\"): the CSP blocks inline script, and with JavaScript off the form does not behave as designed", clip(handler)),
            "remove onsubmit; the server validates the post and answers with the thank-you or error page".into(),
        );
    }
    for s in &form.submits {
        if let Some(handler) = s.attr("onclick") {
            push(
                Severity::Error,
                "js-form",
                s.line,
                format!(
                    "the submit button of {label} runs script (onclick=\"{}\"): the CSP blocks inline script",
                    clip(handler)
                ),
                "remove onclick from the button; a plain submit button posts the form".into(),
            );
        }
        if s.attr("formaction").is_some_and(|a| a.trim_start().to_ascii_lowercase().starts_with("javascript:")) {
            push(
                Severity::Error,
                "js-form",
                s.line,
                format!("a button of {label} submits to a javascript: URL"),
                "remove formaction".into(),
            );
        }
    }
    if form.submits.is_empty() {
        push(
            Severity::Error,
            "js-form",
            t.line,
            format!("{label} has no submit button: only a script could send it"),
            "add <button type=\"submit\">…</button>".into(),
        );
    }
    for (select, options) in &form.selects {
        if *options == 0 {
            push(
                Severity::Error,
                "js-form",
                select.line,
                format!(
                    "the <select> {} of {label} has no options in the HTML: it is meant to be filled by a script, and stays empty without one",
                    select.attr("name").map(|n| format!("{n:?}")).unwrap_or_default()
                ),
                "list its options in cofferdam.toml (`options = [...]`) so the build writes them into the page".into(),
            );
        }
    }
    let Some(name) = posts_to else {
        if !action.is_empty() && target != Target::Script {
            push(
                Severity::Warning,
                "form-action",
                t.line,
                format!(
                    "{label} posts to {action}, not to cofferdam's /submit/NAME: that post leaves the spike-proof path"
                ),
                "point it at /submit/NAME for a form defined in cofferdam.toml".into(),
            );
        }
        return None;
    };
    let Some(def) = ctx.manifest.forms.get(&name) else {
        let known: Vec<_> = ctx.manifest.forms.keys().cloned().collect();
        push(
            Severity::Error,
            "unknown-form",
            t.line,
            format!(
                "{label} posts to /submit/{name}, but cofferdam.toml defines no form {name:?}: every post is a 404"
            ),
            format!("use one of: {}", known.join(", ")),
        );
        return None;
    };
    let method = t.attr("method").unwrap_or("get").trim().to_ascii_lowercase();
    if method != "post" {
        push(
            Severity::Error,
            "form-method",
            t.line,
            format!("{label} sends with method {method}: the server takes only POST on /submit/{name} (405)"),
            "set method=\"post\"".into(),
        );
    }
    if !form.names.contains(&def.honeypot) {
        push(
            Severity::Warning,
            "no-honeypot",
            t.line,
            format!(
                "{label} (form {name:?}) has no honeypot field {:?}: bots fill the log with junk orders",
                def.honeypot
            ),
            format!(
                "render the form with `form = \"{name}\"` in the front matter (it adds the hidden field), \
                 or add <input name=\"{}\" tabindex=\"-1\" autocomplete=\"off\"> in a visually hidden block",
                def.honeypot
            ),
        );
    }
    let missing: Vec<&str> =
        def.fields.iter().filter(|f| f.required && !form.names.contains(&*f.name)).map(|f| &*f.name).collect();
    if !missing.is_empty() {
        push(
            Severity::Error,
            "form-fields",
            t.line,
            format!(
                "{label} (form {name:?}) lacks the required field(s) {}: the server refuses every post",
                missing.join(", ")
            ),
            format!("render the form with `form = \"{name}\"` in the front matter, or add the fields"),
        );
    }
    Some(name)
}

fn base_of(route: &str) -> String {
    match route.rfind('/') {
        Some(i) => route[..=i].to_string(),
        None => "/".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::html::tags;

    #[test]
    fn controls_belong_to_their_form() {
        let t = tags(
            "<form action=/a><select name=s><option>1</option><option>2</select><button>Go</button></form>\
             <input name=outside><form><select name=empty></select><button type=button onclick=x()>Go</button></form>",
        );
        let f = html_forms(&t);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].selects[0].1, 2);
        assert_eq!(f[0].submits.len(), 1);
        assert!(f[0].names.contains("s") && !f[0].names.contains("outside"));
        assert_eq!(f[1].selects[0].1, 0);
        assert!(f[1].submits.is_empty(), "a type=button is not a submit button");
    }
}
