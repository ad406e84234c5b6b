"""PyTorch's values for the recipes of docs/language.md, section 11.

Writes tests/reference/recipes.json: for each recipe (by loss name), the data it runs on,
the loss PyTorch computes on that data in float32, and PyTorch's autograd gradient with
respect to the first input. tests/recipes.rs runs every recipe from the docs on both of
lossc's back ends against these values, without needing PyTorch.

Run: python scripts/reference/recipes.py   (from the repository root)
"""

import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(2026)


def f32(a):
    return torch.tensor(np.asarray(a, dtype=np.float32))


def tensor_json(t):
    t = t.detach().to(torch.float32)
    return {"shape": list(t.shape), "data": [float(v) for v in t.flatten().tolist()]}


recipes = {}


def record(name, data, first, value):
    """`data`: the lossc data object; `first`: the input tensor differentiated."""
    value.backward()
    out = {}
    for k, v in data.items():
        out[k] = tensor_json(v) if isinstance(v, torch.Tensor) else v
    recipes[name] = {
        "data": out,
        "value": float(value.item()),
        "wrt": first,
        "grad": tensor_json(data[first].grad),
    }


# cross_entropy: class ids with an ignored sample, class weights, label smoothing.
N, C = 6, 4
logits = f32(rng.normal(size=(N, C)) * 2).requires_grad_()
target = [2, -100, 0, 3, 1, 2]
class_weight = f32([0.5, 2.0, 1.0, 1.5])
v = F.cross_entropy(logits, torch.tensor(target), weight=class_weight, ignore_index=-100,
                    label_smoothing=0.1)
record("cross_entropy", {"logits": logits, "target": target,
                         "class_weight": class_weight, "label_smoothing": 0.1}, "logits", v)

# soft_cross_entropy: probability targets.
logits = f32(rng.normal(size=(N, C)) * 3).requires_grad_()
probs = torch.softmax(f32(rng.normal(size=(N, C))), 1)
record("soft_cross_entropy", {"logits": logits, "probs": probs}, "logits",
       F.cross_entropy(logits, probs))

# focal: torchvision.ops.sigmoid_focal_loss, written out as torchvision writes it.
logits = f32(rng.normal(size=(12,)) * 3).requires_grad_()
targets = f32(rng.integers(0, 2, size=(12,)))
p = torch.sigmoid(logits)
ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
p_t = p * targets + (1 - p) * (1 - targets)
loss = ce * ((1 - p_t) ** 2)
loss = (0.25 * targets + 0.75 * (1 - targets)) * loss
record("focal", {"logits": logits, "targets": targets}, "logits", loss.mean())

# weighted_mse: sum(w (pred - target)^2) / sum(w) over every element.
B, K, D = 3, 5, 2
pred = f32(rng.normal(size=(B, K, D))).requires_grad_()
tgt = f32(rng.normal(size=(B, K, D)))
w = f32(rng.integers(0, 2, size=(B, K)) * rng.uniform(0.5, 2, size=(B, K)))
wb = w[:, :, None].expand(B, K, D)
record("weighted_mse", {"pred": pred, "target": tgt, "target_weight": w}, "pred",
       (wb * (pred - tgt) ** 2).sum() / wb.sum())

# ohkm_mse: per sample, the mean of the topk largest per-keypoint MSEs, then the batch mean.
B, K, H, W = 2, 10, 4, 4
pred = f32(rng.uniform(size=(B, K, H, W))).requires_grad_()
tgt = f32(rng.uniform(size=(B, K, H, W)))
losses = ((pred - tgt) ** 2).mean(dim=(2, 3))
top, _ = torch.topk(losses, k=8, dim=1)
record("ohkm_mse", {"pred": pred, "target": tgt}, "pred", (top.sum(1) / 8).mean())

# kl_bins: kl_div(log_q, p, reduction='batchmean') with some zero bins in p.
B, C = 4, 6
log_q = torch.log_softmax(f32(rng.normal(size=(B, C))), 1).detach().requires_grad_()
p = torch.softmax(f32(rng.normal(size=(B, C))), 1)
p[0, 1] = 0.0
p[2, 4] = 0.0
record("kl_bins", {"log_q": log_q, "p": p}, "log_q",
       F.kl_div(log_q, p, reduction="batchmean"))

# wing: MMPose's WingLoss(omega=10, epsilon=2), mean over the batch of the sum over K, D.
B, K, D = 3, 4, 2
pred = f32(rng.normal(size=(B, K, D)) * 8).requires_grad_()
tgt = f32(rng.normal(size=(B, K, D)) * 8)
omega, eps = 10.0, 2.0
C_ = omega - omega * np.log(1.0 + omega / eps)
delta = (tgt - pred).abs()
losses = torch.where(delta < omega, omega * torch.log(1.0 + delta / eps), delta - C_)
record("wing", {"pred": pred, "target": tgt}, "pred",
       torch.mean(torch.sum(losses, dim=[1, 2]), dim=0))

# nll: class ids with two ignored samples and class weights (a weighted mean).
N, C = 7, 4
logp = torch.log_softmax(f32(rng.normal(size=(N, C)) * 2), 1).detach().requires_grad_()
target = [3, -100, 0, 2, -100, 1, 3]
class_weight = f32([0.5, 2.0, 1.0, 1.5])
record("nll", {"logp": logp, "target": target, "class_weight": class_weight}, "logp",
       F.nll_loss(logp, torch.tensor(target), weight=class_weight, ignore_index=-100))

# flat_heatmap_mse: heatmaps flattened by a head, [B, K, H*W], against [B, K, H, W]
# targets: mse_loss of the viewed prediction.
B, K, H, W = 2, 3, 4, 5
pred = f32(rng.normal(size=(B, K, H * W))).requires_grad_()
tgt = f32(rng.uniform(0, 1, size=(B, K, H, W)))
record("flat_heatmap_mse", {"pred": pred, "target": tgt}, "pred",
       F.mse_loss(pred.view(B, K, H, W), tgt))

out = {
    "generated_by": "scripts/reference/recipes.py",
    "torch_version": torch.__version__,
    "recipes": recipes,
}
path = pathlib.Path(__file__).resolve().parents[2] / "tests/reference/recipes.json"
path.write_text(json.dumps(out) + "\n")
print(f"wrote {path}: {len(recipes)} recipes")
