//! Tests of `cofferdam check`: the example site is ready to launch; each fixture breaks one thing
//! and the report names it, with its severity, page and fix, and the exit code follows.

use crate::support::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// `cofferdam check ARGS` in `dir`, with no signing key from the environment.
fn check(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("check")
        .args(args)
        .current_dir(dir)
        .env("COFFERDAM_LOG", "warn")
        .env_remove("COFFERDAM_SIGNING_KEY")
        .output()
        .expect("run cofferdam check")
}

/// The JSON report's exit code and findings.
fn report(dir: &Path) -> (i32, Vec<Value>) {
    let out = check(dir, &["--format", "json"]);
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--format json is not JSON ({e}): {}{}", stdout(&out), stderr(&out)));
    let code = out.status.code().expect("exit code");
    assert_eq!(json["ok"], Value::Bool(code == 0), "ok agrees with the exit code");
    (code, json["findings"].as_array().unwrap().clone())
}

/// The findings with this code, panicking with the whole list when there is none.
fn with_code<'a>(findings: &'a [Value], code: &str) -> Vec<&'a Value> {
    let found: Vec<_> = findings.iter().filter(|f| f["code"] == code).collect();
    assert!(!found.is_empty(), "no {code} finding in {}", serde_json::to_string_pretty(findings).unwrap());
    found
}

fn append(site: &Path, file: &str, text: &str) {
    let path = site.join(file);
    let mut s = std::fs::read_to_string(&path).unwrap();
    s.push_str(text);
    std::fs::write(path, s).unwrap();
}

/// A PNG of `width`×`height` px whose `bytes` do not compress (as a photograph's).
fn png(width: u32, height: u32, bytes: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    out.extend(width.to_be_bytes());
    out.extend(height.to_be_bytes());
    out.extend([8, 2, 0, 0, 0]);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend(x.to_le_bytes());
    }
    out
}

#[test]
fn example_site_is_ready_to_launch() {
    let site = example_site();
    let out = check(site.path(), &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("0 errors") && text.contains("ready to launch"), "{text}");
    // The landing path with its weights, landing → form page → thank-you page.
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("  /")).collect();
    assert_eq!(rows.len(), 3, "{text}");
    for (row, route) in rows.iter().zip(["/ ", "/order/ ", "/thanks/ "]) {
        assert!(row.trim_start().starts_with(route.trim_start()), "{row}");
        assert!(row.contains("KB"), "{row}");
    }
    // The example key is flagged, as a warning outside production.
    let key = text.lines().find(|l| l.contains("[example-signing-key]")).unwrap_or_else(|| panic!("{text}"));
    assert!(key.starts_with("warning"), "{key}");
    assert!(text.contains("cofferdam.toml:"), "names the config line: {text}");
    // A second run finds dist/ fresh and does not rebuild.
    let again = stdout(&check(site.path(), &[]));
    assert!(!again.contains("[built]"), "{again}");
}

#[test]
fn json_report_parses_with_findings_and_weights() {
    let site = example_site();
    let out = check(site.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["errors"], 0);
    let path = json["landing_path"].as_array().unwrap();
    assert_eq!(path.iter().map(|p| p["route"].as_str().unwrap()).collect::<Vec<_>>(), ["/", "/order/", "/thanks/"]);
    for p in path {
        let (c, i) = (p["compressed_bytes"].as_u64().unwrap(), p["identity_bytes"].as_u64().unwrap());
        assert!(c > 0 && c < i, "compressed below identity: {p}");
        assert!(p["requests"].as_u64().unwrap() >= 2, "the page and its stylesheet at least: {p}");
    }
    let key = &with_code(json["findings"].as_array().unwrap(), "example-signing-key")[0];
    assert_eq!(key["severity"], "warning");
    assert!(key["fix"].as_str().unwrap().contains("COFFERDAM_SIGNING_KEY"), "{key}");
}

#[test]
fn oversize_landing_page_is_an_error() {
    let site = example_site();
    std::fs::write(site.path().join("content/hero.png"), png(3000, 2000, 700 * 1024)).unwrap();
    append(site.path(), "content/index.md", "\n![Aurora on a desk](hero.png)\n");
    let (code, findings) = report(site.path());
    assert_eq!(code, 1);
    let weight = with_code(&findings, "page-weight");
    assert_eq!(weight.len(), 1, "only the landing page is heavy: {weight:?}");
    assert_eq!(weight[0]["severity"], "error");
    assert_eq!(weight[0]["page"], "/");
    assert!(weight[0]["message"].as_str().unwrap().contains("over the budget of 500.0 KB"), "{}", weight[0]);
}

#[test]
fn request_budget_comes_from_the_check_section() {
    let site = example_site();
    append(site.path(), "cofferdam.toml", "\n[check]\nrequest_budget = 2\n");
    let (code, findings) = report(site.path());
    assert_eq!(code, 1);
    let over = with_code(&findings, "request-count");
    assert!(
        over.iter().any(|f| f["page"] == "/" && f["message"].as_str().unwrap().contains("makes 3 requests")),
        "{over:?}"
    );
}

#[test]
fn forms_that_need_javascript_are_errors() {
    let site = example_site();
    edit(
        site.path(),
        "templates/landing.html",
        "<article class=\"prose\">",
        "<form id=\"quick\" action=\"/submit/newsletter\" method=\"post\" onsubmit=\"return send(this)\">\
         <input type=\"email\" name=\"email\"><input name=\"website\"><button>Go</button></form>\n\
         <form id=\"ajax\"><select name=\"country\"></select><button type=\"button\">Go</button></form>\n<article class=\"prose\">",
    );
    let (code, findings) = report(site.path());
    assert_eq!(code, 1);
    let js: Vec<String> = with_code(&findings, "js-form")
        .iter()
        .inspect(|f| {
            assert_eq!(f["severity"], "error");
            assert_eq!(f["page"], "/");
            assert!(f["location"].as_str().unwrap().starts_with("dist/index.html:"), "{f}");
        })
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect();
    let has = |s: &str| js.iter().any(|m| m.contains(s));
    assert!(has("#quick runs script on submit (onsubmit="), "{js:?}");
    assert!(has("#ajax has no action"), "{js:?}");
    assert!(has("<select> \"country\" of the form #ajax has no options"), "{js:?}");
    assert!(has("#ajax has no submit button"), "{js:?}");
    assert_eq!(js.len(), 4, "the rendered forms are fine: {js:?}");
}

#[test]
fn broken_internal_link_is_an_error_with_a_suggestion() {
    let site = example_site();
    edit(site.path(), "content/index.md", "[Order yours now →](/order/)", "[Order yours now →](/ordr/)");
    let out = check(site.path(), &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = text.lines().find(|l| l.contains("[broken-link]")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("error") && line.contains("/ordr/"), "{line}");
    assert!(text.contains("link to /order/ instead"), "{text}");
    assert!(text.contains("NOT ready to launch"), "{text}");
}

#[test]
fn missing_asset_names_the_fingerprinted_name() {
    let site = example_site();
    edit(site.path(), "templates/base.html", "{{ asset(path='style.css') }}", "/style.css");
    let (code, findings) = report(site.path());
    assert_eq!(code, 1);
    let missing = with_code(&findings, "missing-asset");
    assert_eq!(missing.len(), 1, "one finding for all pages: {missing:?}");
    let m = missing[0];
    assert_eq!(m["severity"], "error");
    assert!(m["message"].as_str().unwrap().contains("loads the stylesheet /style.css"), "{m}");
    assert!(m["message"].as_str().unwrap().contains("more pages"), "{m}");
    assert!(m["fix"].as_str().unwrap().contains("asset(path=\"style.css\")"), "{m}");
}

#[test]
fn external_script_and_font_on_the_landing_page_are_errors() {
    let site = example_site();
    edit(
        site.path(),
        "templates/landing.html",
        "{% block main %}",
        "{% block main %}<script src=\"https://cdn.example.com/app.js\"></script>\
         <link rel=\"preload\" as=\"font\" href=\"https://fonts.gstatic.com/s/inter.woff2\" crossorigin>",
    );
    let (code, findings) = report(site.path());
    assert_eq!(code, 1);
    let ext = with_code(&findings, "external-call");
    assert_eq!(ext.len(), 2, "{ext:?}");
    assert!(ext.iter().all(|f| f["severity"] == "error" && f["page"] == "/"), "{ext:?}");
    assert!(
        ext.iter().any(|f| f["message"].as_str().unwrap().contains("loads a script from cdn.example.com")),
        "{ext:?}"
    );
    assert!(
        ext.iter().any(|f| f["message"].as_str().unwrap().contains("loads a font from fonts.gstatic.com")),
        "{ext:?}"
    );
}

#[test]
fn big_png_image_is_flagged_with_the_webp_saving() {
    let site = example_site();
    std::fs::write(site.path().join("content/hero.png"), png(1600, 1200, 300 * 1024)).unwrap();
    edit(
        site.path(),
        "templates/landing.html",
        "</section>",
        "</section>\n<img src=\"{{ asset(path='hero.png') }}\" alt=\"\" width=\"400\">",
    );
    let (code, findings) = report(site.path());
    assert_eq!(code, 0, "a heavy image under the page budget is a warning");
    let big = with_code(&findings, "image-size");
    assert_eq!(big[0]["severity"], "warning");
    assert_eq!(big[0]["page"], "/");
    let msg = big[0]["message"].as_str().unwrap();
    assert!(msg.contains("1600×1200 px, PNG") && msg.contains("on the landing path"), "{msg}");
    let fix = big[0]["fix"].as_str().unwrap();
    assert!(fix.contains("WebP (about 187.5 KB, 38% less"), "{fix}");
    let dims = with_code(&findings, "image-dimensions");
    assert!(dims[0]["message"].as_str().unwrap().contains("shown 400 px wide"), "{:?}", dims[0]);
}

#[test]
fn asset_without_fingerprint_is_a_warning() {
    let site = example_site();
    std::fs::write(site.path().join("content/favicon.ico"), [0u8, 0, 1, 0, 1, 0]).unwrap();
    edit(
        site.path(),
        "templates/base.html",
        "<link rel=\"icon\" href=\"{{ asset(path='lamp.svg') }}\" type=\"image/svg+xml\">",
        "<link rel=\"icon\" href=\"/favicon.ico\">",
    );
    let (code, findings) = report(site.path());
    assert_eq!(code, 0);
    let f = with_code(&findings, "no-cache-busting");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["severity"], "warning");
    assert!(
        f[0]["message"].as_str().unwrap().contains("loads the icon /favicon.ico by a name without a content hash"),
        "{}",
        f[0]
    );
}

#[test]
fn form_without_honeypot_is_a_warning() {
    let site = example_site();
    edit(
        site.path(),
        "templates/landing.html",
        "<article class=\"prose\">",
        "<form id=\"hand\" action=\"/submit/newsletter\" method=\"post\"><input type=\"email\" name=\"email\" required>\
         <button type=\"submit\">Keep me posted</button></form>\n<article class=\"prose\">",
    );
    let (code, findings) = report(site.path());
    assert_eq!(code, 0);
    let hp = with_code(&findings, "no-honeypot");
    assert_eq!(hp.len(), 1, "the rendered forms have theirs: {hp:?}");
    assert_eq!(hp[0]["severity"], "warning");
    assert!(
        hp[0]["message"].as_str().unwrap().contains("#hand (form \"newsletter\") has no honeypot field \"website\""),
        "{}",
        hp[0]
    );
}

#[test]
fn form_without_thank_you_page_is_an_error() {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "thanks = \"/subscribed/\"", "thanks = \"/welcome/\"");
    // The build that check runs first refuses it, naming the form, the page and the config line.
    let out = check(site.path(), &["--format", "json"]);
    assert!(!out.status.success());
    let line = std::fs::read_to_string(site.path().join("cofferdam.toml"))
        .unwrap()
        .lines()
        .position(|l| l.contains("/welcome/"))
        .unwrap()
        + 1;
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cofferdam.toml:{line}: forms.newsletter.thanks: form \"newsletter\" sends buyers to /welcome/"
        )),
        "{err}"
    );
}

#[test]
fn sku_without_stock_cap_is_a_warning() {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "stock = 3000\n", "");
    let (code, findings) = report(site.path());
    assert_eq!(code, 0);
    let f = with_code(&findings, "no-stock-cap");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["severity"], "warning");
    assert_eq!(f[0]["page"], "SKU BULB-2PK");
    let line = std::fs::read_to_string(site.path().join("cofferdam.toml"))
        .unwrap()
        .lines()
        .position(|l| l == "sku = \"BULB-2PK\"")
        .unwrap()
        + 1;
    assert_eq!(f[0]["location"], format!("cofferdam.toml:{line}"));
}

#[test]
fn example_signing_key_in_production_is_an_error() {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "production = false", "production = true");
    let out = check(site.path(), &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = text.lines().find(|l| l.contains("[example-signing-key]")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("error") && line.contains("refuses to start"), "{line}");
    // The example's loopback base_url is a launch error too, once in production.
    let url = text.lines().find(|l| l.contains("[base-url-not-public]")).unwrap_or_else(|| panic!("{text}"));
    assert!(url.starts_with("error") && url.contains("\"http://127.0.0.1:8080\", a loopback address"), "{url}");
    assert!(text.contains("2 errors,"), "nothing else is wrong: {text}");
}

#[test]
fn base_url_must_be_public_https_for_launch() {
    let site = example_site();
    // Outside production mode, a warning: the example site must stay checkable as it is.
    let (code, findings) = report(site.path());
    assert_eq!(code, 0);
    let url = &with_code(&findings, "base-url-not-public")[0];
    assert_eq!(url["severity"], "warning");
    let line = std::fs::read_to_string(site.path().join("cofferdam.toml"))
        .unwrap()
        .lines()
        .position(|l| l.starts_with("base_url"))
        .unwrap()
        + 1;
    assert_eq!(url["location"], format!("cofferdam.toml:{line}"));
    assert!(url["fix"].as_str().unwrap().contains("https://"), "{url}");
    // In production with a real key: plain http is an error; the public https address passes.
    edit(site.path(), "cofferdam.toml", "production = false", "production = true");
    edit(site.path(), "cofferdam.toml", "base_url = \"http://127.0.0.1:8080\"", "base_url = \"http://shop.example\"");
    let run = |dir: &Path| {
        Command::new(bin())
            .args(["check", "--format", "json"])
            .current_dir(dir)
            .env("COFFERDAM_SIGNING_KEY", "a-long-random-secret-0123456789abcdef")
            .output()
            .unwrap()
    };
    let out = run(site.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = &with_code(json["findings"].as_array().unwrap(), "base-url-not-public")[0];
    assert_eq!(url["severity"], "error");
    assert!(url["message"].as_str().unwrap().contains("plain http"), "{url}");
    edit(site.path(), "cofferdam.toml", "http://shop.example", "https://shop.example");
    let out = run(site.path());
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn landing_page_without_social_preview_tags_is_a_warning() {
    let site = example_site();
    let (_, findings) = report(site.path());
    assert!(!findings.iter().any(|f| f["code"] == "no-social-preview"), "the example has them: {findings:?}");
    let built = std::fs::read_to_string(site.path().join("dist/index.html")).unwrap();
    assert!(
        built.contains("<meta property=\"og:image\" content=\"http:&#x2F;&#x2F;127.0.0.1:8080&#x2F;share."),
        "{built}"
    );
    assert!(built.contains("<meta name=\"twitter:card\" content=\"summary_large_image\">"), "{built}");
    // A page's front matter image wins over site.image.
    let order = std::fs::read_to_string(site.path().join("dist/order/index.html")).unwrap();
    assert!(order.contains("og:url\" content=\"http:&#x2F;&#x2F;127.0.0.1:8080&#x2F;order&#x2F;\""), "{order}");
    std::fs::copy(site.path().join("content/share.png"), site.path().join("content/order.png")).unwrap();
    edit(site.path(), "content/order.md", "form = \"order\"", "form = \"order\"\nimage = \"order.png\"");
    edit(site.path(), "templates/base.html", "<meta property=\"og:type\" content=\"website\">", "");
    edit(
        site.path(),
        "templates/base.html",
        "{% if page.image %}<meta property=\"og:image\" content=\"{{ page.image }}\">",
        "{% if page.image %}<meta name=\"x-image\" content=\"{{ page.image }}\">",
    );
    let (code, findings) = report(site.path());
    assert_eq!(code, 0, "a warning, not an error");
    let social = &with_code(&findings, "no-social-preview")[0];
    assert_eq!(social["severity"], "warning");
    assert_eq!(social["page"], "/");
    assert!(social["message"].as_str().unwrap().contains("og:image"), "{social}");
    let order = std::fs::read_to_string(site.path().join("dist/order/index.html")).unwrap();
    assert!(order.contains("&#x2F;order."), "the page's own image: {order}");
}

#[test]
fn no_build_reports_a_stale_dist_and_a_missing_one_clearly() {
    let site = example_site();
    let out = check(site.path(), &["--no-build"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("run `cofferdam build` first"), "{}", stderr(&out));
    build(site.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    append(site.path(), "content/index.md", "\nMore.\n");
    let (_, findings) = {
        let out = check(site.path(), &["--no-build", "--format", "json"]);
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), json["findings"].as_array().unwrap().clone())
    };
    let stale = with_code(&findings, "stale-build");
    assert!(stale[0]["message"].as_str().unwrap().contains("content/index.md changed"), "{}", stale[0]);
}
