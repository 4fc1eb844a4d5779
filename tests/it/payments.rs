//! Payment hand-off and Stripe's webhook against the real binary: the 303 to the payment page
//! carries the reference, events signed with the documented scheme (HMAC-SHA256 of
//! `"{t}.{body}"`, hex, in `Stripe-Signature: t=…,v1=…`) are stored once and only once durable,
//! anything unsigned, mis-signed or stale is refused with nothing stored, and `stats` joins the
//! payments to the orders.

use crate::support::*;
use cofferdam::payment::{read_payments, PaymentStatus};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

pub const SECRET: &str = "whsec_test_cofferdam";

/// The example site with Stripe's webhook on and the order form handing off to `pay_origin`.
pub fn paying_site(pay_origin: &str) -> tempfile::TempDir {
    let site = example_site();
    let config = site.path().join("cofferdam.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[forms.order.payment]\nlink = \"{pay_origin}/pay?client_reference_id={{ref}}&prefilled_email={{field:email}}&amount={{total_cents}}\"\n\
         \n[payments.stripe]\nsecret_env = \"STRIPE_WEBHOOK_SECRET\"\ntolerance_secs = 300\n"
    ));
    std::fs::write(&config, text).unwrap();
    build(site.path());
    site
}

pub fn start(site: &Path) -> Server {
    Server::start_with(site, &[("STRIPE_WEBHOOK_SECRET", SECRET)])
}

/// `Stripe-Signature` for `body` at `t`, computed here as Stripe's documentation describes it.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// A `checkout.session.completed` event as Stripe sends it for a Payment Link.
pub fn completed(event: &str, reference: &str, amount: u64, status: &str) -> String {
    serde_json::json!({
        "id": event, "object": "event", "api_version": "2024-06-20", "created": now(), "livemode": false,
        "type": "checkout.session.completed",
        "data": { "object": {
            "id": format!("cs_test_{event}"), "object": "checkout.session", "amount_total": amount, "currency": "eur",
            "client_reference_id": reference, "customer_details": { "email": "buyer@example.org" },
            "payment_intent": format!("pi_{event}"), "payment_link": "plink_1", "payment_status": status, "status": "complete"
        } }
    })
    .to_string()
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

pub async fn hook(s: &Server, body: &str, signature: Option<&str>) -> reqwest::Response {
    let mut req =
        client().post(s.url("/hook/stripe")).header("content-type", "application/json").body(body.to_string());
    if let Some(sig) = signature {
        req = req.header("stripe-signature", sig);
    }
    req.send().await.unwrap()
}

async fn order(s: &Server, name: &str) -> (String, reqwest::Response) {
    let r = client()
        .post(s.url("/submit/order"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", s.origin())
        .body(order_body(name))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("cofferdam_ref_order="));
    let reference =
        cookie.unwrap().split(';').next().unwrap().split_once('=').unwrap().1.split('.').next().unwrap().to_string();
    (reference, r)
}

#[tokio::test]
async fn order_goes_to_the_payment_page_with_its_reference_once_on_disk() {
    let site = paying_site("https://buy.stripe.com/test_abc");
    let s = start(site.path());
    let (reference, r) = order(&s, "Ada Pay").await;
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("https://buy.stripe.com/test_abc/pay?client_reference_id={reference}&prefilled_email=buyer%40example.org&amount=8900")
    );
    assert_eq!(records(&site.path().join("collected")).len(), 1, "on disk before the 303");
    assert!(r.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("cofferdam_receipt=")));
    // The order page's CSP lets its form's redirect reach the payment page.
    let page = get(&s.url("/order/"), &[]).await;
    let csp = header(&page, "content-security-policy");
    assert!(csp.contains("form-action 'self' https://buy.stripe.com;"), "{csp}");
}

#[tokio::test]
async fn a_stripe_event_posted_twice_is_stored_once() {
    let site = paying_site("https://buy.stripe.com/test_abc");
    let s = start(site.path());
    let (reference, _) = order(&s, "Bo Pay").await;
    let body = completed("evt_once", &reference, 8900, "paid");
    for attempt in 0..2 {
        let r = hook(&s, &body, Some(&signature(SECRET, now(), &body))).await;
        assert_eq!(r.status(), 200, "attempt {attempt}");
    }
    let (payments, bad) = read_payments(&[site.path().join("collected")]).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(payments.len(), 1, "{payments:?}");
    let p = &payments[0];
    assert_eq!(p.reference.as_ref().unwrap().to_string(), reference);
    assert_eq!((p.status, p.amount_cents, p.currency.as_deref()), (PaymentStatus::Paid, Some(8900), Some("EUR")));
    assert_eq!(p.checkout_id.as_deref(), Some("cs_test_evt_once"));
    // On disk as one line, and still once after a restart (the IDs are read back).
    let lines: usize = walkdir::WalkDir::new(site.path().join("collected/payments"))
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count())
        .sum();
    assert_eq!(lines, 1);
    drop(s);
    let s = start(site.path());
    assert_eq!(hook(&s, &body, Some(&signature(SECRET, now(), &body))).await.status(), 200);
    assert_eq!(read_payments(&[site.path().join("collected")]).unwrap().0.len(), 1);
    // Other event types are acknowledged and not stored.
    let other = r#"{"id":"evt_cust","object":"event","type":"customer.created","data":{"object":{}}}"#;
    assert_eq!(hook(&s, other, Some(&signature(SECRET, now(), other))).await.status(), 200);
    assert_eq!(read_payments(&[site.path().join("collected")]).unwrap().0.len(), 1);
}

#[tokio::test]
async fn bad_or_stale_signatures_get_400_and_nothing_is_stored() {
    let site = paying_site("https://buy.stripe.com/test_abc");
    let s = start(site.path());
    let body = completed("evt_bad", "n1-1", 8900, "paid");
    let t = now();
    let good = signature(SECRET, t, &body);
    let cases: Vec<(&str, String, Option<String>)> = vec![
        ("no header", body.clone(), None),
        ("another secret", body.clone(), Some(signature("whsec_other", t, &body))),
        ("tampered body", body.replace("8900", "1"), Some(good.clone())),
        ("signature of another time", body.clone(), Some(good.replacen(&format!("t={t}"), &format!("t={}", t - 1), 1))),
        ("stale timestamp", body.clone(), Some(signature(SECRET, t - 600, &body))),
        ("far future timestamp", body.clone(), Some(signature(SECRET, t + 600, &body))),
        ("no v1", body.clone(), Some(good.replace("v1=", "v0="))),
        ("garbage", body.clone(), Some("nonsense".into())),
    ];
    for (what, body, sig) in cases {
        let r = hook(&s, &body, sig.as_deref()).await;
        assert_eq!(r.status(), 400, "{what}");
        let text = r.text().await.unwrap();
        assert!(!text.contains(SECRET) && !text.contains("whsec"), "{what}: {text}");
    }
    let (payments, _) = read_payments(&[site.path().join("collected")]).unwrap();
    assert!(payments.is_empty(), "{payments:?}");
    // Several v1 signatures (a secret being rolled): one matching is enough.
    let rolled = format!("t={t},v1={},{}", "0".repeat(64), &good[good.find("v1=").unwrap()..]);
    assert_eq!(hook(&s, &body, Some(&rolled)).await.status(), 200);
}

#[test]
fn sigkill_between_write_and_200_loses_no_acknowledged_payment() {
    let site = paying_site("https://buy.stripe.com/test_abc");
    let s = Arc::new(start(site.path()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acked: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for worker in 0..16 {
            let s = s.clone();
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    let id = format!("evt_{worker}_{i}");
                    let body = completed(&id, &format!("n1-{}", worker * 40 + i + 1), 8900, "paid");
                    let req = client()
                        .post(s.url("/hook/stripe"))
                        .header("stripe-signature", signature(SECRET, now(), &body))
                        .body(body);
                    if let Ok(r) = req.send().await {
                        if r.status() == 200 {
                            acked.lock().unwrap().push(id);
                        }
                    }
                }
            }));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while acked.lock().unwrap().len() < 150 {
            assert!(std::time::Instant::now() < deadline, "too few acknowledged events within 60 s");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        s.signal(libc::SIGKILL);
        for t in tasks {
            let _ = t.await;
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150 && acked.len() < 640, "killed too late: {} acks", acked.len());
    drop(s);
    // Restart: recovery seals the open file and moves a torn tail aside.
    let _s2 = start(site.path());
    let collected = site.path().join("collected");
    let (payments, bad) = read_payments(std::slice::from_ref(&collected)).unwrap();
    assert!(bad.is_empty(), "torn lines left in the log after recovery: {bad:?}");
    let on_disk: HashSet<&str> = payments.iter().map(|p| p.event_id.as_str()).collect();
    for id in &acked {
        assert!(on_disk.contains(id.as_str()), "acknowledged {id} is not on disk");
    }
    for seg in cofferdam::payment::record::list_payment_segments(&collected).unwrap() {
        assert!(seg.name.sealed, "{} still open after recovery", seg.path.display());
    }
    // Every line of every file is a payment, each event once.
    let lines: usize = cofferdam::payment::record::list_payment_segments(&collected)
        .unwrap()
        .iter()
        .map(|seg| cofferdam::payment::record::read_payment_segment(&seg.path).unwrap().len())
        .sum();
    assert_eq!(lines, payments.len(), "an event is on disk twice");
}

#[tokio::test]
async fn stats_shows_paid_unpaid_and_amount_mismatches() {
    let site = paying_site("https://buy.stripe.com/test_abc");
    let s = start(site.path());
    let (paid, _) = order(&s, "Al Pay").await;
    let (short, _) = order(&s, "Bea Pay").await;
    let (_unpaid, _) = order(&s, "Cem Pay").await;
    let (debit, _) = order(&s, "Dora Pay").await;
    for (event, reference, amount, status) in
        [("evt_a", &paid, 8900, "paid"), ("evt_b", &short, 4450, "paid"), ("evt_d", &debit, 8900, "unpaid")]
    {
        let body = completed(event, reference, amount, status);
        assert_eq!(hook(&s, &body, Some(&signature(SECRET, now(), &body))).await.status(), 200);
    }
    let stray = completed("evt_stray", "n9-9", 100, "paid");
    assert_eq!(hook(&s, &stray, Some(&signature(SECRET, now(), &stray))).await.status(), 200);
    let out = run(site.path(), &["stats"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("payments (4 events in"), "{text}");
    assert!(
        text.contains("order            paid        2  unpaid        2  refunded      0  amount mismatches      1"),
        "{text}"
    );
    assert!(text.contains(&format!("mismatch: {short} paid €44.50, its catalog total is €89.00")), "{text}");
    assert!(text.contains("payment events naming no order of these logs: 1"), "{text}");
}
