//! Rule baselines produce the documented layouts; bad rules give one clear error.

use swiattn_core::attention::Window;
use swiattn_core::model::{Granularity, ModelShape};
use swiattn_router::rules::Rule;

fn model(layers: usize, kv_heads: usize) -> ModelShape {
    ModelShape {
        model_type: "gemma3_text".into(),
        num_hidden_layers: layers,
        num_attention_heads: kv_heads * 2,
        num_key_value_heads: kv_heads,
        hidden_size: 64,
    }
}

fn full_layers(rule: &str, layers: usize) -> Vec<usize> {
    let a = rule.parse::<Rule>().unwrap().allocation(&model(layers, 1), Window::new(512).unwrap()).unwrap();
    assert_eq!(a.granularity, Granularity::Layer);
    (0..layers).filter(|&l| a.full[l][0]).collect()
}

#[test]
fn layer_rules_place_full_attention_as_documented() {
    assert_eq!(full_layers("interleave:5", 18), vec![5, 11, 17], "Gemma 3's 5:1");
    assert_eq!(full_layers("interleave:1", 6), vec![1, 3, 5]);
    assert_eq!(full_layers("all-full", 4), vec![0, 1, 2, 3]);
    assert_eq!(full_layers("all-sliding", 4), Vec::<usize>::new());
    assert_eq!(full_layers("layers:0,7,3", 10), vec![0, 3, 7]);
    assert_eq!(full_layers("first:2", 10), vec![0, 1]);
    assert_eq!(full_layers("last:2", 10), vec![8, 9]);
    assert_eq!(full_layers("middle:2", 10), vec![4, 5]);
    assert_eq!(full_layers("middle:3", 10), vec![3, 4, 5]);
}

#[test]
fn head_fraction_meets_the_budget_spread_over_layers() {
    let a = "heads:0.25".parse::<Rule>().unwrap().allocation(&model(30, 3), Window::new(64).unwrap()).unwrap();
    assert_eq!(a.granularity, Granularity::KvHead);
    let total: usize = a.full.iter().map(|row| row.iter().filter(|&&f| f).count()).sum();
    assert_eq!(total, 23, "round(0.25 · 90) = 23 heads");
    assert!(a.full.iter().all(|row| row.iter().filter(|&&f| f).count() <= 1), "spread: at most one per layer");
    let a = "heads:0.5".parse::<Rule>().unwrap().allocation(&model(4, 4), Window::new(64).unwrap()).unwrap();
    assert!(a.full.iter().all(|row| row == &vec![true, true, false, false]));
}

#[test]
fn bad_rules_give_one_clear_error() {
    let w = Window::new(8).unwrap();
    let e = "layers:3,20".parse::<Rule>().unwrap().allocation(&model(10, 1), w).unwrap_err().to_string();
    assert!(e.contains("layer 20 does not exist"), "{e}");
    let e = "first:11".parse::<Rule>().unwrap().allocation(&model(10, 1), w).unwrap_err().to_string();
    assert!(e.contains("11 full layers of 10"), "{e}");
    let e = "heads:1.5".parse::<Rule>().unwrap_err().to_string();
    assert!(e.contains("[0, 1]"), "{e}");
    let e = "every-other".parse::<Rule>().unwrap_err().to_string();
    assert!(e.contains("unknown rule") && e.contains("interleave:K"), "{e}");
    let e = "interleave:x".parse::<Rule>().unwrap_err().to_string();
    assert!(e.contains("whole number"), "{e}");
}
