-- The example shop's schema (MySQL / MariaDB).
CREATE TABLE users (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  email VARCHAR(254) NOT NULL UNIQUE,
  given_name VARCHAR(100) NOT NULL,
  family_name VARCHAR(100) NOT NULL,
  newsletter TINYINT(1) NOT NULL DEFAULT 0,
  created_at DATETIME(6) NOT NULL
) ENGINE=InnoDB;
CREATE TABLE orders (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  user_id BIGINT NOT NULL,
  ref VARCHAR(100) UNIQUE,
  number VARCHAR(20) UNIQUE,
  ship_to VARCHAR(100),
  street VARCHAR(100),
  postcode VARCHAR(10),
  city VARCHAR(60),
  country CHAR(2),
  phone VARCHAR(30),
  item_count INT NOT NULL DEFAULT 0,
  total_cents BIGINT NOT NULL,
  currency CHAR(3) NOT NULL,
  status VARCHAR(20) NOT NULL DEFAULT 'new',
  -- What the payment log says (payment.status, .amount, .provider, .id): minor units paid, the
  -- provider and its payment ID, when it was confirmed.
  paid_cents BIGINT NOT NULL DEFAULT 0,
  payment_provider VARCHAR(20),
  payment_id VARCHAR(255),
  paid_at DATETIME(6),
  created_at DATETIME(6) NOT NULL,
  FOREIGN KEY (user_id) REFERENCES users(id)
) ENGINE=InnoDB;
CREATE TABLE order_items (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  order_id BIGINT NOT NULL,
  sku VARCHAR(64) NOT NULL,
  name VARCHAR(200) NOT NULL,
  quantity INT NOT NULL,
  unit_cents BIGINT NOT NULL,
  FOREIGN KEY (order_id) REFERENCES orders(id)
) ENGINE=InnoDB;
CREATE TABLE subscribers (
  id INT AUTO_INCREMENT PRIMARY KEY,
  email VARCHAR(254) NOT NULL UNIQUE,
  created_at DATETIME(6) NOT NULL
) ENGINE=InnoDB;
