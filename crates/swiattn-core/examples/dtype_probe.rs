use burn::tensor::DType;
use swiattn_core::attention::*;
use swiattn_core::testing::*;
fn main() {
    let device = test_device();
    for dtype in [DType::F16, DType::BF16] {
        let q = randn([1, 4, 70, 8], 1, &device).cast(dtype);
        let k = randn([1, 2, 70, 8], 2, &device).cast(dtype);
        let v = randn([1, 2, 70, 8], 3, &device).cast(dtype);
        let w = Window::new(16).unwrap();
        let out = sliding_attention(q.clone(), k.clone(), v.clone(), w, Positions::default(), 0.3, 16);
        let vis = Visibility::span(Span::Sliding(w), Positions::default(), 70, 70);
        let r = attention_reference(q.cast(DType::F32), k.cast(DType::F32), v.cast(DType::F32), &vis, 0.3);
        println!("{dtype:?}: out dtype {:?} diff {}", out.dtype(), max_abs_diff(&out.cast(DType::F32), &r));
    }
}
