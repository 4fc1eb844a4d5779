//! Images too heavy for their role: over the `[check] image_budget`, or far larger in pixels
//! than the page shows them. Where the format tells its pixel size (PNG, BMP, GIF, JPEG), the
//! finding says what a WebP or JPEG of it would weigh.

use super::findings::{kb, Finding, Severity};
use super::{Ctx, Kind, Target};
use std::collections::BTreeMap;
use std::io::Read;

/// Typical bytes per pixel of a photograph as lossy WebP (q≈80, ~0.8 bit/px) and JPEG
/// (q≈80, ~1.6 bit/px): rough, and said to be estimates.
const WEBP_BYTES_PER_PIXEL: f64 = 0.10;
const JPEG_BYTES_PER_PIXEL: f64 = 0.20;

pub(crate) fn check(ctx: &Ctx, landing_path: &[String], out: &mut Vec<Finding>) {
    let budget = ctx.site.config.check.image_budget;
    // Image file → the pages that show it, the landing path's first.
    let mut shown_on: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for doc in &ctx.docs {
        for r in doc.refs.iter().filter(|r| matches!(r.kind, Kind::Image | Kind::Icon)) {
            if let Target::File(p) = &r.target {
                let routes = shown_on.entry(p.as_str()).or_default();
                if !routes.contains(&doc.page.route) {
                    routes.push(doc.page.route.clone());
                }
            }
        }
    }
    for routes in shown_on.values_mut() {
        routes.sort_by_key(|r| landing_path.iter().position(|l| l == r).unwrap_or(usize::MAX));
    }
    for file in ctx.manifest.files.iter().filter(|f| f.content_type.starts_with("image/")) {
        let routes = shown_on.get(file.path.as_str()).cloned().unwrap_or_default();
        let page = routes.first().cloned().unwrap_or_else(|| "(not shown on any page)".into());
        let size = file.br_size.or(file.gz_size).unwrap_or(file.size).min(file.size);
        let dims = dimensions(&ctx.dist.join(&file.path));
        if size > budget {
            let on_path = routes.iter().any(|r| landing_path.contains(r));
            out.push(Finding {
                severity: Severity::Warning,
                code: "image-size",
                page: page.clone(),
                location: Some(super::shown(&ctx.dist.join(&file.path))),
                message: format!(
                    "/{} weighs {}{}, over the image budget of {}{}",
                    file.path,
                    kb(size),
                    dims.map(|d| format!(" ({}×{} px, {})", d.width, d.height, d.format)).unwrap_or_default(),
                    kb(budget),
                    if on_path { ", on the landing path" } else { "" }
                ),
                fix: saving(file.size, dims, &file.path),
            });
        }
        // Shown much smaller than it is: the visitor downloads pixels nobody sees.
        if let Some(d) = dims {
            if let Some((route, line, shown_w)) = display_width(ctx, &file.path) {
                if d.width > 2 * shown_w && size > 20 * 1024 {
                    let doc = ctx.doc(&route).expect("route of a parsed page");
                    let target_w = 2 * shown_w;
                    let ratio = (target_w as f64 / d.width as f64).powi(2);
                    out.push(Finding {
                        severity: Severity::Warning,
                        code: "image-dimensions",
                        page: route.clone(),
                        location: Some(ctx.page_location(doc.page, line)),
                        message: format!(
                            "/{} is {}×{} px but shown {} px wide: most of its {} are pixels nobody sees",
                            file.path,
                            d.width,
                            d.height,
                            shown_w,
                            kb(size)
                        ),
                        fix: format!(
                            "resize it to {} px wide (twice the shown width, for sharp high-density screens): about {} instead",
                            target_w,
                            kb((size as f64 * ratio) as u64)
                        ),
                    });
                }
            }
        }
    }
}

/// The `width` attribute of the first `<img>` showing `file`, with its page and line.
fn display_width(ctx: &Ctx, file: &str) -> Option<(String, usize, u32)> {
    for doc in &ctx.docs {
        let base = doc.page.route.rfind('/').map(|i| doc.page.route[..=i].to_string()).unwrap_or("/".into());
        for t in doc.tags.iter().filter(|t| t.name == "img" && !t.end) {
            let Some(src) = t.attr("src") else { continue };
            if ctx.resolve(&base, src) != Target::File(file.to_string()) {
                continue;
            }
            if let Some(w) = t.attr("width").and_then(|w| w.trim().trim_end_matches("px").parse::<u32>().ok()) {
                return Some((doc.page.route.clone(), t.line, w.max(1)));
            }
        }
    }
    None
}

fn saving(size: u64, dims: Option<Dims>, path: &str) -> String {
    let Some(d) = dims else {
        return "compress it (WebP or JPEG for photographs, SVG for drawings) or make it smaller".into();
    };
    let pixels = d.width as f64 * d.height as f64;
    let webp = (pixels * WEBP_BYTES_PER_PIXEL) as u64;
    let jpeg = (pixels * JPEG_BYTES_PER_PIXEL) as u64;
    let pct = |new: u64| 100 - (new * 100 / size.max(1)).min(100);
    match d.format {
        "PNG" | "BMP" | "GIF" if webp < size * 8 / 10 => format!(
            "if it is a photograph, save it as WebP (about {}, {}% less, estimated at 0.8 bit/px) or JPEG (about {}, {}% less); \
             keep PNG only for drawings with few colours, or use SVG",
            kb(webp),
            pct(webp),
            kb(jpeg),
            pct(jpeg)
        ),
        "JPEG" => {
            let w = size * 7 / 10;
            format!("save it as WebP (typically 25-35% smaller than JPEG at the same quality: about {}) or lower its quality/dimensions", kb(w))
        }
        _ => format!(
            "it is already compact for its {}×{} px: make it smaller in pixels, or try lossless WebP (typically ~25% smaller than {})",
            d.width,
            d.height,
            path.rsplit('.').next().unwrap_or("it").to_ascii_uppercase()
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    pub width: u32,
    pub height: u32,
    pub format: &'static str,
}

/// Pixel size from the file's header (PNG, BMP, GIF, JPEG), reading at most 64 KiB.
fn dimensions(path: &std::path::Path) -> Option<Dims> {
    let mut head = Vec::with_capacity(64 * 1024);
    std::fs::File::open(path).ok()?.take(64 * 1024).read_to_end(&mut head).ok()?;
    parse_dimensions(&head)
}

pub(crate) fn parse_dimensions(b: &[u8]) -> Option<Dims> {
    let be32 = |i: usize| b.get(i..i + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
    let le32 = |i: usize| b.get(i..i + 4).map(|s| i32::from_le_bytes([s[0], s[1], s[2], s[3]]));
    let le16 = |i: usize| b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]) as u32);
    let be16 = |i: usize| b.get(i..i + 2).map(|s| u16::from_be_bytes([s[0], s[1]]) as u32);
    let dims = |w: u32, h: u32, format| (w > 0 && h > 0).then_some(Dims { width: w, height: h, format });
    if b.starts_with(b"\x89PNG\r\n\x1a\n") && b.get(12..16) == Some(b"IHDR") {
        return dims(be32(16)?, be32(20)?, "PNG");
    }
    if b.starts_with(b"BM") {
        return dims(le32(18)?.unsigned_abs(), le32(22)?.unsigned_abs(), "BMP");
    }
    if b.starts_with(b"GIF8") {
        return dims(le16(6)?, le16(8)?, "GIF");
    }
    if b.starts_with(&[0xFF, 0xD8]) {
        // Walk the markers to the frame header (SOF0..SOF15 but DHT, JPG, DAC).
        let mut i = 2;
        while i + 9 < b.len() {
            if b[i] != 0xFF {
                return None;
            }
            let marker = b[i + 1];
            if marker == 0xFF {
                i += 1;
                continue;
            }
            let len = be16(i + 2)? as usize;
            if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
                return dims(be16(i + 7)?, be16(i + 5)?, "JPEG");
            }
            i += 2 + len;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_dimensions() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend(2000u32.to_be_bytes());
        png.extend(1500u32.to_be_bytes());
        assert_eq!(parse_dimensions(&png), Some(Dims { width: 2000, height: 1500, format: "PNG" }));
        let mut gif = b"GIF89a".to_vec();
        gif.extend(640u16.to_le_bytes());
        gif.extend(480u16.to_le_bytes());
        assert_eq!(parse_dimensions(&gif).map(|d| (d.width, d.height)), Some((640, 480)));
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 11, 8, 0x01, 0x00, 0x02, 0x00, 3, 0, 0];
        assert_eq!(parse_dimensions(&jpeg), Some(Dims { width: 512, height: 256, format: "JPEG" }));
        assert_eq!(parse_dimensions(b"<svg"), None);
    }

    #[test]
    fn photo_png_gets_a_webp_estimate() {
        let fix = saving(4_000_000, Some(Dims { width: 1000, height: 1000, format: "PNG" }), "a.png");
        assert!(fix.contains("WebP (about 97.7 KB, 98% less"), "{fix}");
    }
}
