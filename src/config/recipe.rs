//! Import recipes for real shops, shipped in the binary: each file of `examples/recipes/` is the
//! `[import]` part of a site's config that maps the example order form onto one shop's own
//! tables. `cofferdam init --shop NAME` writes the example site with its `[import]` replaced by
//! the recipe, and the recipe tests import through the very same text.

/// A shop a recipe is shipped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shop {
    /// WooCommerce with HPOS order tables, on MariaDB/MySQL.
    Woocommerce,
    /// Saleor, on PostgreSQL.
    Saleor,
}

impl Shop {
    /// As `--shop` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Shop::Woocommerce => "woocommerce",
            Shop::Saleor => "saleor",
        }
    }

    /// The recipe: a `[import]` section and its subsections, as TOML text.
    pub fn recipe(self) -> &'static str {
        match self {
            Shop::Woocommerce => include_str!("../../examples/recipes/woocommerce.toml"),
            Shop::Saleor => include_str!("../../examples/recipes/saleor.toml"),
        }
    }

    /// `config` (a whole `cofferdam.toml`) with everything from its `[import]` line on replaced
    /// by the recipe, or None when it has no `[import]` line.
    pub fn apply(self, config: &str) -> Option<String> {
        let at = config.find("\n[import]\n")?;
        Some(format!("{}\n{}", &config[..at], self.recipe()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;
    use std::path::Path;

    #[test]
    fn each_recipe_replaces_the_example_sites_import_and_compiles() {
        let example = include_str!("../../cofferdam.toml");
        for (shop, orders, offer_updates) in [
            (Shop::Woocommerce, "wp_wc_orders", ["wp_wc_orders", "wp_wc_order_stats"].as_slice()),
            (Shop::Saleor, "order_order", &["order_order"]),
        ] {
            let text = shop.apply(example).unwrap();
            let config = Config::parse(&text, Path::new("cofferdam.toml")).unwrap_or_else(|e| panic!("{shop:?}: {e}"));
            // The rest of the example site is kept as it is.
            let example_config = Config::parse(example, Path::new("cofferdam.toml")).unwrap();
            assert_eq!(config.forms.keys().collect::<Vec<_>>(), example_config.forms.keys().collect::<Vec<_>>());
            assert_eq!(config.catalog.len(), example_config.catalog.len());
            assert!(!text.contains("examples/shop."), "{shop:?}: the example shop's mapping is gone");
            let mapping = &config.import.mapping;
            assert!(mapping.tables.iter().any(|t| t.name == orders), "{shop:?}");
            let updates: Vec<&str> = mapping.forms["offer"]
                .iter()
                .filter(|e| e.update_parent)
                .map(|e| mapping.tables[e.table].name.as_str())
                .collect();
            assert_eq!(updates, offer_updates, "{shop:?}: the offer adds to its order's totals");
            assert!(!mapping.forms.contains_key("newsletter"), "{shop:?}: sign-ups have no table in the shop");
        }
        assert_eq!(Shop::Saleor.apply("[site]\ntitle = \"x\"\n"), None);
    }
}
