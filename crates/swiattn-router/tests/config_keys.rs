//! The config keys documented in docs/policies.md deserialize as documented (the training TOML uses
//! the same serde names; JSON stands in for it here), and unknown keys are errors.

use swiattn_router::consa::ConsaConfig;
use swiattn_router::regularizer::{Coefficient, EfficiencyRegularizer};
use swiattn_router::router::{Estimator, GradientPath, RouterConfig, TemperatureSchedule};
use swiattn_router::{Granularity, Scope};

#[test]
fn documented_keys_parse() {
    let consa: ConsaConfig = serde_json::from_str(
        r#"{"granularity": "kv_head", "budget": 0.25, "scope": "per_layer",
            "hard_concrete": {"beta": 0.5, "gamma": -0.2, "zeta": 1.2}, "init_log_alpha": 1.0}"#,
    )
    .unwrap();
    assert_eq!((consa.granularity, consa.scope, consa.hard_concrete.zeta), (Granularity::KvHead, Scope::PerLayer, 1.2));
    assert_eq!((consa.multiplier_lr, consa.seed), (0.2, 0));

    let router: RouterConfig = serde_json::from_str(
        r#"{"mlp_hidden": 64, "gradient": "scaled",
            "estimator": {"kind": "gumbel", "schedule": {"start": 1.0, "end": 0.3, "steps": 2000}}}"#,
    )
    .unwrap();
    assert_eq!(router.mlp_hidden, Some(64));
    assert_eq!(router.gradient, GradientPath::Scaled);
    assert_eq!(
        router.estimator,
        Estimator::Gumbel { schedule: TemperatureSchedule { start: 1.0, end: 0.3, steps: 2000 } }
    );
    assert_eq!(router.init_bias, 2.0);

    let regularizer: EfficiencyRegularizer = serde_json::from_str(
        r#"{"target": 0.25, "coefficient": {"kind": "pi", "kp": 1.0, "ki": 0.02}, "scope": "global"}"#,
    )
    .unwrap();
    assert_eq!(regularizer.coefficient, Coefficient::Pi { kp: 1.0, ki: 0.02 });
}

#[test]
fn bad_keys_and_budgets_are_errors() {
    let e = serde_json::from_str::<ConsaConfig>(r#"{"granularity": "layer", "budget": 1.5}"#).unwrap_err().to_string();
    assert!(e.contains("[0, 1]"), "{e}");
    let e = serde_json::from_str::<RouterConfig>(r#"{"mlp_hiden": 64}"#).unwrap_err().to_string();
    assert!(e.contains("mlp_hiden"), "{e}");
    let e = serde_json::from_str::<ConsaConfig>(r#"{"granularity": "head", "budget": 0.5}"#).unwrap_err().to_string();
    assert!(e.contains("head"), "{e}");
}
