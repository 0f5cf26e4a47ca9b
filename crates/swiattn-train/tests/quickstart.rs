//! The quickstart's claim at a smaller scale (fewer steps, shorter sequences): after continual
//! pretraining, SwiAttn recalls far-back tokens as well as full attention and far better than
//! sliding-only, while spending well under full attention's FLOPs.

use swiattn_core::testing::test_device;
use swiattn_train::quickstart::{QuickstartConfig, run};
use swiattn_train::synthetic::LaggedCopy;

#[test]
fn routing_buys_far_back_recall_for_a_fraction_of_full_attention() {
    let config = QuickstartConfig {
        task: LaggedCopy { seq_len: 64, lag: 24, filler_symbols: 32 },
        window: 8,
        pretrain_steps: 1000,
        convert_steps: 200,
        eval_sequences: 128,
        ..QuickstartConfig::default()
    };
    let rows = run(&config, &test_device().autodiff(), &mut |_| {}).unwrap();
    let get = |name: &str| rows.iter().find(|r| r.variant == name).unwrap();
    let (full, sliding, swiattn) = (get("full"), get("sliding"), get("swiattn"));
    eprintln!("{rows:#?}");
    assert!(full.recall_accuracy > 0.9, "full attention learns the lookup: {full:?}");
    assert!(sliding.recall_accuracy < 0.2, "the window cannot reach it: {sliding:?}");
    assert!(swiattn.recall_accuracy > full.recall_accuracy - 0.1, "routing keeps it: {swiattn:?}");
    assert!(swiattn.attention_flops_vs_full < 0.6, "for well under full's FLOPs: {swiattn:?}");
    assert!(swiattn.fa_ratio < 0.3, "{swiattn:?}");
    assert_eq!(full.attention_flops_vs_full, 1.0);
}
