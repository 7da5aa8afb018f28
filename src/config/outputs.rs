//! What deflect gathers and tells besides mitigations: `forensics` (captures), `alerts`, `ioc`
//! (indicator lists), `sflow` and `netflow` (the collectors).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::alert;
use crate::collector;
use crate::diag::positive_duration;
use crate::pcap;

/// Forensic captures, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForensicsConfig {
    /// How long after an attack starts its packets are captured (default 60s).
    pub pcap_duration: Option<Spanned<String>>,
    /// Largest capture file, bytes (default 20 MB).
    pub pcap_max_bytes: Option<u64>,
    /// Days captures are kept (default 7).
    pub keep_days: Option<u32>,
}

/// One indicator list, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IocConfig {
    pub name: Spanned<String>,
    /// One address or prefix per line; `#` and `;` start comments (DROP-list format).
    pub file: PathBuf,
}

/// One alert sink, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    pub name: Spanned<String>,
    pub kind: alert::SinkKind,
    /// The webhook URL (Slack, Discord, webhook), or the API's (PagerDuty, Opsgenie: defaults to
    /// theirs).
    pub url: Option<Spanned<String>>,
    /// Events sent; all when absent.
    #[serde(default)]
    pub events: Vec<alert::EventKind>,
    /// Webhook: HMAC key. PagerDuty: routing key. Opsgenie: API key. `env:NAME` reads it from the
    /// environment.
    pub secret: Option<Spanned<String>>,
    /// Message text with `{{field}}` placeholders.
    pub template: Option<Spanned<String>>,
    /// Per attempt (default 5s).
    pub timeout: Option<Spanned<String>>,
    /// Attempts in all (default 5).
    pub attempts: Option<u32>,
}

/// The sFlow collector, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SflowConfig {
    /// Where datagrams arrive (default 0.0.0.0:6343).
    #[serde(default = "default_sflow_listen")]
    pub listen: SocketAddr,
    /// How often estimates are handed to detection (default 1s).
    pub interval: Option<Spanned<String>>,
    /// Trusted agents, by the source address of their datagrams; others are dropped and counted.
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
}

fn default_sflow_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 6343))
}

/// The NetFlow v5/v9 and IPFIX collector, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetflowConfig {
    /// Where datagrams arrive, every version on each (default 0.0.0.0:2055 and 0.0.0.0:4739).
    #[serde(default = "default_netflow_listen")]
    pub listen: Vec<SocketAddr>,
    /// How often estimates are handed to detection (default 1s).
    pub interval: Option<Spanned<String>>,
    /// The longest an interval waits for late records (default 60s).
    pub max_delay: Option<Spanned<String>>,
    /// Trusted exporters, by the source address of their datagrams; others are dropped and counted.
    #[serde(default)]
    pub exporters: Vec<AgentConfig>,
}

fn default_netflow_listen() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([0, 0, 0, 0], 2055)),
        SocketAddr::from(([0, 0, 0, 0], 4739)),
    ]
}

/// One trusted sFlow agent or NetFlow/IPFIX exporter, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub address: Spanned<IpAddr>,
    /// Defaults to the address.
    pub name: Option<String>,
    /// Use this sampling rate instead of the one the exporter announces.
    pub sampling_rate: Option<Spanned<u32>>,
    /// The exporter sees traffic before the edge's filters (on the routers' upstream ports): what
    /// it sees is not hidden by deflect's own rules, so it can tell when an attack really ended.
    #[serde(default)]
    pub pre_filter: bool,
    /// Sparsest sampling rate believed; samples announcing more are dropped and counted.
    pub max_sampling_rate: Option<Spanned<u32>>,
    /// Most packets per second the exporter's links carry; an interval estimated above is refused.
    pub max_pps: Option<Spanned<u64>>,
    /// NetFlow/IPFIX only: how long after an interval its records are all in (the exporter's
    /// longer timeout); learned when not set.
    pub export_delay: Option<Spanned<String>>,
}

/// Checks the capture limits.
pub(super) fn forensics(
    c: &ForensicsConfig,
    err: &mut dyn FnMut(&Location, String),
) -> pcap::Limits {
    let mut pcap = pcap::Limits::default();
    if let Some(d) = &c.pcap_duration {
        if let Some(v) = positive_duration(d, "pcap_duration", "60s", err) {
            pcap.seconds = v;
        }
    }
    if let Some(b) = c.pcap_max_bytes {
        pcap.max_bytes = b;
    }
    if let Some(days) = c.keep_days {
        pcap.keep = Duration::from_secs(u64::from(days) * 86_400);
    }
    pcap
}

/// Checks the alert sinks; one whose secret comes from an unset variable is left out, and said so.
pub(super) fn alerts(
    list: &[AlertConfig],
    err: &mut dyn FnMut(&Location, String),
) -> Vec<alert::Sink> {
    let mut alerts: Vec<alert::Sink> = Vec::new();
    for a in list {
        use alert::SinkKind;
        if alerts.iter().any(|x| x.name == a.name.value) {
            err(
                &a.name.referenced,
                format!("alert {:?} is defined twice", a.name.value),
            );
        }
        let url = match (&a.url, a.kind) {
            (Some(u), _) => {
                if !u.value.starts_with("http://") && !u.value.starts_with("https://") {
                    err(
                        &u.referenced,
                        "url must start with http:// or https://".into(),
                    );
                }
                u.value.clone()
            }
            (None, SinkKind::Pagerduty) => "https://events.pagerduty.com/v2/enqueue".into(),
            (None, SinkKind::Opsgenie) => "https://api.opsgenie.com/v2/alerts".into(),
            (None, _) => {
                err(
                    &a.name.referenced,
                    "this alert needs a url (the webhook to post to)".into(),
                );
                String::new()
            }
        };
        let (secret, from_env) = match &a.secret {
            Some(s) => match s.value.strip_prefix("env:") {
                Some(var) => (std::env::var(var).unwrap_or_default(), true),
                None => (s.value.clone(), false),
            },
            None => (String::new(), false),
        };
        if secret.is_empty() && from_env {
            // Like a token from an unset variable: this sink is left out, and said so.
            tracing::warn!(
                alert = %a.name.value,
                "alert left out: its secret's environment variable is not set"
            );
            continue;
        }
        if secret.is_empty() && matches!(a.kind, SinkKind::Pagerduty | SinkKind::Opsgenie) {
            err(
                    a.secret.as_ref().map_or(&a.name.referenced, |s| &s.referenced),
                    "PagerDuty needs its routing key and Opsgenie its API key as secret (env:NAME keeps it out of the file); it is empty".into(),
                );
        }
        if let Some(t) = &a.template {
            let mut rest = t.value.as_str();
            while let Some(i) = rest.find("{{") {
                let after = &rest[i + 2..];
                let Some(j) = after.find("}}") else { break };
                let name = after[..j].trim();
                if !alert::FIELDS.contains(&name) {
                    err(
                        &t.referenced,
                        format!(
                            "template field {{{{{name}}}}} is unknown; use {}",
                            alert::FIELDS.join(", ")
                        ),
                    );
                }
                rest = &after[j + 2..];
            }
        }
        let mut timeout = Duration::from_secs(5);
        if let Some(t) = &a.timeout {
            if let Some(d) = positive_duration(t, "timeout", "5s", err) {
                timeout = d;
            }
        }
        alerts.push(alert::Sink {
            name: a.name.value.clone(),
            kind: a.kind,
            url,
            events: a.events.clone(),
            secret,
            template: a.template.as_ref().map(|t| t.value.clone()),
            timeout,
            attempts: a.attempts.unwrap_or(5).clamp(1, 20),
        });
    }
    alerts
}

/// Checks the indicator lists: (name, file).
pub(super) fn ioc(
    list: &[IocConfig],
    err: &mut dyn FnMut(&Location, String),
) -> Vec<(String, PathBuf)> {
    let mut ioc: Vec<(String, PathBuf)> = Vec::new();
    for l in list {
        if ioc.iter().any(|(n, _)| n == &l.name.value) {
            err(
                &l.name.referenced,
                format!("indicator list {:?} is defined twice", l.name.value),
            );
        }
        ioc.push((l.name.value.clone(), l.file.clone()));
    }
    ioc
}

/// Checks the sFlow collector's settings.
pub(super) fn sflow(
    c: &SflowConfig,
    err: &mut dyn FnMut(&Location, String),
) -> collector::Settings {
    let interval = interval(c.interval.as_ref(), err);
    let mut agents: Vec<collector::TrustedAgent> = Vec::new();
    for a in &c.agents {
        if let Some(d) = &a.export_delay {
            err(
                &d.referenced,
                "export_delay is for NetFlow/IPFIX exporters: sFlow samples packets as they pass; remove it".into(),
            );
        }
        let agent = trusted_agent(a, &agents, err);
        agents.push(agent);
    }
    collector::Settings {
        listen: c.listen,
        interval,
        agents,
        // Filled in from detection.trusted_sources once both are read.
        trusted: Vec::new(),
    }
}

/// Checks the NetFlow/IPFIX collector's settings.
pub(super) fn netflow(
    c: &NetflowConfig,
    err: &mut dyn FnMut(&Location, String),
) -> collector::netflow::Settings {
    let interval = interval(c.interval.as_ref(), err);
    let mut max_delay = collector::netflow::DEFAULT_MAX_DELAY;
    if let Some(d) = &c.max_delay {
        if let Some(d) = positive_duration(d, "max_delay", "60s", err) {
            max_delay = d;
        }
    }
    let mut exporters: Vec<collector::TrustedAgent> = Vec::new();
    for a in &c.exporters {
        let mut e = trusted_agent(a, &exporters, err);
        if let Some(d) = &a.export_delay {
            match crate::diag::parse_duration(&d.value) {
                Some(v) if v <= max_delay => e.export_delay = Some(v),
                Some(_) => err(
                    &d.referenced,
                    format!(
                        "export_delay {:?} is beyond max_delay ({}s): raise max_delay or lower it",
                        d.value,
                        max_delay.as_secs()
                    ),
                ),
                None => err(
                    &d.referenced,
                    format!(
                        "export_delay {:?} is not a duration; write e.g. 2s",
                        d.value
                    ),
                ),
            }
        }
        exporters.push(e);
    }
    if c.listen.is_empty() {
        err(
            &Location::UNKNOWN,
            "netflow.listen is empty: give at least one address, e.g. 0.0.0.0:2055".into(),
        );
    }
    collector::netflow::Settings {
        listen: c.listen.clone(),
        interval,
        max_delay,
        exporters,
        trusted: Vec::new(),
    }
}

/// A collector's `interval` (default 1s).
fn interval(i: Option<&Spanned<String>>, err: &mut dyn FnMut(&Location, String)) -> Duration {
    i.and_then(|i| positive_duration(i, "interval", "1s", err))
        .unwrap_or(Duration::from_secs(1))
}

/// One trusted agent or exporter, checked against the others already listed.
fn trusted_agent(
    a: &AgentConfig,
    listed: &[collector::TrustedAgent],
    err: &mut dyn FnMut(&Location, String),
) -> collector::TrustedAgent {
    if listed.iter().any(|x| x.address == a.address.value) {
        err(
            &a.address.referenced,
            format!("{} is listed twice", a.address.value),
        );
    }
    if let Some(r) = &a.sampling_rate {
        if r.value == 0 {
            err(&r.referenced, "sampling_rate is at least 1".into());
        }
    }
    if let Some(r) = &a.max_sampling_rate {
        if r.value == 0 {
            err(&r.referenced, "max_sampling_rate is at least 1".into());
        }
    }
    if let Some(r) = &a.max_pps {
        if r.value == 0 {
            err(&r.referenced, "max_pps is at least 1".into());
        }
    }
    collector::TrustedAgent {
        address: a.address.value,
        name: a
            .name
            .clone()
            .unwrap_or_else(|| a.address.value.to_string()),
        sampling_rate: a.sampling_rate.as_ref().map(|r| r.value.max(1)),
        pre_filter: a.pre_filter,
        max_sampling_rate: a
            .max_sampling_rate
            .as_ref()
            .map_or(collector::DEFAULT_MAX_SAMPLING_RATE, |r| r.value.max(1)),
        max_pps: a
            .max_pps
            .as_ref()
            .map_or(collector::DEFAULT_MAX_PPS, |r| r.value.max(1)),
        export_delay: None,
    }
}
