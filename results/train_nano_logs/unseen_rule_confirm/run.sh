#!/usr/bin/env bash
# "Confirming the unseen-object rule" (results/train_nano.md; rule in decision_rule.md next to this file, written
# before the run): one replicate = one stage 1 of the recipe, then stage 2 on the recipe's pool and on the wider
# pool side by side with the replicate's fresh seed (replicate N: seed N + 1). From the repo root, on an otherwise
# idle machine:
#   REPLICATE=1 setsid nohup bash THIS_FILE > runs/urc1.log 2>&1 &      (resumable; rerun after a kill)
# Before training it times 20 stage-1 steps and stops (exit 3) when the replicate would take longer than
# MAX_MINUTES (default 150; about 95 min at 0.45 s/step, 175 min at 0.98 s/step); FORCE=1 skips the check.
# The rule's checks come first in each run's evaluation (unseen-object table; val mIoU is in val.csv), then the
# reported ones. Then: python results/train_nano_logs/compare_stage2_runs.py runs/urcN/r_seedS runs/urcN/w_seedS
REPLICATE=${REPLICATE:-1}; SEED=$((REPLICATE + 1))
W=runs/urc$REPLICATE; TAG=urc$REPLICATE
source results/train_nano_logs/study_lib.sh
study_data
study_wide_pool
replicate_stage1
stage2_run r $D/coco $SEED chain_r &
stage2_run w $W/pool_wide $SEED chain_w &
wait
$py results/train_nano_logs/compare_stage2_runs.py $W/r_seed$SEED $W/w_seed$SEED > $W/compare_output.md
say all done
