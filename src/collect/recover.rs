//! Start-up recovery: every segment left open by a crash gets its torn tail moved to a
//! `.quarantine` file (never deleted) and is sealed; the sequence and the stock sold are read
//! back from the logs, so references stay unique and caps hold across restarts.

use super::segment::{seal_path, sync_dir};
use crate::config::{Form, StoreFormat};
use crate::record::{self, Record, Ref, QUARANTINE_SUFFIX};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Recovered {
    /// The next sequence number of this node.
    pub next_seq: u64,
    /// Quantities this node has sold, per SKU.
    pub sold: HashMap<String, u64>,
    /// Records of this node found in the logs.
    pub records: u64,
    /// (follow-up form, parent record) of every follow-up of this node.
    pub followed_up: HashSet<(Arc<str>, Ref)>,
    /// Quarantine files written, with the bytes moved there.
    pub quarantined: Vec<(PathBuf, usize)>,
}

/// `max_batch` is the most records one batch can hold: the references a torn tail may have
/// taken lie within one batch of the highest one known.
pub fn recover(
    collected: &Path,
    node: &str,
    forms: &BTreeMap<String, Form>,
    max_batch: usize,
) -> std::io::Result<Recovered> {
    let mut out = Recovered { next_seq: 1, ..Default::default() };
    for seg in record::list_segments(collected)? {
        if seg.name.node != node {
            continue;
        }
        // A sealed segment can be torn too (a disk error, a copy cut short): its tail is
        // quarantined the same way, never read as records nor left to be imported.
        if let Some(moved) = cut_torn_tail(&seg.path, seg.name.format)? {
            out.quarantined.push(moved);
        }
        let path = if seg.name.sealed { seg.path.clone() } else { seal_path(&seg.path)? };
        // Count each record once: from the form's first store format.
        let primary = forms.get(&seg.form).map(Form::primary_store).unwrap_or_default();
        let all_formats = record::read_segment(&path)?;
        for (_, r) in all_formats.into_iter().flatten() {
            out.next_seq = out.next_seq.max(r.reference.seq + 1);
            if seg.name.format == primary {
                count(&mut out, &r);
            }
        }
        // A segment name carries its first sequence even when it holds nothing readable.
        out.next_seq = out.next_seq.max(seg.name.first_seq);
    }
    out.next_seq = out.next_seq.max(past_quarantined(collected, node, out.next_seq, max_batch)?);
    Ok(out)
}

/// The first sequence no quarantined record of `node` can hold: a torn record's reference
/// stays in its quarantine file (an operator may restore it), so it is never handed out again.
/// A torn tail holds (part of) one batch, and the reference of its first record may itself be
/// torn, so the sequence also moves a whole batch past the highest one known. The quarantine
/// files stay, so every later start-up keeps clear of them too.
fn past_quarantined(collected: &Path, node: &str, next_seq: u64, max_batch: usize) -> std::io::Result<u64> {
    let mut floor = next_seq;
    let mut any = false;
    for path in quarantine_files(collected, node)? {
        any = true;
        let bytes = std::fs::read(&path)?;
        if let Some(seq) = seqs_named(&bytes, node).max() {
            floor = floor.max(seq + 1);
        }
    }
    Ok(if any { floor + max_batch as u64 } else { floor })
}

/// `collected/{form}/{node}-….quarantine`
fn quarantine_files(collected: &Path, node: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let Ok(forms) = std::fs::read_dir(collected) else { return Ok(out) };
    for form_dir in forms {
        let form_dir = form_dir?;
        if !form_dir.file_type()?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(form_dir.path())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let segment = name.strip_suffix(QUARANTINE_SUFFIX).and_then(record::SegmentName::parse);
            if segment.is_some_and(|s| s.node == node) {
                out.push(entry.path());
            }
        }
    }
    Ok(out)
}

/// The sequence numbers of every `{node}-{digits}` in `bytes` that starts a token.
fn seqs_named<'b>(bytes: &'b [u8], node: &'b str) -> impl Iterator<Item = u64> + 'b {
    let prefix = format!("{node}-").into_bytes();
    (0..bytes.len()).filter_map(move |i| {
        let starts_token = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || b"-_".contains(&bytes[i - 1]));
        if !starts_token || !bytes[i..].starts_with(&prefix) {
            return None;
        }
        let digits = &bytes[i + prefix.len()..];
        let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&digits[..n]).ok()?.parse().ok()
    })
}

fn count(out: &mut Recovered, r: &Record) {
    out.records += 1;
    if let Some(parent) = &r.parent_ref {
        out.followed_up.insert((r.form.clone(), parent.clone()));
    }
    for line in &r.lines {
        *out.sold.entry(line.sku.to_string()).or_default() += line.quantity as u64;
    }
}

/// Moves everything after the last complete record to `{path}.quarantine`.
fn cut_torn_tail(path: &Path, format: StoreFormat) -> std::io::Result<Option<(PathBuf, usize)>> {
    let bytes = std::fs::read(path)?;
    let good = match format {
        StoreFormat::Jsonl => good_jsonl_len(&bytes, |line| serde_json::from_slice::<Record>(line).is_ok()),
        StoreFormat::Csv => good_csv_len(&bytes),
    };
    quarantine_tail(path, &bytes, good)
}

/// Moves `bytes[good..]` of the file at `path` to `{path}.quarantine` and cuts the file there.
pub(crate) fn quarantine_tail(path: &Path, bytes: &[u8], good: usize) -> std::io::Result<Option<(PathBuf, usize)>> {
    if good == bytes.len() {
        return Ok(None);
    }
    let quarantine = PathBuf::from(format!("{}{QUARANTINE_SUFFIX}", path.display()));
    let mut q = std::fs::OpenOptions::new().create(true).append(true).open(&quarantine)?;
    q.write_all(&bytes[good..])?;
    q.sync_all()?;
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_len(good as u64)?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    tracing::warn!("{}: moved a torn tail of {} bytes to {}", path.display(), bytes.len() - good, quarantine.display());
    Ok(Some((quarantine, bytes.len() - good)))
}

/// Length up to the end of the last line that is complete and `is_item` (a record, a payment).
pub(crate) fn good_jsonl_len(bytes: &[u8], is_item: impl Fn(&[u8]) -> bool) -> usize {
    let mut end = bytes.len();
    loop {
        let Some(nl) = bytes[..end].iter().rposition(|&b| b == b'\n') else { return 0 };
        let start = bytes[..nl].iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0);
        if end == nl + 1 && is_item(&bytes[start..nl]) {
            return end;
        }
        if end != nl + 1 {
            // Bytes after the last newline: torn. Try the line before.
            end = nl + 1;
            continue;
        }
        // A complete line that is no record (torn mid-batch): cut it too.
        end = start;
    }
}

/// Length up to the end of the last CSV row that parses with as many cells as the header and
/// ends with a newline. Rows may span lines (quoted newlines), so this follows the CSV grammar.
fn good_csv_len(bytes: &[u8]) -> usize {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut row = csv::StringRecord::new();
    let mut header_len = None;
    let mut good = 0;
    loop {
        match reader.read_record(&mut row) {
            Ok(true) => {
                let end = reader.position().byte() as usize;
                let complete = end > 0 && bytes[end - 1] == b'\n';
                let width_ok = match header_len {
                    None => {
                        header_len = Some(row.len());
                        true
                    }
                    Some(n) => row.len() == n,
                };
                if !complete || !width_ok {
                    return good;
                }
                good = end;
            }
            Ok(false) | Err(_) => return good,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_jsonl_tail_is_cut_at_the_last_record() {
        let rec = br#"{"v":1,"ref":"n1-1","form":"f","received_at":"2026-11-24T09:00:00Z","fields":{}}"#;
        let mut bytes = rec.to_vec();
        bytes.push(b'\n');
        let one = bytes.len();
        bytes.extend_from_slice(&rec[..30]);
        let is_record = |l: &[u8]| serde_json::from_slice::<Record>(l).is_ok();
        assert_eq!(good_jsonl_len(&bytes, is_record), one);
        bytes.extend_from_slice(b"\n");
        assert_eq!(good_jsonl_len(&bytes, is_record), one, "a complete line that is no record");
        assert_eq!(good_jsonl_len(b"{\"v\"", is_record), 0);
    }

    #[test]
    fn torn_csv_row_with_quoted_newline_is_cut_before_it() {
        let text = "a,b\n1,\"x\ny\"\n2,\"half\nway";
        assert_eq!(good_csv_len(text.as_bytes()), "a,b\n1,\"x\ny\"\n".len());
        assert_eq!(good_csv_len(b"a,b\n1,2\n3"), "a,b\n1,2\n".len());
    }
}
