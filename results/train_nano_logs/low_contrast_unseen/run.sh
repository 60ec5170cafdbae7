#!/usr/bin/env bash
# "Low-contrast outliers under the unseen-object rule" (rule in decision_rule.md next to this file, written before
# any run): one replicate = the recipe's data, pre-training and stage 1, then stage 2 as shipped (arm W) and with
# --outlier-low-contrast-prob 0.5 (arm L) side by side with the replicate's fresh seed (replicate N: seed N + 3).
# From the repo root, on an otherwise idle machine:
#   REPLICATE=1 setsid nohup bash THIS_FILE > runs/lcu1.log 2>&1 &      (resumable; rerun after a kill)
# Before training it times 20 stage-1 steps and stops (exit 3) when the replicate would take longer than
# MAX_MINUTES (default 150); FORCE=1 skips the check. Then:
#   python results/train_nano_logs/compare_stage2_runs.py runs/lcuN/w_seedS runs/lcuN/l_seedS
REPLICATE=${REPLICATE:-1}; SEED=$((REPLICATE + 3))
W=runs/lcu$REPLICATE; TAG=lcu$REPLICATE
source results/train_nano_logs/study_lib.sh
study_data
study_wide_pool
replicate_stage1
stage2_run w $W/pool_wide $SEED chain_w &
stage2_run l $W/pool_wide $SEED chain_l --outlier-low-contrast-prob 0.5 &
wait
$py results/train_nano_logs/compare_stage2_runs.py $W/w_seed$SEED $W/l_seed$SEED > $W/compare_output.md
say all done
