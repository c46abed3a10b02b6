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
    /// Sentinel's actions, by kind.
    pub sentinel_actions: Family<Labels, Counter>,
    /// Console sign-ins, by outcome (ok, failed).
    pub console_logins: Family<Labels, Counter>,
    /// Proof-of-work challenges for calls, by outcome (issued, passed, failed).
    pub sentinel_challenges: Family<Labels, Counter>,
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
            sentinel_actions: Family::default(),
            console_logins: Family::default(),
            sentinel_challenges: Family::default(),
        };
        registry.register(
            "sentinel_challenges",
            "Proof-of-work challenges for calls, by outcome (issued, passed, failed)",
            m.sentinel_challenges.clone(),
        );
        registry.register(
            "console_logins",
            "Operator console sign-ins, by outcome (ok, failed)",
            m.console_logins.clone(),
        );
        registry.register(
            "sentinel_actions",
            "Actions Sentinel's policy took, by kind (suspend_calling, block_network...)",
            m.sentinel_actions.clone(),
        );
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

/// The OpenMetrics 1.0 text format's content type.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus 0.0.4 text format's content type.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which text format a scraper asked for in its `Accept` header: OpenMetrics when it names it
/// (Prometheus does), else the Prometheus 0.0.4 text format, which every tool reads.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            // `q=0` means "not this one".
            let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.trim().parse() == Ok(0.0)));
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

impl Metrics {
    /// The OpenMetrics text exposition (what the encoder writes): counter families are named
    /// without `_total`, their samples with it, and the text ends with `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The same figures in the Prometheus 0.0.4 text format, for a scraper that did not ask
    /// for OpenMetrics: a counter's family is named as its samples are (`…_total`), and there
    /// is no `# EOF` or `# UNIT` line. Served under that format's own content type, so that a
    /// counter stays a counter.
    pub fn render_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.render())
    }

    pub fn request(&self, kind: &'static str) {
        self.requests.get_or_create(&[("kind", kind)]).inc();
    }

    pub fn error(&self, code: &'static str) {
        self.errors.get_or_create(&[("code", code)]).inc();
    }

    pub fn sentinel_action(&self, action: &'static str) {
        self.sentinel_actions.get_or_create(&[("action", action)]).inc();
    }

    pub fn console_login(&self, outcome: &'static str) {
        self.console_logins.get_or_create(&[("outcome", outcome)]).inc();
    }

    pub fn sentinel_challenge(&self, outcome: &'static str) {
        self.sentinel_challenges.get_or_create(&[("outcome", outcome)]).inc();
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

/// Rewrite OpenMetrics text as Prometheus 0.0.4 text (for what our encoder writes: counters,
/// gauges, no exemplars or created stamps).
fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + 16 * counters.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(line.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prometheus_text_names_counter_families_as_their_samples() {
        let metrics = Metrics::default();
        metrics.calls_placed.inc();
        metrics.request("send");
        metrics.connections.set(2);
        let open = metrics.render();
        assert!(open.contains("# TYPE rampart_calls_placed counter\n"), "{open}");
        assert!(open.ends_with("# EOF\n"), "{open}");
        let text = metrics.render_prometheus();
        assert!(text.contains("# TYPE rampart_calls_placed_total counter\n"), "{text}");
        assert!(text.contains("# HELP rampart_calls_placed_total Calls placed"), "{text}");
        assert!(text.contains("rampart_calls_placed_total 1\n"), "{text}");
        assert!(text.contains("rampart_requests_total{kind=\"send\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE rampart_connections gauge\nrampart_connections 2\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn openmetrics_is_served_only_to_who_asks_for_it() {
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        // What Prometheus sends.
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some("application/openmetrics-text; q=0, text/plain")));
    }
}
