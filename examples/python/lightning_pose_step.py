"""Lightning Pose's loss factory swapped for lossc's in a training step.

A tiny heatmap model learns to put a Gaussian bump where each keypoint is, trained with
a supervised heatmap MSE and an (annealed) temporal smoothness loss on the keypoints read
from its heatmaps, as a Lightning Pose heatmap model with unsupervised losses is. The
only change to the training step is where the loss factory comes from:

    # Lightning Pose:
    #   loss_factory = LossFactory(losses_params_dict, data_module)
    # lossc, from the .loss files:
    loss_factory = lossc.lightning_pose.loss_factory(paths, losses_params_dict)

    total, log_list = loss_factory(stage="train", anneal_weight=anneal, **tensors)
    total.backward()

Run: python examples/python/lightning_pose_step.py [--steps N] [--backend cpu|gpu|auto]
"""

import argparse
import pathlib

import torch

import lossc.lightning_pose

ROOT = pathlib.Path(__file__).resolve().parents[2]
PATHS = sorted(str(p) for p in (ROOT / "examples" / "lightning_pose").glob("*.loss"))

# As a Lightning Pose config writes them (the keys name the losses).
LOSSES_PARAMS_DICT = {
    "heatmap_mse": {"log_weight": 0.0},
    "temporal": {"log_weight": 2.0, "epsilon": 0.1, "prob_threshold": 0.0, "device": "cpu"},
}

B, K, H, W = 8, 4, 16, 16


def soft_argmax(heatmaps):
    """Keypoints (B, 2K) as the expectation of each heatmap's softmax."""
    b, k, h, w = heatmaps.shape
    p = torch.softmax(heatmaps.reshape(b, k, h * w) * 20.0, dim=-1).reshape(b, k, h, w)
    xs = torch.arange(w, dtype=heatmaps.dtype)
    ys = torch.arange(h, dtype=heatmaps.dtype)
    x = (p.sum(2) * xs).sum(-1)
    y = (p.sum(3) * ys).sum(-1)
    return torch.stack([x, y], dim=-1).reshape(b, 2 * k)


def targets(gen):
    """Gaussian heatmaps around keypoints that drift slowly from frame to frame."""
    start = torch.rand(1, K, 2, generator=gen) * (H - 4) + 2
    drift = torch.randn(B, K, 2, generator=gen).cumsum(0) * 0.3
    kp = (start + drift).clamp(1, H - 2)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    d2 = (xs - kp[..., 0, None, None]) ** 2 + (ys - kp[..., 1, None, None]) ** 2
    g = torch.exp(-d2 / (2 * 1.5**2))
    return g / g.sum((-1, -2), keepdim=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(0)
    heatmaps_targ = targets(gen)
    images = heatmaps_targ.sum(1, keepdim=True) + 0.05 * torch.randn(B, 1, H, W, generator=gen)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, K, 5, padding=2),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_factory = lossc.lightning_pose.loss_factory(PATHS, LOSSES_PARAMS_DICT, backend=args.backend)

    for step in range(args.steps):
        opt.zero_grad()
        heatmaps_pred = model(images)
        anneal = min(1.0, step / 50)  # Lightning Pose's linear warm-up of unsupervised losses
        total, log_list = loss_factory(
            stage="train",
            anneal_weight=anneal,
            heatmaps_targ=heatmaps_targ,
            heatmaps_pred=heatmaps_pred,
            keypoints_pred=soft_argmax(heatmaps_pred),
        )
        total.backward()
        opt.step()
        if step % 20 == 0 or step == args.steps - 1:
            logs = ", ".join(f"{d['name']} {d['value']:.4g}" for d in log_list if d["name"].endswith("_loss"))
            print(f"step {step:3d}  total {total.item():.5f}  ({logs})", flush=True)
    print(f"ran on {loss_factory.last_result.backend}")


if __name__ == "__main__":
    main()
