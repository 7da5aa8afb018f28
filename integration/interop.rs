//! Interop tests against live BIRD 2 and GoBGP (in progress).
