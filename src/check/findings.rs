//! What `check` reports: findings with a severity, where, and what to do about it.

use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The launch breaks or loses visitors: `check` exits non-zero.
    Error,
    /// A risk worth fixing before the day.
    Warning,
    /// A figure or a note.
    Info,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable, for scripts: `page-weight`, `js-form`, `broken-link`, ...
    pub code: &'static str,
    /// The page's route (`/order/`), or the config for site-wide findings.
    pub page: String,
    /// `dist/index.html:12` or `cofferdam.toml:40`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub message: String,
    pub fix: String,
}

/// Weight of one page of the landing path as a fresh visitor loads it.
#[derive(Debug, Clone, Serialize)]
pub struct PageWeight {
    pub route: String,
    /// The page and every subresource it loads (stylesheet URLs included), each counted once.
    pub requests: u32,
    /// Bytes over the wire with the best encoding the server has (brotli, else gzip).
    pub compressed_bytes: u64,
    pub identity_bytes: u64,
    /// Subresources from other hosts, whose size is unknown here.
    pub external_requests: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub site: String,
    pub dist: String,
    pub ok: bool,
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    pub budget: Budget,
    /// landing page → form page → thank-you page.
    pub landing_path: Vec<PageWeight>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub page_weight_bytes: u64,
    pub requests: u32,
    pub image_bytes: u64,
}

impl Report {
    pub fn new(
        site: String,
        dist: String,
        budget: Budget,
        landing_path: Vec<PageWeight>,
        mut findings: Vec<Finding>,
    ) -> Report {
        findings.sort_by_key(|f| f.severity);
        let count = |s| findings.iter().filter(|f| f.severity == s).count();
        let (errors, warnings, infos) = (count(Severity::Error), count(Severity::Warning), count(Severity::Info));
        Report { site, dist, ok: errors == 0, errors, warnings, infos, budget, landing_path, findings }
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "cofferdam check: {} ({})\n", self.site, self.dist);
        let _ = writeln!(
            s,
            "landing path (a fresh visitor; budget per page {} compressed, {} requests)",
            kb(self.budget.page_weight_bytes),
            self.budget.requests
        );
        let _ = writeln!(s, "  {:<28} {:>8} {:>12} {:>12}", "page", "requests", "compressed", "identity");
        for p in &self.landing_path {
            let ext =
                if p.external_requests > 0 { format!(" (+{} external)", p.external_requests) } else { String::new() };
            let _ = writeln!(
                s,
                "  {:<28} {:>8} {:>12} {:>12}{ext}",
                p.route,
                p.requests,
                kb(p.compressed_bytes),
                kb(p.identity_bytes)
            );
        }
        s.push('\n');
        for f in &self.findings {
            let _ = writeln!(s, "{:<7}  {} [{}]: {}", f.severity.label(), f.page, f.code, f.message);
            if let Some(at) = &f.location {
                let _ = writeln!(s, "         at:  {at}");
            }
            if !f.fix.is_empty() {
                let _ = writeln!(s, "         fix: {}", f.fix);
            }
        }
        if !self.findings.is_empty() {
            s.push('\n');
        }
        let verdict = if self.ok { "ready to launch" } else { "NOT ready to launch" };
        let _ = writeln!(
            s,
            "{} error{}, {} warning{}, {} note{}: {verdict}",
            self.errors,
            plural(self.errors),
            self.warnings,
            plural(self.warnings),
            self.infos,
            plural(self.infos)
        );
        s
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `12345` → `12.1 KB`
pub fn kb(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// A snippet of the site quoted in a finding, cut to 40 characters.
pub(super) fn clip(s: &str) -> String {
    crate::text::clipped(s, 40, 40)
}
