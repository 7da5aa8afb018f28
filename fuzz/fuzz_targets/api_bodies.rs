//! Arbitrary bytes as the JSON bodies the API takes (create, batch, withdraw by filter, amend,
//! extend): never a panic; an order that comes out is of the kind asked for, and its target passes
//! its own checks; a batch gives one item per body, each what that body alone would give.
#![no_main]

use deflect::api::{AmendRequest, BatchRequest, CreateRequest, ExtendRequest, WithdrawRequest};
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
    if let Ok(req) = serde_json::from_slice::<BatchRequest>(data) {
        if let Ok(items) = req.items("fuzz") {
            assert!(!items.is_empty() && items.len() <= deflect::api::MAX_BATCH_ITEMS);
            assert_eq!(items.len(), req.mitigations.len());
            for (item, body) in items.iter().zip(&req.mitigations) {
                assert_eq!(item.is_ok(), body.order("fuzz").is_ok());
            }
        }
    }
    if let Ok(req) = serde_json::from_slice::<WithdrawRequest>(data) {
        // Read without a panic; an empty filter is what the set refuses (it would match all).
        assert_eq!(
            req.filter.is_empty(),
            req.filter.actor.is_none()
                && req.filter.reason.is_none()
                && req.filter.kind.is_none()
                && req.filter.prefix.is_none()
        );
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
