//! Training data: the opened data of a run ([`dataset`]) and its batches ([`Batch`]); text as tokenized shards ([`shard`]), their preparation ([`prepare`]) and packing into
//! training and validation sequences ([`packed`]).

mod batch;
mod dataset;
pub mod packed;
pub mod prepare;
pub mod shard;

pub use batch::Batch;
pub use dataset::Dataset;
