#!/usr/bin/env bash
# "Stage 2 for 4500 steps" (results/train_nano.md; rule in decision_rule.md next to this file, written before the
# run): arm L, stage 2 with --iterations 4500, seeds 2 and 3 side by side from replicate 1's stage 1 and wider pool
# (needs runs/urc1 from unseen_rule_confirm/run.sh). From the repo root:
#   setsid nohup bash THIS_FILE > runs/s2l.log 2>&1 &      (resumable; rerun after a kill)
W=runs/s2l; TAG=s2l
source results/train_nano_logs/study_lib.sh
from_replicate1 || exit 1
stage2_run l $W/pool_wide 2 chain_l --iterations 4500 &
stage2_run l $W/pool_wide 3 chain_l --iterations 4500 &
wait
compare_with_shipped_recipe l
say all done
