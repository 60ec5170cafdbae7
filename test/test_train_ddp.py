"""Scale-out: a real 2-process torchrun (gloo) stage-1 run, and the per-rank step sampler."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dsa_core import build_model
from dsa_core.checkpoint import load_checkpoint
from dsa_core.data.synth.synthetic import write_cityscapes
from dsa_core.train.pretrain import PatchSegViT, save_backbone
from dsa_core.train.sampling import StepBatchSampler

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_torchrun_two_ranks_gloo(tmp_path):
    write_cityscapes(tmp_path / "cs", n_train=4, n_val=1, height=128, width=256, seed=5, progress=False)
    torch.manual_seed(0)
    backbone = save_backbone(PatchSegViT(build_model("dsa_nano").cfg), tmp_path / "bb.safetensors")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "dsa_core.cli", "train", "--stage", "stage1", "--data", str(tmp_path / "cs"), "--out", str(out),
           "--backbone-weights", str(backbone), "--iterations", "3", "--batch-size", "2", "--crop", "64", "128",
           "--base-size", "128", "256", "--num-points", "256", "--num-workers", "0", "--log-interval", "1",
           "--ckpt-interval", "2", "--threads", "1", "--no-progress", "--val-max-images", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "joined process group: rank 0/2 (gloo" in output and "joined process group: rank 1/2 (gloo" in output
    sums = dict(re.findall(r"rank (\d)/2 stopped at step 3; trainable-parameter checksum (\S+)", output))
    assert set(sums) == {"0", "1"}, output[-4000:]
    assert sums["0"] == sums["1"], f"DDP replicas diverged: {sums}"
    # only rank 0 printed the summary and wrote files
    summaries = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and json.loads(summaries[0])["step"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["final.pt", "last.pt", "metrics.csv", "val.csv"]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == 3 and ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])  # ranks are seeded differently
    with (out / "metrics.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3]


@pytest.mark.parametrize("n,world,batch", [(10, 2, 3), (7, 3, 2), (5, 1, 4)])
def test_step_sampler_shards_and_resumes(n, world, batch):
    steps = 12
    samplers = [StepBatchSampler(n, batch, seed=4, rank=r, world_size=world, total_steps=steps) for r in range(world)]
    per_rank = [list(s) for s in samplers]
    assert all(len(b) == steps for b in per_rank)
    # within one epoch the ranks' shares are disjoint (up to DistributedSampler-style padding) and cover the set
    shares = [s.rank_share(0) for s in samplers]
    union = np.concatenate(shares)
    assert len(union) == -(-n // world) * world and set(union.tolist()) == set(range(n))
    if n % world == 0:
        assert len(set(union.tolist())) == n
    # a sampler started at step k yields exactly the tail of the uninterrupted sequence
    for r in range(world):
        resumed = list(StepBatchSampler(n, batch, seed=4, rank=r, world_size=world, start_step=5, total_steps=steps))
        assert resumed == per_rank[r][5:]
    # epochs are reshuffled
    if n > 3:
        assert not np.array_equal(samplers[0].rank_share(0), samplers[0].rank_share(1))
