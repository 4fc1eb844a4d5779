-- The example shop's schema (PostgreSQL).
CREATE TABLE users (
  id BIGSERIAL PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  given_name VARCHAR(100) NOT NULL,
  family_name VARCHAR(100) NOT NULL,
  newsletter BOOLEAN NOT NULL DEFAULT FALSE,
  created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE orders (
  id BIGSERIAL PRIMARY KEY,
  user_id BIGINT NOT NULL REFERENCES users(id),
  ref TEXT UNIQUE,
  number VARCHAR(20) UNIQUE,
  ship_to VARCHAR(100),
  street VARCHAR(100),
  postcode VARCHAR(10),
  city VARCHAR(60),
  country CHAR(2),
  phone VARCHAR(30),
  item_count INTEGER NOT NULL DEFAULT 0,
  total_cents BIGINT NOT NULL,
  currency CHAR(3) NOT NULL,
  status TEXT NOT NULL DEFAULT 'new',
  -- What the payment log says (payment.status, .amount, .provider, .id): minor units paid, the
  -- provider and its payment ID, when it was confirmed.
  paid_cents BIGINT NOT NULL DEFAULT 0,
  payment_provider VARCHAR(20),
  payment_id VARCHAR(255),
  paid_at TIMESTAMPTZ,
  created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE order_items (
  id BIGSERIAL PRIMARY KEY,
  order_id BIGINT NOT NULL REFERENCES orders(id),
  sku TEXT NOT NULL,
  name TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  unit_cents BIGINT NOT NULL
);
CREATE TABLE subscribers (
  id SERIAL PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  created_at TIMESTAMPTZ NOT NULL
);
