#!/usr/bin/env python3
"""Reference values and gradients of the loss zoo (`examples/zoo/*.loss`), from PyTorch.

Writes `examples/zoo/reference.json` (or the path given with `--out`):

    /work/pyenv/bin/python scripts/reference/zoo.py [--out FILE]

Needs PyTorch and NumPy only. For every zoo loss it draws small random arrays with
NumPy (one `numpy.random.default_rng(SEED)` per loss, seeded from the loss's position
in LOSSES, so adding a loss does not change the others' data), rounds them to float32,
computes the loss in float32 on the CPU with the real PyTorch function (or, where the
source is not PyTorch itself or is not installed here, e.g. torchvision, MMPose,
DeepLabCut's TensorFlow code, Keras, BasicSR, that source's forward written out in torch
with the same operations), and takes autograd gradients of the value with respect to the
inputs listed for the loss. The Rust test `tests/zoo.rs` reads only the JSON.

JSON layout:

    {"generated_by": "scripts/reference/zoo.py", "torch_version": ...,
     "losses": {NAME: {"file": "NAME.loss",
                       "data": {INPUT: {"shape": [...], "data": [...flat...]},
                                PARAM: NUMBER or {"shape": ..., "data": ...}},
                       "value": V,
                       "grads": {INPUT: {"shape": [...], "data": [...]}}}}}

`data` is a lossc data file as it stands (docs/language.md, "Data files"): params that
keep their `.loss` default are left out. Numbers are float32 values written as the
shortest repr of the value widened to a double; NaN is the string "NaN" and infinities
"Infinity" / "-Infinity" (what lossc's data loader accepts).
"""

import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

SEED = 20261130
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def f32(a):
    return np.asarray(a, dtype=np.float32)


def uniform(rng, lo, hi, shape):
    return f32(rng.uniform(lo, hi, size=shape))


def normal(rng, shape, scale=1.0):
    return f32(rng.standard_normal(shape) * scale)


def signs(rng, shape):
    return f32(rng.choice([-1.0, 1.0], size=shape))


def bits(rng, shape):
    return f32(rng.integers(0, 2, size=shape))


def softmax_np(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return f32(e / e.sum(axis=axis, keepdims=True))


# ---------------------------------------------------------------- the losses
# Each entry: name -> (make(rng) -> (arrays, params), torch_fn(t, params) -> value,
#                      inputs to differentiate).
# `arrays` are the .loss file's inputs; `params` the non-default params (also passed to
# torch_fn, so that the torch side uses the same values).

def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction="none"):
    # torchvision/ops/focal_loss.py (torchvision is not installed here), verbatim body.
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "none":
        pass
    elif reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss


class MMPoseWingLoss:
    # mmpose/models/losses/regression_loss.py (MMPose 1.x), WingLoss.criterion / forward.
    def __init__(self, omega=10.0, epsilon=2.0, use_target_weight=False, loss_weight=1.0):
        self.omega = omega
        self.epsilon = epsilon
        self.use_target_weight = use_target_weight
        self.loss_weight = loss_weight
        self.C = self.omega * (1.0 - math.log(1.0 + self.omega / self.epsilon))

    def criterion(self, pred, target):
        delta = (target - pred).abs()
        losses = torch.where(
            delta < self.omega,
            self.omega * torch.log(1.0 + delta / self.epsilon),
            delta - self.C,
        )
        return torch.mean(torch.sum(losses, dim=[1, 2]), dim=0)

    def __call__(self, output, target, target_weight=None):
        if self.use_target_weight:
            loss = self.criterion(output * target_weight.unsqueeze(-1), target * target_weight.unsqueeze(-1))
        else:
            loss = self.criterion(output, target)
        return loss * self.loss_weight


class MMPoseSoftWingLoss:
    # mmpose/models/losses/regression_loss.py (MMPose 1.x), SoftWingLoss.
    def __init__(self, omega1=2.0, omega2=20.0, epsilon=0.5, use_target_weight=False, loss_weight=1.0):
        self.omega1 = omega1
        self.omega2 = omega2
        self.epsilon = epsilon
        self.use_target_weight = use_target_weight
        self.loss_weight = loss_weight
        self.B = self.omega1 - self.omega2 * math.log(1.0 + self.omega1 / self.epsilon)

    def criterion(self, pred, target):
        delta = (target - pred).abs()
        losses = torch.where(
            delta < self.omega1,
            delta,
            self.omega2 * torch.log(1.0 + delta / self.epsilon) + self.B,
        )
        return torch.mean(torch.sum(losses, dim=[1, 2]), dim=0)

    def __call__(self, output, target, target_weight=None):
        if self.use_target_weight:
            loss = self.criterion(output * target_weight.unsqueeze(-1), target * target_weight.unsqueeze(-1))
        else:
            loss = self.criterion(output, target)
        return loss * self.loss_weight


class MMPoseAdaptiveWingLoss:
    # mmpose/models/losses/heatmap_loss.py (MMPose 1.x), AdaptiveWingLoss.
    def __init__(self, alpha=2.1, omega=14, epsilon=1, theta=0.5, use_target_weight=False, loss_weight=1.0):
        self.alpha = float(alpha)
        self.omega = float(omega)
        self.epsilon = float(epsilon)
        self.theta = float(theta)
        self.use_target_weight = use_target_weight
        self.loss_weight = loss_weight

    def criterion(self, pred, target):
        H, W = pred.shape[2:4]
        delta = (target - pred).abs()
        A = (
            self.omega
            * (1 / (1 + torch.pow(self.theta / self.epsilon, self.alpha - target)))
            * (self.alpha - target)
            * (torch.pow(self.theta / self.epsilon, self.alpha - target - 1))
            * (1 / self.epsilon)
        )
        C = self.theta * A - self.omega * torch.log(1 + torch.pow(self.theta / self.epsilon, self.alpha - target))
        losses = torch.where(
            delta < self.theta,
            self.omega * torch.log(1 + torch.pow(delta / self.epsilon, self.alpha - target)),
            A * delta - C,
        )
        return torch.mean(losses)

    def __call__(self, output, target, target_weights=None):
        if self.use_target_weight:
            loss = self.criterion(output * target_weights.unsqueeze(-1).unsqueeze(-1), target * target_weights.unsqueeze(-1).unsqueeze(-1))
        else:
            loss = self.criterion(output, target)
        return loss * self.loss_weight


def mmpose_keypoint_mse(output, target, target_weights, loss_weight=1.0):
    # mmpose/models/losses/heatmap_loss.py (MMPose 1.x), KeypointMSELoss.forward with
    # use_target_weight=True, skip_empty_channel=False, mask=None.
    B, K = output.shape[:2]
    mask = target_weights.view(B, K, 1, 1)  # _get_mask: target_weights expanded to ndim
    _loss = F.mse_loss(output, target, reduction="none")
    loss = (_loss * mask).mean()
    return loss * loss_weight


def mmpose_smooth_l1(output, target, target_weight, loss_weight=1.0):
    # mmpose/models/losses/regression_loss.py (MMPose 1.x), SmoothL1Loss.forward with
    # use_target_weight=True (criterion = F.smooth_l1_loss).
    for _ in range(output.ndim - target_weight.ndim):
        target_weight = target_weight.unsqueeze(-1)
    loss = F.smooth_l1_loss(output * target_weight, target * target_weight)
    return loss * loss_weight


def tf_sum_by_nonzero_weights(losses, weights):
    # tf.compat.v1.losses.compute_weighted_loss, Reduction.SUM_BY_NONZERO_WEIGHTS:
    # sum(losses * weights) / count_nonzero(weights broadcast), div_no_nan.
    weighted = losses * weights
    total = weighted.sum()
    present = (weights != 0).to(losses.dtype).sum()
    return torch.where(present > 0, total / torch.clamp(present, min=1), torch.zeros_like(total))


def dlc_part_score_bce(part_pred, targets, weights):
    # tf.nn.sigmoid_cross_entropy_with_logits: max(x, 0) - x * z + log(1 + exp(-abs(x))),
    # as tf.compat.v1.losses.sigmoid_cross_entropy computes it (label_smoothing=0).
    x = part_pred
    ce = torch.relu(x) - x * targets + torch.log1p(torch.exp(-torch.abs(x)))
    return tf_sum_by_nonzero_weights(ce, weights)


def dlc_locref_huber(pred, targets, mask, locref_loss_weight=0.05, k=1.0):
    # DeepLabCut >= 2.2, pose_estimation_tensorflow/nnets/base.py: locref_loss_weight *
    # tf.compat.v1.losses.huber_loss(targets, pred, mask) (delta 1, SUM_BY_NONZERO_WEIGHTS);
    # before 2.2, nnet/losses.py huber_loss: where(|diff| < k, 0.5 diff^2,
    # k |diff| - 0.5 k^2), then compute_weighted_loss(losses, weight). The same numbers.
    diff = pred - targets
    abs_diff = torch.abs(diff)
    losses = torch.where(abs_diff < k, 0.5 * torch.square(diff), k * abs_diff - 0.5 * k**2)
    return locref_loss_weight * tf_sum_by_nonzero_weights(losses, mask)


def keras_log_cosh(y_true, y_pred):
    # tf.keras.losses.log_cosh, then SUM_OVER_BATCH_SIZE (mean over the batch).
    x = y_pred - y_true
    per_row = torch.mean(x + F.softplus(-2.0 * x) - math.log(2.0), dim=-1)
    return per_row.mean()


def basicsr_charbonnier(pred, target, eps=1e-12, loss_weight=1.0):
    # basicsr/losses/basic_loss.py charbonnier_loss (weighted_loss, reduction='mean').
    return loss_weight * torch.sqrt((pred - target) ** 2 + eps).mean()


def make_kl(rng):
    N, C = 3, 5
    log_pred = f32(np.log(softmax_np(normal(rng, (N, C)), 1)))
    target = softmax_np(normal(rng, (N, C)), 1)
    target[0, 1] = 0.0
    target[1, 3] = 0.0
    target[2, 0] = 0.0
    target = target / target.sum(axis=1, keepdims=True)  # rows still sum to 1
    return {"log_pred": log_pred, "target": f32(target)}, {}


def make_soft_ce(rng):
    logits = normal(rng, (4, 6), 2.0)
    logits[1, 2] = 60.0  # a large logit: the max shift keeps exp from overflowing
    logits[2, 4] = -50.0
    probs = softmax_np(normal(rng, (4, 6)), 1)
    probs[3] = 0.0
    probs[3, 1] = 1.0  # a one-hot row
    return {"logits": logits, "probs": f32(probs)}, {}


def make_ce(rng):
    logits = normal(rng, (6, 5), 2.0)
    logits[2, 3] = 60.0  # a large logit: logsumexp's shift keeps exp from overflowing
    target = np.array([4, -100, 3, 0, 1, 4])  # sample 1 is ignored (ignore_index)
    return {"logits": logits}, {"target": target, "class_weight": uniform(rng, 0.5, 2.0, (5,)),
                                "label_smoothing": 0.1}


def make_nll(rng):
    logits = normal(rng, (7, 4), 2.0)
    logp = f32(logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))
    target = np.array([3, 0, -100, 2, 2, -100, 1])  # samples 2 and 5 are ignored
    return {"logp": logp}, {"target": target, "class_weight": uniform(rng, 0.5, 2.0, (4,))}


def mmpose_ohkm_mse(output, target, target_weights, topk=8, loss_weight=1.0):
    # mmpose/models/losses/heatmap_loss.py (MMPose 1.x), KeypointOHKMMSELoss.forward and
    # _ohkm, use_target_weight=True.
    num_keypoints = output.size(1)
    losses = []
    for idx in range(num_keypoints):
        target_weight = target_weights[:, idx, None, None]
        losses.append(F.mse_loss(output[:, idx] * target_weight, target[:, idx] * target_weight,
                                 reduction="none"))
    losses = [loss.mean(dim=(1, 2)).unsqueeze(dim=1) for loss in losses]
    losses = torch.cat(losses, dim=1)
    ohkm_loss = 0.0
    B = losses.shape[0]
    for i in range(B):
        sub_loss = losses[i]
        _, topk_idx = torch.topk(sub_loss, k=topk, dim=0, sorted=False)
        tmp_loss = torch.gather(sub_loss, 0, topk_idx)
        ohkm_loss += torch.sum(tmp_loss) / topk
    ohkm_loss /= B
    return ohkm_loss * loss_weight


def make_ohkm(rng):
    B, K, H, W = 3, 11, 4, 4
    targ = uniform(rng, 0, 1, (B, K, H, W)) ** 3
    pred = f32(targ + uniform(rng, -0.8, 0.8, (B, K, H, W)))
    w = uniform(rng, 0.2, 1.5, (B, K))
    w[0, 3] = 0.0
    w[2, 7] = 0.0
    return {"heatmaps_pred": f32(pred), "heatmaps_targ": f32(targ), "target_weights": f32(w)}, {}


def make_bce(rng):
    return {"prob": uniform(rng, 0.02, 0.98, (4, 5)),
            "target": f32(np.concatenate([bits(rng, (2, 5)), uniform(rng, 0, 1, (2, 5))]))}, {}


def make_wing(rng):
    pred = uniform(rng, -10, 10, (3, 4, 2))
    target = f32(pred + uniform(rng, -20, 20, (3, 4, 2)))
    return {"pred": pred, "target": target}, {}


def make_soft_wing(rng):
    pred = uniform(rng, -3, 3, (3, 4, 2))
    target = f32(pred + uniform(rng, -4, 4, (3, 4, 2)))
    return {"pred": pred, "target": target}, {}


def make_heatmaps(rng):
    B, K, H, W = 3, 4, 5, 5
    targ = uniform(rng, 0, 1, (B, K, H, W)) ** 3
    pred = f32(targ + uniform(rng, -0.8, 0.8, (B, K, H, W)))
    return f32(pred), f32(targ)


def make_adaptive_wing(rng):
    pred, targ = make_heatmaps(rng)
    return {"heatmaps_pred": pred, "heatmaps_targ": targ}, {}


def make_keypoint_mse(rng):
    pred, targ = make_heatmaps(rng)
    w = uniform(rng, 0.2, 1.5, (3, 4))
    w[0, 1] = 0.0
    w[2, 3] = 0.0
    return {"heatmaps_pred": pred, "heatmaps_targ": targ, "target_weights": f32(w)}, {}


def make_mmpose_smooth_l1(rng):
    pred = normal(rng, (3, 4, 2), 2.0)
    target = f32(pred + normal(rng, (3, 4, 2), 1.5))
    w = uniform(rng, 0.2, 1.5, (3, 4))
    w[1, 2] = 0.0
    return {"pred": pred, "target": target, "target_weights": f32(w)}, {}


def make_dlc_part(rng):
    B, H, W, J = 2, 5, 5, 3
    logits = normal(rng, (B, H, W, J), 3.0)
    targets = bits(rng, (B, H, W, J))
    weights = f32(rng.choice([0.0, 1.0, 1.0, 0.5], size=(B, H, W, J)))
    return {"part_pred": logits, "part_score_targets": targets, "part_score_weights": weights}, {}


def make_dlc_locref(rng):
    B, H, W, J = 2, 5, 5, 3
    pred = normal(rng, (B, H, W, 2 * J), 2.0)
    targets = normal(rng, (B, H, W, 2 * J), 2.0)
    mask = f32(rng.choice([0.0, 1.0], size=(B, H, W, 2 * J), p=[0.6, 0.4]))
    return {"locref_pred": pred, "locref_targets": targets, "locref_mask": mask}, {}


def make_log_cosh(rng):
    pred = normal(rng, (4, 5), 2.0)
    target = normal(rng, (4, 5), 2.0)
    pred[0, 0] = 30.0  # |d| above softplus's threshold 20 (d = pred - target)
    target[0, 0] = -5.0
    pred[1, 1] = -40.0
    target[1, 1] = 3.0
    return {"pred": pred, "target": target}, {}


LOSSES = {
    "bce_with_logits": (
        lambda rng: ({"logits": normal(rng, (4, 5), 3.0),
                      "target": f32(np.concatenate([bits(rng, (2, 5)), uniform(rng, 0, 1, (2, 5))]))}, {}),
        lambda t, p: F.binary_cross_entropy_with_logits(t["logits"], t["target"]),
        ["logits", "target"],
    ),
    "bce_with_logits_pos_weight": (
        lambda rng: ({"logits": normal(rng, (4, 5), 3.0), "target": bits(rng, (4, 5))},
                     {"pos_weight": uniform(rng, 0.5, 4.0, (5,))}),
        lambda t, p: F.binary_cross_entropy_with_logits(
            t["logits"], t["target"], pos_weight=torch.from_numpy(p["pos_weight"])),
        ["logits", "target"],
    ),
    "binary_cross_entropy": (
        make_bce,
        lambda t, p: F.binary_cross_entropy(t["prob"], t["target"]),
        ["prob", "target"],
    ),
    "smooth_l1": (
        lambda rng: ({"pred": normal(rng, (4, 5), 1.5), "target": normal(rng, (4, 5), 1.5)}, {}),
        lambda t, p: F.smooth_l1_loss(t["pred"], t["target"]),
        ["pred", "target"],
    ),
    "huber": (
        lambda rng: ({"pred": normal(rng, (4, 5), 2.0), "target": normal(rng, (4, 5), 2.0)},
                     {"delta": 1.5}),
        lambda t, p: F.huber_loss(t["pred"], t["target"], delta=p["delta"]),
        ["pred", "target"],
    ),
    "soft_margin": (
        lambda rng: ({"logits": normal(rng, (4, 5), 2.0), "target": signs(rng, (4, 5))}, {}),
        lambda t, p: F.soft_margin_loss(t["logits"], t["target"]),
        ["logits"],  # torch: not differentiable with respect to the target
    ),
    "poisson_nll": (
        lambda rng: ({"log_rate": normal(rng, (4, 5)), "target": f32(rng.poisson(1.5, size=(4, 5)))}, {}),
        lambda t, p: F.poisson_nll_loss(t["log_rate"], t["target"], log_input=True, full=False),
        ["log_rate", "target"],
    ),
    "gaussian_nll": (
        lambda rng: ({"pred": normal(rng, (4, 3)), "target": normal(rng, (4, 3)),
                      "var": uniform(rng, 0.05, 2.0, (4, 3))}, {}),
        lambda t, p: F.gaussian_nll_loss(t["pred"], t["target"], t["var"], full=False, eps=1e-6),
        ["pred", "target", "var"],
    ),
    "kl_div": (
        make_kl,
        lambda t, p: F.kl_div(t["log_pred"], t["target"], reduction="batchmean", log_target=False),
        ["log_pred", "target"],
    ),
    "margin_ranking": (
        lambda rng: ({"x1": normal(rng, (8,)), "x2": normal(rng, (8,)), "target": signs(rng, (8,))},
                     {"margin": 0.5}),
        lambda t, p: F.margin_ranking_loss(t["x1"], t["x2"], t["target"], margin=p["margin"]),
        ["x1", "x2"],
    ),
    "hinge_embedding": (
        lambda rng: ({"dist": uniform(rng, 0.0, 2.0, (4, 5)), "target": signs(rng, (4, 5))}, {}),
        lambda t, p: F.hinge_embedding_loss(t["dist"], t["target"]),
        ["dist"],
    ),
    "multilabel_soft_margin": (
        lambda rng: ({"logits": normal(rng, (4, 5), 2.0), "target": bits(rng, (4, 5))}, {}),
        lambda t, p: F.multilabel_soft_margin_loss(t["logits"], t["target"]),
        ["logits", "target"],
    ),
    "cosine_embedding": (
        lambda rng: ({"x1": normal(rng, (6, 4)), "x2": normal(rng, (6, 4)),
                      "target": f32([1, -1, 1, -1, -1, 1])}, {"margin": 0.1}),
        lambda t, p: F.cosine_embedding_loss(t["x1"], t["x2"], t["target"], margin=p["margin"]),
        ["x1", "x2"],
    ),
    "soft_target_cross_entropy": (
        make_soft_ce,
        lambda t, p: F.cross_entropy(t["logits"], t["probs"]),
        ["logits", "probs"],
    ),
    "l1": (
        lambda rng: ({"pred": normal(rng, (4, 5)), "target": normal(rng, (4, 5))}, {}),
        lambda t, p: F.l1_loss(t["pred"], t["target"]),
        ["pred", "target"],
    ),
    "mse": (
        lambda rng: ({"pred": normal(rng, (4, 5)), "target": normal(rng, (4, 5))}, {}),
        lambda t, p: F.mse_loss(t["pred"], t["target"]),
        ["pred", "target"],
    ),
    "sigmoid_focal": (
        lambda rng: ({"logits": normal(rng, (4, 5), 3.0), "target": bits(rng, (4, 5))}, {}),
        lambda t, p: torchvision_sigmoid_focal_loss(t["logits"], t["target"], reduction="mean"),
        ["logits", "target"],
    ),
    "mmpose_wing": (
        make_wing,
        lambda t, p: MMPoseWingLoss()(t["pred"], t["target"]),
        ["pred", "target"],
    ),
    "mmpose_soft_wing": (
        make_soft_wing,
        lambda t, p: MMPoseSoftWingLoss()(t["pred"], t["target"]),
        ["pred", "target"],
    ),
    "mmpose_adaptive_wing": (
        make_adaptive_wing,
        lambda t, p: MMPoseAdaptiveWingLoss()(t["heatmaps_pred"], t["heatmaps_targ"]),
        ["heatmaps_pred", "heatmaps_targ"],
    ),
    "mmpose_keypoint_mse": (
        make_keypoint_mse,
        lambda t, p: mmpose_keypoint_mse(t["heatmaps_pred"], t["heatmaps_targ"], t["target_weights"]),
        ["heatmaps_pred", "heatmaps_targ", "target_weights"],
    ),
    "mmpose_smooth_l1": (
        make_mmpose_smooth_l1,
        lambda t, p: mmpose_smooth_l1(t["pred"], t["target"], t["target_weights"]),
        ["pred", "target", "target_weights"],
    ),
    "dlc_part_score_bce": (
        make_dlc_part,
        lambda t, p: dlc_part_score_bce(t["part_pred"], t["part_score_targets"], t["part_score_weights"]),
        ["part_pred", "part_score_targets"],
    ),
    "dlc_locref_huber": (
        make_dlc_locref,
        lambda t, p: dlc_locref_huber(t["locref_pred"], t["locref_targets"], t["locref_mask"]),
        ["locref_pred", "locref_targets"],
    ),
    "log_cosh": (
        make_log_cosh,
        lambda t, p: keras_log_cosh(t["target"], t["pred"]),
        ["pred", "target"],
    ),
    "charbonnier": (
        lambda rng: ({"pred": normal(rng, (2, 3, 4, 4)), "target": normal(rng, (2, 3, 4, 4))}, {}),
        lambda t, p: basicsr_charbonnier(t["pred"], t["target"]),
        ["pred", "target"],
    ),
    "cross_entropy": (
        make_ce,
        lambda t, p: F.cross_entropy(
            t["logits"], torch.from_numpy(p["target"].astype(np.int64)),
            weight=torch.from_numpy(p["class_weight"]), ignore_index=-100,
            label_smoothing=p["label_smoothing"]),
        ["logits"],
    ),
    "nll": (
        make_nll,
        lambda t, p: F.nll_loss(
            t["logp"], torch.from_numpy(p["target"].astype(np.int64)),
            weight=torch.from_numpy(p["class_weight"]), ignore_index=-100),
        ["logp"],
    ),
    "mmpose_ohkm_mse": (
        make_ohkm,
        lambda t, p: mmpose_ohkm_mse(t["heatmaps_pred"], t["heatmaps_targ"], t["target_weights"]),
        ["heatmaps_pred", "target_weights"],
    ),
}


# ---------------------------------------------------------------- JSON
def number(x):
    x = float(np.float32(x))
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x  # repr of the float32 value widened to a double


def tensor(a):
    a = f32(a)
    return {"shape": list(a.shape), "data": [number(v) for v in a.reshape(-1)]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "examples", "zoo", "reference.json"))
    args = ap.parse_args()
    torch.set_default_dtype(torch.float32)
    out = {"generated_by": "scripts/reference/zoo.py", "torch_version": torch.__version__, "losses": {}}
    for i, (name, (make, fn, wrt)) in enumerate(LOSSES.items()):
        rng = np.random.default_rng(SEED + i)
        arrays, params = make(rng)
        t = {k: torch.tensor(v, requires_grad=k in wrt) for k, v in arrays.items()}
        value = fn(t, params)
        assert value.dtype == torch.float32 and value.ndim == 0, name
        grads = torch.autograd.grad(value, [t[k] for k in wrt])
        data = {k: tensor(v) for k, v in arrays.items()}
        for k, v in params.items():
            data[k] = tensor(v) if isinstance(v, np.ndarray) else number(v)
        out["losses"][name] = {
            "file": f"{name}.loss",
            "data": data,
            "value": number(value.item()),
            "grads": {k: tensor(g.numpy()) for k, g in zip(wrt, grads)},
        }
        nan = sum(int(torch.isnan(g).sum()) for g in grads)
        print(f"{name:28s} value {value.item():.8g}  grads {', '.join(wrt)}" + (f"  ({nan} NaN)" if nan else ""))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out}: {len(out['losses'])} losses")


if __name__ == "__main__":
    main()
