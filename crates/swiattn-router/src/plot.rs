//! PNG pictures of where full attention goes, drawn with plotters:
//!
//! - [`allocation`]: an allocation as a layers × KV-heads grid (full dark, sliding light);
//! - [`gates`]: continuous per-unit values in `[0, 1]` (ConSA's `P(z > 0)`, DuoAttention gates);
//! - [`routing`]: a routing map of one input, layers × tokens (FA tokens dark).
//!
//! Text uses an embedded subset of DejaVu Sans (`assets/`), so no system font is needed.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;
use swiattn_core::model::Allocation;
use swiattn_core::{Error, Result};

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-ascii.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            panic!("the embedded font is a valid TrueType font");
        }
    });
}

/// Color of a value in `[0, 1]`: white (0, sliding) to dark blue (1, full).
fn shade(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let mix = |light: f64, dark: f64| (light + (dark - light) * v).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 48.0), mix(255.0, 107.0))
}

/// Draw a `rows × cols` grid of values in `[0, 1]` (`values[col][row]`) with axis labels.
fn heatmap(path: &Path, title: &str, x_label: &str, y_label: &str, values: &[Vec<f64>]) -> Result<()> {
    register_font();
    let fail = |e: &dyn std::fmt::Display| Error::Invalid(format!("{}: could not draw the plot: {e}", path.display()));
    let cols = values.len();
    let rows = values.iter().map(Vec::len).max().unwrap_or(0);
    if cols == 0 || rows == 0 {
        return Err(Error::Invalid(format!("{}: nothing to plot", path.display())));
    }
    let cell = (900 / cols.max(1)).clamp(2, 40) as u32;
    let width = (cell * cols as u32 + 120).max(360);
    let height = ((cell * rows as u32).clamp(60, 700)) + 110;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0..cols, 0..rows)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(cols.min(20))
        .y_labels(rows.min(16))
        .label_style((FAMILY, 12))
        .draw()
        .map_err(|e| fail(&e))?;
    let cells = values.iter().enumerate().flat_map(|(x, col)| {
        col.iter().enumerate().map(move |(y, &v)| Rectangle::new([(x, y), (x + 1, y + 1)], shade(v).filled()))
    });
    chart.draw_series(cells).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// An allocation as a layers × units picture (units: one per layer, or the KV heads).
pub fn allocation(allocation: &Allocation, path: &Path) -> Result<()> {
    let values: Vec<Vec<f64>> =
        allocation.full.iter().map(|row| row.iter().map(|&f| f64::from(u8::from(f))).collect()).collect();
    let budget = allocation.budget.map(|b| format!(", budget {b:.2}")).unwrap_or_default();
    let title = format!("{} (FA {:.3}{budget})", allocation.policy, allocation.fa_ratio());
    let y = match allocation.granularity {
        swiattn_core::model::Granularity::Layer => "layer unit",
        swiattn_core::model::Granularity::KvHead => "KV head",
    };
    heatmap(path, &title, "layer", y, &values)
}

/// Continuous per-unit values in `[0, 1]`, `values[layer][unit]` (e.g. gate probabilities).
pub fn gates(values: &[Vec<f64>], title: &str, path: &Path) -> Result<()> {
    heatmap(path, title, "layer", "unit", values)
}

/// A routing map of one input: `routes[i] = (layer, FA flag per token)`, drawn tokens × layers.
pub fn routing(routes: &[(usize, Vec<bool>)], title: &str, path: &Path) -> Result<()> {
    let len = routes.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
    // Columns are tokens, rows are the routed layers in order.
    let values: Vec<Vec<f64>> = (0..len)
        .map(|t| routes.iter().map(|(_, r)| r.get(t).map_or(0.0, |&f| f64::from(u8::from(f)))).collect())
        .collect();
    let layers: Vec<String> = routes.iter().map(|(l, _)| l.to_string()).collect();
    let title = format!("{title} (layers {})", layers.join(","));
    heatmap(path, &title, "token", "routed layer (in order)", &values)
}
/// Named series of `(x, y)` points as lines with markers (each series sorted by x), with a legend:
/// e.g. quality against the achieved FA ratio, one series per policy.
pub fn series(
    series: &[(String, Vec<(f64, f64)>)],
    title: &str,
    x_label: &str,
    y_label: &str,
    path: &Path,
) -> Result<()> {
    register_font();
    let fail = |e: &dyn std::fmt::Display| Error::Invalid(format!("{}: could not draw the plot: {e}", path.display()));
    let points: Vec<(f64, f64)> =
        series.iter().flat_map(|(_, p)| p.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    if points.is_empty() {
        return Err(Error::Invalid(format!("{}: nothing to plot", path.display())));
    }
    let span = |values: Vec<f64>| {
        let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let pad = ((hi - lo) * 0.08).max(1e-3);
        (lo - pad)..(hi + pad)
    };
    let (xs, ys) = (span(points.iter().map(|p| p.0).collect()), span(points.iter().map(|p| p.1).collect()));
    let root = BitMapBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 18))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(xs, ys)
        .map_err(|e| fail(&e))?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style((FAMILY, 12)).draw().map_err(|e| fail(&e))?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut sorted = points.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(sorted.clone(), color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(sorted.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FAMILY, 12))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
