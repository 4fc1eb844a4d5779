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
    let names: Vec<&str> = order.fields.iter().map(|f| &*f.name).collect();
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
fn social_preview_tags_escape_front_matter_text() {
    let site = example_site();
    let title = "Aurora, the desk lamp that follows the sun";
    edit(site.path(), "content/index.md", title, r#"Aurora \"Sun\" <b>lamp</b> & co"#);
    let description = "Daylight at your desk all year round.";
    edit(site.path(), "content/index.md", description, r#"Say \"hi\"><script>x</script>"#);
    build(site.path());
    let index = std::fs::read_to_string(site.path().join("dist/index.html")).unwrap();
    let head = &index[..index.find("</head>").unwrap()];
    for tag in [
        r#"<meta property="og:title" content="Aurora &quot;Sun&quot; &lt;b&gt;lamp&lt;&#x2F;b&gt; &amp; co">"#,
        r#"<meta property="og:description" content="Say &quot;hi&quot;&gt;&lt;script&gt;x&lt;&#x2F;script&gt;"#,
        r#"<title>Aurora &quot;Sun&quot; &lt;b&gt;lamp&lt;&#x2F;b&gt; &amp; co · "#,
        r#"<meta name="twitter:card" content="summary_large_image">"#,
    ] {
        assert!(head.contains(tag), "missing {tag} in:\n{head}");
    }
    assert!(!head.contains("<b>") && !head.contains("<script>") && !head.contains(r#""hi""#), "{head}");
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

/// Where a build keeps the output it replaced, for the next build to write over.
const KEPT: &str = ".cofferdam-previous-dist";

/// The same site built from nothing into `fresh/` (no previous output there): what `dist/`
/// must equal, byte for byte.
fn fresh_build(site: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let out = run(site, &["build", "--out", "fresh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fresh = tree(&site.join("fresh"));
    std::fs::remove_dir_all(site.join("fresh")).unwrap();
    fresh
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).unwrap().ino()
}

/// `.cofferdam-*` names beside `dist/` other than the kept output: temporary folders left behind.
fn leftovers(site: &Path) -> Vec<String> {
    std::fs::read_dir(site)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cofferdam") && n != KEPT)
        .collect()
}

/// No symlink anywhere in `dir`, and every file has one link.
fn assert_plain_files(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        assert!(!entry.path_is_symlink(), "symlink in the output: {}", entry.path().display());
        assert!(meta.is_dir() || meta.nlink() == 1, "{} has {} links", entry.path().display(), meta.nlink());
    }
}

#[test]
fn rebuild_over_the_previous_output_equals_a_fresh_build() {
    let site = example_site();
    let s = site.path();
    std::fs::create_dir_all(s.join("content/notes")).unwrap();
    std::fs::write(s.join("content/notes/old.md"), "+++\ntitle = \"Old notes\"\n+++\n\nSoon gone.\n").unwrap();
    build(s);
    build(s);
    // The second build kept the first one's output; the next one writes over it.
    let dist = s.join("dist");
    let kept = s.join(KEPT);
    let before = tree(&dist);
    assert_eq!(tree(&kept), before, "the kept output is not the previous build's");
    let css = before.keys().find(|p| p.starts_with("style.") && p.ends_with(".css")).unwrap().clone();
    let unchanged = ["index.html", "index.html.br", "index.html.gz", css.as_str()].map(|p| (p, inode(&kept.join(p))));

    edit(s, "content/busy.md", "press the button again", "press the button once more");
    std::fs::remove_file(s.join("content/notes/old.md")).unwrap();
    build(s);

    let after = tree(&dist);
    assert!(after == fresh_build(s), "a rebuild over the previous output differs from a fresh build");
    assert!(after["busy/index.html"].windows(9).any(|w| w == b"once more"));
    assert!(!after.contains_key("notes/old/index.html") && !dist.join("notes").exists(), "a deleted page stayed");
    assert_eq!(tree(&kept), before, "the output the rebuild replaced was not kept as it was");
    // What did not change was not written again: the same files, not copies.
    for (path, was) in unchanged {
        assert_eq!(inode(&dist.join(path)), was, "{path} was created anew");
    }
    assert!(leftovers(s).is_empty(), "left behind: {:?}", leftovers(s));
    assert_plain_files(&dist);
}

#[test]
fn rebuild_never_writes_through_links_left_in_the_previous_output() {
    let site = example_site();
    let s = site.path();
    build(s);
    build(s);
    let kept = s.join(KEPT);
    // Files elsewhere that the kept output now points at, by hard link and by symlink.
    let outside = s.join("outside");
    std::fs::create_dir_all(outside.join("folder")).unwrap();
    let br_size = std::fs::metadata(kept.join("order/index.html.br")).unwrap().len() as usize;
    let files: [(&str, Vec<u8>); 4] = [
        ("hard.html", b"outside, hard-linked".to_vec()),
        ("twin.br", vec![b'x'; br_size]),
        ("soft.html", b"outside, symlinked".to_vec()),
        ("folder/index.html", b"outside, in a symlinked folder".to_vec()),
    ];
    for (name, bytes) in &files {
        std::fs::write(outside.join(name), bytes).unwrap();
    }
    let plant = |at: &str| {
        let path = kept.join(at);
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
        path
    };
    std::fs::hard_link(outside.join("hard.html"), plant("index.html")).unwrap();
    // A twin at the size the previous manifest recorded, so only its second link gives it away.
    std::fs::hard_link(outside.join("twin.br"), plant("order/index.html.br")).unwrap();
    std::os::unix::fs::symlink(outside.join("soft.html"), plant("404.html")).unwrap();
    std::os::unix::fs::symlink(outside.join("folder"), plant("thanks")).unwrap();

    build(s);

    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(outside.join(name)).unwrap(), bytes, "the build wrote through to {name}");
    }
    assert_eq!(
        std::fs::read_dir(outside.join("folder")).unwrap().count(),
        1,
        "the build wrote into a symlinked folder"
    );
    let dist = s.join("dist");
    assert!(tree(&dist) == fresh_build(s), "the rebuild differs from a fresh build");
    assert_plain_files(&dist);
}

#[test]
fn build_works_whatever_holds_the_place_of_the_previous_output() {
    use std::os::unix::fs::PermissionsExt;
    /// Puts something in the kept output's place (given a folder elsewhere).
    type Plant = fn(&Path, &Path);
    let cases: [(&str, Plant); 3] = [
        ("a plain file", |kept, _| std::fs::write(kept, "not a folder").unwrap()),
        ("an unreadable folder", |kept, _| {
            std::fs::create_dir(kept).unwrap();
            std::fs::write(kept.join("index.html"), "stale").unwrap();
            std::fs::set_permissions(kept, std::fs::Permissions::from_mode(0o000)).unwrap();
        }),
        ("a symlink to a folder elsewhere", |kept, outside| std::os::unix::fs::symlink(outside, kept).unwrap()),
    ];
    for (what, plant) in cases {
        let site = example_site();
        let s = site.path();
        let fresh = fresh_build(s);
        build(s);
        let outside = s.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("index.html"), "outside").unwrap();
        let kept = s.join(KEPT);
        plant(&kept, &outside);
        let out = run(s, &["build"]);
        assert!(out.status.success(), "with {what} in the kept output's place: {}", stderr(&out));
        assert!(tree(&s.join("dist")) == fresh, "with {what} in the kept output's place, dist/ differs");
        assert_eq!(tree(&outside).len(), 1, "with {what}: the build wrote elsewhere");
        assert_eq!(std::fs::read(outside.join("index.html")).unwrap(), b"outside", "with {what}");
        assert!(leftovers(s).is_empty(), "with {what}, left behind: {:?}", leftovers(s));
        // And the build after it writes over what this one kept.
        build(s);
        assert!(tree(&s.join("dist")) == fresh, "with {what}: the next build differs");
        if let Ok(m) = std::fs::symlink_metadata(&kept) {
            if m.is_dir() {
                std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
    }
}

#[test]
fn failed_build_over_the_previous_output_leaves_dist_as_it_was() {
    let site = example_site();
    let s = site.path();
    build(s);
    build(s);
    let before = tree(&s.join("dist"));
    edit(s, "templates/landing.html", "<h1>{{ page.title }}</h1>", "<h1>{{ page.titel }}</h1>");
    let out = run(s, &["build"]);
    assert!(!out.status.success(), "the build succeeded with a broken template");
    assert!(stderr(&out).contains("page.titel"), "{}", stderr(&out));
    assert!(tree(&s.join("dist")) == before, "a failed build changed dist/");
    assert!(leftovers(s).is_empty(), "left behind: {:?}", leftovers(s));
    // The half-written folder is not kept for the next build, which comes out whole.
    assert!(!s.join(KEPT).exists(), "a failed build's folder was kept");
    edit(s, "templates/landing.html", "<h1>{{ page.titel }}</h1>", "<h1>{{ page.title }}</h1>");
    build(s);
    assert!(tree(&s.join("dist")) == fresh_build(s), "the build after a failed one differs from a fresh build");
}
