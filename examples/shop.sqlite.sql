-- The example shop's schema (SQLite). The importer of the example site maps into it.
-- SQLite does not enforce declared lengths, but `cofferdam import` holds values to them all the same,
-- so a dry run against this file says what PostgreSQL or MariaDB would refuse.
CREATE TABLE users (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  email TEXT NOT NULL UNIQUE,
  given_name VARCHAR(100) NOT NULL,
  family_name VARCHAR(100) NOT NULL,
  newsletter INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
CREATE TABLE orders (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id INTEGER NOT NULL REFERENCES users(id),
  ref TEXT UNIQUE,
  number VARCHAR(20) UNIQUE,
  ship_to VARCHAR(100),
  street VARCHAR(100),
  postcode VARCHAR(10),
  city VARCHAR(60),
  country CHAR(2),
  phone VARCHAR(30),
  item_count INTEGER NOT NULL DEFAULT 0,
  total_cents INTEGER NOT NULL,
  currency TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'new',
  -- What the payment log says (payment.status, .amount, .provider, .id): minor units paid, the
  -- provider and its payment ID, when it was confirmed.
  paid_cents INTEGER NOT NULL DEFAULT 0,
  payment_provider VARCHAR(20),
  payment_id VARCHAR(255),
  paid_at TEXT,
  created_at TEXT NOT NULL
);
CREATE TABLE order_items (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  order_id INTEGER NOT NULL REFERENCES orders(id),
  sku TEXT NOT NULL,
  name TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  unit_cents INTEGER NOT NULL
);
CREATE TABLE subscribers (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  email TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL
);
