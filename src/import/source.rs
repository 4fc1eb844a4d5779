//! The collected records to import: read through `record::read_segment` from one or more
//! `collected/` folders (one per node) and JetStream streams ([`super::stream`]), in the
//! import order (receive time, node, sequence).

use crate::config::{Config, Form};
use crate::record::{self, BadLine, Record, Ref};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Source {
    pub records: Vec<Located>,
    pub bad: Vec<BadLine>,
    /// Records of forms the mapping does not import, per form.
    pub unmapped: BTreeMap<String, usize>,
    /// The same reference found twice (e.g. a folder given twice): kept once.
    pub repeated: usize,
}

pub struct Located {
    pub record: Record,
    /// `record.reference` as text, made once.
    pub reference: String,
    /// Shared by every record of a segment.
    pub path: Arc<Path>,
    pub line: usize,
}

pub fn read(config: &Config, folders: &[PathBuf], streamed: Vec<super::stream::Fetched>) -> std::io::Result<Source> {
    let mut src = Source { records: Vec::new(), bad: Vec::new(), unmapped: BTreeMap::new(), repeated: 0 };
    let mut seen = HashSet::new();
    for folder in folders {
        if !folder.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no such folder", folder.display()),
            ));
        }
        for seg in record::list_segments(folder)? {
            // A form kept as JSONL and CSV holds every record twice: read its first format.
            let primary = config.forms.get(&seg.form).map(Form::primary_store).unwrap_or_default();
            if seg.name.format != primary {
                continue;
            }
            let path: Arc<Path> = seg.path.as_path().into();
            // Re-validation is independent per record: on every core.
            let checked: Vec<_> = record::read_segment(&seg.path)?
                .into_par_iter()
                .map(|item| item.map(|(line, r)| (line, check(config, &r, &seg.form), r)))
                .collect();
            for item in checked {
                match item {
                    Err(bad) => src.bad.push(bad),
                    Ok((line, checked, r)) => match checked {
                        Err(message) => src.bad.push(BadLine { path: seg.path.clone(), line, message }),
                        Ok(false) => *src.unmapped.entry(r.form.to_string()).or_default() += 1,
                        Ok(true) => {
                            if seen.insert(r.reference.clone()) {
                                src.records.push(Located {
                                    reference: r.reference.to_string(),
                                    record: r,
                                    path: path.clone(),
                                    line,
                                });
                            } else {
                                src.repeated += 1;
                            }
                        }
                    },
                }
            }
        }
    }
    // A stream holds every node's records: each is checked against its own form, and a
    // reference also found in a folder (or in another stream) is kept once.
    let checked: Vec<_> = streamed
        .into_par_iter()
        .map(|f| (f.record.and_then(|r| check(config, &r, &r.form).map(|ok| (ok, r))), f.origin, f.seq as usize))
        .collect();
    for (item, origin, line) in checked {
        match item {
            Err(message) => src.bad.push(BadLine { path: origin.to_path_buf(), line, message }),
            Ok((false, r)) => *src.unmapped.entry(r.form.to_string()).or_default() += 1,
            Ok((true, r)) => {
                if seen.insert(r.reference.clone()) {
                    src.records.push(Located { reference: r.reference.to_string(), record: r, path: origin, line });
                } else {
                    src.repeated += 1;
                }
            }
        }
    }
    src.records.par_sort_by(|a, b| a.record.sort_key().cmp(&b.record.sort_key()));
    Ok(src)
}

/// Re-validates a record against today's form definition and catalog. `Ok(false)`: a known
/// form with no import mapping.
fn check(config: &Config, r: &Record, folder_form: &str) -> Result<bool, String> {
    if *r.form != *folder_form {
        return Err(format!("record of form {:?} in the folder of form {folder_form:?}", r.form));
    }
    let Some(form) = config.forms.get(&*r.form) else {
        return Err(format!("unknown form {:?} (not in cofferdam.toml)", r.form));
    };
    // Checkbox values are stored as true/false, which validation accepts as posted values.
    let posted = &r.fields;
    if let Err(errors) = crate::collect::validate(form, &config.catalog, posted) {
        let text: Vec<String> = errors
            .iter()
            .map(|e| match posted.get(e.field.as_str()) {
                Some(value) => format!("{} = {value:?}: {}", e.field, e.message),
                None => format!("{}: {}", e.field, e.message),
            })
            .collect();
        return Err(format!("does not validate any more: {}", text.join("; ")));
    }
    for line in &r.lines {
        if config.product(&line.sku).is_none() {
            return Err(format!("unknown SKU {:?} (not in the catalog)", line.sku));
        }
    }
    Ok(config.import.forms.contains_key(&*r.form))
}

/// References that look like double submits: flagged by the collector, or the same form,
/// fields and parent (a one-time offer is the same offer only for the same order) within ten
/// minutes of an earlier record.
pub fn suspected_duplicates(records: &[Located]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // (form, fields, parent) → (received, reference) of the latest such record.
    type Seen<'a> = HashMap<(&'a str, &'a BTreeMap<Arc<str>, String>, Option<&'a Ref>), (jiff::Timestamp, &'a str)>;
    let mut last: Seen = HashMap::new();
    for l in records {
        let r = &l.record;
        if let Some(first) = &r.meta.duplicate_of {
            out.push((l.reference.clone(), first.to_string()));
            continue;
        }
        let key = (&*r.form, &r.fields, r.parent_ref.as_ref());
        if let Some((at, first)) = last.get(&key) {
            if r.received_at.duration_since(*at).as_secs() < 600 {
                out.push((l.reference.clone(), first.to_string()));
            }
        }
        last.insert(key, (r.received_at, &l.reference));
    }
    out
}
