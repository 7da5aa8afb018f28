//! `deflect flowspec "<rule>"`: one FlowSpec rule in deflect's text syntax, shown as the bytes
//! deflect would announce and as the same rule for other tools.
//!
//! Every target is a pure function of the [`FlowRoute`]: [`to_hex`], [`to_gobgp`], [`to_exabgp`],
//! [`to_bird`], [`to_junos`], [`to_iosxr`], [`to_nftables`], [`to_iptables`]. A target either prints a
//! rule that matches exactly what deflect's rule matches, or refuses with [`Unsupported`]: one
//! `not expressible in <target>: <what>` line per component or action it cannot say. It never prints
//! a silently different rule. Where a host-local firewall can only come close (a rate limiter, a
//! length the kernel measures after GRO, fragments it reassembles first), the output says so in a
//! `# approximate: ...` comment.
//!
//! What each target cannot express (each case refuses with its reason):
//!
//! | target | not expressible |
//! |---|---|
//! | gobgp | rate-packets; `traffic-action terminal` (all flags clear); TCP flag bits above cwr or a flag value of 0 |
//! | exabgp | an IPv6 rule without a prefix (ExaBGP takes the family from the prefixes); 4-octet AS redirects (ExaBGP 4.2 fails on them) |
//! | bird | flow-label values above 65535 (BIRD writes at most 2 value octets); a bitmask value of 0; TCP flags above 0xfff; fragment tests other than "all of one flag" / "none of one flag" |
//! | junos | flow-label; rate-packets; a rate with an AS or not a whole number of bits/s; fragment tests other than one flag; TCP flag bits above cwr |
//! | iosxr | port; flow-label; rate-packets; redirects; sampling and `traffic-action continue`; TCP flags other than one AND-term of all/none tests; fragment tests other than one flag |
//! | nftables | redirects; two different rate limits; TCP flag bits above cwr |
//! | iptables | redirects; TCP flags ece, cwr and above; IPv6 fragment tests that need a non-zero offset; icmp-code without icmp-type; over 16 ICMP type/code pairs; over 8 IPv6 next-header values; over 32 rules |
//!
//! All targets refuse non-zero IPv6 prefix offsets except nftables (GoBGP and BIRD 2.0.12 read them
//! differently, and deflect refuses them by default too).
//!
//! The router targets were checked live: GoBGP 3.10's CLI, ExaBGP 4.2 and BIRD 2.0.12 build the
//! identical NLRI and communities deflect announces (`integration/flowspec_tool.rs`). Junos and
//! IOS-XR output follows their documented syntax; those routers build their own NLRI from it, which
//! matches the same packets (numeric lists become value and range lists).
//!
//! One file per target; `terms` holds the reading of a rule they share (value ranges, bitmask
//! tests, fragment states) and `host` what nftables and iptables share.

mod bird;
mod exabgp;
mod gobgp;
mod host;
mod iosxr;
mod iptables;
mod junos;
mod nftables;
mod terms;
mod wire;

pub use bird::to_bird;
pub use exabgp::to_exabgp;
pub use gobgp::to_gobgp;
pub use iosxr::to_iosxr;
pub use iptables::to_iptables;
pub use junos::to_junos;
pub use nftables::to_nftables;
pub use wire::to_hex;

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use deflect_bgp::flowspec::FlowRoute;

#[derive(Debug, Clone, Args)]
pub struct FlowspecArgs {
    /// The rule in deflect's syntax, `MATCHES [then ACTIONS]` (one quoted argument, or several
    /// words), e.g. "dst 203.0.113.7/32 proto udp sport 123 then discard".
    #[arg(required = true, num_args = 1..)]
    pub rule: Vec<String>,
    /// What to print.
    #[arg(long, value_enum, default_value_t = Format::All)]
    pub format: Format,
    /// The rule's name where a target needs one (ExaBGP, Junos, IOS-XR, hashlimit, log prefixes);
    /// derived from the rule when absent.
    #[arg(long)]
    pub name: Option<String>,
    /// The AS deflect puts in AS_PATH in the UPDATE shown by `--format hex`.
    #[arg(long, default_value_t = 65000)]
    pub local_as: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    All,
    Hex,
    Gobgp,
    Exabgp,
    Bird,
    Junos,
    Iosxr,
    Nftables,
    Iptables,
}

/// `deflect flowspec`: exit 0 when printed, 1 when the one requested target cannot express the
/// rule (its `not expressible` lines are printed), 2 when the rule or the name does not parse.
pub fn main(args: FlowspecArgs) -> ExitCode {
    let text = args.rule.join(" ");
    let route: FlowRoute = match text.parse() {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "deflect flowspec: {e}");
            return ExitCode::from(2);
        }
    };
    let name = match args.name {
        Some(n) if valid_name(&n) => n,
        Some(n) => {
            let _ = writeln!(
                std::io::stderr(),
                "deflect flowspec: --name {n:?}: use 1 to 63 letters, digits, '-' or '_', starting with a letter or digit"
            );
            return ExitCode::from(2);
        }
        None => default_name(&route),
    };
    let (out, ok) = render(&route, args.format, &name, args.local_as);
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(out.as_bytes()).is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::from(if ok { 0 } else { 1 })
}

/// The text `deflect flowspec` prints, and whether the requested target could express the rule
/// (always true for [`Format::All`], which shows refusals in place).
pub fn render(route: &FlowRoute, format: Format, name: &str, local_as: u32) -> (String, bool) {
    let one = |r: Result<String, Unsupported>| match r {
        Ok(s) => (s, true),
        Err(u) => (u.to_string(), false),
    };
    match format {
        Format::Hex => (to_hex(route, local_as), true),
        Format::Gobgp => one(to_gobgp(route)),
        Format::Exabgp => one(to_exabgp(route, name)),
        Format::Bird => one(to_bird(route)),
        Format::Junos => one(to_junos(route, name)),
        Format::Iosxr => one(to_iosxr(route, name)),
        Format::Nftables => one(to_nftables(route, name)),
        Format::Iptables => one(to_iptables(route, name)),
        Format::All => {
            let mut s = format!("# rule: {route}\n");
            let sections: [(&str, Result<String, Unsupported>); 8] = [
                ("hex", Ok(to_hex(route, local_as))),
                ("gobgp", to_gobgp(route)),
                ("exabgp", to_exabgp(route, name)),
                ("bird", to_bird(route)),
                ("junos", to_junos(route, name)),
                ("iosxr", to_iosxr(route, name)),
                ("nftables", to_nftables(route, name)),
                ("iptables", to_iptables(route, name)),
            ];
            for (title, r) in sections {
                let _ = write!(s, "\n# --- {title} ---\n");
                match r {
                    Ok(t) => s.push_str(&t),
                    Err(u) => s.push_str(&u.to_string()),
                }
            }
            (s, true)
        }
    }
}

/// What a target cannot express of a rule: one reason per component or action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub target: &'static str,
    pub reasons: Vec<String>,
}

/// One `not expressible in <target>: <what>` line per reason.
impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.reasons {
            writeln!(f, "not expressible in {}: {r}", self.target)?;
        }
        Ok(())
    }
}

impl std::error::Error for Unsupported {}

/// Collects a target's refusals while it builds its text.
struct Gaps {
    target: &'static str,
    reasons: Vec<String>,
}

impl Gaps {
    fn new(target: &'static str) -> Gaps {
        Gaps {
            target,
            reasons: Vec::new(),
        }
    }

    fn add(&mut self, reason: impl Into<String>) {
        let r = reason.into();
        if !self.reasons.contains(&r) {
            self.reasons.push(r);
        }
    }

    fn finish(self, text: String) -> Result<String, Unsupported> {
        if self.reasons.is_empty() {
            Ok(text)
        } else {
            Err(Unsupported {
                target: self.target,
                reasons: self.reasons,
            })
        }
    }
}

/// Names usable in every target: 1 to 63 of `[A-Za-z0-9_-]`, starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `deflect-` and 8 hex digits of a hash of the NLRI and the actions: stable for a given route.
pub fn default_name(route: &FlowRoute) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let communities = route.ext_communities();
    let bytes = route
        .rule
        .wire()
        .iter()
        .chain(communities.iter().flat_map(|c| c.0.iter()));
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("deflect-{h:08x}")
}

/// What the targets' tests share: a rule from its text, and a target's output (or refusal) for
/// each of a list of rules.
#[cfg(test)]
mod testing {
    use deflect_bgp::flowspec::FlowRoute;

    use super::Unsupported;

    pub(super) fn route(s: &str) -> FlowRoute {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    pub(super) fn check(
        target: &str,
        f: impl Fn(&FlowRoute) -> Result<String, Unsupported>,
        cases: &[(&str, &str)],
    ) {
        for (rule, want) in cases {
            let got = match f(&route(rule)) {
                Ok(s) => s,
                Err(u) => u.to_string(),
            };
            assert_eq!(got, *want, "{target}: {rule}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::route;
    use super::*;

    #[test]
    fn flag_tests_of_nothing_match_everything() {
        let r = route("dst 192.0.2.1/32 proto tcp tcp-flags 0x0,syn fragment !~0x0 then discard");
        assert_eq!(
            to_junos(&r, "r1").unwrap(),
            "set routing-options flow route r1 match destination 192.0.2.1/32\nset routing-options flow route r1 match protocol 6\nset routing-options flow route r1 then discard\n"
        );
        assert!(to_nftables(&r, "r1").unwrap().ends_with(
            "nft 'add rule inet filter input ip daddr 192.0.2.1/32 meta l4proto tcp drop'\n"
        ));
        assert!(
            to_iptables(&r, "r1")
                .unwrap()
                .ends_with("iptables -A INPUT -d 192.0.2.1/32 -p tcp -j DROP\n")
        );
        assert!(to_bird(&r).is_err());
        assert!(!to_iosxr(&r, "r1").unwrap().contains("tcp-flag"));
    }

    #[test]
    fn names_and_refusals() {
        assert!(valid_name("deflect-1_a"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(64)));
        let r = route("dst 192.0.2.1/32 then discard");
        assert_eq!(default_name(&r), default_name(&r.clone()));
        assert!(default_name(&r).starts_with("deflect-"));
        assert_ne!(
            default_name(&r),
            default_name(&route("dst 192.0.2.2/32 then discard"))
        );
        let u = Unsupported {
            target: "bird",
            reasons: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            u.to_string(),
            "not expressible in bird: a\nnot expressible in bird: b\n"
        );
        // Ports with ICMP and no protocol component: no packet has both.
        let r = route("dst 192.0.2.1/32 dport 80 icmp-type 8 then discard");
        assert!(
            to_nftables(&r, "x")
                .unwrap_err()
                .to_string()
                .contains("never matches")
        );
        assert!(
            to_iptables(&r, "x")
                .unwrap_err()
                .to_string()
                .contains("never matches")
        );
    }

    #[test]
    fn render_all_shows_every_target_and_refusals_in_place() {
        let r = route("dst 203.0.113.7/32 proto udp sport 123 then rate-packets 100");
        let (s, ok) = render(&r, Format::All, "r1", 65000);
        assert!(ok);
        for t in [
            "hex", "gobgp", "exabgp", "bird", "junos", "iosxr", "nftables", "iptables",
        ] {
            assert!(s.contains(&format!("# --- {t} ---\n")), "{t}: {s}");
        }
        assert!(
            s.starts_with("# rule: dst 203.0.113.7/32 proto udp sport 123 then rate-packets 100\n")
        );
        assert!(
            s.contains("not expressible in gobgp: rate-packets 100"),
            "{s}"
        );
        assert!(
            s.contains("extended-community [ 0x800c000042c80000 ];"),
            "{s}"
        );
        let (s, ok) = render(&r, Format::Gobgp, "r1", 65000);
        assert!(!ok);
        assert!(s.starts_with("not expressible in gobgp"));
        let (s, ok) = render(&r, Format::Bird, "r1", 65000);
        assert!(ok, "{s}");
    }
}
