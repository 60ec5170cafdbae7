#!/usr/bin/env python3
"""Do the model's features tell the two failing held-out kinds from what claims them? A diagnostic, not a model.

Thin poles lose to 1 - p(road) because person and pole claim their pixels; road-coloured objects tie it because road
claims them (results/train_nano.md). If a linear probe on a feature separates the kind's obstacle patches from the
patches of the classes that claim them, the information is there and the training signal is what is missing; if not,
the features are. Per 16x16 patch (the ViT's grid), three features of one checkpoint:
- RGB: the patch's colour mean and standard deviation (6 numbers; a floor);
- ViT: the frozen backbone's four group outputs, concatenated (the stand-in for ImageNet weights);
- pixel decoder: the mask features every query's mask is a dot product with (after APM, dual-stream refinement and
  the pixel decoder; averaged over the patch).
Beside them, unfitted, the patch means of the model's own Eq. 2 score and of 1 - p(road): what the model does with
those features. A patch holds its context too (the road around a thin pole), which a probe may use as the model could.
Two tasks, each a logistic regression cross-validated over frames (5 folds, frames never split):
- on the road: the kind's obstacle patches against its road patches (what 1 - p(road) does);
- against the claimants: the kind's obstacle patches against in-distribution patches of the classes that claim them
  (thin_pole: person, pole; road_coloured: road), from the Cityscapes-format val frames.
A control row probes the kind's road patches against val road patches: the claimant task compares patches of two
generators, and a probe that can tell the generators apart inflates it. AUROC is the measure to read (AP depends on
how many patches of each side there are).
The probes are fitted on the evaluation kinds themselves, which no training step may do: they measure what the
features hold, not what a model could ship.

    python results/train_nano_logs/feature_probe/probe.py [CHECKPOINT ...] \
        > results/train_nano_logs/feature_probe/probe.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

REPO = Path(__file__).resolve().parents[3]
sys.path.append(str(REPO))

from dsa_core.checkpoint import model_from_checkpoint  # noqa: E402
from dsa_core.data.anomaly_sets import benchmark_samples, open_benchmark  # noqa: E402
from dsa_core.eval.baselines import baseline_scores  # noqa: E402
from dsa_core.labels import CITYSCAPES_CLASSES  # noqa: E402

PATCH = 16
SCORES = ("Eq. 2", "1 - p(road)")  # the model's own scores (no fitting), beside the probes
OBSTACLE_SHARE = 0.2  # a patch is an obstacle patch when this share of its pixels is obstacle (thin poles: 2-5 px)
PURE_SHARE = 1.0  # a road patch: every pixel road
# kind -> (the classes that claim its pixels, the share of a val patch they must cover): thin claimants at the
# obstacles' share (a pole or a person rarely fills a patch), the road as a full patch
CLAIMANTS = {"thin_pole": (("person", "pole"), OBSTACLE_SHARE), "road_coloured": (("road",), PURE_SHARE)}


@torch.no_grad()
def patch_features(model, image: np.ndarray) -> dict[str, np.ndarray]:
    """image [H, W, 3] uint8 -> {feature name: [h*w, C]} on the 16-px grid."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    xn, _ = model.preprocess(x)
    vit = model.backbone_features(xn)
    mask_features, _ = model.decoder.pixel_decoder(model.adapter(xn, vit).features)
    h, w = image.shape[0] // PATCH, image.shape[1] // PATCH
    rgb = x.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH)  # [1, 3, h, w, 16, 16]
    rgb = torch.cat([rgb.mean((-1, -2)), rgb.std((-1, -2))], 1)
    feats = {"RGB": rgb, "ViT": torch.cat([v[..., :h, :w] for v in vit], 1),
             "pixel decoder": F.adaptive_avg_pool2d(mask_features, (h, w))}
    out = {k: v[0].flatten(1).T.numpy() for k, v in feats.items()}
    # the model's own scores, no fitting: the patch means of Eq. 2 and of 1 - p(road)
    pred = model.predict(x)
    scores = {"Eq. 2": pred["anomaly"][0].numpy(),
              "1 - p(road)": baseline_scores(pred["semantic"][0].numpy())["not_drivable"]}
    for name, s in scores.items():
        out[name] = s[:h * PATCH, :w * PATCH].reshape(h, PATCH, w, PATCH).mean((1, 3)).reshape(-1, 1)
    return out


def shares(label: np.ndarray, value: int) -> np.ndarray:
    """Share of each 16-px patch's pixels equal to value -> [h*w]."""
    h, w = label.shape[0] // PATCH, label.shape[1] // PATCH
    m = (label[:h * PATCH, :w * PATCH] == value).reshape(h, PATCH, w, PATCH)
    return m.mean((1, 3)).ravel()


def probe(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """Cross-validated (over frames) AUROC and AP of a standardised logistic regression."""
    scores = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=5).split(x, y, groups):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
        clf.fit(x[train], y[train])
        scores[test] = clf.predict_proba(x[test])[:, 1]
    return roc_auc_score(y, scores), average_precision_score(y, scores)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="*", default=[str(REPO / "runs" / "fr" / "r_seed5" / "final.pt"),
                                                        str(REPO / "runs" / "fr" / "stage1" / "final.pt")],
                    help="default: the shipped model's stage 2 and the stage 1 it started from")
    ap.add_argument("--data", default=str(REPO / "runs" / "recipe" / "data"))
    ap.add_argument("--val-frames", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    # read once for every checkpoint: (image, train ids) of the val frames, (image, 0/1/255 label) of each kind's
    val_set = open_benchmark("cityscapes", data / "cityscapes")
    val = [(s.image, s.semantic) for s in (val_set[i] for i in range(min(len(val_set), args.val_frames)))]
    kinds = {kind: benchmark_samples("fs_laf", data / "kinds" / kind) for kind in CLAIMANTS}
    print("# Feature probes\n")
    print("Cross-validated over frames (5 folds); AUROC / AP in %, positives = the kind's obstacle patches "
          f"(>= {OBSTACLE_SHARE:.0%} obstacle pixels). `probe.py` next to this file says what each row means.")
    for checkpoint in args.checkpoints:
        print(f"\n## {Path(checkpoint).relative_to(REPO) if Path(checkpoint).is_relative_to(REPO) else checkpoint}\n")
        probe_checkpoint(checkpoint, val, kinds)
    return 0


def probe_checkpoint(checkpoint: str, val_images: list, kind_images: dict[str, list]) -> None:
    model, _ = model_from_checkpoint(checkpoint)
    model.eval()
    val = [(patch_features(model, image), label) for image, label in val_images]  # shared by both kinds
    print("| kind | task | patches (pos / neg) | probe: RGB | probe: ViT | probe: pixel decoder | Eq. 2 | "
          "1 - p(road) |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, (claimants, claim_share) in CLAIMANTS.items():
        frames = [(patch_features(model, image), label) for image, label in kind_images[kind]]
        pos = {k: [] for k in frames[0][0]}
        road = {k: [] for k in frames[0][0]}
        pos_groups, road_groups = [], []
        for i, (f, label) in enumerate(frames):
            is_pos, is_road = shares(label, 1) >= OBSTACLE_SHARE, shares(label, 0) >= PURE_SHARE
            for k in f:
                pos[k].append(f[k][is_pos])
                road[k].append(f[k][is_road])
            pos_groups += [i] * int(is_pos.sum())
            road_groups += [i] * int(is_road.sum())
        claim = {k: [] for k in frames[0][0]}
        val_road = {k: [] for k in frames[0][0]}
        claim_groups, val_road_groups = [], []
        for j, (f, label) in enumerate(val):
            is_claim = np.zeros(len(next(iter(f.values()))), bool)
            for name in claimants:
                is_claim |= shares(label, CITYSCAPES_CLASSES.index(name)) >= claim_share
            is_road = shares(label, CITYSCAPES_CLASSES.index("road")) >= PURE_SHARE
            for k in f:
                claim[k].append(f[k][is_claim])
                val_road[k].append(f[k][is_road])
            claim_groups += [len(frames) + j] * int(is_claim.sum())
            val_road_groups += [len(frames) + j] * int(is_road.sum())
        # the control: road against road, the kind's frames against the val frames; a probe that tells them apart
        # reads the frame's source, not the object, and the claimant row's probes inherit that
        for task, (p_feats, p_groups), (n_feats, n_groups) in (
                ("obstacle vs road, same frames", (pos, pos_groups), (road, road_groups)),
                (f"obstacle vs val {' / '.join(claimants)}", (pos, pos_groups), (claim, claim_groups)),
                ("control: road of these frames vs val road", (road, road_groups), (val_road, val_road_groups))):
            cells = []
            y = np.r_[np.ones(len(p_groups)), np.zeros(len(n_groups))]
            for k in p_feats:
                x = np.concatenate(p_feats[k] + n_feats[k])
                if k in SCORES:
                    auroc, ap_ = roc_auc_score(y, x[:, 0]), average_precision_score(y, x[:, 0])
                else:
                    auroc, ap_ = probe(x, y, np.r_[p_groups, n_groups])
                cells.append(f"{100 * auroc:.1f} / {100 * ap_:.1f}")
            print(f"| {kind} | {task} | {len(p_groups)} / {len(n_groups)} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    raise SystemExit(main())
