//! Training data: the opened data of a run ([`dataset`]); text as tokenized shards ([`shard`]), their preparation ([`prepare`]) and packing into
//! training and validation sequences ([`packed`]).

mod dataset;
pub mod packed;
pub mod prepare;
pub mod shard;

pub use dataset::Dataset;
