//! The buyer's side of the thank-you page and the 422: a receipt from the buyer's own signed
//! cookie (and nobody else's), the combined order after the one-time offer, and a refused post
//! shown again as the form with what was typed and each error beside its field.

use crate::support::*;

async fn post(s: &Server, form: &str, body: &str, cookie: Option<&str>, referer: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(s.url(&format!("/submit/{form}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", s.origin())
        .body(body.to_string());
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(r) = referer {
        req = req.header("referer", r);
    }
    req.send().await.unwrap()
}

/// Every `name=value` the response sets, as one `Cookie` header.
fn cookies(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn receipt_cookie(r: &reqwest::Response) -> String {
    let all = cookies(r);
    all.split("; ").find(|c| c.starts_with("cofferdam_receipt=")).expect("a receipt cookie").to_string()
}

async fn page(s: &Server, path: &str, cookie: Option<&str>) -> (reqwest::header::HeaderMap, String) {
    let mut headers = vec![];
    if let Some(c) = cookie {
        headers.push(("cookie", c));
    }
    let r = get(&s.url(path), &headers).await;
    assert_eq!(r.status(), 200, "{path}");
    let h = r.headers().clone();
    (h, r.text().await.unwrap())
}

fn served() -> (tempfile::TempDir, Server) {
    let site = example_site();
    build(site.path());
    let server = Server::start(site.path());
    (site, server)
}

#[tokio::test]
async fn thank_you_page_shows_the_buyers_own_receipt_and_nobody_elses() {
    let (_site, s) = served();
    let ada = post(&s, "order", &order_body("Ada").replace("quantity=1", "quantity=2"), None, None).await;
    assert_eq!(ada.status(), 303);
    let ada_cookie = receipt_cookie(&ada);
    let bob = post(&s, "order", &order_body("Bob").replace("AURORA-EB", "AURORA"), None, None).await;
    let bob_cookie = receipt_cookie(&bob);
    let ada_ref = records(&_site.path().join("collected"))[0].reference.to_string();

    let (h, html) = page(&s, "/thanks/", Some(&ada_cookie)).await;
    assert!(html.contains(&format!("Your order <span class=\"cd-ref\">{ada_ref}</span>")), "{html}");
    assert!(
        html.contains("<td>Aurora lamp — early bird</td><td class=\"cd-num\">2</td><td class=\"cd-num\">€178.00</td>"),
        "{html}"
    );
    assert!(html.contains("Total</th><td class=\"cd-num\">€178.00</td>"), "{html}");
    assert!(
        !html.contains("Its reference and total come with the confirmation e-mail"),
        "the slot's generic text is replaced"
    );
    assert!(html.contains("One more thing: spare bulbs"), "the rest of the page is the prebuilt one");
    assert_eq!(h["cache-control"], "private, no-store", "no cache may keep one buyer's page");
    assert!(h["vary"].to_str().unwrap().contains("Cookie"));
    assert!(h.get("content-security-policy").is_some(), "the security headers stay");

    let (_, html) = page(&s, "/thanks/", Some(&bob_cookie)).await;
    assert!(
        html.contains("<td>Aurora lamp</td><td class=\"cd-num\">1</td><td class=\"cd-num\">€119.00</td>"),
        "{html}"
    );
    assert!(!html.contains(&ada_ref) && !html.contains("€178.00"), "Bob sees only his order: {html}");

    // No cookie, another site's cookie, a tampered one: the generic page, as prebuilt.
    let tampered = ada_cookie.replacen("cofferdam_receipt=e", "cofferdam_receipt=f", 1);
    for cookie in [None, Some("session=abc"), Some(tampered.as_str())] {
        let (h, html) = page(&s, "/thanks/", cookie).await;
        assert!(!html.contains("cd-receipt") && !html.contains(&ada_ref), "{cookie:?}: {html}");
        assert!(
            html.contains("Its reference and total come with the confirmation e-mail"),
            "{cookie:?}: the generic text"
        );
        assert_eq!(h["cache-control"], "private, no-store", "{cookie:?}");
    }
    // The landing page stays prebuilt and cacheable, cookie or not.
    let r = get(&s.url("/"), &[("cookie", ada_cookie.as_str()), ("accept-encoding", "br")]).await;
    assert_eq!(header(&r, "cache-control"), "public, max-age=60");
    assert_eq!(header(&r, "content-encoding"), "br", "the precompressed twin");
}

#[tokio::test]
async fn offer_pages_show_the_combined_order() {
    let (_site, s) = served();
    let order = post(&s, "order", &order_body("Cy"), None, None).await;
    let jar = cookies(&order);
    let offer = post(&s, "offer", "sku=BULB-2PK&quantity=2", Some(&jar), None).await;
    assert_eq!(offer.status(), 303);
    assert_eq!(offer.headers()["location"], "/offer-thanks/");
    let both = receipt_cookie(&offer);
    let recs = records(&_site.path().join("collected"));
    let ref_of = |form: &str| recs.iter().find(|r| &*r.form == form).unwrap().reference.to_string();
    let (order_ref, offer_ref) = (ref_of("order"), ref_of("offer"));
    for path in ["/offer-thanks/", "/thanks/"] {
        let (_, html) = page(&s, path, Some(&both)).await;
        assert!(html.contains(&format!("Your order <span class=\"cd-ref\">{order_ref}</span>")), "{path}: {html}");
        assert!(
            html.contains(
                "<td>Aurora lamp — early bird</td><td class=\"cd-num\">1</td><td class=\"cd-num\">€89.00</td>"
            ),
            "{path}: {html}"
        );
        assert!(
            html.contains(&format!("<td>Spare daylight bulbs (2-pack) <small>added, {offer_ref}</small></td><td class=\"cd-num\">2</td><td class=\"cd-num\">€38.00</td>")),
            "{path}: {html}"
        );
        assert!(html.contains("Total</th><td class=\"cd-num\">€127.00</td>"), "{path}: {html}");
    }
}

#[tokio::test]
async fn invalid_post_shows_the_form_again_with_what_was_typed_and_the_errors() {
    let (site, s) = served();
    let body = "name=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E&email=ada%40localhost&country=FR\
                &street=Rue+de+Rivoli+1&postcode=75001&city=Paris&sku=AURORA&quantity=9&newsletter=on";
    let r = post(&s, "order", body, None, Some(&s.url("/order/"))).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(html.contains("<title>Order your Aurora"), "the order page itself: {html}");
    assert!(
        html.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;&#x2F;script&gt;\"")
            || html.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""),
        "escaped: {html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains(
            "value=\"ada@localhost\"><p class=\"cd-error\" id=\"order-email-error\">Not an e-mail address</p>"
        ),
        "{html}"
    );
    assert!(html.contains("<p class=\"cd-error\" id=\"order-quantity-error\">Must be between 1 and 5</p>"), "{html}");
    assert!(html.contains("value=\"Rue de Rivoli 1\""), "{html}");
    assert!(html.contains("value=\"Paris\""), "{html}");
    assert!(html.contains("<option value=\"FR\" selected>France</option>"), "{html}");
    assert!(html.contains("value=\"AURORA\" required checked>"), "{html}");
    assert!(html.contains("<a href=\"#order-quantity\">"), "the summary links to the field: {html}");
    assert!(!html.contains("order-name-error"), "a good field has no error: {html}");

    // The newsletter form on the landing page: the landing page comes back.
    let r = post(&s, "newsletter", "email=nope", None, Some(&s.url("/"))).await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(html.contains("class=\"hero\"") && html.contains("value=\"nope\""), "{html}");
    assert!(records(&site.path().join("collected")).is_empty());
}

#[tokio::test]
async fn a_form_the_template_rewrites_gets_the_static_422_page() {
    let site = example_site();
    // A template that does not print the form as rendered: the server cannot find it to fill.
    edit(
        site.path(),
        "templates/page.html",
        "{{ forms[name] | safe }}",
        "{{ forms[name] | replace(from=\"cd-form\", to=\"my-form\") | safe }}",
    );
    build(site.path());
    let s = Server::start(site.path());
    let r = post(&s, "order", &order_body("Di").replace("quantity=1", "quantity=0"), None, None).await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Please check the form") && html.contains("<li>Quantity: must be between 1 and 5</li>"),
        "{html}"
    );
}
