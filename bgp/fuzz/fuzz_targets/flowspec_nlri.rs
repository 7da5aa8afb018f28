//! Arbitrary bytes as a FlowSpec NLRI field: never a panic; whatever decodes re-encodes to the same
//! bytes through the text syntax.
#![no_main]

use deflect_bgp::flowspec::{Rule, RuleOptions, decode_nlri_list, text::parse_rule};
use deflect_bgp::iana::Afi;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for afi in [Afi::Ipv4, Afi::Ipv6] {
        let _ = decode_nlri_list(afi, data);
        if let Ok((rule, _)) = Rule::decode(afi, data) {
            // The text of a decoded rule parses back to an equivalent rule.
            let back = parse_rule(&rule.to_string(), &RuleOptions::LONG_FORM).expect("text of a decoded rule parses");
            assert_eq!(back.components(), rule.components());
        }
    }
});
