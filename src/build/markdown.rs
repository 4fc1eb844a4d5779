//! Markdown → HTML with pulldown-cmark (tables, footnotes, strikethrough), rewriting links and
//! images that point at colocated assets to their fingerprinted names.

use super::assets::{is_local_file_reference, Assets};
use super::content::Page;
use super::BuildError;
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

pub fn to_html(page: &Page, assets: &Assets) -> Result<String, BuildError> {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_SMART_PUNCTUATION;
    let mut error = None;
    let events = Parser::new_ext(&page.body, options)
        .into_offset_iter()
        .map(|(event, range)| {
            let mut rewrite = |url: CowStr<'static>| -> CowStr<'static> {
                if !is_local_file_reference(&url) {
                    return url;
                }
                match assets.resolve(&page.dir, &url) {
                    Some(target) => target.into(),
                    None => {
                        if error.is_none() {
                            let line = page.body_line + page.body[..range.start].matches('\n').count();
                            error = Some(BuildError::at(
                                &page.source,
                                Some(line),
                                format!("{url}: no such file in the content folder"),
                            ));
                        }
                        url
                    }
                }
            };
            match event.into_static() {
                Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
                    Event::Start(Tag::Image { link_type, dest_url: rewrite(dest_url), title, id })
                }
                Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
                    Event::Start(Tag::Link { link_type, dest_url: rewrite(dest_url), title, id })
                }
                other => other,
            }
        })
        .collect::<Vec<_>>();
    if let Some(e) = error {
        return Err(e);
    }
    let mut html = String::with_capacity(page.body.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    Ok(html)
}
