//! deflect: DDoS-mitigation controller.
