//! Helpers shared by the tests of every swiattn crate: the backend under test and seeded random
//! inputs generated on the host (so every backend sees the same numbers).

use burn::tensor::{Bool, Device, Tensor, TensorData};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::Result;
use crate::backend::BackendKind;
use crate::model::TokenRouter;

/// The backend tests run on: `SWIATTN_TEST_BACKEND` (`cpu`, `wgpu`, `cuda`), default `cpu`.
pub fn test_backend() -> BackendKind {
    std::env::var("SWIATTN_TEST_BACKEND")
        .ok()
        .map(|s| s.parse().expect("SWIATTN_TEST_BACKEND"))
        .unwrap_or(BackendKind::Cpu)
}

/// The device of [`test_backend`]; panics with the build hint when it is not compiled in.
pub fn test_device() -> Device {
    test_backend().device().unwrap_or_else(|e| panic!("{e}"))
}

/// Whether the backend under test is a GPU backend (slower to JIT on a software Vulkan, so some
/// tests sweep fewer shapes there).
pub fn on_gpu_backend() -> bool {
    test_backend() != BackendKind::Cpu
}

/// Standard-normal host data from a seed.
pub fn randn_vec(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| {
            // Box–Muller: two uniforms to one normal.
            let u: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
            let v: f32 = rng.random();
            (-2.0f32 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
        })
        .collect()
}

/// A standard-normal tensor from a seed.
pub fn randn<const D: usize>(dims: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let len = dims.iter().product();
    Tensor::from_data(TensorData::new(randn_vec(len, seed), dims), device)
}

/// Random booleans with `P(true) = p`, from a seed.
pub fn random_bools(len: usize, p: f64, seed: u64) -> Vec<bool> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_bool(p)).collect()
}

/// One seeded mutation of a binary file, by `case % 4`: truncated anywhere, a bit flipped in its
/// first `header` bytes, a 4- or 8-byte integer field there set to an extreme (0, 1, 2^32 − 1,
/// 2^63, 2^64 − 1, 2^32), or a byte anywhere randomized. Returns what was done, for the failure
/// message. For the mutation tests of the binary readers (GGUF, checkpoints).
pub fn mutate_bytes(bytes: &mut Vec<u8>, header: usize, case: usize, rng: &mut StdRng) -> String {
    const EXTREMES: [u64; 6] = [0, 1, u32::MAX as u64, 1 << 63, u64::MAX, 1 << 32];
    match case % 4 {
        0 => {
            let len = rng.random_range(0..bytes.len());
            bytes.truncate(len);
            format!("truncated to {len} bytes")
        }
        1 => {
            let at = rng.random_range(0..header);
            bytes[at] ^= 1 << rng.random_range(0..8);
            format!("a bit of byte {at} flipped")
        }
        2 => {
            let width = if rng.random_bool(0.5) { 4 } else { 8 };
            let at = rng.random_range(0..header.saturating_sub(width).max(1));
            let value = EXTREMES[rng.random_range(0..EXTREMES.len())];
            bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            format!("{width} bytes at {at} set to {value}")
        }
        _ => {
            let at = rng.random_range(0..bytes.len());
            bytes[at] = rng.random();
            format!("byte {at} randomized")
        }
    }
}

/// One seeded mutation of a text file's contents, by `case % 4`: truncated, a bit flipped, a
/// number replaced by an extreme (0, ±1, 2^32 − 1, 10^10, 2^63, 2^64 − 1, 1e308, 1e309), or a
/// character replaced by a random printable one. For the mutation tests of the text readers.
pub fn mutate_text(text: &str, case: usize, rng: &mut StdRng) -> String {
    const EXTREMES: [&str; 9] =
        ["0", "1", "-1", "4294967295", "10000000000", "9223372036854775808", "18446744073709551615", "1e308", "1e309"];
    let mut bytes = text.as_bytes().to_vec();
    match case % 4 {
        0 => bytes.truncate(rng.random_range(0..bytes.len())),
        1 => {
            let at = rng.random_range(0..bytes.len());
            bytes[at] ^= 1 << rng.random_range(0..7);
        }
        2 => {
            let digits: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i].is_ascii_digit()).collect();
            if let Some(&at) = digits.get(rng.random_range(0..digits.len().max(1))) {
                let end = (at..bytes.len()).find(|&i| !bytes[i].is_ascii_digit()).unwrap_or(bytes.len());
                bytes.splice(at..end, EXTREMES[rng.random_range(0..EXTREMES.len())].bytes());
            }
        }
        _ => {
            let at = rng.random_range(0..bytes.len());
            bytes[at] = rng.random_range(0x20..0x7f);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Largest absolute difference between two tensors (read back to the host).
pub fn max_abs_diff<const D: usize>(a: &Tensor<D>, b: &Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.to_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    let b = b.to_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    a.iter()
        .zip(&b)
        .map(|(x, y)| if x.is_nan() || y.is_nan() { f32::INFINITY } else { (x - y).abs() })
        .fold(0.0, f32::max)
}

/// Replace every float parameter of a module with seeded `N(mean, std)` values (norm weights
/// included), so that tests exercise every weight rather than identity initializations.
pub fn randomize<M: burn::module::Module>(module: M, seed: u64, std: f32) -> M {
    struct Randomizer {
        seed: u64,
        std: f32,
    }
    impl burn::module::ModuleMapper for Randomizer {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            self.seed += 1;
            let (seed, std) = (self.seed, self.std);
            param.map(|t| {
                let dims = t.dims();
                let values: Vec<f32> = randn_vec(dims.iter().product(), seed).into_iter().map(|x| x * std).collect();
                let x = Tensor::from_data(TensorData::new(values, dims), &t.device());
                // A trainable parameter on an autodiff device stays trainable.
                if t.is_require_grad() { x.require_grad() } else { x }
            })
        }
    }
    module.map(&mut Randomizer { seed, std })
}

/// A word-level `tokenizer.json` (whitespace pre-tokenizer) whose ids are the positions of `words`;
/// `words[0]` is registered as a special token (use it as the end-of-text token), and an unknown
/// word maps to `<unk>`, which must be among `words`.
pub fn word_tokenizer_json(words: &[&str]) -> String {
    let vocab: serde_json::Map<String, serde_json::Value> =
        words.iter().enumerate().map(|(i, w)| (w.to_string(), i.into())).collect();
    serde_json::json!({
        "version": "1.0",
        "added_tokens": [{"id": 0, "content": words[0], "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    })
    .to_string()
}

/// A stand-in for a trained router: token to full attention where its layer input projects
/// positively on a seeded random direction (`Always` variants saturate), for the routed layers
/// `layers`.
#[derive(Debug)]
pub enum TestRouter {
    Projection { layers: Vec<usize>, direction: Tensor<2> },
    Always { layers: Vec<usize>, full: bool },
}

impl TestRouter {
    /// Routes from a random direction of a model of width `hidden`: about half the tokens on FA.
    pub fn projection(layers: Vec<usize>, hidden: usize, seed: u64, device: &Device) -> Self {
        Self::Projection { layers, direction: randn([hidden, 1], seed, device) }
    }
}

impl TokenRouter for TestRouter {
    fn route(&self, layer: usize, input: &Tensor<3>) -> Result<Option<Tensor<2, Bool>>> {
        let [b, t, h] = input.dims();
        match self {
            Self::Projection { layers, .. } | Self::Always { layers, .. } if !layers.contains(&layer) => Ok(None),
            Self::Projection { direction, .. } => {
                let x = input.clone().cast(burn::tensor::DType::F32).reshape([b * t, h]);
                Ok(Some(x.matmul(direction.clone()).reshape([b, t]).greater_elem(0.0)))
            }
            Self::Always { full, .. } => {
                let route = Tensor::<2, Bool>::from_data(TensorData::new(vec![*full; b * t], [b, t]), &input.device());
                Ok(Some(route))
            }
        }
    }
}
