//! `detection`: thresholds for every protected group, per-group overrides, node staleness.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::detect::{self, Class, PrefixThresholds, Thresholds};
use crate::diag::{parse_duration, positive_duration};

/// Detection settings, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionConfig {
    /// A node silent this long is stale (and at least three of its intervals).
    pub stale_after: Option<Spanned<String>>,
    /// Most addresses tracked.
    pub max_targets: Option<usize>,
    /// Most addresses one node's reports may add (default 10,000).
    pub max_targets_per_node: Option<usize>,
    /// An address nothing has reported for this long, under no attack, is forgotten (default 10m).
    pub target_idle: Option<Spanned<String>>,
    /// Most prefixes tracked for prefix-level detection (default 10,000).
    pub max_prefixes: Option<usize>,
    /// Sources never counted as attack traffic: speed-test servers, partners, backups.
    #[serde(default)]
    pub trusted_sources: Vec<Spanned<IpNet>>,
    /// Thresholds for every protected group.
    #[serde(default)]
    pub thresholds: ThresholdsConfig,
    /// Per protected group, what differs from `thresholds`.
    #[serde(default)]
    pub groups: BTreeMap<String, Spanned<ThresholdsConfig>>,
}

/// Thresholds, as written; each unset one comes from the level above.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsConfig {
    /// Static floor per traffic class, packets per second.
    #[serde(default)]
    pub floor_pps: BTreeMap<Class, f64>,
    /// Static floor for all traffic to an address, bits per second.
    pub floor_bps: Option<f64>,
    pub ratio: Option<Spanned<f64>>,
    pub deviations: Option<Spanned<f64>>,
    pub confirm: Option<Spanned<u32>>,
    pub end_ratio: Option<Spanned<f64>>,
    pub cooldown: Option<Spanned<String>>,
    pub warmup: Option<Spanned<String>>,
    pub half_life: Option<Spanned<String>>,
    /// Prefix-level detection (carpet bombing).
    pub prefix: Option<Spanned<PrefixConfig>>,
}

/// Prefix-level thresholds, as written; each unset one comes from the level above.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixConfig {
    pub enabled: Option<bool>,
    /// Prefix length for IPv4, 16 to 24.
    pub v4: Option<Spanned<u8>>,
    /// Prefix length for IPv6, 32 to 64.
    pub v6: Option<Spanned<u8>>,
    /// Static floor per traffic class over the whole prefix, packets per second.
    #[serde(default)]
    pub floor_pps: BTreeMap<Class, Spanned<f64>>,
    pub floor_bps: Option<Spanned<f64>>,
}

impl PrefixConfig {
    fn apply(
        &self,
        mut p: PrefixThresholds,
        err: &mut dyn FnMut(&Location, String),
    ) -> PrefixThresholds {
        if let Some(e) = self.enabled {
            p.enabled = e;
        }
        for (v, slot, (lo, hi), rollup, family) in [
            (&self.v4, &mut p.v4, (16, 24), "/24", "IPv4"),
            (&self.v6, &mut p.v6, (32, 64), "/64", "IPv6"),
        ] {
            if let Some(v) = v {
                if (lo..=hi).contains(&v.value) {
                    *slot = v.value;
                } else {
                    err(
                        &v.referenced,
                        format!(
                            "{family} prefix length {} is outside {lo}..={hi}: sums are built from the {rollup} rollups reports carry; use e.g. {hi}",
                            v.value
                        ),
                    );
                }
            }
        }
        for (c, v) in &self.floor_pps {
            if v.value.is_nan() || v.value < 0.0 {
                err(&v.referenced, format!("floor_pps.{c} must be 0 or more"));
            }
            p.floor_pps[c.index()] = v.value;
        }
        if let Some(v) = &self.floor_bps {
            if v.value.is_nan() || v.value < 0.0 {
                err(&v.referenced, "floor_bps must be 0 or more".into());
            }
            p.floor_bps = v.value;
        }
        p
    }
}

impl ThresholdsConfig {
    /// `base` with what this level sets.
    fn apply(&self, mut t: Thresholds, err: &mut dyn FnMut(&Location, String)) -> Thresholds {
        for (c, v) in &self.floor_pps {
            t.floor_pps[c.index()] = *v;
        }
        if let Some(v) = self.floor_bps {
            t.floor_bps = v;
        }
        if let Some(v) = &self.ratio {
            if v.value < 1.0 {
                err(
                    &v.referenced,
                    "ratio below 1 would flag ordinary traffic; use 2 to 10".into(),
                );
            }
            t.ratio = v.value;
        }
        if let Some(v) = &self.deviations {
            if v.value < 0.0 {
                err(&v.referenced, "deviations cannot be negative".into());
            }
            t.deviations = v.value;
        }
        if let Some(v) = &self.confirm {
            if v.value == 0 {
                err(
                    &v.referenced,
                    "confirm is at least 1 (the interval the threshold is crossed)".into(),
                );
            }
            t.confirm = v.value.max(1);
        }
        if let Some(v) = &self.end_ratio {
            if !(0.0..=1.0).contains(&v.value) {
                err(
                    &v.referenced,
                    "end_ratio is a share of the threshold, 0 to 1 (0.5: quiet below half)".into(),
                );
            }
            t.end_ratio = v.value;
        }
        for (field, what, slot) in [
            (&self.cooldown, "cooldown", &mut t.cooldown),
            (&self.warmup, "warmup", &mut t.warmup),
            (&self.half_life, "half_life", &mut t.half_life),
        ] {
            if let Some(v) = field {
                match parse_duration(&v.value) {
                    Some(d) => *slot = d,
                    None => err(
                        &v.referenced,
                        format!("{what} {:?} is not a duration; write e.g. 30s, 5m", v.value),
                    ),
                }
            }
        }
        if t.half_life.is_zero() {
            t.half_life = Duration::from_secs(1);
        }
        if let Some(p) = &self.prefix {
            t.prefix = p.value.apply(t.prefix, err);
        }
        t
    }
}

/// Checks detection against the protected groups: `declared` as written (a group may be empty),
/// `protected` resolved.
pub(super) fn detection(
    c: &DetectionConfig,
    declared: &BTreeMap<String, Vec<Spanned<IpNet>>>,
    protected: &BTreeMap<String, Vec<IpNet>>,
    mut err: &mut dyn FnMut(&Location, String),
) -> detect::Settings {
    let base = c.thresholds.apply(Thresholds::default(), &mut err);
    for (g, t) in &c.groups {
        if !declared.contains_key(g) {
            err(
                &t.referenced,
                format!(
                    "detection.groups: no protected group named {g:?}; add it under protected or remove it"
                ),
            );
        }
    }
    let mut groups = Vec::new();
    for (g, nets) in protected {
        let th = match c.groups.get(g) {
            Some(t) => t.value.apply(base.clone(), &mut err),
            None => base.clone(),
        };
        // A prefix length written down must fit the group: a network narrower than it holds
        // no whole prefix, and its carpets would go unseen. (The defaults just leave such a
        // network to address-level detection.)
        let written = |f: fn(&PrefixConfig) -> Option<&Spanned<u8>>| {
            c.groups
                .get(g)
                .and_then(|t| t.value.prefix.as_ref())
                .and_then(|p| f(&p.value))
                .or_else(|| c.thresholds.prefix.as_ref().and_then(|p| f(&p.value)))
        };
        for (at, len, v4) in [
            (written(|p| p.v4.as_ref()), th.prefix.v4, true),
            (written(|p| p.v6.as_ref()), th.prefix.v6, false),
        ] {
            let Some(at) = at else { continue };
            if let Some(n) = nets
                .iter()
                .find(|n| n.addr().is_ipv4() == v4 && n.prefix_len() > len)
            {
                err(
                    &at.referenced,
                    format!(
                        "prefix length {len} for group {g:?}: its network {n} is narrower, so no /{len} lies inside it and a carpet there would go unseen; use {} or more for this group (detection.groups.{g}.prefix)",
                        n.prefix_len()
                    ),
                );
            }
        }
        groups.push((g.clone(), nets.clone(), th));
    }
    let mut detection = detect::Settings {
        groups,
        ..detect::Settings::default()
    };
    if let Some(n) = c.max_targets_per_node {
        detection.max_targets_per_node = n;
    }
    if let Some(v) = &c.target_idle {
        if let Some(d) = positive_duration(v, "target_idle", "10m", err) {
            detection.target_idle = d;
        }
    }
    if let Some(n) = c.max_targets {
        detection.max_targets = n;
    }
    if let Some(n) = c.max_prefixes {
        detection.max_prefixes = n;
    }
    if c.trusted_sources.len() > detect::MAX_TRUSTED {
        if let Some(t) = c.trusted_sources.get(detect::MAX_TRUSTED) {
            err(
                &t.referenced,
                format!(
                    "trusted_sources: {} prefixes, at most {}; summarize them into shorter prefixes",
                    c.trusted_sources.len(),
                    detect::MAX_TRUSTED
                ),
            );
        }
    }
    for t in &c.trusted_sources {
        if t.value.prefix_len() == 0 {
            err(
                &t.referenced,
                format!(
                    "trusted source {} trusts every address: no attack would ever be seen; name the servers' prefixes",
                    t.value
                ),
            );
        } else if t.value.trunc() != t.value {
            err(
                &t.referenced,
                format!(
                    "trusted source {} has host bits set; did you mean {}?",
                    t.value,
                    t.value.trunc()
                ),
            );
        }
    }
    detection.trusted_sources = c.trusted_sources.iter().map(|t| t.value).collect();
    if let Some(v) = &c.stale_after {
        if let Some(d) = positive_duration(v, "stale_after", "5s", err) {
            detection.stale_after = d;
        }
    }
    detection
}
