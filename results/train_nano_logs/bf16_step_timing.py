"""Time stage-1 steps of dsa_nano in float32 and under CPU bfloat16 autocast, on the same batches
(results/train_nano.md, "bfloat16 autocast on the CPU"). From the repo root, on an otherwise idle machine:

    OMP_NUM_THREADS=2 .venv/bin/python results/train_nano_logs/bf16_step_timing.py fp32|bf16 THREADS STEPS BACKBONE

BACKBONE: a pre-trained backbone.safetensors (e.g. runs/recipe/pretrain/backbone.safetensors); the data is the
recipe's (runs/recipe/data/cityscapes). Prints the median time of the steps after the third.
"""
import statistics
import sys
import time
from pathlib import Path

import torch

from dsa_core.train import loop
from dsa_core.train.config import default_train_config

mode, threads, steps, backbone = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
torch.set_num_threads(threads)
tcfg = default_train_config("dsa_nano", "stage1")
spec = loop.RunSpec(preset="dsa_nano", data=Path("runs/recipe/data/cityscapes"), out=Path("/tmp/bf16_step_timing"),
                    backbone_weights=backbone, progress=False)
loop.seed_everything(0)
model = loop.build_stage_model(spec, tcfg)
trainer = loop.Trainer(model, tcfg)
if mode == "bf16":
    trainer.amp_dtype = torch.bfloat16  # the Trainer enables autocast only on CUDA; this forces it on the CPU
loader = loop._make_loader(loop.build_train_dataset(spec, tcfg, model.cfg.size_divisor), tcfg.replace(num_workers=0),
                           loop.DistEnv(), 0)
batches = [b for _, b in zip(range(steps), loader)]
times = []
for i, batch in enumerate(batches):
    t = time.perf_counter()
    values = trainer.train_step(batch)
    times.append(time.perf_counter() - t)
    print(f"step {i}: {times[-1]:.3f} s, loss {values['total']:.4f}", flush=True)
print(f"{mode}, {threads} threads: median step {statistics.median(times[3:]):.3f} s")
