//! Line charts as inline SVG, for the admin page's time series and the rehearsal report's
//! curves against concurrency ([`html`] wraps them in a page).
//!
//! No script, no external asset, every text escaped. Each series also carries its values in
//! `data-values` (and the x positions in the chart's `data-x`), so what a chart shows can be
//! read back by a program, not only by eye.

pub mod html;

use std::fmt::Write;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 24.0;
/// Okabe–Ito: told apart by colour-blind readers too.
const COLORS: [&str; 8] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#8c6d00"];

/// One chart: series of values over shared x positions. `f64::NAN` is a gap (no data).
#[derive(Debug, Clone, Default)]
pub struct Chart {
    id: String,
    title: String,
    x: Vec<f64>,
    x_ticks: Vec<(f64, String)>,
    series: Vec<Series>,
    /// Horizontal reference lines (a latency budget).
    levels: Vec<(f64, String)>,
    /// Vertical marks at an x (where a rehearsal broke).
    marks: Vec<(f64, String)>,
    /// A dot with a tooltip on every value: for a few points, not for a time series.
    dots: bool,
}

#[derive(Debug, Clone)]
struct Series {
    name: String,
    values: Vec<f64>,
}

impl Chart {
    /// A chart `id` (the SVG element's id) titled `title` over the x positions `x`.
    pub fn new(id: &str, title: &str, x: Vec<f64>) -> Chart {
        Chart { id: id.into(), title: title.into(), x, ..Chart::default() }
    }

    /// Labels on the x axis, at x positions.
    pub fn x_ticks(mut self, ticks: Vec<(f64, String)>) -> Chart {
        self.x_ticks = ticks;
        self
    }

    /// A line: one value per x position (missing ones are gaps).
    pub fn series(mut self, name: &str, values: Vec<f64>) -> Chart {
        self.series.push(Series { name: name.into(), values });
        self
    }

    pub fn level(mut self, y: f64, label: &str) -> Chart {
        self.levels.push((y, label.into()));
        self
    }

    pub fn mark(mut self, x: f64, label: &str) -> Chart {
        self.marks.push((x, label.into()));
        self
    }

    pub fn dots(mut self) -> Chart {
        self.dots = true;
        self
    }

    pub fn to_svg(&self) -> String {
        let finite = |v: &&f64| v.is_finite();
        let y_max = self
            .series
            .iter()
            .flat_map(|s| s.values.iter())
            .chain(self.levels.iter().map(|(y, _)| y))
            .filter(finite)
            .fold(0.0_f64, |a, &b| a.max(b));
        let top = nice_ceiling(y_max);
        let (x0, x1) = match self
            .x
            .iter()
            .filter(finite)
            .fold(None, |r: Option<(f64, f64)>, &x| Some(r.map_or((x, x), |(lo, hi)| (lo.min(x), hi.max(x)))))
        {
            Some((lo, hi)) if hi > lo => (lo, hi),
            Some((lo, _)) => (lo - 1.0, lo + 1.0),
            None => (0.0, 1.0),
        };
        let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT);
        let py = |y: f64| HEIGHT - BOTTOM - y / top * (HEIGHT - TOP - BOTTOM);

        let mut s = String::new();
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
             aria-label=\"{}\" font-family=\"system-ui, sans-serif\" font-size=\"11\" data-x=\"{}\">",
            escape(&self.id),
            escape(&self.title),
            values_attr(&self.x)
        );
        let _ = write!(
            s,
            "<text x=\"{LEFT}\" y=\"15\" font-size=\"13\" font-weight=\"600\">{}</text>",
            escape(&self.title)
        );
        self.legend(&mut s);
        for k in 0..=4 {
            let y = top * k as f64 / 4.0;
            let _ = write!(
                s,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
                WIDTH - RIGHT,
                py(y),
                py(y),
                LEFT - 5.0,
                py(y) + 4.0,
                short(y)
            );
        }
        for (x, label) in &self.x_ticks {
            // A label at the right edge ends there instead of running off the chart.
            let anchor = if px(*x) > WIDTH - RIGHT - 12.0 { "end" } else { "middle" };
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\" fill=\"#555\">{}</text>",
                px(*x),
                HEIGHT - 6.0,
                escape(label)
            );
        }
        for (y, label) in &self.levels {
            let _ = write!(
                s,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#b00\" stroke-dasharray=\"4 3\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#b00\">{}</text>",
                WIDTH - RIGHT,
                py(*y),
                py(*y),
                WIDTH - RIGHT,
                py(*y) - 3.0,
                escape(label)
            );
        }
        for (x, label) in &self.marks {
            let _ = write!(
                s,
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{TOP}\" y2=\"{}\" stroke=\"#b00\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{}\" text-anchor=\"end\" fill=\"#b00\">{}</text>",
                px(*x),
                px(*x),
                HEIGHT - BOTTOM,
                px(*x) - 3.0,
                TOP + 10.0,
                escape(label)
            );
        }
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let _ = write!(
                s,
                "<path d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" stroke-linejoin=\"round\" data-series=\"{}\" data-values=\"{}\"/>",
                path(&self.x, &series.values, px, py),
                escape(&series.name),
                values_attr(&series.values)
            );
            if self.dots {
                for (x, v) in self.x.iter().zip(&series.values).filter(|(x, v)| x.is_finite() && v.is_finite()) {
                    let _ = write!(
                        s,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{}: {}</title></circle>",
                        px(*x),
                        py(*v),
                        escape(&series.name),
                        v
                    );
                }
            }
        }
        s.push_str("</svg>");
        s
    }

    fn legend(&self, s: &mut String) {
        let mut x = LEFT;
        for (i, series) in self.series.iter().enumerate() {
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"25\" width=\"12\" height=\"4\" fill=\"{}\"/><text x=\"{:.1}\" y=\"31\">{}</text>",
                COLORS[i % COLORS.len()],
                x + 16.0,
                escape(&series.name)
            );
            x += 28.0 + 6.2 * series.name.chars().count() as f64;
        }
    }
}

/// `M x,y L x,y …`, starting anew after each gap.
fn path(xs: &[f64], ys: &[f64], px: impl Fn(f64) -> f64, py: impl Fn(f64) -> f64) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for (&x, &y) in xs.iter().zip(ys) {
        if !(x.is_finite() && y.is_finite()) {
            pen_down = false;
            continue;
        }
        let _ = write!(d, "{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, px(x), py(y));
        pen_down = true;
    }
    d.trim_end().to_string()
}

/// Values as Rust prints them (the shortest text that reads back to the same number).
fn values_attr(values: &[f64]) -> String {
    values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" ")
}

/// The top of the y axis: the smallest of 1, 2, 4, 6, 8 × 10ⁿ at or above `max`, so the four
/// grid steps are round numbers.
fn nice_ceiling(max: f64) -> f64 {
    if max.is_nan() || max <= 0.0 {
        return 1.0;
    }
    let unit = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 4.0, 6.0, 8.0, 10.0].iter().map(|m| m * unit).find(|&c| c >= max * (1.0 - 1e-12)).unwrap_or(10.0 * unit)
}

/// `1250` → `1.25k`: a figure short enough for an axis or a tile.
pub fn short(v: f64) -> String {
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let text = format!("{scaled:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{suffix}")
}

/// Text for HTML and SVG, in content and in quoted attributes: the build's one escaper.
pub(crate) use crate::build::forms::esc as escape;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_is_escaped() {
        let svg = Chart::new("c\"1", "<script>alert(1)</script>", vec![0.0, 1.0])
            .series("a & b <i>", vec![1.0, 2.0])
            .level(1.5, "budget \"x\"")
            .mark(1.0, "broke: p99 > 'x'")
            .x_ticks(vec![(0.0, "<0>".into())])
            .dots()
            .to_svg();
        assert!(!svg.contains("<script") && !svg.contains("<i>") && !svg.contains("<0>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{svg}");
        assert!(svg.contains("data-series=\"a &amp; b &lt;i&gt;\""), "{svg}");
        assert!(svg.contains("id=\"c&quot;1\""), "{svg}");
        assert!(svg.contains("budget &quot;x&quot;") && svg.contains("p99 &gt; &#39;x&#39;"), "{svg}");
    }

    #[test]
    fn values_map_onto_the_plot_area_and_read_back() {
        // y axis 0..4 (the nice ceiling of 3.5), x from 10 to 20.
        let svg = Chart::new("c", "t", vec![10.0, 15.0, 20.0]).series("s", vec![0.0, 3.5, 4.0]).to_svg();
        let bottom = HEIGHT - BOTTOM;
        let plot = HEIGHT - TOP - BOTTOM;
        let expected = format!(
            "d=\"M{:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1}\"",
            LEFT,
            bottom,
            (LEFT + WIDTH - RIGHT) / 2.0,
            bottom - 3.5 / 4.0 * plot,
            WIDTH - RIGHT,
            TOP
        );
        assert!(svg.contains(&expected), "{expected} in {svg}");
        assert!(svg.contains("data-values=\"0 3.5 4\""), "{svg}");
        assert!(svg.contains("data-x=\"10 15 20\""), "{svg}");
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
    }

    #[test]
    fn a_gap_lifts_the_pen() {
        let svg = Chart::new("c", "t", vec![0.0, 1.0, 2.0, 3.0]).series("s", vec![1.0, f64::NAN, 1.0, 1.0]).to_svg();
        let d = svg.split(" d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 1, "{d}");
        assert!(svg.contains("data-values=\"1 NaN 1 1\""), "{svg}");
    }

    #[test]
    fn dots_carry_their_value_as_a_tooltip() {
        let svg = Chart::new("c", "t", vec![1.0, 2.0]).series("p99", vec![12.5, 40.0]).dots().to_svg();
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("<title>p99: 12.5</title>") && svg.contains("<title>p99: 40</title>"), "{svg}");
    }

    #[test]
    fn axis_tops_and_short_figures_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.5), 4.0);
        assert_eq!(nice_ceiling(4.0), 4.0);
        assert_eq!(nice_ceiling(730.0), 800.0);
        assert_eq!(nice_ceiling(0.013), 0.02);
        assert_eq!(short(0.0), "0");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(1250.0), "1.25k");
        assert_eq!(short(4_000_000.0), "4M");
        assert_eq!(short(0.25), "0.25");
    }
}
