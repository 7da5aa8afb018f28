//! The guardrails: what any mitigation, from any source, must respect. Pure checks over a
//! [`Target`] and a lifetime; the set applies them to every order.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;

use crate::mitigation::record::Refusal;
use crate::route::Target;

/// The limits of the `limits`, `protected` and `never_block` sections, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrails {
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub max_active: usize,
    pub max_new_per_minute: u32,
    pub rtbh_min_prefix_v4: u8,
    pub rtbh_min_prefix_v6: u8,
    pub protected: BTreeMap<String, Vec<IpNet>>,
    pub never_block: Vec<IpNet>,
    /// Nothing is announced to any peer.
    pub dry_run: bool,
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

impl Guardrails {
    /// Guardrails for tests: one group `customers` of `protected` prefixes, `never_block`, ten
    /// minutes by default and an hour at most, 100 active and 100 a minute.
    #[cfg(test)]
    pub(crate) fn for_tests(protected: &[&str], never_block: &[&str]) -> Guardrails {
        let nets = |v: &[&str]| v.iter().map(|p| p.parse().unwrap()).collect::<Vec<IpNet>>();
        Guardrails {
            default_ttl: Duration::from_secs(600),
            max_ttl: Duration::from_secs(3600),
            max_active: 100,
            max_new_per_minute: 100,
            rtbh_min_prefix_v4: 32,
            rtbh_min_prefix_v6: 128,
            protected: BTreeMap::from([("customers".to_string(), nets(protected))]),
            never_block: nets(never_block),
            dry_run: false,
        }
    }

    /// Guardrails that depend on what is matched.
    pub fn check_target(&self, target: &Target) -> Result<(), Refusal> {
        let Some(dst) = target.destination() else {
            return Err(Refusal::Guardrail(
                "the rule has no destination; add `dst PREFIX` inside a protected network".into(),
            ));
        };
        if !self.protected.values().flatten().any(|p| p.contains(&dst)) {
            return Err(Refusal::Guardrail(format!(
                "{dst} is not inside a protected network"
            )));
        }
        if let Some(nb) = self.never_block.iter().find(|n| overlaps(n, &dst)) {
            return Err(Refusal::Guardrail(format!(
                "{dst} overlaps never-block prefix {nb}"
            )));
        }
        if let Target::Rtbh(p) = target {
            let (min, max) = if p.addr().is_ipv4() {
                (self.rtbh_min_prefix_v4, 32)
            } else {
                (self.rtbh_min_prefix_v6, 128)
            };
            if p.prefix_len() < min || p.prefix_len() > max {
                return Err(Refusal::Guardrail(format!(
                    "RTBH prefix {p} is outside /{min}../{max}"
                )));
            }
        }
        Ok(())
    }

    /// A lifetime asked for (the default when `None`), within the maximum.
    pub fn ttl(&self, ttl: Option<Duration>) -> Result<Duration, Refusal> {
        let d = ttl.unwrap_or(self.default_ttl);
        if d.is_zero() {
            return Err(Refusal::Invalid(
                "ttl 0s: every mitigation needs a lifetime; write e.g. 90s, 10m or 24h".into(),
            ));
        }
        if d > self.max_ttl {
            return Err(Refusal::Guardrail(format!(
                "ttl {}s is beyond the maximum of {}s",
                d.as_secs(),
                self.max_ttl.as_secs()
            )));
        }
        Ok(d)
    }
}
