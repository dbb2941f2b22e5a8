//! The approvals webhook: a JSON POST for each new request and each decision, so that a chat
//! bot or ticketing system can tell approvers. Delivery runs on its own task with retries; a
//! slow or failing endpoint never blocks a session (events beyond the queue are dropped, with
//! a warning, rather than waited for).

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

use super::service::Event;

/// Events waiting for delivery before new ones are dropped.
const QUEUE: usize = 1024;
/// Attempts per event.
const ATTEMPTS: u32 = 4;

/// A configured webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    tx: mpsc::Sender<String>,
}

// === impl Webhook ===

impl Webhook {
    /// Starts delivering to `url`, each attempt bounded by `timeout`.
    ///
    /// # Errors
    /// When the HTTP client can't be built (TLS roots).
    pub fn start(url: String, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        tokio::spawn(async move {
            while let Some(body) = rx.recv().await {
                deliver(&client, &url, body).await;
            }
        });
        Ok(Webhook { tx })
    }

    /// Queues `event` for delivery; never waits.
    pub fn send(&self, event: &Event) {
        let body = match serde_json::to_string(event) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "Approval webhook: event not serializable");
                return;
            }
        };
        if self.tx.try_send(body).is_err() {
            warn!("Approval webhook: delivery queue full or stopped; event dropped");
        }
    }
}

/// Posts one event, retrying with backoff on failure or a non-2xx answer.
async fn deliver(client: &reqwest::Client, url: &str, body: String) {
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let why = match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        if attempt == ATTEMPTS {
            warn!(error = %why, attempts = ATTEMPTS, "Approval webhook failed; event dropped");
            return;
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}
