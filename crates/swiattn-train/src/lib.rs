//! # swiattn-train
//!
//! Training: data pipeline, training loop, continual pretraining of full-attention checkpoints into hybrids. Not yet implemented: see the training issue.
