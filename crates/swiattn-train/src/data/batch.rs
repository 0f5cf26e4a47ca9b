//! A training batch: next-token inputs and targets, and where the far-back lookups are.

use burn::tensor::{Device, Int, Tensor, TensorData};

/// One batch: `input` and `target` are `[batch, len]` (target = input shifted by one);
/// `recall[b]` lists the positions of sequence `b` whose prediction is a far-back lookup.
#[derive(Clone, Debug)]
pub struct Batch {
    pub input: Tensor<2, Int>,
    pub target: Tensor<2, Int>,
    pub recall: Vec<Vec<usize>>,
}

impl Batch {
    /// A batch of equally long sequences.
    pub fn from_examples(examples: Vec<crate::synthetic::Example>, device: &Device) -> Self {
        let n = examples.len();
        let t = examples[0].tokens.len() - 1;
        let take = |range: std::ops::Range<usize>| -> Vec<i64> {
            examples.iter().flat_map(|e| e.tokens[range.clone()].iter().map(|&x| x as i64)).collect()
        };
        Batch {
            input: Tensor::from_data(TensorData::new(take(0..t), [n, t]), device),
            target: Tensor::from_data(TensorData::new(take(1..t + 1), [n, t]), device),
            recall: examples.into_iter().map(|e| e.recall).collect(),
        }
    }

    /// The batch on another device.
    pub fn to_device(&self, device: &Device) -> Self {
        Batch {
            input: self.input.clone().to_device(device),
            target: self.target.clone().to_device(device),
            recall: self.recall.clone(),
        }
    }
}
