//! The collect → import contract: one collected form post, and the segment files that hold them.
//!
//! A record written today is imported next week by a newer binary, so the format is versioned
//! (`"v": 1`) and both sides go through these types: the collector writes with
//! [`Record::to_json_line`] / [`CsvCodec`], the importer and `stats` read with [`read_segment`].

use crate::config::{Form, StoreFormat};
use crate::json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

pub const RECORD_VERSION: u32 = 1;

/// `{node}-{seq}`: unique across nodes and restarts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ref {
    /// Shared: a post's reference is copied into its record, its answer and its receipt.
    pub node: Arc<str>,
    pub seq: u64,
}

impl Ref {
    /// Appends `{node}-{seq}` to `out`, as `Display` writes it without the formatting machinery.
    pub fn push_to(&self, out: &mut String) {
        out.push_str(&self.node);
        out.push('-');
        out.push_str(itoa::Buffer::new().format(self.seq));
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.node, self.seq)
    }
}

impl FromStr for Ref {
    type Err = String;
    fn from_str(s: &str) -> Result<Ref, String> {
        let (node, seq) = s.rsplit_once('-').ok_or_else(|| format!("{s:?} is not a reference of the form node-seq"))?;
        let seq = seq.parse().map_err(|_| format!("{s:?} is not a reference of the form node-seq"))?;
        if !crate::config::valid_name(node) {
            return Err(format!("{s:?} has an invalid node name"));
        }
        Ok(Ref { node: node.into(), seq })
    }
}

impl Serialize for Ref {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // One buffer, written once: `collect_str` goes through the formatting machinery.
        let mut text = String::with_capacity(self.node.len() + 21);
        self.push_to(&mut text);
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Ref {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ref, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One accepted form post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub v: u32,
    #[serde(rename = "ref")]
    pub reference: Ref,
    pub form: Arc<str>,
    /// Receive time, RFC 3339 UTC.
    pub received_at: jiff::Timestamp,
    /// The validated fields, by name; the honeypot is never among them.
    pub fields: BTreeMap<Arc<str>, String>,
    /// Order lines priced from the catalog (never from the client); empty for sign-ups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<Line>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cents: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Arc<str>>,
    /// The record this one follows (a one-time offer's order), from the signed cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ref: Option<Ref>,
    #[serde(default)]
    pub meta: Meta,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub sku: Arc<str>,
    pub name: Arc<str>,
    pub quantity: u32,
    pub unit_cents: u64,
    pub total_cents: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Set when the same visitor posted the same fields shortly before: the reference of
    /// that first record. The importer reports these as suspected double submits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<Ref>,
}

impl Record {
    /// The record as one JSON line, newline included.
    pub fn to_json_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_json_line(&mut out);
        out
    }

    /// Appends the record as one JSON line to `out` (a batch's buffer: no line of its own).
    ///
    /// Written by hand, byte for byte what `serde_json::to_writer` writes for the derived
    /// `Serialize` (a test holds the two equal): this is every order's hot path, and serde's
    /// writer spent more on it than the rest of the writer thread's own work. The destructuring
    /// names every field, so a field added to the record does not compile until it is written.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        let Record { v, reference, form, received_at, fields, lines, total_cents, currency, parent_ref, meta } = self;
        let Meta { ip, user_agent, duplicate_of } = meta;
        out.extend_from_slice(b"{\"v\":");
        json::uint(out, *v);
        out.extend_from_slice(b",\"ref\":");
        json::reference(out, reference);
        out.extend_from_slice(b",\"form\":");
        json::string(out, form);
        out.extend_from_slice(b",\"received_at\":\"");
        // jiff serialises a timestamp as its `Display`, which needs no escaping.
        write!(out, "{received_at}").expect("writing to a Vec cannot fail");
        out.extend_from_slice(b"\",\"fields\":{");
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json::string(out, name);
            out.push(b':');
            json::string(out, value);
        }
        out.push(b'}');
        if !lines.is_empty() {
            out.extend_from_slice(b",\"lines\":");
            json::array(out, lines, |out, Line { sku, name, quantity, unit_cents, total_cents }| {
                out.extend_from_slice(b"{\"sku\":");
                json::string(out, sku);
                out.extend_from_slice(b",\"name\":");
                json::string(out, name);
                out.extend_from_slice(b",\"quantity\":");
                json::uint(out, *quantity);
                out.extend_from_slice(b",\"unit_cents\":");
                json::uint(out, *unit_cents);
                out.extend_from_slice(b",\"total_cents\":");
                json::uint(out, *total_cents);
                out.push(b'}');
            });
        }
        if let Some(cents) = total_cents {
            out.extend_from_slice(b",\"total_cents\":");
            json::uint(out, *cents);
        }
        if let Some(currency) = currency {
            out.extend_from_slice(b",\"currency\":");
            json::string(out, currency);
        }
        if let Some(parent) = parent_ref {
            out.extend_from_slice(b",\"parent_ref\":");
            json::reference(out, parent);
        }
        out.extend_from_slice(b",\"meta\":{");
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, name: &[u8]| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(name);
        };
        if let Some(ip) = ip {
            key(out, b"\"ip\":");
            json::string(out, ip);
        }
        if let Some(agent) = user_agent {
            key(out, b"\"user_agent\":");
            json::string(out, agent);
        }
        if let Some(first_ref) = duplicate_of {
            key(out, b"\"duplicate_of\":");
            json::reference(out, first_ref);
        }
        out.extend_from_slice(b"}}\n");
    }

    /// The import order: receive time, node, sequence.
    pub fn sort_key(&self) -> (jiff::Timestamp, &str, u64) {
        (self.received_at, &self.reference.node, self.reference.seq)
    }
}

// ---------------------------------------------------------------------------------------------
// CSV

/// Cells a spreadsheet would run as a formula start with one of these; such a cell is written
/// with a leading `'`, and so is a cell that already starts with `'`, so that reading strips
/// exactly one quote and gets back the original text.
const FORMULA_STARTS: &[char] = &['=', '+', '-', '@', '\t', '\r', '\''];

pub fn guard_cell(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(FORMULA_STARTS) {
        format!("'{value}").into()
    } else {
        value.into()
    }
}

pub fn unguard_cell(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

const CSV_FIXED: &[&str] = &[
    "v",
    "ref",
    "form",
    "received_at",
    "parent_ref",
    "total_cents",
    "currency",
    "lines",
    "ip",
    "user_agent",
    "duplicate_of",
];
const CSV_FIELD_PREFIX: &str = "field.";

/// Writes and reads records of one form as CSV rows.
pub struct CsvCodec;

impl CsvCodec {
    /// The header row for `form`: fixed columns, then `field.{name}` for each field in order.
    pub fn header(form: &Form) -> Vec<String> {
        CSV_FIXED
            .iter()
            .map(|s| s.to_string())
            .chain(form.fields.iter().map(|f| format!("{CSV_FIELD_PREFIX}{}", f.name)))
            .collect()
    }

    /// The header as one CSV line, newline included.
    pub fn header_line(form: &Form) -> Vec<u8> {
        write_csv_line(Self::header(form).iter().map(|s| s.as_str()))
    }

    /// One record as one CSV line (newline included), under `header`.
    pub fn row_line(header: &[String], record: &Record) -> Vec<u8> {
        let lines_json = if record.lines.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&record.lines).expect("lines serialize")
        };
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        let cells: Vec<String> = header
            .iter()
            .map(|col| match col.as_str() {
                "v" => record.v.to_string(),
                "ref" => record.reference.to_string(),
                "form" => record.form.to_string(),
                "received_at" => record.received_at.to_string(),
                "parent_ref" => record.parent_ref.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                "total_cents" => record.total_cents.map(|t| t.to_string()).unwrap_or_default(),
                "currency" => record.currency.as_deref().unwrap_or_default().to_string(),
                "lines" => lines_json.clone(),
                "ip" => opt(&record.meta.ip),
                "user_agent" => opt(&record.meta.user_agent),
                "duplicate_of" => record.meta.duplicate_of.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                other => {
                    other.strip_prefix(CSV_FIELD_PREFIX).and_then(|f| record.fields.get(f)).cloned().unwrap_or_default()
                }
            })
            .collect();
        write_csv_line(cells.iter().map(|c| guard_cell(c)))
    }

    /// Reads a row back under its header. A field cell that is empty and absent from the
    /// record cannot be told apart from an empty value; the collector never stores absent
    /// optional fields as anything but empty strings, so both read back as `""`.
    pub fn parse_row(header: &csv::StringRecord, row: &csv::StringRecord) -> Result<Record, String> {
        if header.len() != row.len() {
            return Err(format!("{} cells, the header has {}", row.len(), header.len()));
        }
        let mut fields = BTreeMap::new();
        let mut get = BTreeMap::new();
        for (col, cell) in header.iter().zip(row.iter()) {
            let cell = unguard_cell(cell);
            match col.strip_prefix(CSV_FIELD_PREFIX) {
                Some(name) => {
                    fields.insert(name.into(), cell.to_string());
                }
                None => {
                    get.insert(col, cell);
                }
            }
        }
        let need = |k: &str| get.get(k).copied().ok_or_else(|| format!("missing column {k:?}"));
        let opt = |k: &str| get.get(k).copied().filter(|s| !s.is_empty());
        let parse_ref = |s: &str| s.parse::<Ref>();
        Ok(Record {
            v: need("v")?.parse().map_err(|_| "column \"v\" is not a number".to_string())?,
            reference: parse_ref(need("ref")?)?,
            form: need("form")?.into(),
            received_at: need("received_at")?.parse().map_err(|e| format!("column \"received_at\": {e}"))?,
            fields,
            lines: match opt("lines") {
                Some(s) => serde_json::from_str(s).map_err(|e| format!("column \"lines\": {e}"))?,
                None => Vec::new(),
            },
            total_cents: opt("total_cents")
                .map(|s| s.parse().map_err(|_| "column \"total_cents\" is not a number".to_string()))
                .transpose()?,
            currency: opt("currency").map(Arc::from),
            parent_ref: opt("parent_ref").map(parse_ref).transpose()?,
            meta: Meta {
                ip: opt("ip").map(String::from),
                user_agent: opt("user_agent").map(String::from),
                duplicate_of: opt("duplicate_of").map(parse_ref).transpose()?,
            },
        })
    }
}

fn write_csv_line(cells: impl Iterator<Item = impl AsRef<str>>) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    w.write_record(cells.map(|c| c.as_ref().to_string())).expect("writing CSV to memory cannot fail");
    w.into_inner().expect("writing CSV to memory cannot fail")
}

// ---------------------------------------------------------------------------------------------
// Segments

/// Suffix of a segment still being written; sealing renames it away.
pub const OPEN_SUFFIX: &str = ".open";
/// Suffix of a file holding a torn tail moved aside by recovery.
pub const QUARANTINE_SUFFIX: &str = ".quarantine";

/// `collected/{form}/{node}-{first_seq:012}.{jsonl|csv}[.open]`
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    pub node: String,
    pub first_seq: u64,
    pub format: StoreFormat,
    /// Sealed segments are never written again.
    pub sealed: bool,
}

impl SegmentName {
    pub fn file_name(&self) -> String {
        format!(
            "{}-{:012}.{}{}",
            self.node,
            self.first_seq,
            self.format.extension(),
            if self.sealed { "" } else { OPEN_SUFFIX }
        )
    }

    pub fn parse(file_name: &str) -> Option<SegmentName> {
        let (rest, sealed) = match file_name.strip_suffix(OPEN_SUFFIX) {
            Some(r) => (r, false),
            None => (file_name, true),
        };
        let (stem, ext) = rest.rsplit_once('.')?;
        let format = match ext {
            "jsonl" => StoreFormat::Jsonl,
            "csv" => StoreFormat::Csv,
            _ => return None,
        };
        let r: Ref = stem.parse().ok()?;
        Some(SegmentName { node: r.node.to_string(), first_seq: r.seq, format, sealed })
    }
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub form: String,
    pub path: PathBuf,
    pub name: SegmentName,
}

/// Every segment under `collected/`, grouped by form folder, sorted by form, node and first
/// sequence. Quarantine files and anything else unknown are left out.
pub fn list_segments(collected: &Path) -> std::io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    let forms = match std::fs::read_dir(collected) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for form_dir in forms {
        let form_dir = form_dir?;
        if !form_dir.file_type()?.is_dir() {
            continue;
        }
        let form = form_dir.file_name().to_string_lossy().into_owned();
        if form == crate::payment::PAYMENTS_DIR {
            continue; // the payment log, read by `payment::read_payments`
        }
        for entry in std::fs::read_dir(form_dir.path())? {
            let entry = entry?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = SegmentName::parse(&file_name) {
                out.push(Segment { form: form.clone(), path: entry.path(), name });
            }
        }
    }
    out.sort_by(|a, b| (&a.form, &a.name).cmp(&(&b.form, &b.name)));
    Ok(out)
}

/// A line that could not be read back as a record.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// Reads every record of one segment, in file order, with its 1-based line number. A line that
/// does not parse is returned as a [`BadLine`], never dropped. An unterminated last line of an
/// open segment is a write in progress (or torn by a crash) and is reported as bad too.
pub fn read_segment(path: &Path) -> std::io::Result<Vec<Result<(usize, Record), BadLine>>> {
    let bytes = std::fs::read(path)?;
    let format = path
        .file_name()
        .and_then(|n| SegmentName::parse(&n.to_string_lossy()))
        .map(|n| n.format)
        .unwrap_or(StoreFormat::Jsonl);
    let bad = |line: usize, message: String| BadLine { path: path.to_path_buf(), line, message };
    let mut out = Vec::new();
    let torn_tail = !bytes.is_empty() && !bytes.ends_with(b"\n");
    match format {
        StoreFormat::Jsonl => {
            let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
            // The piece after the last newline: empty, or a torn line.
            let tail = lines.pop().unwrap_or_default();
            // Lines parse independently: a segment of a million records uses every core.
            use rayon::prelude::*;
            out = lines
                .par_iter()
                .enumerate()
                .map(|(i, raw)| match serde_json::from_slice::<Record>(raw) {
                    Ok(r) if r.v == RECORD_VERSION => Ok((i + 1, r)),
                    Ok(r) => Err(bad(i + 1, format!("record version {} (this cofferdam reads {RECORD_VERSION})", r.v))),
                    Err(e) => Err(bad(i + 1, format!("not a record: {e}"))),
                })
                .collect();
            if torn_tail && !tail.is_empty() {
                out.push(Err(bad(lines.len() + 1, "torn line (no newline at the end)".into())));
            }
        }
        StoreFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(bytes.as_slice());
            let header = match reader.headers() {
                Ok(h) => h.clone(),
                Err(e) => {
                    out.push(Err(bad(1, format!("unreadable CSV header: {e}"))));
                    return Ok(out);
                }
            };
            let mut row = csv::StringRecord::new();
            loop {
                let line = reader.position().line() as usize;
                match reader.read_record(&mut row) {
                    Ok(false) => break,
                    Ok(true) => {
                        let at_end = reader.position().byte() as usize == bytes.len();
                        if torn_tail && at_end {
                            out.push(Err(bad(line, "torn line (no newline at the end)".into())));
                            break;
                        }
                        out.push(CsvCodec::parse_row(&header, &row).map(|r| (line, r)).map_err(|m| bad(line, m)));
                    }
                    Err(e) => {
                        out.push(Err(bad(line, format!("not a CSV row: {e}"))));
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Field, FieldKind};

    fn form() -> Form {
        let field = |name: &str| Field {
            name: name.into(),
            label: String::new(),
            kind: FieldKind::Text,
            required: false,
            min_len: None,
            max_len: None,
            pattern: None,
            min: None,
            max: None,
            options: vec![],
            placeholder: None,
            default: None,
            autocomplete: None,
            help: None,
        };
        Form {
            title: "Order".into(),
            thanks: "/thanks/".into(),
            submit_label: "Buy".into(),
            store: vec![StoreFormat::Csv],
            honeypot: "website".into(),
            quantity_field: None,
            links_to: None,
            payment: None,
            fields: vec![field("name"), field("note")],
        }
    }

    fn record(name: &str, note: &str) -> Record {
        Record {
            v: RECORD_VERSION,
            reference: "node-a-7".parse().unwrap(),
            form: "order".into(),
            received_at: "2026-11-24T09:00:00.123Z".parse().unwrap(),
            fields: [("name".into(), name.to_string()), ("note".into(), note.to_string())].into(),
            lines: vec![Line {
                sku: "LAMP".into(),
                name: "Lamp".into(),
                quantity: 2,
                unit_cents: 4900,
                total_cents: 9800,
            }],
            total_cents: Some(9800),
            currency: Some("EUR".into()),
            parent_ref: Some("node-a-3".parse().unwrap()),
            meta: Meta {
                ip: Some("127.0.0.1".into()),
                user_agent: Some("=cmd|' /C calc'!A0".into()),
                duplicate_of: None,
            },
        }
    }

    #[test]
    fn ref_round_trips_with_dashes_in_node() {
        let r: Ref = "eu-west-1-42".parse().unwrap();
        assert_eq!(&*r.node, "eu-west-1");
        assert_eq!(r.seq, 42);
        assert_eq!(r.to_string(), "eu-west-1-42");
        assert!("nodash".parse::<Ref>().is_err());
    }

    #[test]
    fn csv_guard_blocks_formulas_and_reverses_exactly() {
        for evil in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'quoted", "''", "plain", ""] {
            let guarded = guard_cell(evil);
            assert!(!guarded.starts_with(['=', '+', '-', '@', '\t', '\r']), "{evil:?} → {guarded:?}");
            assert_eq!(unguard_cell(&guarded), evil);
        }
    }

    #[test]
    fn csv_segment_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let form = form();
        let header = CsvCodec::header(&form);
        let a = record("=HYPERLINK(\"x\")", "line1\nline2, \"quoted\"");
        let b = record("'Ann", "-5");
        let path = dir.path().join(
            SegmentName { node: "node-a".into(), first_seq: 1, format: StoreFormat::Csv, sealed: true }.file_name(),
        );
        let mut bytes = CsvCodec::header_line(&form);
        bytes.extend(CsvCodec::row_line(&header, &a));
        bytes.extend(CsvCodec::row_line(&header, &b));
        std::fs::write(&path, &bytes).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains(",=HYPERLINK"), "formula left unguarded:\n{text}");
        let back: Vec<Record> = read_segment(&path).unwrap().into_iter().map(|r| r.unwrap().1).collect();
        assert_eq!(back, vec![a, b]);
    }

    #[test]
    fn jsonl_torn_tail_and_garbage_are_reported_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n1-000000000001.jsonl.open");
        let mut bytes = record("Ann", "").to_json_line();
        bytes.extend(b"{not json}\n");
        bytes.extend(&record("Bob", "").to_json_line()[..20]);
        std::fs::write(&path, &bytes).unwrap();
        let got = read_segment(&path).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().1.fields["name"], "Ann");
        assert_eq!(got[1].as_ref().unwrap_err().line, 2);
        let torn = got[2].as_ref().unwrap_err();
        assert_eq!(torn.line, 3);
        assert!(torn.message.contains("torn"), "{}", torn.message);
    }

    #[test]
    fn segment_names_sort_by_sequence_and_round_trip() {
        let n = SegmentName { node: "n-1".into(), first_seq: 42, format: StoreFormat::Jsonl, sealed: false };
        assert_eq!(n.file_name(), "n-1-000000000042.jsonl.open");
        assert_eq!(SegmentName::parse(&n.file_name()), Some(n));
        assert_eq!(SegmentName::parse("n1-000000000001.jsonl.quarantine"), None);
    }

    #[test]
    fn the_hand_written_json_line_is_what_serde_json_writes_and_reads_back() {
        // Every byte that needs an escape, each alone, at a chunk's edge and after a long clean
        // run; non-ASCII, `/` and DEL, which stay as they are.
        let mut texts: Vec<String> = (0u8..0x20).map(|b| char::from(b).to_string()).collect();
        texts.extend(["\"", "\\", "", "plain", "a/b\u{7f}", "Zoë 🚀 ünïcödé", "line\r\nbreak\ttab"].map(String::from));
        texts.push(format!("{}\"{}", "x".repeat(15), "y".repeat(40)));
        texts.push(format!("{}\u{1}", "x".repeat(16)));
        texts.push(format!("{}\\", "é".repeat(33)));
        let full = record("Ada", "note");
        let mut bare = record("Ada", "note");
        bare.lines.clear();
        (bare.total_cents, bare.currency, bare.parent_ref) = (None, None, None);
        bare.meta = Meta::default();
        bare.fields.clear();
        bare.received_at = "2026-11-24T09:00:00Z".parse().unwrap();
        let mut records = vec![full.clone(), bare];
        for text in &texts {
            let mut r = record(text, text);
            r.fields.insert(text.as_str().into(), text.clone());
            r.form = text.as_str().into();
            r.lines[0].name = text.as_str().into();
            r.lines.push(Line {
                sku: text.as_str().into(),
                name: "".into(),
                quantity: u32::MAX,
                unit_cents: 0,
                total_cents: u64::MAX,
            });
            r.currency = Some(text.as_str().into());
            r.meta = Meta {
                ip: None,
                user_agent: Some(text.clone()),
                duplicate_of: Some("n-2-18446744073709551615".parse().unwrap()),
            };
            records.push(r);
        }
        for r in &records {
            let mut ours = Vec::new();
            r.write_json_line(&mut ours);
            let mut theirs = serde_json::to_vec(r).unwrap();
            theirs.push(b'\n');
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
            assert_eq!(&serde_json::from_slice::<Record>(&ours).unwrap(), r);
        }
    }
}
