//! The real shops' own schemas (`tests/fixtures/shops/`, see REQUIREMENTS.md there) load, with their
//! seeds, into fresh databases on the real servers: WooCommerce and PrestaShop on MariaDB
//! (`COFFERDAM_TEST_MYSQL`), Saleor on PostgreSQL (`COFFERDAM_TEST_PG`). Each test checks what an
//! importer relies on: every SKU of the example site's catalog is one product of the shop, found the
//! way the shop finds it; the shop's own orders add up; its counters stand above MAX(id).

use crate::support::*;
use cofferdam::config::Site;
use sqlx::{AnyConnection, Connection, Row};
use std::path::PathBuf;

fn fixture(file: &str) -> PathBuf {
    repo_root().join("tests/fixtures/shops").join(file)
}

fn catalog_skus() -> Vec<String> {
    Site::load(&repo_root()).unwrap().config.catalog.into_iter().map(|p| p.sku.to_string()).collect()
}

/// A fresh database with the shop's schema and seed, or None (and a note) when `var` is unset.
async fn shop(var: &str, name: &str, schema: &str, seed: &str) -> Option<AnyConnection> {
    let Ok(admin_url) = std::env::var(var).map(|u| u.trim().to_string()) else {
        eprintln!("{var} is not set: the {name} fixture is not loaded");
        return None;
    };
    if admin_url.is_empty() {
        eprintln!("{var} is empty: the {name} fixture is not loaded");
        return None;
    }
    let url = scratch_database(&admin_url, &format!("shops_{name}")).await;
    let mut conn = AnyConnection::connect(&url).await.unwrap();
    load_sql_file(&mut conn, &fixture(schema)).await;
    load_sql_file(&mut conn, &fixture(seed)).await;
    Some(conn)
}

/// Every column of every row as text (MySQL hands text back as bytes through the `Any` driver).
async fn rows(conn: &mut AnyConnection, sql: &str) -> Vec<Vec<String>> {
    let rows = sqlx::query(sql).fetch_all(&mut *conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let text = |r: &sqlx::any::AnyRow, i| {
        r.try_get::<String, _>(i).unwrap_or_else(|_| String::from_utf8(r.get::<Vec<u8>, _>(i)).unwrap())
    };
    rows.iter().map(|r| (0..r.columns().len()).map(|i| text(r, i)).collect()).collect()
}

async fn one(conn: &mut AnyConnection, sql: &str) -> String {
    let rows = rows(conn, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone()
}

/// MariaDB's AUTO_INCREMENT counter of a table in the current database.
async fn auto_increment(conn: &mut AnyConnection, table: &str) -> i64 {
    let sql = format!(
        "SELECT CAST(AUTO_INCREMENT AS CHAR) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}'"
    );
    one(conn, &sql).await.parse().unwrap()
}

#[tokio::test]
async fn woocommerce_schema_and_seed_load_into_mariadb_with_the_catalog_skus() {
    let Some(mut db) =
        shop("COFFERDAM_TEST_MYSQL", "woocommerce", "woocommerce.mysql.sql", "woocommerce.seed.sql").await
    else {
        return;
    };
    for sku in catalog_skus() {
        // WC_Product_Data_Store_CPT::get_product_id_by_sku()
        let found = rows(
            &mut db,
            &format!(
                "SELECT CAST(posts.ID AS CHAR), posts.post_type FROM wp_posts posts \
                 INNER JOIN wp_wc_product_meta_lookup lookup ON posts.ID = lookup.product_id \
                 WHERE posts.post_type IN ('product', 'product_variation') AND posts.post_status != 'trash' \
                 AND lookup.sku = '{sku}'"
            ),
        )
        .await;
        assert_eq!(found.len(), 1, "SKU {sku} is not one WooCommerce product: {found:?}");
    }
    // Two orders, each on its placeholder post, each total = its lines' net + tax.
    let orders = rows(
        &mut db,
        "SELECT CAST(o.id AS CHAR), o.status, CAST(o.total_amount AS CHAR), \
         CAST((SELECT SUM(CAST(m.meta_value AS DECIMAL(26,8))) FROM wp_woocommerce_order_items i \
               JOIN wp_woocommerce_order_itemmeta m ON m.order_item_id = i.order_item_id \
               WHERE i.order_id = o.id AND i.order_item_type = 'line_item' \
               AND m.meta_key IN ('_line_total', '_line_tax')) AS CHAR) \
         FROM wp_wc_orders o JOIN wp_posts p ON p.ID = o.id AND p.post_type = 'shop_order_placehold' \
         ORDER BY o.id",
    )
    .await;
    assert_eq!(orders.len(), 2, "{orders:?}");
    for o in &orders {
        assert_eq!(o[2], o[3], "order {} total against its lines", o[0]);
    }
    let max_post: i64 = one(&mut db, "SELECT CAST(MAX(ID) AS CHAR) FROM wp_posts").await.parse().unwrap();
    assert!(auto_increment(&mut db, "wp_posts").await > max_post + 1, "wp_posts counter above MAX(ID)");
}

#[tokio::test]
async fn prestashop_schema_and_seed_load_into_mariadb_with_the_catalog_skus() {
    let Some(mut db) = shop("COFFERDAM_TEST_MYSQL", "prestashop", "prestashop.mysql.sql", "prestashop.seed.sql").await
    else {
        return;
    };
    for sku in catalog_skus() {
        // A combination's reference first, else the product's (Product::getIdByReference() and
        // Combination::getIdByReference() in classes/).
        let found = rows(
            &mut db,
            &format!(
                "SELECT CAST(id_product AS CHAR), CAST(id_product_attribute AS CHAR) FROM ps_product_attribute \
                 WHERE reference = '{sku}' \
                 UNION ALL SELECT CAST(id_product AS CHAR), '0' FROM ps_product WHERE reference = '{sku}'"
            ),
        )
        .await;
        assert_eq!(found.len(), 1, "SKU {sku} is not one PrestaShop product or combination: {found:?}");
    }
    let orders = rows(
        &mut db,
        "SELECT o.reference, CAST(o.total_paid_tax_incl AS CHAR), \
         CAST((SELECT SUM(d.total_price_tax_incl) FROM ps_order_detail d WHERE d.id_order = o.id_order) AS CHAR), \
         CAST(o.current_state AS CHAR) FROM ps_orders o \
         JOIN ps_cart c ON c.id_cart = o.id_cart JOIN ps_customer cu ON cu.id_customer = o.id_customer \
         ORDER BY o.id_order",
    )
    .await;
    assert_eq!(orders.len(), 2, "{orders:?}");
    for o in &orders {
        assert_eq!(o[1], o[2], "order {} total against its details", o[0]);
        assert!(o[0].len() == 9 && o[0].chars().all(|c| c.is_ascii_uppercase()), "reference {}", o[0]);
    }
    let max_order: i64 = one(&mut db, "SELECT CAST(MAX(id_order) AS CHAR) FROM ps_orders").await.parse().unwrap();
    assert!(auto_increment(&mut db, "ps_orders").await > max_order + 1, "ps_orders counter above MAX(id_order)");
}

#[tokio::test]
async fn saleor_schema_and_seed_load_into_postgresql_with_the_catalog_skus() {
    let Some(mut db) = shop("COFFERDAM_TEST_PG", "saleor", "saleor.postgres.sql", "saleor.seed.sql").await else {
        return;
    };
    for sku in catalog_skus() {
        let found =
            rows(&mut db, &format!("SELECT CAST(id AS TEXT) FROM product_productvariant WHERE sku = '{sku}'")).await;
        assert_eq!(found.len(), 1, "SKU {sku} is not one Saleor variant: {found:?}");
    }
    let orders = rows(
        &mut db,
        "SELECT CAST(o.number AS TEXT), CAST(o.total_gross_amount AS TEXT), \
         CAST(SUM(l.total_price_gross_amount) AS TEXT), CAST(o.lines_count AS TEXT), CAST(COUNT(l.id) AS TEXT) \
         FROM order_order o JOIN order_orderline l ON l.order_id = o.id \
         JOIN channel_channel c ON c.id = o.channel_id AND c.currency_code = o.currency \
         GROUP BY o.id ORDER BY o.number",
    )
    .await;
    assert_eq!(orders.len(), 2, "{orders:?}");
    for o in &orders {
        assert_eq!(o[1], o[2], "order #{} total against its lines", o[0]);
        assert_eq!(o[3], o[4], "order #{} lines_count", o[0]);
    }
    let max_number: i64 = one(&mut db, "SELECT CAST(MAX(number) AS TEXT) FROM order_order").await.parse().unwrap();
    let counter: i64 =
        one(&mut db, "SELECT CAST(last_value AS TEXT) FROM order_order_number_seq").await.parse().unwrap();
    assert!(counter > max_number, "order_order_number_seq ({counter}) above MAX(number) ({max_number})");
}
