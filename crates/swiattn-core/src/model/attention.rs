//! The self-attention block: projections, optional per-head q/k norms, RoPE, then the layer's
//! attention kind (full, sliding, routed, head-mixed) or a per-call [`LayerControl`], with or
//! without a KV cache.

use burn::module::{Initializer, Module};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::config::{Arch, Rope};
use super::control::{LayerControl, Route, check_gate};
use super::norm::RmsNorm;
use super::rope;
use crate::attention::LayerAttention;
use crate::attention::Window;
use crate::attention::{
    HeadSplit, Positions, Span, default_block, dense_attention, head_mixed_attention, ragged_attention,
    routed_attention, sliding_attention,
};
use crate::cache::{LayerCache, RowsVisible};
#[cfg(feature = "kernels")]
use crate::kernel;
use crate::{Error, Result};

/// Multi-head self-attention with grouped-query heads. Field names are the checkpoint keys.
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    /// Per-head RMSNorm on queries (Qwen3, Gemma 3), over `head_dim`.
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    #[module(skip)]
    pub num_heads: usize,
    #[module(skip)]
    pub num_kv_heads: usize,
    #[module(skip)]
    pub head_dim: usize,
    #[module(skip)]
    pub scale: f64,
    #[module(skip)]
    pub attention: LayerAttention,
    /// The window controls use: the layer's own, else the model's `sliding_window`.
    #[module(skip)]
    pub window: Option<Window>,
    #[module(skip)]
    pub rope: Rope,
}

/// Whether attention on `device` with `head_dim` runs the fused CubeCL kernels: built with them,
/// on a CubeCL device, with a head dim they take. Otherwise the tensor-op paths of
/// [`crate::attention`] run.
pub(crate) fn runs_fused(device: &Device, head_dim: usize) -> bool {
    #[cfg(feature = "kernels")]
    {
        kernel::runs_on(device) && kernel::supports_head_dim(head_dim)
    }
    #[cfg(not(feature = "kernels"))]
    {
        let _ = (device, head_dim);
        false
    }
}

/// Linear layers initialized as in Hugging Face: `N(0, initializer_range)`, zero bias.
pub(crate) fn linear(d_in: usize, d_out: usize, bias: bool, std: f64, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out).with_bias(bias).with_initializer(Initializer::Normal { mean: 0.0, std }).init(device)
}

impl SelfAttention {
    pub fn new(arch: &Arch, layer: usize, device: &Device) -> Self {
        let (h, hq, hkv, d) = (arch.hidden_size, arch.num_heads, arch.num_kv_heads, arch.head_dim);
        let qk_norm = matches!(arch.family, super::Family::Qwen3 | super::Family::Gemma3);
        let offset = arch.family == super::Family::Gemma3;
        let norm = || qk_norm.then(|| RmsNorm::new(d, arch.rms_norm_eps, offset, device));
        Self {
            q_proj: linear(h, hq * d, arch.qkv_bias, arch.initializer_range, device),
            k_proj: linear(h, hkv * d, arch.qkv_bias, arch.initializer_range, device),
            v_proj: linear(h, hkv * d, arch.qkv_bias, arch.initializer_range, device),
            o_proj: linear(hq * d, h, arch.o_bias, arch.initializer_range, device),
            q_norm: norm(),
            k_norm: norm(),
            num_heads: hq,
            num_kv_heads: hkv,
            head_dim: d,
            scale: arch.attn_scale,
            attention: arch.layers[layer].clone(),
            window: arch.layers[layer].window().or(arch.sliding_window),
            rope: arch.rope[layer].clone(),
        }
    }

    /// `x`: `[batch, len, hidden]` for positions `start..start + len` → `[batch, len, hidden]`.
    ///
    /// `rope` holds this layer's RoPE tables for those positions ([`rope::tables`] of `self.rope`).
    /// Without a cache the call must start at position 0 and sees only its own keys; with one,
    /// the new keys are added to the cache first. `control` overrides the configured attention
    /// (routed layers need one); check it first with [`Self::check_control`].
    pub fn forward(
        &self,
        x: Tensor<3>,
        start: usize,
        rope: &rope::Tables,
        cache: Option<&mut LayerCache>,
        control: Option<&LayerControl>,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let d = self.head_dim;
        let heads = |proj: &Linear, n: usize, norm: Option<&RmsNorm>| {
            let y = proj.forward(x.clone()).reshape([b, t, n, d]);
            match norm {
                Some(norm) => norm.forward(y),
                None => y,
            }
            .swap_dims(1, 2)
        };
        let q = rope.apply(heads(&self.q_proj, self.num_heads, self.q_norm.as_ref()));
        let k = rope.apply(heads(&self.k_proj, self.num_kv_heads, self.k_norm.as_ref()));
        let v = heads(&self.v_proj, self.num_kv_heads, None);
        let out = match cache {
            None => {
                assert_eq!(start, 0, "a forward without cache starts at position 0");
                self.attend(q, k, v, Positions::default(), control)
            }
            Some(cache) => self.attend_cached(q, k, v, start, cache, control),
        };
        self.o_proj.forward(out.swap_dims(1, 2).reshape([b, t, self.num_heads * d]))
    }

    /// Whether `control` can run on this layer for a `[batch, len]` call with this cache: routed
    /// layers need a route, controls need a window, shapes must match, and a control needs every
    /// key of the layer (no ring cache).
    pub fn check_control(
        &self,
        layer: usize,
        control: Option<&LayerControl>,
        batch: usize,
        len: usize,
        cache: Option<&LayerCache>,
    ) -> Result<()> {
        let Some(control) = control else {
            return match self.attention {
                LayerAttention::Routed(_) => {
                    Err(Error::Invalid(format!("layer {layer} is routed but no route was given for it")))
                }
                _ => Ok(()),
            };
        };
        if self.window.is_none() {
            return Err(Error::Invalid(format!(
                "layer {layer}: attention controls need a sliding window (set the model's `sliding_window`)"
            )));
        }
        if matches!(cache, Some(LayerCache::Ring(_) | LayerCache::Mixed { .. })) {
            return Err(Error::Invalid(format!(
                "layer {layer} is {} and keeps only a window of keys; controls need a full or routed layer",
                self.attention.type_name()
            )));
        }
        let ragged = matches!(cache, Some(LayerCache::Rows(_) | LayerCache::MixedRows { .. }));
        if ragged && !(self.attention.is_routed() && matches!(control, LayerControl::Route(_))) {
            return Err(Error::Invalid(format!(
                "layer {layer}: a ragged (stacked) cache takes only the routes of a routed layer; other controls need a plain cache"
            )));
        }
        match control {
            LayerControl::Route(route) => route.check(batch, len),
            LayerControl::RouteScaled { route, scale: per_token }
            | LayerControl::RouteMix { route, delta: per_token } => {
                route.check(batch, len)?;
                if per_token.dims() != [batch, len] {
                    return Err(Error::shape(
                        format!("layer {layer} per-token route factor"),
                        format!("[{batch}, {len}]"),
                        &per_token.dims(),
                    ));
                }
                Ok(())
            }
            LayerControl::Mix(gate) => check_gate(layer, gate, batch, self.num_heads, len),
        }
    }

    /// The layer's attention (or its control) over keys that end at the last query.
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pos: Positions,
        control: Option<&LayerControl>,
    ) -> Tensor<4> {
        if let Some(control) = control {
            let w = self.window.expect("checked by check_control");
            return match control {
                LayerControl::Route(route) => self.routed(q, k, v, route, w, pos),
                // Gates and scales come from fp32 policies; they act in the model's dtype.
                LayerControl::RouteScaled { route, scale } => {
                    let out = self.routed(q, k, v, route, w, pos);
                    let dtype = out.dtype();
                    out * scale.clone().cast(dtype).unsqueeze_dims::<4>(&[1, 3])
                }
                LayerControl::RouteMix { route, delta } => {
                    let [b, _, t, _] = q.dims();
                    let other = self.routed(
                        q.clone().detach(),
                        k.clone().detach(),
                        v.clone().detach(),
                        &route.inverted(),
                        w,
                        pos,
                    );
                    let out = self.routed(q, k, v, route, w, pos);
                    let dtype = out.dtype();
                    // full − sliding = ±(out − other): + where the token took full attention.
                    let sign = route.sign(&out.device()).cast(dtype).reshape([b, 1, t, 1]);
                    let full_minus_sliding = (out.clone().detach() - other) * sign;
                    out + delta.clone().cast(dtype).reshape([b, 1, t, 1]) * full_minus_sliding
                }
                LayerControl::Mix(gate) => {
                    let full = self.span(q.clone(), k.clone(), v.clone(), Span::Full, pos);
                    let sliding = self.span(q, k, v, Span::Sliding(w), pos);
                    let gate = gate.clone().cast(full.dtype());
                    sliding.clone() + gate * (full - sliding)
                }
            };
        }
        match &self.attention {
            LayerAttention::Full => self.span(q, k, v, Span::Full, pos),
            LayerAttention::Sliding(w) => self.span(q, k, v, Span::Sliding(*w), pos),
            LayerAttention::Routed(_) => unreachable!("routed layers are checked for a control before the forward"),
            LayerAttention::HeadMixed { window, full_kv_heads } if !self.fused(&q) => {
                head_mixed_attention(q, k, v, full_kv_heads, *window, pos, self.scale, default_block(*window))
            }
            LayerAttention::HeadMixed { window, full_kv_heads } => {
                let split = HeadSplit::new(full_kv_heads, self.num_heads);
                let ((qf, qs), (kf, ks), (vf, vs)) = (split.split_q(&q), split.split_kv(&k), split.split_kv(&v));
                let full = qf.map(|q| self.span(q, kf.unwrap(), vf.unwrap(), Span::Full, pos));
                let sliding = qs.map(|q| self.span(q, ks.unwrap(), vs.unwrap(), Span::Sliding(*window), pos));
                split.merge(full, sliding)
            }
        }
    }

    /// Whether this call runs the fused CubeCL kernels (see [`runs_fused`]).
    fn fused(&self, q: &Tensor<4>) -> bool {
        runs_fused(&q.device(), self.head_dim)
    }

    /// Every query under one span: fused, or dense (full) / blocked (sliding) tensor ops.
    fn span(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, span: Span, pos: Positions) -> Tensor<4> {
        #[cfg(feature = "kernels")]
        if self.fused(&q) {
            return kernel::fused_span_attention(q, k, v, span, pos, self.scale);
        }
        match span {
            Span::Full => dense_attention(q, k, v, Span::Full, pos, self.scale),
            Span::Sliding(w) => sliding_attention(q, k, v, w, pos, self.scale, default_block(w)),
        }
    }

    /// Per-token routes: fused (both branches in one launch; a device route ordered on the
    /// device) or the compacted tensor-op path (a device route read back).
    fn routed(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, route: &Route, w: Window, pos: Positions) -> Tensor<4> {
        #[cfg(feature = "kernels")]
        if self.fused(&q) {
            return match route {
                Route::Host(mask) => kernel::fused_routed_attention(q, k, v, mask, w, pos, self.scale),
                Route::Device(route) => kernel::fused_routed_attention_on_device(q, k, v, route, w, pos, self.scale),
            };
        }
        let mask = route.host().expect("a [batch, len] bool route reads back to the host");
        routed_attention(q, k, v, &mask, w, pos, self.scale, default_block(w))
    }

    /// The queries of a ragged batch over the columns each sees: the fused kernels for inference
    /// (prefill of left-padded prompts and decoding alike), else masked tensor ops.
    fn ragged(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, visible: &RowsVisible) -> Tensor<4> {
        #[cfg(feature = "kernels")]
        if self.fused(&q) && ![&q, &k, &v].iter().any(|t| t.is_require_grad()) {
            return kernel::fused_ragged_attention(q, k, v, visible.span(), visible.floor(), self.scale);
        }
        let hidden = visible.hidden(&q.device());
        ragged_attention(q, k, v, hidden, self.scale)
    }

    /// Per-token routes over a ragged batch (`visible` under the full span): each query under the
    /// full span or the window, as its route says. The ragged paths take one span per call, so
    /// both run for every query and the route picks each token's output — inference only, where
    /// a step's attention is a small part of its cost.
    fn ragged_routed(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        visible: &RowsVisible,
        route: &Route,
    ) -> Tensor<4> {
        let w = self.window.expect("checked by check_control");
        let full = self.ragged(q.clone(), k.clone(), v.clone(), visible);
        let sliding = self.ragged(q, k, v, &visible.with_span(Span::Sliding(w)));
        let [b, h, t, d] = full.dims();
        let fa = route.on_device(&full.device()).reshape([b, 1, t, 1]).expand([b, h, t, d]);
        sliding.mask_where(fa, full)
    }

    fn attend_cached(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        start: usize,
        cache: &mut LayerCache,
        control: Option<&LayerControl>,
    ) -> Tensor<4> {
        match (cache, &self.attention) {
            (LayerCache::Full(cache), _) => {
                let (k, v) = cache.append(k, v);
                self.attend(q, k, v, Positions::new(start, 0), control)
            }
            (LayerCache::Ring(ring), _) => {
                let (k, v, first) = ring.extend(k, v);
                self.attend(q, k, v, Positions::new(start, first), control)
            }
            (LayerCache::Mixed { full, ring }, LayerAttention::HeadMixed { window, full_kv_heads }) => {
                let split = HeadSplit::new(full_kv_heads, self.num_heads);
                let ((qf, qs), (kf, ks), (vf, vs)) = (split.split_q(&q), split.split_kv(&k), split.split_kv(&v));
                let out_full = qf.map(|q| {
                    let (k, v) = full.append(kf.unwrap(), vf.unwrap());
                    self.span(q, k, v, Span::Full, Positions::new(start, 0))
                });
                let out_sliding = qs.map(|q| {
                    let (k, v, first) = ring.extend(ks.unwrap(), vs.unwrap());
                    self.span(q, k, v, Span::Sliding(*window), Positions::new(start, first))
                });
                split.merge(out_full, out_sliding)
            }
            (LayerCache::Rows(rows), attention) => {
                let span = match attention {
                    LayerAttention::Sliding(w) => Span::Sliding(*w),
                    _ => Span::Full,
                };
                let (k, v, visible) = rows.append(k, v, span);
                match control {
                    Some(LayerControl::Route(route)) => self.ragged_routed(q, k, v, &visible, route),
                    _ => self.ragged(q, k, v, &visible),
                }
            }
            (LayerCache::MixedRows { full, sliding }, LayerAttention::HeadMixed { window, full_kv_heads }) => {
                let split = HeadSplit::new(full_kv_heads, self.num_heads);
                let ((qf, qs), (kf, ks), (vf, vs)) = (split.split_q(&q), split.split_kv(&k), split.split_kv(&v));
                let out_full = qf.map(|q| {
                    let (k, v, visible) = full.append(kf.unwrap(), vf.unwrap(), Span::Full);
                    self.ragged(q, k, v, &visible)
                });
                let out_sliding = qs.map(|q| {
                    let (k, v, visible) = sliding.append(ks.unwrap(), vs.unwrap(), Span::Sliding(*window));
                    self.ragged(q, k, v, &visible)
                });
                split.merge(out_full, out_sliding)
            }
            (LayerCache::Mixed { .. } | LayerCache::MixedRows { .. }, other) => {
                unreachable!("mixed cache for a {} layer", other.type_name())
            }
        }
    }
}
