//! Payment hand-off: a form's 303 may go to a provider's hosted payment page ([`link`]), and
//! the provider's signed webhook ([`hook`], [`stripe`]) is written to the payment log ([`log`],
//! format in [`record`]) under the same group commit as the forms. [`ledger`] joins the log to
//! the orders by reference, for `stats` and `import`.

pub mod hook;
pub mod ledger;
pub mod link;
pub mod log;
pub mod record;
pub mod stripe;

pub use ledger::{Ledger, OrderPayment};
pub use record::{read_payments, Payment, PaymentStatus, Provider, PAYMENTS_DIR, PAYMENT_VERSION};

use crate::config::Site;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("collect.production is on and [payments.stripe] is set, but ${0} holds no signing secret: set it to the endpoint's `whsec_…` secret")]
    NoSecret(String),
    #[error("{}: cannot recover the payment log: {source}", .path.display())]
    Recover {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The webhook side: the provider's verification and the log it writes to. Another provider
/// (Mollie, PayPal) would be another hook beside `stripe`, writing the same [`Payment`]s.
pub struct Payments {
    stripe: StripeHook,
    log: log::PaymentLog,
}

struct StripeHook {
    secrets: Vec<String>,
    tolerance_secs: u64,
}

impl Payments {
    /// Starts the payment log when a provider's webhook is configured (`[payments.stripe]`).
    pub fn start(site: &Site) -> Result<Option<Arc<Payments>>, PaymentError> {
        let config = &site.config;
        let Some(stripe) = &config.payments.stripe else { return Ok(None) };
        let secrets = stripe.secrets();
        if secrets.is_empty() {
            if config.collect.production {
                return Err(PaymentError::NoSecret(stripe.secret_env.clone()));
            }
            tracing::warn!(
                "payments: ${} is not set: every Stripe event is refused (400) until it holds the endpoint's secret",
                stripe.secret_env
            );
        }
        let c = &config.collect;
        let collected = site.collected_dir();
        let settings = log::Settings {
            collected: collected.clone(),
            node: config.server.node.clone(),
            segment_max_bytes: c.segment_max_bytes,
            segment_max_age: Duration::from_secs(c.segment_max_age_secs),
            max_batch: c.max_batch,
            queue_capacity: c.queue_capacity,
        };
        let log = log::PaymentLog::start(settings)
            .map_err(|source| PaymentError::Recover { path: collected.join(PAYMENTS_DIR), source })?;
        let stripe = StripeHook { secrets, tolerance_secs: stripe.tolerance_secs };
        Ok(Some(Arc::new(Payments { stripe, log })))
    }

    /// `POST /hook/stripe`.
    pub fn router<S: Clone + Send + Sync + 'static>(self: &Arc<Self>) -> axum::Router<S> {
        axum::Router::new().route("/hook/stripe", axum::routing::post(hook::stripe)).with_state(self.clone())
    }

    pub async fn shutdown(&self) {
        self.log.shutdown().await;
    }
}
