//! A step's result summed over the ranks of a job: each rank ran the forward and backward of its
//! own micro-batches (`micro::passes`, every term already divided by the step's total count), so
//! the sums are the step's means — what one process accumulating all the micro-batches computes,
//! up to the order of float additions.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use swiattn_core::model::Transformer;
use swiattn_core::{Result, host};

use super::Group;
use crate::micro::Partial;
use crate::routing::Routing;

/// `part` summed over the ranks of `group`: loss, penalty, FA ratios, the model's and the policy's
/// gradients.
pub fn all_reduce(group: &mut Group, part: Partial, model: &Transformer, routing: &Routing) -> Result<Partial> {
    // Scalars: the loss, the penalty (and whether there is one), the FA ratio of each routed
    // layer; every rank has the same routed layers, so the same keys.
    let layers: Vec<usize> = part.fa_ratio.keys().copied().collect();
    let mut scalars = vec![part.loss, f64::from(u8::from(part.penalty.is_some())), part.penalty.unwrap_or(0.0)];
    scalars.extend(part.fa_ratio.values());
    group.all_reduce("the step's loss and FA ratios", &mut scalars)?;
    let fa_ratio: BTreeMap<usize, f64> = layers.into_iter().zip(scalars[3..].iter().copied()).collect();
    let model_grads = sum_grads(group, "the model's gradients", part.model_grads, model)?;
    let policy_grads = match part.policy_grads {
        Some(grads) => Some(routing.all_reduce_grads(group, grads)?),
        None => None,
    };
    Ok(Partial {
        loss: scalars[0],
        penalty: (scalars[1] > 0.0).then_some(scalars[2]),
        fa_ratio,
        model_grads,
        policy_grads,
    })
}

/// The gradients of `module`'s parameters summed over the ranks. A parameter without a gradient on
/// a rank counts as zeros there; one without a gradient on every rank stays without.
pub fn sum_grads<M: Module>(
    group: &mut Group,
    what: &str,
    grads: GradientsParams,
    module: &M,
) -> Result<GradientsParams> {
    let mut flat = Flatten { grads: &grads, values: Vec::new(), slots: Vec::new(), device: None, failed: None };
    module.visit(&mut flat);
    if let Some(e) = flat.failed {
        return Err(e);
    }
    let Flatten { mut values, slots, device, .. } = flat;
    // A rank without any of these gradients puts the sums where the module's parameters live.
    let device = match device {
        Some(device) => device,
        None => module
            .devices()
            .first()
            .cloned()
            .ok_or_else(|| swiattn_core::Error::Invalid(format!("{what}: the module has no device")))?,
    };
    // One extra value per parameter: how many ranks had its gradient.
    values.extend(slots.iter().map(|s| f32::from(u8::from(s.present))));
    group.all_reduce(what, &mut values)?;
    let present = values.split_off(values.len() - slots.len());
    let mut rebuild = Rebuild {
        values: &values,
        slots: &slots,
        present: &present,
        device: &device,
        next: 0,
        out: GradientsParams::new(),
    };
    module.visit(&mut rebuild);
    Ok(rebuild.out)
}

/// Where one parameter's gradient sits in the flat buffer.
struct Slot {
    id: ParamId,
    offset: usize,
    shape: Vec<usize>,
    present: bool,
}

struct Flatten<'a> {
    grads: &'a GradientsParams,
    values: Vec<f32>,
    slots: Vec<Slot>,
    /// Where this rank's gradients live (all of a module's share one device).
    device: Option<Device>,
    failed: Option<swiattn_core::Error>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let shape = param.val().dims().to_vec();
        let offset = self.values.len();
        let n: usize = shape.iter().product();
        let grad = self.grads.get::<D>(param.id);
        let present = grad.is_some();
        if let Some(grad) = grad {
            self.device = Some(grad.device());
            match host::floats(grad, "a gradient") {
                Ok(v) => self.values.extend(v),
                Err(e) => drop(self.failed.get_or_insert(e)),
            }
        }
        // Zeros where this rank has no gradient (or could not read it: the error is reported).
        self.values.resize(offset + n, 0.0);
        self.slots.push(Slot { id: param.id, offset, shape, present });
    }
}

struct Rebuild<'a> {
    values: &'a [f32],
    slots: &'a [Slot],
    present: &'a [f32],
    device: &'a Device,
    next: usize,
    out: GradientsParams,
}

impl ModuleVisitor for Rebuild<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (i, slot) = (self.next, &self.slots[self.next]);
        self.next += 1;
        debug_assert_eq!(slot.id, param.id);
        if self.present[i] == 0.0 {
            return;
        }
        let n: usize = slot.shape.iter().product();
        let data = TensorData::new(self.values[slot.offset..slot.offset + n].to_vec(), slot.shape.clone());
        self.out.register::<D>(param.id, Tensor::from_data(data, self.device));
    }
}
