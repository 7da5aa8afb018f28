//! The daemon's configuration: YAML, read in two passes.
//!
//! 1. Syntax and shape: `serde-saphyr` with `deny_unknown_fields` everywhere; values that later checks
//!    refer to keep their YAML position ([`Spanned`]).
//! 2. Meaning: references, overlaps, families, limits ([`Config::check`]).
//!
//! Every error reads `file:line:col: what is wrong and how to fix it`. With no file, deflect runs on
//! [`Config::embedded`]: API on loopback, state in `./deflect-state`, no peers.
//!
//! Each section is checked in a file of its own, which builds the settings type of the module that
//! owns them: `limits` the mitigation set's guardrails, `neighbors` the peers', `api` the
//! API's tokens, `detection` the detector's, `outputs` the recorder's, alerts', indicator lists'
//! and sFlow collector's. Configuration sits at the top of the edges: it imports those owners, and
//! nothing but the commands (`run`, `cli`) imports it.
//!
//! What this module must not do: open sockets or files other than the one it reads. Applying a
//! configuration is the daemon's job (`run.rs`), all or nothing.

mod api;
mod detection;
mod limits;
mod neighbors;
mod outputs;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;
use serde_saphyr::Spanned;

pub use self::api::{ApiConfig, MetricsConfig, TlsConfig, TokenConfig};
pub use self::detection::{DetectionConfig, ThresholdsConfig};
pub use self::limits::{Limits, RetentionConfig};
pub use self::neighbors::{NeighborConfig, RtbhConfig};
pub use self::outputs::{
    AgentConfig, AlertConfig, ForensicsConfig, IocConfig, NetflowConfig, SflowConfig,
};
use crate::diag::{ConfigError, ConfigErrors, yaml_error};
use crate::mitigation::guardrails::Guardrails;
use crate::peer::Neighbor;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub local_as: Spanned<u32>,
    pub router_id: Spanned<Ipv4Addr>,
    /// Addresses to accept BGP connections on.
    #[serde(default)]
    pub listen: Vec<Spanned<SocketAddr>>,
    /// Where the store lives.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Nothing is announced to any peer: mitigations are recorded and shown only.
    #[serde(default)]
    pub dry_run: bool,
    /// RFC 4724 restart time advertised to every peer, seconds; 0 disables graceful restart.
    #[serde(default = "default_graceful_restart")]
    pub graceful_restart: u16,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub neighbors: Vec<NeighborConfig>,
    /// Named groups of prefixes deflect may mitigate for.
    #[serde(default)]
    pub protected: BTreeMap<String, Vec<Spanned<IpNet>>>,
    /// Prefixes no mitigation may ever match.
    #[serde(default)]
    pub never_block: Vec<Spanned<IpNet>>,
    #[serde(default)]
    pub limits: Limits,
    /// How long the store keeps audit entries and withdrawn mitigations.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Thresholds and the rest of detection.
    #[serde(default)]
    pub detection: DetectionConfig,
    /// The policy directory (default `policies`); the shipped policies when it does not exist.
    pub policies: Option<PathBuf>,
    /// Packet captures of attacks.
    #[serde(default)]
    pub forensics: ForensicsConfig,
    /// The sFlow collector.
    pub sflow: Option<SflowConfig>,
    /// The NetFlow v5/v9 and IPFIX collector.
    pub netflow: Option<NetflowConfig>,
    /// Where alerts go.
    #[serde(default)]
    pub alerts: Vec<AlertConfig>,
    /// Indicator lists matched against sampled sources.
    #[serde(default)]
    pub ioc: Vec<IocConfig>,
    /// The controller's allocator: `system` (glibc's malloc, the default: the least memory) or
    /// `mimalloc` (a fifth less CPU per probe report at fleet size, about 1 MiB more resident).
    #[serde(default)]
    pub allocator: AllocatorChoice,
    /// Where this configuration was read from (not in the file).
    #[serde(skip)]
    pub source: String,
}

/// `allocator:` in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllocatorChoice {
    #[default]
    System,
    Mimalloc,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("deflect-state")
}

fn default_graceful_restart() -> u16 {
    120
}

/// A checked configuration, ready to apply.
#[derive(Debug, Clone)]
pub struct Settings {
    pub source: String,
    pub listen: Vec<SocketAddr>,
    pub state_dir: PathBuf,
    pub api_listen: SocketAddr,
    /// `api.tls`; `None`: plain HTTP.
    pub api_tls: Option<crate::api::tls::Files>,
    pub api_max_body: usize,
    pub api_limits: crate::api::Limits,
    /// `api.metrics.top_targets`: the busiest targets `/metrics` shows.
    pub metrics_top_targets: usize,
    pub tokens: Vec<crate::api::Token>,
    pub neighbors: Vec<Neighbor>,
    pub guardrails: Guardrails,
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub detection: crate::detect::Settings,
    /// The policy directory; `None`: the shipped policies.
    pub policy_dir: Option<PathBuf>,
    pub pcap: crate::pcap::Limits,
    pub sflow: Option<crate::collector::Settings>,
    pub netflow: Option<crate::collector::netflow::Settings>,
    pub alerts: Vec<crate::alert::Sink>,
    /// Indicator lists: (name, file).
    pub ioc: Vec<(String, PathBuf)>,
    /// New blocks from mimalloc rather than the system's allocator (`allocator: mimalloc`).
    pub mimalloc: bool,
}

impl Settings {
    /// What policies may refer to.
    pub fn known(&self) -> crate::policy::Known {
        crate::policy::Known {
            groups: self.guardrails.protected.keys().cloned().collect(),
            peers: self
                .neighbors
                .iter()
                .map(|n| (n.peer.name.clone(), n.receives.clone()))
                .collect(),
            ioc: self.ioc.iter().map(|(n, _)| n.clone()).collect(),
        }
    }

    /// Loads the policies this configuration names, checked against it.
    pub fn load_policies(&self) -> Result<crate::policy::Policies, ConfigErrors> {
        crate::policy::Policies::load(self.policy_dir.as_deref(), &self.known())
    }
}

/// The configuration used when no file is given.
pub const EMBEDDED: &str = "\
# deflect's embedded defaults: API on loopback, state in ./deflect-state, no peers.
local_as: 65000
router_id: 192.0.2.1
api:
  listen: 127.0.0.1:8179
  tokens:
    - { name: local, token: 'env:DEFLECT_TOKEN', scope: write }
protected:
  documentation: [192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32]
";

impl Config {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: name.clone(),
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }])
        })?;
        Config::parse(&name, &text)?.check()
    }

    /// The embedded defaults.
    pub fn embedded() -> Result<Settings, ConfigErrors> {
        Config::parse("<embedded>", EMBEDDED)?.check()
    }

    /// First pass: syntax, shape, unknown fields.
    pub fn parse(source: &str, text: &str) -> Result<Config, ConfigErrors> {
        match serde_saphyr::from_str::<Config>(text) {
            Ok(mut c) => {
                c.source = source.to_string();
                Ok(c)
            }
            Err(e) => Err(ConfigErrors(vec![yaml_error(source, &e)])),
        }
    }

    /// Second pass: meaning. Collects every problem, not just the first, section by section.
    pub fn check(self) -> Result<Settings, ConfigErrors> {
        let mut errs = Vec::new();
        let src = self.source.clone();
        let mut err = |at: &serde_saphyr::Location, msg: String| {
            errs.push(ConfigError {
                file: src.clone(),
                line: at.line(),
                column: at.column(),
                message: msg,
            });
        };
        if self.local_as.value == 0 {
            err(
                &self.local_as.referenced,
                "local_as 0 is reserved; use your AS number".into(),
            );
        }
        if self.router_id.value.is_unspecified() {
            err(
                &self.router_id.referenced,
                "router_id 0.0.0.0 is invalid; use an IPv4 address of this host".into(),
            );
        }
        let guardrails = limits::guardrails(
            &self.limits,
            &self.protected,
            &self.never_block,
            &self.retention,
            self.dry_run,
            &mut err,
        );
        let tokens = api::tokens(&self.api, &mut err);
        let api_limits = api::limits(&self.api, &mut err);
        let metrics_top_targets = api::top_targets(&self.api, &mut err);
        let api_tls = api::tls(&self.api, &mut err);
        let speaker = neighbors::Speaker {
            local_as: self.local_as.value,
            router_id: self.router_id.value,
            graceful_restart: self.graceful_restart,
            listen: &self.listen,
        };
        let neighbors = neighbors::neighbors(&self.neighbors, speaker, &mut err);
        let detection = detection::detection(
            &self.detection,
            &self.protected,
            &guardrails.protected,
            &mut err,
        );
        let pcap = outputs::forensics(&self.forensics, &mut err);
        let alerts = outputs::alerts(&self.alerts, &mut err);
        let ioc = outputs::ioc(&self.ioc, &mut err);
        let mut sflow = self.sflow.as_ref().map(|c| outputs::sflow(c, &mut err));
        if let Some(s) = &mut sflow {
            s.trusted = detection.trusted_sources.clone();
        }
        let mut netflow = self.netflow.as_ref().map(|c| outputs::netflow(c, &mut err));
        if let Some(n) = &mut netflow {
            n.trusted = detection.trusted_sources.clone();
        }
        let mut detection = detection;
        detection.upstream = sflow
            .iter()
            .flat_map(|s| &s.agents)
            .filter(|a| a.pre_filter)
            .map(|a| a.node())
            .chain(
                netflow
                    .iter()
                    .flat_map(|n| &n.exporters)
                    .filter(|a| a.pre_filter)
                    .map(crate::collector::netflow::node),
            )
            .collect();
        if !errs.is_empty() {
            errs.sort_by_key(|e| (e.line, e.column));
            return Err(ConfigErrors(errs));
        }
        Ok(Settings {
            source: self.source,
            listen: self.listen.iter().map(|s| s.value).collect(),
            state_dir: self.state_dir,
            api_listen: self.api.listen.value,
            api_tls,
            api_max_body: self.api.max_body,
            api_limits,
            metrics_top_targets,
            tokens,
            neighbors,
            guardrails,
            local_as: self.local_as.value,
            router_id: self.router_id.value,
            detection,
            policy_dir: Some(self.policies.unwrap_or_else(|| PathBuf::from("policies"))),
            pcap,
            sflow,
            netflow,
            alerts,
            ioc,
            mimalloc: self.allocator == AllocatorChoice::Mimalloc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What checking `text` as `c.yaml` reports (it must fail).
    fn errors(text: &str) -> String {
        Config::parse("c.yaml", text)
            .unwrap()
            .check()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_allocator_is_the_systems_unless_mimalloc_is_asked_for() {
        let s = Config::parse("c.yaml", EMBEDDED).unwrap().check().unwrap();
        assert!(!s.mimalloc);
        let with = |v: &str| format!("{EMBEDDED}allocator: {v}\n");
        let s = Config::parse("c.yaml", &with("mimalloc"))
            .unwrap()
            .check()
            .unwrap();
        assert!(s.mimalloc);
        let s = Config::parse("c.yaml", &with("system"))
            .unwrap()
            .check()
            .unwrap();
        assert!(!s.mimalloc);
        let e = Config::parse("c.yaml", &with("jemalloc"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.yaml:") && e.contains("unknown variant `jemalloc`"),
            "{e}"
        );
    }

    #[test]
    fn an_api_off_loopback_has_tls_or_says_plain_http() {
        let check = |api: &str| {
            let text = EMBEDDED.replace("  listen: 127.0.0.1:8179\n", api);
            Config::parse("c.yaml", &text).unwrap().check()
        };
        let e = check("  listen: 0.0.0.0:8179\n").unwrap_err().to_string();
        assert!(
            e.contains("c.yaml:5:11: api.listen 0.0.0.0:8179 is not a loopback address and api.tls is not set"),
            "{e}"
        );
        let s = check("  listen: '[::]:8179'\n  plain_http: true\n").unwrap();
        assert_eq!(s.api_tls, None);
        assert!(check("  listen: '[::1]:8179'\n").is_ok());
        // TLS files are read when the configuration is checked, and named when they fail.
        let e = check(
            "  listen: 0.0.0.0:8179\n  plain_http: true\n  tls: { cert: /nonexistent/api.pem, key: /nonexistent/api.key }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("api.plain_http and api.tls are both set"), "{e}");
        assert!(e.contains("api.tls: /nonexistent/api.pem:"), "{e}");
    }

    #[test]
    fn token_names_and_values_are_each_used_once_and_a_node_says_what_it_serves() {
        let text = EMBEDDED.replace(
            "    - { name: local, token: 'env:DEFLECT_TOKEN', scope: write }\n",
            "    - { name: noc, token: aaaaaaaaaaaaaaaaaaaa, scope: write }\n    - { name: grafana, token: aaaaaaaaaaaaaaaaaaaa, scope: read }\n    - { name: noc, token: bbbbbbbbbbbbbbbbbbbb, scope: read }\n    - { name: web9, token: cccccccccccccccccccc, scope: node }\n    - { name: web8, token: dddddddddddddddddddd, scope: node, serves: [0.0.0.0/0, ::/0] }\n",
        );
        let e = errors(&text);
        assert!(
            e.contains("c.yaml:8:31: token \"grafana\" has the same value as token \"noc\""),
            "{e}"
        );
        assert!(
            e.contains("c.yaml:9:15: token name \"noc\" is used twice"),
            "{e}"
        );
        // A node token says what it serves, even when that is everything.
        assert!(
            e.contains("c.yaml:10:15: node token \"web9\" has no serves"),
            "{e}"
        );
        assert!(!e.contains("web8"), "{e}");
    }

    #[test]
    fn retention_is_checked_where_it_is_written_and_has_a_floor() {
        let lines = EMBEDDED.lines().count();
        let text = format!(
            "{EMBEDDED}retention:\n  keep: 2h\n  max_audit_entries: 5\n  max_withdrawn: 10\n"
        );
        let e = errors(&text);
        for (line, col, what) in [
            (2, 9, "retention.keep 2h is shorter than a day"),
            (3, 22, "retention.max_audit_entries 5 is below 10000"),
            (4, 18, "retention.max_withdrawn 10 is below 1000"),
        ] {
            let at = format!("c.yaml:{}:{col}: {what}", lines + line);
            assert!(e.contains(&at), "{at} in {e}");
        }
        let text = format!("{EMBEDDED}retention:\n  keep: 90d\n");
        let s = Config::parse("c.yaml", &text).unwrap().check().unwrap();
        let r = &s.guardrails.retention;
        assert_eq!(r.keep, std::time::Duration::from_secs(90 * 86_400));
        assert_eq!((r.max_audit_entries, r.max_withdrawn), (2_000_000, 200_000));
    }

    #[test]
    fn the_api_limits_are_checked_where_they_are_written() {
        let text = EMBEDDED.replace(
            "  listen: 127.0.0.1:8179\n",
            "  listen: 127.0.0.1:8179\n  max_connections: 0\n  header_timeout: soon\n",
        );
        let e = errors(&text);
        assert!(
            e.contains("c.yaml:6:20: max_connections is at least 1"),
            "{e}"
        );
        assert!(
            e.contains("c.yaml:7:19: header_timeout \"soon\" is not a duration"),
            "{e}"
        );
        let ok = EMBEDDED.replace(
            "  listen: 127.0.0.1:8179\n",
            "  listen: 127.0.0.1:8179\n  request_timeout: 5s\n",
        );
        let s = Config::parse("c.yaml", &ok).unwrap().check().unwrap();
        assert_eq!(
            s.api_limits.request_timeout,
            std::time::Duration::from_secs(5)
        );
        assert_eq!(s.api_limits.max_connections, 1024);
        assert_eq!(s.metrics_top_targets, crate::api::DEFAULT_TOP_TARGETS);
    }

    #[test]
    fn the_targets_metrics_show_are_bounded_where_they_are_set() {
        let with = |n: &str| {
            EMBEDDED.replace(
                "  listen: 127.0.0.1:8179\n",
                &format!("  listen: 127.0.0.1:8179\n  metrics:\n    top_targets: {n}\n"),
            )
        };
        let e = errors(&with("201"));
        assert!(
            e.contains("c.yaml:7:18: api.metrics.top_targets 201 is above 200"),
            "{e}"
        );
        for (n, want) in [("200", 200), ("0", 0), ("50", 50)] {
            let s = Config::parse("c.yaml", &with(n)).unwrap().check().unwrap();
            assert_eq!(s.metrics_top_targets, want);
        }
    }

    #[test]
    fn netflow_exporters_are_checked_and_those_before_the_filters_are_upstream() {
        let text = format!(
            "{EMBEDDED}netflow:\n  listen: [127.0.0.1:2055]\n  max_delay: 30s\n  exporters:\n    - {{ address: 192.0.2.1, name: edge1, sampling_rate: 1000, export_delay: 2s }}\n    - {{ address: 192.0.2.3, name: transit, pre_filter: true }}\n"
        );
        let s = Config::parse("c.yaml", &text).unwrap().check().unwrap();
        let n = s.netflow.as_ref().unwrap();
        assert_eq!(n.max_delay, std::time::Duration::from_secs(30));
        assert_eq!(n.exporters[0].sampling_rate, Some(1000));
        assert_eq!(
            n.exporters[0].export_delay,
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(s.detection.upstream, ["netflow:transit"]);
        // export_delay beyond max_delay, a zero sampling rate, an address twice, and export_delay
        // on an sFlow agent: each said where it is.
        let text = format!(
            "{EMBEDDED}netflow:\n  max_delay: 10s\n  exporters:\n    - {{ address: 192.0.2.1, export_delay: 20s }}\n    - {{ address: 192.0.2.1, sampling_rate: 0 }}\nsflow:\n  agents:\n    - {{ address: 192.0.2.50, export_delay: 1s }}\n"
        );
        let e = errors(&text);
        let base = EMBEDDED.lines().count();
        for (line, what) in [
            (base + 4, "beyond max_delay"),
            (base + 5, "listed twice"),
            (base + 5, "sampling_rate is at least 1"),
            (base + 8, "export_delay is for NetFlow/IPFIX exporters"),
        ] {
            assert!(
                e.lines()
                    .any(|l| l.starts_with(&format!("c.yaml:{line}:")) && l.contains(what)),
                "{what} at line {line}:\n{e}"
            );
        }
    }

    #[test]
    fn agents_before_the_filters_are_upstream_nodes_for_detection() {
        let text = format!(
            "{EMBEDDED}sflow:\n  agents:\n    - {{ address: 192.0.2.50, name: sw1 }}\n    - {{ address: 192.0.2.52, name: transit, pre_filter: true }}\n"
        );
        let s = Config::parse("c.yaml", &text).unwrap().check().unwrap();
        assert_eq!(s.detection.upstream, ["sflow:transit"]);
        let example =
            Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deflect.yaml"))
                .unwrap();
        assert_eq!(
            example.detection.upstream,
            ["sflow:transit-in", "netflow:transit-edge"]
        );
    }
}
