//! Arbitrary text as a flow route: never a panic; whatever parses formats back to itself.
#![no_main]

use deflect_bgp::flowspec::FlowRoute;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(route) = s.parse::<FlowRoute>() {
            let again: FlowRoute = route.to_string().parse().expect("formatted route parses");
            assert_eq!(again, route);
        }
    }
});
