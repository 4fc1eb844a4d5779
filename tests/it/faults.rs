//! Real fault injection on the real binary: `fsync`/`fdatasync` made to fail by an
//! `LD_PRELOAD` library (see `support::sync_fault_shim`), records read back from disk.

use crate::collect::{cookie_of, post};
use crate::support::*;
use cofferdam::config::StoreFormat;
use cofferdam::record;
use std::path::Path;

/// The references on disk in the `format` segments of `form`, in file order.
fn refs_in(collected: &Path, form: &str, format: StoreFormat) -> Vec<String> {
    let mut out = Vec::new();
    for seg in record::list_segments(collected).unwrap() {
        if seg.form == form && seg.name.format == format {
            for r in record::read_segment(&seg.path).unwrap() {
                out.push(r.expect("no bad lines").1.reference.to_string());
            }
        }
    }
    out
}

/// A server whose syncs of files matching `matching` fail with `errno` while `{site}/fail-now`
/// exists.
fn serve_with_sync_faults(site: &Path, matching: &str, errno: &str, log: Option<&Path>) -> Server {
    let shim = sync_fault_shim();
    let when = site.join("fail-now");
    let env = [
        ("LD_PRELOAD", shim.to_str().unwrap()),
        ("FAULT_SYNC_MATCH", matching),
        ("FAULT_SYNC_WHEN", when.to_str().unwrap()),
        ("FAULT_SYNC_ERRNO", errno),
    ];
    match log {
        Some(log) => Server::start_logging(site, &env, log),
        None => Server::start_with(site, &env),
    }
}

#[tokio::test]
async fn offer_answered_503_is_in_neither_its_jsonl_nor_its_csv() {
    // The offer is stored as JSONL and CSV: the JSONL segment syncs, then the CSV one fails.
    let site = example_site();
    build(site.path());
    let s = serve_with_sync_faults(site.path(), ".csv.open", "5", None);
    let collected = site.path().join("collected");
    let first = post(&s, "order", order_body("First"), &[]).await;
    let second = post(&s, "order", order_body("Second"), &[]).await;
    let taken = post(&s, "offer", "sku=BULB-2PK&quantity=1", &[("cookie", &cookie_of(&first))]).await;
    assert_eq!(taken.status(), 303);

    std::fs::write(site.path().join("fail-now"), "").unwrap();
    let second_cookie = cookie_of(&second);
    let refused = post(&s, "offer", "sku=BULB-2PK&quantity=2", &[("cookie", &second_cookie)]).await;
    assert_eq!(refused.status(), 503, "the CSV sync failed: the offer is not taken");
    for format in [StoreFormat::Jsonl, StoreFormat::Csv] {
        assert_eq!(refs_in(&collected, "offer", format).len(), 1, "the refused offer is still in the {format:?} log");
    }

    // The visitor tries again once the disk works: one record, in both logs.
    std::fs::remove_file(site.path().join("fail-now")).unwrap();
    let retried = post(&s, "offer", "sku=BULB-2PK&quantity=2", &[("cookie", &second_cookie)]).await;
    assert_eq!(retried.status(), 303);
    let jsonl = refs_in(&collected, "offer", StoreFormat::Jsonl);
    assert_eq!(jsonl, refs_in(&collected, "offer", StoreFormat::Csv), "JSONL and CSV hold the same offers");
    assert_eq!(jsonl.len(), 2, "{jsonl:?}");
}

#[tokio::test]
async fn full_disk_logs_one_line_and_a_count_not_a_line_per_post() {
    let site = example_site();
    build(site.path());
    let log = site.path().join("serve.log");
    let s = serve_with_sync_faults(site.path(), "/collected/", "28", Some(&log));
    std::fs::write(site.path().join("fail-now"), "").unwrap();
    let started = std::time::Instant::now();
    for i in 0..40 {
        let r = post(&s, "order", order_body(&format!("Full {i}")), &[]).await;
        assert_eq!(r.status(), 503, "the disk is full");
    }
    let elapsed = started.elapsed().as_secs();
    std::fs::remove_file(site.path().join("fail-now")).unwrap();
    assert_eq!(post(&s, "order", order_body("Space again"), &[]).await.status(), 303);
    let text = std::fs::read_to_string(&log).unwrap();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors[0].contains("No space left on device"), "the first failure says what is wrong: {text}");
    // One line for the first failure, then at most one every 5 s while it lasts.
    assert!(errors.len() <= 1 + (elapsed as usize) / 5 + 1, "{} error lines for 40 posts:\n{text}", errors.len());
    assert!(text.contains("writing works again, after 40 posts answered 503 in 40 failed batches"), "{text}");
}
