"""`dsa eval` end to end on `dsa synth` sets of every supported format with a random-init dsa_nano checkpoint.

Numbers in metrics.json are recomputed here independently: images and labels read straight from the official file
layout, the model's scores from ``model.predict``, then sklearn (AP, ROC -> FPR95) and a naive confusion count (mIoU).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from dsa_core import build_model
from dsa_core.checkpoint import model_from_checkpoint, save_checkpoint
from dsa_core.cli import main as dsa_main

N, H, W = 3, 64, 128
ANOMALY_KEYS = ("smiyc_ra21", "smiyc_ro21", "fs_laf", "fs_static", "road_anomaly")
ALL_KEYS = ("cityscapes",) + ANOMALY_KEYS


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("data")
    for key in ANOMALY_KEYS:
        extra = ["--test-images", "1"] if key == "smiyc_ra21" else []
        assert dsa_main(["synth", key, "--out", str(root / key), "--count", str(N), "--height", str(H),
                         "--width", str(W), "--seed", "3", "--no-progress", *extra]) == 0
    assert dsa_main(["synth", "cityscapes", "--out", str(root / "cityscapes"), "--train", "0", "--val", "2",
                     "--height", str(H), "--width", str(W), "--seed", "3", "--no-progress"]) == 0
    torch.manual_seed(0)
    model = build_model("dsa_nano")
    ckpt = save_checkpoint({"config": model.cfg.to_dict(), "model": model.state_dict()},
                           tmp_path_factory.mktemp("ckpt") / "nano.pt")
    out = tmp_path_factory.mktemp("eval")
    rc = dsa_main(["eval", "--checkpoint", str(ckpt), "--dataset", *ALL_KEYS, "--root", str(root), "--out", str(out),
                   "--eval-size", "native", "--no-progress"])
    assert rc == 0
    return {"root": root, "ckpt": ckpt, "out": out}


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _gray(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _fs_laf_frames(root: Path):
    """(RGB image, label) of every frame of an FS L&F-format set, found from its label files as the format names
    them."""
    for label_path in sorted((root / "fishyscapes_lostandfound").iterdir()):
        parts = label_path.name.split("_")
        rel = Path("_".join(parts[1:-3])) / "_".join(parts[1:]).replace("_labels.png", "_leftImg8bit.png")
        img_path = next(p for p in (root / "lostandfound" / "leftImg8bit").glob(f"*/{rel}"))
        yield _rgb(img_path), _gray(label_path)


def _scores(model, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = model.predict(torch.from_numpy(image.copy()).permute(2, 0, 1)[None])
    return out["anomaly"][0].numpy().astype(np.float64), out["semantic"][0].argmax(0).numpy()


def _fpr95_sklearn(labels: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr, 0.95, side="left")])


def test_metrics_json_and_counts(setup) -> None:
    m = json.loads((setup["out"] / "metrics.json").read_text())
    assert set(m["datasets"]) == set(ALL_KEYS)
    assert m["num_failures"] == 0 and "native" in m["eval_resolution"]
    for key, r in m["datasets"].items():
        n = 2 if key == "cityscapes" else N
        assert r["num_found"] == r["num_selected"] == r["num_evaluated"] == n and r["failures"] == []
        assert len(r["overlays"]) == min(3, n)
        # one overlay per frame, named after it (a loop variable once renamed them all after the last baseline)
        from dsa_core.data.anomaly_sets import open_benchmark

        frames = open_benchmark(key, setup["root"] / key).frames
        assert [Path(rel).stem for rel in r["overlays"]] == [f.name for f in frames[:min(3, n)]]
        for rel in r["overlays"]:
            assert _gray(setup["out"] / rel).shape == (H, 3 * W, 3)
        if key == "cityscapes":
            assert 0 <= r["miou"] <= 1 and len(r["iou"]) == 19
        else:
            assert {"auprc", "fpr95", "auroc", "n_pos", "n_neg"} <= set(r)
            assert r["plots"] == {"pr": f"plots/{key}_pr.png", "roc": f"plots/{key}_roc.png"}
            for rel in r["plots"].values():
                assert _gray(setup["out"] / rel).ndim == 3  # a readable image
    for key in ("smiyc_ra21", "smiyc_ro21"):
        assert {"siou", "ppv", "mean_f1", "thresh_p"} <= set(m["datasets"][key]["components"])
    avg = m["average"]
    assert avg["datasets"] == list(ANOMALY_KEYS)
    assert avg["auprc"] == pytest.approx(np.mean([m["datasets"][k]["auprc"] for k in ANOMALY_KEYS]))


def test_fs_laf_metrics_match_sklearn(setup) -> None:
    model, _ = model_from_checkpoint(setup["ckpt"])
    root = setup["root"] / "fs_laf"
    scores, labels = [], []
    for image, lab in _fs_laf_frames(root):
        s, _ = _scores(model, image)
        scores.append(s[lab != 255])
        labels.append(lab[lab != 255])
    s, y = np.concatenate(scores).astype(np.float32).astype(np.float64), np.concatenate(labels)
    r = json.loads((setup["out"] / "metrics.json").read_text())["datasets"]["fs_laf"]
    assert r["n_pos"] == int((y == 1).sum()) and r["n_neg"] == int((y == 0).sum())
    assert r["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert r["fpr95"] == pytest.approx(_fpr95_sklearn(y, s), abs=1e-9)
    assert r["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)


def test_baselines_of_the_same_pass_match_sklearn_on_a_float64_reference(setup) -> None:
    """fs_laf frames at native resolution: class scores from model.predict, normalised in float64 by hand."""
    model, _ = model_from_checkpoint(setup["ckpt"])
    root = setup["root"] / "fs_laf"
    ref = {"max_softmax": [], "entropy": [], "not_drivable": []}
    labels = []
    for image, lab in _fs_laf_frames(root):
        sem = model.predict(torch.from_numpy(image.copy()).permute(2, 0, 1)[None])["semantic"][0]
        sem = sem.numpy().astype(np.float64)
        p = sem / sem.sum(0, keepdims=True)
        valid = lab != 255
        ref["max_softmax"].append((1 - p.max(0))[valid])
        ref["entropy"].append((-(p * np.log(p)).sum(0) / np.log(p.shape[0]))[valid])
        ref["not_drivable"].append((1 - p[0])[valid])
        labels.append(lab[valid])
    y = np.concatenate(labels)
    m = json.loads((setup["out"] / "metrics.json").read_text())
    got = m["datasets"]["fs_laf"]["baselines"]
    assert set(got) == set(ref) == set(m["scores"]) - {"model"}
    for name, parts in ref.items():
        s = np.concatenate(parts).astype(np.float32).astype(np.float64)  # maps are stored as float32, like the score
        assert got[name]["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-6), name
        assert got[name]["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6), name
    assert "baselines" not in m["datasets"]["cityscapes"]
    table = (setup["out"] / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| baseline: ")]
    assert len(rows) == 3 and "1 - p(road)" in rows[2]
    avg = m["average_baselines"]["not_drivable"]["auprc"]
    assert rows[2].rstrip(" |").endswith(f"{100 * avg:.2f} / {100 * m['average_baselines']['not_drivable']['fpr95']:.2f}")


def test_road_anomaly_metrics_match_sklearn(setup) -> None:
    model, _ = model_from_checkpoint(setup["ckpt"])
    base = setup["root"] / "road_anomaly" / "RoadAnomaly_jpg"
    scores, labels = [], []
    for name in json.loads((base / "frame_list.json").read_text()):
        s, _ = _scores(model, _rgb(base / "frames" / name))
        raw = _gray(base / "frames" / f"{Path(name).stem}.labels" / "labels_semantic.png")
        scores.append(s.ravel())
        labels.append((raw >= 2).ravel())  # original loader: anomaly = labels_semantic >= 2, no void
    s, y = np.concatenate(scores).astype(np.float32).astype(np.float64), np.concatenate(labels)
    r = json.loads((setup["out"] / "metrics.json").read_text())["datasets"]["road_anomaly"]
    assert r["n_pos"] + r["n_neg"] == N * H * W
    assert r["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert r["fpr95"] == pytest.approx(_fpr95_sklearn(y, s), abs=1e-9)


def test_cityscapes_miou_matches_naive_count(setup) -> None:
    model, _ = model_from_checkpoint(setup["ckpt"])
    root = setup["root"] / "cityscapes"
    inter, union = np.zeros(19), np.zeros(19)
    for img_path in sorted((root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png")):
        stem = img_path.name[: -len("_leftImg8bit.png")]
        gt = _gray(root / "gtFine" / "val" / img_path.parent.name / f"{stem}_gtFine_labelTrainIds.png").astype(int)
        _, pred = _scores(model, _rgb(img_path))
        valid = gt != 255
        for c in range(19):
            inter[c] += np.sum((gt == c) & (pred == c) & valid)
            union[c] += np.sum(((gt == c) | (pred == c)) & valid)
    present = union > 0
    miou = float(np.mean(inter[present] / union[present]))
    r = json.loads((setup["out"] / "metrics.json").read_text())["datasets"]["cityscapes"]
    assert r["miou"] == pytest.approx(miou, abs=1e-12)


def test_table_md_layout(setup) -> None:
    table = (setup["out"] / "table.md").read_text()
    m = json.loads((setup["out"] / "metrics.json").read_text())
    header, _, row = table.splitlines()[:3]
    assert header.split(" | ")[1:6] == [f"{n} AuPRC ↑ / FPR95 ↓" for n in
                                        ("RA21", "RO21", "FS L&F", "FS Static", "Road Anomaly")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "nano"
    for cell, key in zip(cells[1:6], ANOMALY_KEYS):
        r = m["datasets"][key]
        assert cell == f"{100 * r['auprc']:.2f} / {100 * r['fpr95']:.2f}"
    assert cells[6] == f"{100 * m['average']['auprc']:.2f} / {100 * m['average']['fpr95']:.2f}"
    assert "Cityscapes val mIoU" in table and "Evaluation resolution" in table


def test_eval_size_max_images_and_root_for(setup, tmp_path: Path) -> None:
    out = tmp_path / "resized"
    rc = dsa_main(["eval", "--checkpoint", str(setup["ckpt"]), "--dataset", "smiyc_ro21",
                   "--root-for", f"smiyc_ro21={setup['root'] / 'smiyc_ro21'}", "--out", str(out),
                   "--eval-size", "96x160", "--max-images", "2", "--overlays", "1", "--threads", "1",
                   "--no-progress"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    r = m["datasets"]["smiyc_ro21"]
    assert r["num_found"] == N and r["num_selected"] == r["num_evaluated"] == 2 and len(r["overlays"]) == 1
    assert m["eval_size"] == [96, 160] and "resized" in m["eval_resolution"]
    base = setup["root"] / "smiyc_ro21" / "dataset_ObstacleTrack" / "labels_masks"
    labs = [_gray(base / f"validation_{i}_labels_semantic.png") for i in (1, 2)]
    assert r["n_pos"] == sum(int((lab == 1).sum()) for lab in labs)  # compared at label resolution
    assert r["n_neg"] == sum(int((lab == 0).sum()) for lab in labs)


def test_default_evaluates_at_the_scale_the_model_was_trained_at(setup, tmp_path: Path) -> None:
    """No --eval-size: dsa_nano (test_short_side 256) sees each 64x128 frame resized to 256x512, and the metrics are
    those of that resize with the scores resized back to the labels (checked against sklearn)."""
    model, _ = model_from_checkpoint(setup["ckpt"])
    assert model.cfg.test_short_side == 256
    out = tmp_path / "scaled"
    assert dsa_main(["eval", "--checkpoint", str(setup["ckpt"]), "--dataset", "fs_laf", "--root",
                     str(setup["root"] / "fs_laf"), "--out", str(out), "--overlays", "0", "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["eval_size"] == "model" and m["test_short_side"] == 256 and "short side is 256 px" in m["eval_resolution"]
    root = setup["root"] / "fs_laf"
    scores, labels = [], []
    for image, lab in _fs_laf_frames(root):
        x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float()
        x = torch.nn.functional.interpolate(x, size=(256, 512), mode="bilinear", align_corners=False, antialias=True)
        a = model.predict(x)["anomaly"][:, None]
        a = torch.nn.functional.interpolate(a, size=(H, W), mode="bilinear", align_corners=False)[0, 0].numpy()
        scores.append(a[lab != 255])
        labels.append(lab[lab != 255])
    s, y = np.concatenate(scores).astype(np.float64), np.concatenate(labels)
    r = m["datasets"]["fs_laf"]
    assert r["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-6)
    native = json.loads((setup["out"] / "metrics.json").read_text())["datasets"]["fs_laf"]
    assert r["n_pos"] == native["n_pos"] and r["auprc"] != native["auprc"]  # same pixels, another scale


def test_image_eval_size_keeps_the_aspect_and_leaves_native_alone() -> None:
    from dsa_core.eval.evaluate import image_eval_size, resolution_note

    assert image_eval_size((1024, 2048), "model", 256) == (256, 512)
    assert image_eval_size((720, 1280), "model", 256) == (256, 455)  # short side 256, aspect kept
    assert image_eval_size((1280, 720), "model", 256) == (455, 256)  # portrait: the short side is the width
    assert image_eval_size((256, 512), "model", 256) is None  # already at the model's scale: not resized
    assert image_eval_size((1024, 2048), "model", None) is None  # a model without a scale: native
    assert image_eval_size((1024, 2048), "native", 256) is None
    assert image_eval_size((1024, 2048), (512, 1024), 256) == (512, 1024)
    assert image_eval_size((512, 1024), (512, 1024), None) is None
    assert "native" in resolution_note("model", None) and "256 px" in resolution_note("model", 256)
    from dsa_core.eval.evaluate import EvalOptions

    for bad in ("huge", (0, 10), (1, 2, 3)):
        with pytest.raises(ValueError, match="eval_size"):
            image_eval_size((10, 10), bad, 256)
        with pytest.raises(ValueError, match="eval_size"):  # refused when the options are made, before any work
            EvalOptions(eval_size=bad)


def test_a_checkpoint_config_without_a_newer_field_takes_its_presets_value() -> None:
    from dsa_core.config import DSAConfig, get_config

    old = get_config("dsa_nano").to_dict()
    del old["test_short_side"]  # a checkpoint written before the field existed
    assert DSAConfig.from_dict(old).test_short_side == 256
    assert DSAConfig.from_dict(old).to_dict() == get_config("dsa_nano").to_dict()
    custom = dict(old, name="my_model")  # not a preset: the dataclass default (native)
    assert DSAConfig.from_dict(custom).test_short_side is None
    assert get_config("dsa_tiny").test_short_side is None and get_config("dsa_large").test_short_side is None


def test_failed_frame_is_reported_by_name(setup, tmp_path: Path) -> None:
    import shutil

    root = shutil.copytree(setup["root"] / "road_anomaly", tmp_path / "ra")
    name = json.loads((root / "RoadAnomaly_jpg" / "frame_list.json").read_text())[1]
    (root / "RoadAnomaly_jpg" / "frames" / name).write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    rc = dsa_main(["eval", "--checkpoint", str(setup["ckpt"]), "--dataset", "road_anomaly", "--root", str(root),
                   "--out", str(out), "--no-progress"])
    assert rc == 1
    r = json.loads((out / "metrics.json").read_text())["datasets"]["road_anomaly"]
    assert [f["name"] for f in r["failures"]] == [Path(name).stem]
    assert r["num_evaluated"] + len(r["failures"]) == r["num_found"] == N


def test_missing_root_is_a_clear_error(setup, tmp_path: Path, capsys) -> None:
    assert dsa_main(["eval", "--checkpoint", str(setup["ckpt"]), "--dataset", "fs_laf", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("dsa eval: no root for 'fs_laf'")
    assert dsa_main(["eval", "--checkpoint", str(setup["ckpt"]), "--dataset", "fs_laf", "--root",
                     str(setup["root"] / "road_anomaly"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsa eval: ") and "fishyscapes_lostandfound" in err and err.count("\n") == 1


def test_predict_scores_resolution(setup) -> None:
    from dsa_core.eval.evaluate import predict_scores

    model, _ = model_from_checkpoint(setup["ckpt"])
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)  # not a multiple of 32
    native, pred = predict_scores(model, image, semantic=True)
    ref = model.predict(torch.from_numpy(image.copy()).permute(2, 0, 1)[None])
    np.testing.assert_array_equal(native, ref["anomaly"][0].numpy())
    np.testing.assert_array_equal(pred, ref["semantic"][0].argmax(0).numpy())
    same, _ = predict_scores(model, image, eval_size=(50, 70))
    np.testing.assert_array_equal(same, native)
    resized, pred2 = predict_scores(model, image, eval_size=(64, 96), semantic=True)
    assert resized.shape == pred2.shape == (50, 70) and resized.dtype == np.float32
    assert not np.array_equal(resized, native)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        predict_scores(model, image.astype(np.float32))


def test_dataset_roots_prefer_the_explicit_root_then_root_slash_key_then_root(tmp_path: Path) -> None:
    from dsa_core.eval.evaluate import DatasetRootError, dataset_roots

    (tmp_path / "fs_laf").mkdir()
    roots = dataset_roots(["fs_laf", "road_anomaly", "fs_laf", "cityscapes"], tmp_path, {"cityscapes": Path("/cs")})
    assert roots == {"fs_laf": tmp_path / "fs_laf", "road_anomaly": tmp_path, "cityscapes": Path("/cs")}
    with pytest.raises(DatasetRootError, match="--root-for fs_laf=DIR"):
        dataset_roots(["fs_laf"], None, {})


def test_bootstrap_intervals_are_resampled_pooled_metrics(setup, tmp_path: Path) -> None:
    """`dsa eval --bootstrap`: the point estimates are the exact ones of a run without it; with 3 frames there are
    10 distinct resamples (multisets), every interval lies within their exact pooled AuPRC / FPR95 (sklearn on the
    drawn frames' pixels, a frame drawn twice counted twice), and the share of resamples the model wins matches the
    exact multinomial probability of the multisets it wins (0 or 1 exactly where it loses or wins on all ten)."""
    import itertools
    import math

    from dsa_core.eval.baselines import baseline_scores

    out = tmp_path / "boot"
    assert dsa_main(["eval", "--checkpoint", str(setup["ckpt"]), "--dataset", "fs_laf", "cityscapes", "--root",
                     str(setup["root"]), "--out", str(out), "--eval-size", "native", "--no-progress",
                     "--bootstrap", "200"]) == 0
    m = json.loads((out / "metrics.json").read_text())["datasets"]
    assert "bootstrap" not in m["cityscapes"]
    r = m["fs_laf"]
    assert r["bootstrap"]["resamples"] == 200 and r["bootstrap"]["frames"] == N
    # the module's run: the same frames without --bootstrap
    plain = json.loads((setup["out"] / "metrics.json").read_text())["datasets"]["fs_laf"]
    for k in ("auprc", "fpr95", "auroc", "n_pos", "n_neg"):
        assert r[k] == plain[k]
        for b in plain["baselines"]:
            assert r["baselines"][b][k] == plain["baselines"][b][k]
    model, _ = model_from_checkpoint(setup["ckpt"])
    frames = []
    for image, lab in _fs_laf_frames(setup["root"] / "fs_laf"):
        out_maps = model.predict(torch.from_numpy(image.copy()).permute(2, 0, 1)[None])
        maps = {"model": out_maps["anomaly"][0].numpy(),
                **baseline_scores(out_maps["semantic"][0].float().numpy())}
        frames.append(({k: v.astype(np.float32) for k, v in maps.items()}, lab))
    exact = {k: [] for k in frames[0][0]}
    chance = []  # probability of each multiset under N draws with replacement
    for combo in itertools.combinations_with_replacement(range(N), N):
        y = np.concatenate([frames[i][1] for i in combo])
        keep = y != 255
        if not ((y[keep] == 1).any() and (y[keep] == 0).any()):
            continue
        chance.append(math.factorial(N) / math.prod(math.factorial(combo.count(i)) for i in set(combo)) / N ** N)
        for k in exact:
            s = np.concatenate([frames[i][0][k] for i in combo]).astype(np.float64)
            exact[k].append((average_precision_score(y[keep], s[keep]), _fpr95_sklearn(y[keep], s[keep])))
    for k, entry in [("model", r["bootstrap"])] + [(b, e["bootstrap"]) for b, e in r["baselines"].items()]:
        aps, fprs = [a for a, _ in exact[k]], [f for _, f in exact[k]]
        for span, values in ((entry["auprc_interval"], aps), (entry["fpr95_interval"], fprs)):
            assert min(values) - 1e-6 <= span[0] <= span[1] <= max(values) + 1e-6
        if k != "model":
            won = [a > b for (a, _), b in zip(exact["model"], aps)]
            p_win = sum(c for c, w in zip(chance, won) if w) / sum(chance)
            wins = entry["reference_wins_auprc"]
            if p_win in (0.0, 1.0):
                assert wins == p_win
            else:  # 200 resamples: standard error <= 0.036
                assert abs(wins - p_win) < 0.12
    table = (out / "table.md").read_text()
    assert "AuPRC 95 % interval" in table and "Frame bootstrap: 200 resamples" in table


def test_a_negative_bootstrap_is_a_usage_error(setup, tmp_path: Path) -> None:
    assert dsa_main(["eval", "--checkpoint", str(setup["ckpt"]), "--dataset", "fs_laf", "--root", str(setup["root"]),
                     "--out", str(tmp_path / "e"), "--bootstrap", "-1", "--no-progress"]) == 2
