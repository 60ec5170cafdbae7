"""Weight averaging of runs from one initialisation (dsa_core/train/soup.py, `dsa soup`)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dsa_core.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from dsa_core.cli import main as dsa_main
from dsa_core.model.dsa import build_model
from dsa_core.train.soup import average_checkpoints, averaged_keys


def _runs(tmp_path: Path, n: int = 3) -> tuple[list[Path], list[dict[str, torch.Tensor]]]:
    """``n`` checkpoints of one init whose decoders moved apart, as stage-2 fine-tuning moves them."""
    torch.manual_seed(0)
    model = build_model("dsa_nano")
    init = {k: v.clone() for k, v in model.state_dict().items()}
    paths, states = [], []
    for i in range(n):
        state = {k: v.clone() for k, v in init.items()}
        gen = torch.Generator().manual_seed(i + 1)
        for k, v in state.items():
            if k.startswith("decoder.") and v.is_floating_point():
                state[k] = v + 0.1 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        (tmp_path / f"run{i}").mkdir()
        paths.append(save_checkpoint({"config": model.cfg.to_dict(), "model": state, "stage": "stage2", "step": 100 + i},
                                     tmp_path / f"run{i}" / "final.pt"))
        states.append(state)
    return paths, states


def test_the_soup_is_the_float64_mean_of_the_trained_weights_and_keeps_the_frozen_ones(tmp_path: Path) -> None:
    paths, states = _runs(tmp_path)
    soup = average_checkpoints(paths)
    trained = averaged_keys(soup["config"], "stage2")
    assert trained and all(k.startswith("decoder.") for k in trained)  # stage 2 trains the decoder only
    for key, value in soup["model"].items():
        if key in trained:
            reference = sum(s[key].double() for s in states) / len(states)
            assert value.dtype == states[0][key].dtype
            torch.testing.assert_close(value.double(), reference, rtol=0, atol=1e-6)
        else:
            assert torch.equal(value, states[0][key]), key
    moved = [k for k in trained if not torch.equal(states[0][k], states[1][k])]
    assert moved and all(not torch.equal(soup["model"][k], states[0][k]) for k in moved)
    assert soup["stage"] == "stage2" and soup["step"] == 100 and len(soup["soup_of"]) == 3


def test_runs_from_different_inits_are_refused(tmp_path: Path) -> None:
    paths, states = _runs(tmp_path, n=2)
    other = dict(states[1])
    frozen = next(k for k in other if k.startswith("adapter.") and other[k].is_floating_point())
    other[frozen] = other[frozen] + 1e-3  # stage 2 never changes the adapter: this run began elsewhere
    data = load_checkpoint(paths[1])
    save_checkpoint({**{k: v for k, v in data.items() if k != "format"}, "model": other}, paths[1])
    with pytest.raises(CheckpointError, match="not trained in stage2 but differs"):
        average_checkpoints(paths)


def test_mismatched_or_too_few_checkpoints_are_refused(tmp_path: Path) -> None:
    paths, _ = _runs(tmp_path, n=2)
    with pytest.raises(ValueError, match="at least 2"):
        average_checkpoints(paths[:1])
    data = load_checkpoint(paths[1])
    save_checkpoint({**{k: v for k, v in data.items() if k != "format"}, "stage": "stage1"}, paths[1])
    with pytest.raises(CheckpointError, match="is stage 'stage1'"):
        average_checkpoints(paths)
    save_checkpoint({**{k: v for k, v in data.items() if k != "format"}, "stage": "pretrain"}, paths[0])
    with pytest.raises(CheckpointError, match="stage checkpoints"):
        average_checkpoints(paths)


def test_cli_writes_a_loadable_model_and_refuses_to_overwrite(tmp_path: Path) -> None:
    paths, _ = _runs(tmp_path, n=2)
    out = tmp_path / "soup" / "final.pt"
    assert dsa_main(["soup", "--checkpoint", *map(str, paths), "--out", str(out)]) == 0
    model, data = model_from_checkpoint(out)
    assert data["stage"] == "stage2" and data["soup_of"] == [str(p) for p in paths]
    assert dsa_main(["soup", "--checkpoint", *map(str, paths), "--out", str(out)]) == 2
