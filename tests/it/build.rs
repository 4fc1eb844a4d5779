//! Tests of `cofferdam build` and `cofferdam init`, through the real binary.

use crate::support::*;
use std::io::Read;
use std::path::Path;

#[test]
fn build_writes_pages_twins_fingerprinted_css_and_manifest() {
    let site = example_site();
    let out = run(site.path(), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("built 9 pages"), "{}", stdout(&out));
    let dist = site.path().join("dist");
    let index = std::fs::read_to_string(dist.join("index.html")).unwrap();
    assert!(dist.join("thanks/index.html").is_file());
    assert!(dist.join("order/index.html").is_file());
    assert!(dist.join("404.html").is_file());
    // The stylesheet is fingerprinted and referenced by its hashed name.
    let css: Vec<String> = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("style.") && n.ends_with(".css"))
        .collect();
    assert_eq!(css.len(), 1, "{css:?}");
    assert!(css[0].len() == "style.12345678.css".len(), "{css:?}");
    assert!(index.contains(&format!("href=\"/{}\"", css[0])), "index.html does not link {}", css[0]);
    // Twins decompress to the original.
    let br = std::fs::read(dist.join("index.html.br")).unwrap();
    let mut unbr = Vec::new();
    brotli::Decompressor::new(&br[..], 4096).read_to_end(&mut unbr).unwrap();
    assert_eq!(unbr, index.as_bytes());
    let gz = std::fs::read(dist.join("index.html.gz")).unwrap();
    let mut ungz = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut ungz).unwrap();
    assert_eq!(ungz, index.as_bytes());
    // No JavaScript on the landing path; the newsletter form posts to the collector.
    assert!(!index.contains("<script"));
    assert!(index.contains("action=\"/submit/newsletter\""));
    // The manifest lists the order form with its fields, and the catalog.
    let m = cofferdam::manifest::Manifest::load(&dist).unwrap();
    let order = &m.forms["order"];
    let names: Vec<&str> = order.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["name", "email", "street", "postcode", "city", "country", "phone", "sku", "quantity", "newsletter"]
    );
    assert_eq!(m.product("AURORA-EB").unwrap().price_cents, 8900);
    assert_eq!(m.page("/order/").unwrap().forms, ["order"]);
    assert_eq!(m.special.invalid.as_deref(), Some("invalid/index.html"));
    let css_entry = m.file(&css[0]).unwrap();
    assert!(css_entry.fingerprinted && css_entry.br_size.is_some() && css_entry.gz_size.is_some());
    assert!(!m.file("index.html").unwrap().fingerprinted);
    let invalid = std::fs::read_to_string(dist.join("invalid/index.html")).unwrap();
    assert_eq!(invalid.matches("<!-- cofferdam:errors -->").count(), 1);
}

#[test]
fn building_twice_is_byte_identical() {
    let site = example_site();
    build(site.path());
    let first = tree(&site.path().join("dist"));
    build(site.path());
    let second = tree(&site.path().join("dist"));
    assert_eq!(first.keys().collect::<Vec<_>>(), second.keys().collect::<Vec<_>>());
    assert!(first == second, "a rebuild changed some bytes");
}

/// Breaks one thing in a built site, builds again, and checks the message, the exit code,
/// that the previous dist/ is untouched and that no temporary folder is left behind.
fn assert_build_fails(break_it: impl FnOnce(&Path), expect: &[&str]) {
    let site = example_site();
    build(site.path());
    let before = tree(&site.path().join("dist"));
    break_it(site.path());
    let out = run(site.path(), &["build"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "build succeeded but should not have");
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(before == tree(&site.path().join("dist")), "the previous dist/ was changed");
    let leftovers: Vec<_> = std::fs::read_dir(site.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cofferdam"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn malformed_front_matter_names_file_and_line() {
    assert_build_fails(
        |s| edit(s, "content/order.md", "form = \"order\"", "form = order\""),
        &["content/order.md:4: front matter"],
    );
}

#[test]
fn unclosed_front_matter_names_file_and_line() {
    assert_build_fails(
        |s| std::fs::write(s.join("content/extra.md"), "+++\ntitle = \"x\"\n# no end\n").unwrap(),
        &["content/extra.md:1: front matter"],
    );
}

#[test]
fn misspelt_front_matter_key_suggests_the_right_one() {
    assert_build_fails(
        |s| edit(s, "content/order.md", "description =", "descriptoin ="),
        &["content/order.md:3: front matter: unknown key \"descriptoin\" (did you mean \"description\"?)"],
    );
}

#[test]
fn unknown_template_is_named_with_the_known_ones() {
    assert_build_fails(
        |s| edit(s, "content/busy.md", "template = \"plain.html\"", "template = \"plane.html\""),
        &["content/busy.md:3: unknown template \"plane.html\"", "plain.html"],
    );
}

#[test]
fn unknown_form_is_named_with_the_known_ones() {
    assert_build_fails(
        |s| edit(s, "content/order.md", "form = \"order\"", "form = \"odrer\""),
        &["content/order.md:4: front matter: unknown form \"odrer\"", "newsletter, offer, order"],
    );
}

#[test]
fn form_whose_thanks_page_is_missing_fails_build_and_check_naming_form_and_page() {
    assert_build_fails(
        |s| std::fs::remove_file(s.join("content/offer-thanks.md")).unwrap(),
        &[
            "cofferdam.toml:",
            "forms.offer.thanks: form \"offer\" sends buyers to /offer-thanks/",
            "content/offer-thanks.md",
        ],
    );
    let site = example_site();
    std::fs::remove_file(site.path().join("content/offer-thanks.md")).unwrap();
    let out = run(site.path(), &["check"]);
    assert!(!out.status.success(), "check passed a form whose thanks page is missing");
    let said = stdout(&out) + &stderr(&out);
    assert!(said.contains("offer") && said.contains("/offer-thanks/"), "{said}");
}

#[test]
fn files_inside_hidden_folders_are_never_published() {
    let site = example_site();
    let git = site.path().join("content/.git");
    std::fs::create_dir_all(git.join("refs")).unwrap();
    std::fs::write(git.join("config"), "[remote \"origin\"]\n\turl = https://token@example.org/shop.git\n").unwrap();
    std::fs::write(git.join("refs/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::create_dir_all(site.path().join("content/notes/.drafts")).unwrap();
    std::fs::write(site.path().join("content/notes/.drafts/secret.md"), "+++\ntitle = \"x\"\n+++\nsecret\n").unwrap();
    build(site.path());
    let published: Vec<String> = tree(&site.path().join("dist")).into_keys().collect();
    let leaked: Vec<&String> =
        published.iter().filter(|p| p.contains(".git") || p.contains(".drafts") || p.contains("secret")).collect();
    assert!(leaked.is_empty(), "published from hidden folders: {leaked:?}");
    assert!(published.iter().any(|p| p == "index.html"), "{published:?}");
}

#[test]
fn template_syntax_error_names_template_and_line() {
    assert_build_fails(
        |s| edit(s, "templates/plain.html", "{% endblock %}", "{% endblok %}"),
        // On several lines, as pest draws it: the line, then a caret under the spot.
        &[
            "templates/plain.html:2: template syntax error:\n",
            "\n  2 | {% block body_class %}plain{% endblok %}\n",
            "^---",
        ],
    );
}

#[test]
fn missing_asset_reference_names_file_and_line() {
    assert_build_fails(
        |s| {
            std::fs::write(s.join("content/extra.md"), "+++\ntitle = \"x\"\n+++\n\nText\n\n![photo](missing.png)\n")
                .unwrap()
        },
        &["content/extra.md:7: missing.png: no such file in the content folder"],
    );
    assert_build_fails(
        |s| edit(s, "templates/base.html", "asset(path='style.css')", "asset(path='styles.css')"),
        &["asset(path=\"styles.css\")"],
    );
}

#[test]
fn duplicate_routes_name_both_files() {
    assert_build_fails(
        |s| {
            std::fs::create_dir_all(s.join("content/order")).unwrap();
            std::fs::write(s.join("content/order/index.md"), "+++\ntitle = \"again\"\n+++\n").unwrap();
        },
        &["route \"/order/\"", "content/order.md", "content/order/index.md"],
    );
}

#[test]
fn config_type_error_names_file_line_and_key() {
    let config = std::fs::read_to_string(repo_root().join("cofferdam.toml")).unwrap();
    let line_of = |text: &str| config.lines().position(|l| l == text).unwrap() + 1;
    let price = line_of("price_cents = 8900");
    assert_build_fails(
        |s| edit(s, "cofferdam.toml", "price_cents = 8900", "price_cents = \"89.00\""),
        &[&format!("./cofferdam.toml:{price}: catalog.0.price_cents: invalid type: string \"89.00\", expected u64")],
    );
    let options = line_of("options = [\"BULB-2PK\"]");
    assert_build_fails(
        |s| edit(s, "cofferdam.toml", "options = [\"BULB-2PK\"]", "options = [\"BULB-3PK\"]"),
        &[&format!("cofferdam.toml:{options}: forms.offer.fields.0.options: unknown SKU \"BULB-3PK\"")],
    );
    // An unknown key is named with its table.
    assert_build_fails(
        |s| edit(s, "cofferdam.toml", "html_max_age = 60", "html_max_ag = 60"),
        &["server.html_max_ag: unknown field `html_max_ag`, expected one of"],
    );
}

#[test]
fn init_writes_a_site_that_builds_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("launch");
    let out = run(dir.path(), &["init", "launch"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(target.join("cofferdam.toml").is_file() && target.join("content/index.md").is_file());
    build(&target);
    assert!(target.join("dist/index.html").is_file());
    let again = run(dir.path(), &["init", "launch"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));
}

#[test]
fn template_rendering_error_names_the_template_line() {
    let line = std::fs::read_to_string(repo_root().join("templates/landing.html"))
        .unwrap()
        .lines()
        .position(|l| l.contains("<h1>{{ page.title }}</h1>"))
        .unwrap()
        + 1;
    assert_build_fails(
        |s| edit(s, "templates/landing.html", "<h1>{{ page.title }}</h1>", "<h1>{{ page.titel }}</h1>"),
        &[&format!(
            "templates/landing.html:{line}: rendering content/index.md: Variable `page.titel` not found in context"
        )],
    );
}
