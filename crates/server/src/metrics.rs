//! Prometheus metrics, served at `/metrics`. Labels are fixed, small sets (request kinds,
//! error codes): never an account, a device, a number or anything a client chooses.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub authenticated_devices: Gauge,
    pub queued_messages: Gauge,
    pub messages_received: Counter,
    pub attachments_stored: Counter,
    pub messages_delivered: Counter,
    pub messages_acked: Counter,
    pub requests: Family<Labels, Counter>,
    pub errors: Family<Labels, Counter>,
    pub rate_limited: Family<Labels, Counter>,
    pub connections_refused: Counter,
    pub calls_placed: Counter,
    pub call_misfits: Family<Labels, Counter>,
    /// The embedded relay's datagrams by outcome (relayed, or dropped and why).
    pub relay_datagrams: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rampart");
        let m = Self {
            registry: Registry::default(),
            connections: Gauge::default(),
            authenticated_devices: Gauge::default(),
            queued_messages: Gauge::default(),
            messages_received: Counter::default(),
            attachments_stored: Counter::default(),
            messages_delivered: Counter::default(),
            messages_acked: Counter::default(),
            requests: Family::default(),
            errors: Family::default(),
            rate_limited: Family::default(),
            connections_refused: Counter::default(),
            calls_placed: Counter::default(),
            call_misfits: Family::default(),
            relay_datagrams: Family::default(),
        };
        registry.register(
            "relay_datagrams",
            "Datagrams at the embedded TURN relay, by outcome (relayed or dropped, and why)",
            m.relay_datagrams.clone(),
        );
        registry.register("calls_placed", "Calls placed (ring notices sent)", m.calls_placed.clone());
        registry.register(
            "call_misfits",
            "Call requests refused for not fitting the call schema, by reason",
            m.call_misfits.clone(),
        );
        registry.register("connections", "Open WebSocket sessions", m.connections.clone());
        registry.register(
            "authenticated_devices",
            "Sessions with an authenticated device",
            m.authenticated_devices.clone(),
        );
        registry.register(
            "queued_messages",
            "Messages waiting in device queues (sampled)",
            m.queued_messages.clone(),
        );
        registry.register("messages_received", "Messages accepted from senders", m.messages_received.clone());
        registry.register(
            "attachments_stored",
            "Attachment uploads completed into the blob store",
            m.attachments_stored.clone(),
        );
        registry.register(
            "messages_delivered",
            "Message copies pushed to devices",
            m.messages_delivered.clone(),
        );
        registry.register(
            "messages_acked",
            "Message copies acknowledged and deleted",
            m.messages_acked.clone(),
        );
        registry.register("requests", "Requests by kind", m.requests.clone());
        registry.register("errors", "Errors answered, by code", m.errors.clone());
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused at the connection cap",
            m.connections_refused.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn request(&self, kind: &'static str) {
        self.requests.get_or_create(&[("kind", kind)]).inc();
    }

    pub fn error(&self, code: &'static str) {
        self.errors.get_or_create(&[("code", code)]).inc();
    }

    pub fn call_misfit(&self, reason: &'static str) {
        self.call_misfits.get_or_create(&[("reason", reason)]).inc();
    }

    /// Bring a relay counter up to `total` (the relay keeps its own running totals).
    pub fn relay_total(&self, outcome: &'static str, total: u64) {
        let counter = self.relay_datagrams.get_or_create(&[("outcome", outcome)]);
        let seen = counter.get();
        if total > seen {
            counter.inc_by(total - seen);
        }
    }

    pub fn limited(&self, limit: &'static str) {
        self.rate_limited.get_or_create(&[("limit", limit)]).inc();
    }
}
