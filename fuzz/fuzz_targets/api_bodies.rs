//! Arbitrary bytes as the JSON bodies the API takes (create, amend, extend): never a panic; an
//! order that comes out is of the kind asked for, and its target passes its own checks.
#![no_main]

use deflect::api::{AmendRequest, CreateRequest, ExtendRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<CreateRequest>(data) {
        if let Ok(order) = req.order("fuzz") {
            assert_eq!(Some(order.target.kind()), req.kind);
            assert!(order.ttl.is_none_or(|d| !d.is_zero()));
            // What was parsed prints as text that parses to the same target.
            let again = deflect::route::Target::parse(order.target.kind(), &order.target.to_string())
                .expect("a target's text parses");
            assert_eq!(again, order.target);
        }
    }
    if let Ok(req) = serde_json::from_slice::<AmendRequest>(data) {
        if let Ok(a) = req.amend("fuzz") {
            assert!(!a.actions.is_empty());
        }
    }
    if let Ok(req) = serde_json::from_slice::<ExtendRequest>(data) {
        let _ = deflect::api::ttl(&req.ttl);
    }
});
