#!/usr/bin/env bash
# "Obstacles on the road sized by perspective" (results/train_nano.md; rule in decision_rule.md next to this file,
# written before the run): arm P, stage 2 with --outlier-road-height 0.2 1.5, seeds 2 and 3 side by side from
# replicate 1's stage 1 and wider pool (needs runs/urc1 from unseen_rule_confirm/run.sh). From the repo root:
#   setsid nohup bash THIS_FILE > runs/rp.log 2>&1 &      (resumable; rerun after a kill)
# It ends by comparing each seed with the shipped recipe's run of that seed: runs/rp/compare_seed{2,3}.md.
W=runs/rp; TAG=rp
source results/train_nano_logs/study_lib.sh
from_replicate1 || exit 1
stage2_run p $W/pool_wide 2 chain_p --outlier-road-height 0.2 1.5 &
stage2_run p $W/pool_wide 3 chain_p --outlier-road-height 0.2 1.5 &
wait
compare_with_shipped_recipe p
say all done
