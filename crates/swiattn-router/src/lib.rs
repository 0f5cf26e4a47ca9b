//! # swiattn-router
//!
//! Routing and allocation policies for hybrid attention: SwiAttn per-token routers with the adaptive FA-ratio regularizer, ConSA L0 hard-concrete allocation with an augmented-Lagrangian budget, and rule baselines. Not yet implemented: see the router issue.
