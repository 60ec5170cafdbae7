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
if [ ! -f $W/stage1/final.pt ] && [ -z "${FORCE:-}" ]; then
  sps=$(stage1_seconds_per_step 2) || { say "speed check failed"; exit 1; }
  # as unseen_rule_confirm/run.sh: pre-training ~1/4 of a stage-1 step; 6500 stage-1 steps; 3000 stage-2 steps of
  # two runs side by side (about a stage-1 step each); ~15 min of evaluation
  est=$($py -c "print(round((3000 / 4 + 6500 + 3000) * $sps / 60 + 15))")
  say "stage 1 at $sps s/step with 2 threads: about $est min from here (limit ${MAX_MINUTES:-150})"
  [ "$est" -le "${MAX_MINUTES:-150}" ] || { say "too slow for one session: not started (FORCE=1 to run anyway)"; exit 3; }
fi
stage pretrain $W/pretrain backbone.safetensors 2 --val-every 1000 --val-max-images 50 > $W/pretrain.log 2>&1
stage stage1 $W/stage1 final.pt 2 --backbone-weights $W/pretrain/backbone.safetensors --val-every 1000 \
  --val-max-images 50 --coco $D/coco --coco-min-size 128 --anomaly-from-coco > $W/stage1.log 2>&1
stage2_run w $W/pool_wide $SEED chain_w &
stage2_run l $W/pool_wide $SEED chain_l --outlier-low-contrast-prob 0.5 &
wait
$py results/train_nano_logs/compare_stage2_runs.py $W/w_seed$SEED $W/l_seed$SEED > $W/compare_output.md
say all done
