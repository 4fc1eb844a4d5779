//! Finds the line of a key path (`forms.order.fields.2.options`) in a TOML source, so that
//! errors found after parsing still point at a line. It reads the layout people write
//! (`[table]`, `[[array]]`, `key = value`); when it cannot tell, it says nothing rather than guess.

pub fn line_of_offset(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

/// The 1-based line of `path`, where the path's segments are keys or array indices.
pub fn line_of_key(source: &str, path: &[String]) -> Option<usize> {
    let lines: Vec<&str> = source.lines().collect();
    // The region (start, end) of lines belonging to the table found so far; root at first.
    let mut region = (0usize, lines.len());
    let mut best: Option<usize> = None;
    let mut prefix: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < path.len() {
        let seg = path[i].as_str();
        let next_is_index = path.get(i + 1).is_some_and(|s| s.parse::<usize>().is_ok());
        prefix.push(seg);
        let dotted = prefix.join(".");
        if next_is_index {
            let nth: usize = path[i + 1].parse().ok()?;
            let header = format!("[[{dotted}]]");
            let start = lines.iter().enumerate().filter(|(_, l)| l.trim() == header).nth(nth).map(|(n, _)| n)?;
            region = (start, table_end(&lines, start));
            best = Some(start + 1);
            i += 2;
            continue;
        }
        let header = format!("[{dotted}]");
        if let Some(start) = lines.iter().position(|l| l.trim() == header) {
            region = (start, table_end(&lines, start));
            best = Some(start + 1);
        } else if let Some(n) = (region.0..region.1).find(|&n| key_of(lines[n]) == Some(seg)) {
            return Some(n + 1);
        }
        i += 1;
    }
    best
}

fn table_end(lines: &[&str], start: usize) -> usize {
    (start + 1..lines.len()).find(|&n| lines[n].trim_start().starts_with('[')).unwrap_or(lines.len())
}

fn key_of(line: &str) -> Option<&str> {
    let (k, _) = line.split_once('=')?;
    Some(k.trim().trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "[site]\ntitle = \"x\"\n\n[forms.order]\nthanks = \"/t/\"\n\n[[forms.order.fields]]\nname = \"a\"\n\n[[forms.order.fields]]\nname = \"b\"\noptions = []\n";

    fn path(s: &str) -> Vec<String> {
        s.split('.').map(String::from).collect()
    }

    #[test]
    fn finds_keys_tables_and_array_items() {
        assert_eq!(line_of_key(SRC, &path("site.title")), Some(2));
        assert_eq!(line_of_key(SRC, &path("forms.order.thanks")), Some(5));
        assert_eq!(line_of_key(SRC, &path("forms.order.fields.1.options")), Some(12));
        assert_eq!(line_of_key(SRC, &path("forms.order.fields.0")), Some(7));
        assert_eq!(line_of_key(SRC, &path("forms.order.fields.1.label")), Some(10));
    }
}
