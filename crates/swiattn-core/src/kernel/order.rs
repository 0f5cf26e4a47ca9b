//! Which query rows a fused launch computes, in which order, under which window.

use burn::tensor::{Bool, Device, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::attention::{RouteMask, Span, Window};

/// The query rows of a fused attention call as two sorted, disjoint segments per sequence:
/// segment A, `order[b, ..split[b]]`, attends under `spans[0]`; segment B, `order[b, split[b]..]`,
/// under `spans[1]`. Rows within a segment are in position order, so a query tile covers a
/// contiguous stretch of positions and the kernels can skip key tiles outside its window.
///
/// - one span for every row: `order = 0..len`, `split = len`;
/// - routed (switch) attention: the FA rows, then the SWA rows.
#[derive(Clone, Debug)]
pub struct QueryOrder {
    /// `[batch, len]` row indices.
    pub order: Tensor<2, Int>,
    /// `[batch]` length of segment A.
    pub split: Tensor<1, Int>,
    pub spans: [Span; 2],
}

impl QueryOrder {
    /// Every row of every sequence under `span`.
    pub fn uniform(span: Span, batch: usize, len: usize, device: &Device) -> Self {
        let order: Vec<i64> = (0..batch).flat_map(|_| 0..len as i64).collect();
        Self::new(order, vec![len as i64; batch], [span, span], batch, len, device)
    }

    /// Routed rows: per sequence, the rows routed to full attention, then those routed to the
    /// sliding window `window`, each in position order.
    pub fn routed(route: &RouteMask, window: Window, device: &Device) -> Self {
        let (batch, len) = (route.batch, route.len);
        let mut order = Vec::with_capacity(batch * len);
        let mut split = Vec::with_capacity(batch);
        for b in 0..batch {
            let fa = &route.fa[b * len..(b + 1) * len];
            order.extend((0..len).filter(|&t| fa[t]).map(|t| t as i64));
            split.push(order.len() as i64 - (b * len) as i64);
            order.extend((0..len).filter(|&t| !fa[t]).map(|t| t as i64));
        }
        Self::new(order, split, [Span::Full, Span::Sliding(window)], batch, len, device)
    }

    /// [`Self::routed`] from a `[batch, len]` route on the device (`true` = FA), without reading
    /// it back: each row's slot is its rank among its sequence's FA rows, or the FA count plus its
    /// rank among the SWA rows (one prefix sum), and one scatter writes the rows into their slots.
    pub fn routed_on_device(route: &Tensor<2, Bool>, window: Window) -> Self {
        let [batch, len] = route.dims();
        let device = route.device();
        let fa = route.clone().int();
        let swa = fa.clone().neg() + 1;
        let n_fa = fa.clone().sum_dim(1);
        let rows = Tensor::<1, Int>::arange(0..len as i64, &device).unsqueeze::<2>().expand([batch, len]);
        // One prefix sum: the SWA rows before row t are the t rows before it less the FA ones.
        // (burn's cumsum takes ~80 µs a call at [2, 4096] on an H200: 7 % of a profiled routed
        // training step, docs/LOG.md 2026-12-03.)
        let fa_before = fa.clone().cumsum(1) - fa.clone();
        let slot = fa_before.clone() * fa + (rows.clone() - fa_before + n_fa.clone()) * swa;
        let order = Tensor::<2, Int>::zeros([batch, len], &device).scatter(1, slot, rows, IndexingUpdateOp::Add);
        Self { order, split: n_fa.reshape([batch]), spans: [Span::Full, Span::Sliding(window)] }
    }

    fn new(order: Vec<i64>, split: Vec<i64>, spans: [Span; 2], batch: usize, len: usize, device: &Device) -> Self {
        Self {
            order: Tensor::from_data(TensorData::new(order, [batch, len]), device),
            split: Tensor::from_data(TensorData::new(split, [batch]), device),
            spans,
        }
    }
}

/// The kernels' encoding of a span: the window size, 0 for full attention.
pub(crate) fn window_code(span: Span) -> u32 {
    span.window().map_or(0, |w| w.size() as u32)
}
