//! The PNG pictures decode, and their full-attention cells cover the allocation's share of the grid.

use swiattn_core::attention::Window;
use swiattn_core::model::ModelShape;
use swiattn_router::plot;
use swiattn_router::rules::Rule;

/// The color of a full (value 1) cell.
const FULL: [u8; 3] = [8, 48, 107];

fn full_pixels(path: &std::path::Path) -> usize {
    let image = image::open(path).unwrap().to_rgb8();
    image.pixels().filter(|p| p.0 == FULL).count()
}

#[test]
fn allocation_pictures_show_the_full_units() {
    let dir = tempfile::tempdir().unwrap();
    let shape = ModelShape {
        model_type: "llama".into(),
        num_hidden_layers: 12,
        num_attention_heads: 8,
        num_key_value_heads: 4,
        hidden_size: 64,
    };
    let w = Window::new(16).unwrap();
    let mut counts = Vec::new();
    // Same grid (12 layers × 4 KV heads) for every picture, so areas compare.
    for rule in ["heads:0", "heads:0.25", "heads:0.5", "heads:1"] {
        let allocation = rule.parse::<Rule>().unwrap().allocation(&shape, w).unwrap();
        let path = dir.path().join(format!("{rule}.png"));
        plot::allocation(&allocation, &path).unwrap();
        counts.push(full_pixels(&path));
    }
    assert_eq!(counts[0], 0, "no full unit, no full cell");
    let all = counts[3] as f64;
    for (i, share) in [(1, 0.25), (2, 0.5)] {
        let got = counts[i] as f64 / all;
        assert!(
            (got - share).abs() < 0.03,
            "{share} of the units full, {got} of the cell area (cells differ by a pixel)"
        );
    }
}

#[test]
fn routing_maps_draw_one_row_per_layer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.png");
    let routes = vec![(1, vec![true, false, false, false]), (4, vec![false, false, false, false])];
    plot::routing(&routes, "test", &path).unwrap();
    let one = full_pixels(&path);
    let routes = vec![(1, vec![true, false, false, false]), (4, vec![true, true, false, false])];
    plot::routing(&routes, "test", &path).unwrap();
    let three = full_pixels(&path) as f64 / one as f64;
    assert!(
        (three - 3.0).abs() < 0.15,
        "three FA cells draw three times the area of one, got {three}× (cells differ by a pixel)"
    );
    let e = plot::routing(&[], "empty", &path).unwrap_err().to_string();
    assert!(e.contains("nothing to plot"), "{e}");
}
