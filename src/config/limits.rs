//! `limits`, `protected`, `never_block` and `retention`: the mitigation set's guardrails.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::diag::{positive_duration, unplaced};
use crate::mitigation::guardrails::Guardrails;
use crate::mitigation::store::Retention;
use crate::route::no_host_bits;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "default_ttl")]
    pub default_ttl: Spanned<String>,
    #[serde(default = "max_ttl")]
    pub max_ttl: Spanned<String>,
    #[serde(default = "default_max_active")]
    pub max_active: usize,
    #[serde(default = "default_max_new")]
    pub max_new_per_minute: u32,
    /// Shortest RTBH prefixes allowed (longest is always /32 and /128).
    #[serde(default = "default_rtbh_v4")]
    pub rtbh_min_prefix_v4: Spanned<u8>,
    #[serde(default = "default_rtbh_v6")]
    pub rtbh_min_prefix_v6: Spanned<u8>,
    /// Most S/RTBH routes (sources blackholed, RFC 5635) active at once.
    #[serde(default = "default_max_source_rtbh")]
    pub max_source_rtbh: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_ttl: default_ttl(),
            max_ttl: max_ttl(),
            max_active: default_max_active(),
            max_new_per_minute: default_max_new(),
            rtbh_min_prefix_v4: default_rtbh_v4(),
            rtbh_min_prefix_v6: default_rtbh_v6(),
            max_source_rtbh: default_max_source_rtbh(),
        }
    }
}

/// `retention`: how long the store keeps what is over (audit entries, withdrawn mitigations).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(default = "default_keep")]
    pub keep: Spanned<String>,
    #[serde(default = "default_max_audit_entries")]
    pub max_audit_entries: Spanned<u64>,
    #[serde(default = "default_max_withdrawn")]
    pub max_withdrawn: Spanned<u64>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep: default_keep(),
            max_audit_entries: default_max_audit_entries(),
            max_withdrawn: default_max_withdrawn(),
        }
    }
}

fn default_keep() -> Spanned<String> {
    unplaced("400d".into())
}

fn default_max_audit_entries() -> Spanned<u64> {
    unplaced(Retention::default().max_audit_entries)
}

fn default_max_withdrawn() -> Spanned<u64> {
    unplaced(Retention::default().max_withdrawn)
}

/// The least `retention` allows: an incident's record must outlive the incident.
const MIN_KEEP: Duration = Duration::from_secs(86_400);
const MIN_AUDIT_ENTRIES: u64 = 10_000;
const MIN_WITHDRAWN: u64 = 1_000;

fn retention(r: &RetentionConfig, err: &mut dyn FnMut(&Location, String)) -> Retention {
    let keep = positive_duration(&r.keep, "retention.keep", "400d or 90d", err)
        .unwrap_or(Retention::default().keep);
    if keep < MIN_KEEP {
        err(
            &r.keep.referenced,
            format!(
                "retention.keep {} is shorter than a day: an incident's record must outlive it; write 1d or more",
                r.keep.value
            ),
        );
    }
    for (v, min, what) in [
        (&r.max_audit_entries, MIN_AUDIT_ENTRIES, "max_audit_entries"),
        (&r.max_withdrawn, MIN_WITHDRAWN, "max_withdrawn"),
    ] {
        if v.value < min {
            err(
                &v.referenced,
                format!("retention.{what} {} is below {min}; raise it", v.value),
            );
        }
    }
    Retention {
        keep,
        max_audit_entries: r.max_audit_entries.value,
        max_withdrawn: r.max_withdrawn.value,
    }
}

fn default_ttl() -> Spanned<String> {
    unplaced("10m".into())
}

fn max_ttl() -> Spanned<String> {
    unplaced("24h".into())
}

fn default_max_active() -> usize {
    10_000
}

fn default_max_new() -> u32 {
    600
}

fn default_max_source_rtbh() -> usize {
    64
}

fn default_rtbh_v4() -> Spanned<u8> {
    unplaced(32)
}

fn default_rtbh_v6() -> Spanned<u8> {
    unplaced(128)
}

/// Checks the limits and the protected and never-block prefixes.
pub(super) fn guardrails(
    limits: &Limits,
    groups: &BTreeMap<String, Vec<Spanned<IpNet>>>,
    never_block: &[Spanned<IpNet>],
    retention_config: &RetentionConfig,
    dry_run: bool,
    mut err: &mut dyn FnMut(&Location, String),
) -> Guardrails {
    let ttl = |s: &Spanned<String>, what: &str, err: &mut dyn FnMut(&Location, String)| {
        positive_duration(s, what, "90s, 10m, 24h or 7d", err).unwrap_or(Duration::from_secs(600))
    };
    let default_ttl = ttl(&limits.default_ttl, "default_ttl", &mut err);
    let max_ttl_v = ttl(&limits.max_ttl, "max_ttl", &mut err);
    if default_ttl > max_ttl_v {
        err(
            &limits.default_ttl.referenced,
            "default_ttl is longer than max_ttl; lower it or raise max_ttl".into(),
        );
    }
    for (p, max, what) in [
        (&limits.rtbh_min_prefix_v4, 32u8, "rtbh_min_prefix_v4"),
        (&limits.rtbh_min_prefix_v6, 128u8, "rtbh_min_prefix_v6"),
    ] {
        if p.value > max {
            err(
                &p.referenced,
                format!("{what} {} is beyond /{max}", p.value),
            );
        }
    }

    // Protected groups and the never-block list.
    let mut protected: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
    let mut seen: Vec<(IpNet, String)> = Vec::new();
    for (group, nets) in groups {
        for n in nets {
            if let Err(e) = no_host_bits(&n.value) {
                err(&n.referenced, e);
            }
            if let Some((other, g)) = seen
                .iter()
                .find(|(o, _)| o.contains(&n.value) || n.value.contains(o))
            {
                err(
                    &n.referenced,
                    format!(
                        "{} overlaps {other} of group {g:?}; a prefix belongs to one group",
                        n.value
                    ),
                );
            }
            seen.push((n.value, group.clone()));
            protected
                .entry(group.clone())
                .or_default()
                .push(n.value.trunc());
        }
    }
    for n in never_block {
        if let Err(e) = no_host_bits(&n.value) {
            err(&n.referenced, e);
        }
    }
    Guardrails {
        default_ttl,
        max_ttl: max_ttl_v,
        max_active: limits.max_active,
        max_new_per_minute: limits.max_new_per_minute,
        rtbh_min_prefix_v4: limits.rtbh_min_prefix_v4.value,
        rtbh_min_prefix_v6: limits.rtbh_min_prefix_v6.value,
        max_source_rtbh: limits.max_source_rtbh,
        protected,
        never_block: never_block.iter().map(|s| s.value.trunc()).collect(),
        dry_run,
        retention: retention(retention_config, err),
    }
}
