//! # swiattn-train
//!
//! Training for hybrid attention: [`synthetic`] data that needs no asset, the [`trainer`] step
//! (cross-entropy, router regularizer, AdamW + Adam), the learning-rate [`schedule`], and the
//! [`quickstart`] that compares full, sliding, rule and SwiAttn models on the synthetic task.

pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod data;
pub mod finite;
pub mod mfu;
mod micro;
pub mod precision;
pub mod quickstart;
pub mod run;
pub mod schedule;
pub mod sweep;
pub mod synthetic;
pub mod trainer;
