//! Writes N order records into a `collected/` folder exactly as `cofferdam serve` would: the
//! library's own `Record` type and `SegmentName`, sealed JSON Lines segments rolled at the
//! collector's default 64 MiB. Used by `bench/import.sh` (1,000,000 orders) to time
//! `cofferdam import` without taking a million real posts first.
//!
//! Optionally also writes the rows those records become in `examples/shop.postgres.sql`
//! (users, orders, order_items) as CSV, so the same rows can be loaded with `psql \copy` as
//! the anchor of the import benchmark.
//!
//! Usage: cargo run --release --example gen_records -- COLLECTED_DIR COUNT [CSV_DIR]

use cofferdam::config::StoreFormat;
use cofferdam::record::{Line, Meta, Record, Ref, SegmentName, RECORD_VERSION};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const NODE: &str = "n1";
/// The collector's default `collect.segment_max_bytes`.
const SEGMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The example config's reserved ranges (`[import.tables.*] offset`) for the CSV rows;
/// users get `auto`: `import.gap` above an empty table.
const ORDER_ID_OFFSET: u64 = 1_000_000;
const USER_ID_START: u64 = 1_000;
const COUNTRIES: &[&str] = &["AT", "BE", "CH", "DE", "ES", "FR", "IT", "NL", "PL", "SE"];

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: gen_records COLLECTED_DIR COUNT [CSV_DIR]");
        std::process::exit(2);
    }
    let collected = PathBuf::from(&args[0]);
    let count: u64 = args[1].parse().expect("COUNT is a number");
    let csv_dir = args.get(2).map(PathBuf::from);

    let form_dir = collected.join("order");
    std::fs::create_dir_all(&form_dir)?;
    // The launch opened at 09:00 UTC; one order every 10 ms keeps receive times increasing.
    let start: jiff::Timestamp = "2026-12-01T09:00:00Z".parse().expect("valid timestamp");
    let mut segment: Option<(BufWriter<File>, u64)> = None;
    let mut csv = match &csv_dir {
        Some(dir) => Some(CsvRows::create(dir)?),
        None => None,
    };
    for seq in 1..=count {
        let record = order(seq, start);
        let line = record.to_json_line();
        let (out, len) = match &mut segment {
            Some(s) => s,
            None => {
                let name = SegmentName { node: NODE.into(), first_seq: seq, format: StoreFormat::Jsonl, sealed: true };
                segment.insert((BufWriter::with_capacity(1 << 20, File::create(form_dir.join(name.file_name()))?), 0))
            }
        };
        out.write_all(&line)?;
        *len += line.len() as u64;
        if *len >= SEGMENT_MAX_BYTES {
            let (out, _) = segment.take().expect("open");
            out.into_inner()?.sync_all()?;
        }
        if let Some(csv) = &mut csv {
            csv.write(seq, &record)?;
        }
    }
    if let Some((out, _)) = segment.take() {
        out.into_inner()?.sync_all()?;
    }
    if let Some(csv) = csv {
        csv.finish()?;
    }
    eprintln!("gen_records: {count} orders in {}", form_dir.display());
    Ok(())
}

/// The record the collector writes for a valid post of the example order form.
fn order(seq: u64, start: jiff::Timestamp) -> Record {
    let quantity = 1 + (seq % 3) as u32;
    let (sku, name, unit) = if seq.is_multiple_of(4) {
        ("AURORA", "Aurora lamp", 11_900)
    } else {
        ("AURORA-EB", "Aurora lamp — early bird", 8_900)
    };
    let mut fields = BTreeMap::new();
    fields.insert("name".into(), format!("Buyer Number {seq}"));
    fields.insert("email".into(), format!("buyer{seq}@example.org"));
    fields.insert("country".into(), COUNTRIES[(seq % COUNTRIES.len() as u64) as usize].to_string());
    fields.insert("street".into(), format!("Hauptstr. {}", 1 + seq % 200));
    fields.insert("postcode".into(), format!("{:05}", 10115 + seq % 900));
    fields.insert("city".into(), "Berlin".to_string());
    fields.insert("phone".into(), if seq.is_multiple_of(3) { format!("+49 30 {seq}") } else { String::new() });
    fields.insert("sku".into(), sku.to_string());
    fields.insert("quantity".into(), quantity.to_string());
    fields.insert("newsletter".into(), if seq.is_multiple_of(2) { "true" } else { "false" }.to_string());
    let total = unit * quantity as u64;
    Record {
        v: RECORD_VERSION,
        reference: Ref { node: NODE.into(), seq },
        form: "order".into(),
        received_at: start + jiff::SignedDuration::from_millis(10 * seq as i64),
        fields,
        lines: vec![Line { sku: sku.into(), name: name.into(), quantity, unit_cents: unit, total_cents: total }],
        total_cents: Some(total),
        currency: Some("EUR".into()),
        parent_ref: None,
        meta: Meta {
            ip: Some(format!("10.{}.{}.{}", (seq >> 16) & 255, (seq >> 8) & 255, seq & 255)),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into()),
            duplicate_of: None,
        },
    }
}

/// The rows of `examples/shop.postgres.sql` that the example `[import]` mapping makes of one
/// order: a user, an order, one item per line.
struct CsvRows {
    users: csv::Writer<BufWriter<File>>,
    orders: csv::Writer<BufWriter<File>>,
    items: csv::Writer<BufWriter<File>>,
    /// Item IDs run on from the table's offset, one per line, as the importer hands them out.
    next_item: u64,
}

impl CsvRows {
    fn create(dir: &Path) -> std::io::Result<CsvRows> {
        std::fs::create_dir_all(dir)?;
        let open = |name: &str| -> std::io::Result<csv::Writer<BufWriter<File>>> {
            Ok(csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, File::create(dir.join(name))?)))
        };
        Ok(CsvRows {
            users: open("users.csv")?,
            orders: open("orders.csv")?,
            items: open("order_items.csv")?,
            next_item: ORDER_ID_OFFSET,
        })
    }

    fn write(&mut self, seq: u64, r: &Record) -> std::io::Result<()> {
        let f = |k: &str| r.fields.get(k).map(String::as_str).unwrap_or("");
        let at = r.received_at.to_string();
        let user_id = (USER_ID_START + seq - 1).to_string();
        let order_id = ORDER_ID_OFFSET + seq - 1;
        let (given, family) = f("name").rsplit_once(' ').unwrap_or((f("name"), ""));
        let newsletter = if f("newsletter") == "true" { "true" } else { "false" };
        self.users.write_record([user_id.as_str(), &f("email").to_lowercase(), given, family, newsletter, &at])?;
        let total = r.total_cents.unwrap_or(0).to_string();
        let reference = r.reference.to_string();
        let currency = r.currency.as_deref().unwrap_or("");
        let items: u32 = r.lines.iter().map(|l| l.quantity).sum();
        let order_id = order_id.to_string();
        self.orders.write_record([
            order_id.as_str(),
            &user_id,
            &reference,
            &format!("R{:09}", ORDER_ID_OFFSET + seq - 1),
            f("name"),
            f("street"),
            &f("postcode").to_uppercase(),
            f("city"),
            f("country"),
            f("phone"),
            &items.to_string(),
            &total,
            currency,
            // No payment events in the benchmark: unpaid, nothing paid, no provider IDs (an
            // empty CSV cell is NULL to \copy).
            "pending",
            "0",
            "",
            "",
            "",
            &at,
        ])?;
        for l in &r.lines {
            let item_id = self.next_item.to_string();
            self.next_item += 1;
            self.items.write_record([
                item_id.as_str(),
                &order_id,
                &l.sku,
                &l.name,
                &l.quantity.to_string(),
                &l.unit_cents.to_string(),
            ])?;
        }
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.users.flush()?;
        self.orders.flush()?;
        self.items.flush()
    }
}
