//! FlowSpec rules: validated types, their NLRI (RFC 8955 §4 for IPv4, RFC 8956 §3 for IPv6), their
//! actions ([`action`]) and the text syntax operators type ([`text`]).
//!
//! A [`Rule`] can only exist valid: components sorted by type, no duplicates, not empty, every value
//! within its field, no combination that can never match, and its NLRI within the length the options
//! allow. Its encoded NLRI is computed once, at construction, and is its identity: two rules are equal
//! exactly when their bytes are, so an announcement and its withdrawal always carry identical NLRI.
//!
//! ```text
//! NLRI:  +-------------------------------+
//!        | length (1 octet if < 240,     |
//!        |  else 0xfnnn in 2 octets)     |
//!        +-------------------------------+
//!        | components, by type, ascending |
//!        +-------------------------------+
//! numeric operator:   e a len 0 lt gt eq    (RFC 8955 §4.2.1.1)
//! bitmask operator:   e a len 0 0 not m     (RFC 8955 §4.2.1.2)
//! ```
//!
//! Interop facts the defaults respect (measured with GoBGP 3.10 and BIRD 2.0.12):
//! - BIRD answers components out of order with NOTIFICATION 3/1: decoding refuses them too.
//! - GoBGP 3.10 refuses an NLRI of 240 octets or more: [`RuleOptions::default`] caps rules at 239 octets;
//!   [`split_rule`] splits long value lists into several rules; [`RuleOptions::LONG_FORM`] lifts the cap.
//! - GoBGP and BIRD read IPv6 prefix offsets differently: non-zero offsets are refused by default.
//!
//! Layout, bottom up; each file imports only from the ones listed before it:
//! - `component`: the match components, their operators, type codes and flag bits;
//! - `words`: protocol and flag names, and operator terms in words (what errors print);
//! - `rule`: the validated rule, its validation, and its NLRI encoding and decoding (these three
//!   are re-exported here);
//! - [`action`]: the actions, as extended communities, and [`FlowRoute`], a rule with its actions;
//! - [`text`]: the text syntax, and the `Display`/`FromStr` impls of [`Rule`], [`Action`] and
//!   [`FlowRoute`] that speak it.

pub mod action;
mod component;
mod rule;
pub mod text;
mod words;

pub use self::action::{Action, FlowRoute};
pub use self::component::{BitmaskOp, Component, NumericOp, Prefix, component_type, fragment};
pub use self::rule::{
    DEFAULT_MAX_NLRI_LEN, FlowSpecError, MAX_NLRI_LEN, Rule, RuleError, RuleInner, RuleOptions,
    decode_nlri_list, split_rule,
};
