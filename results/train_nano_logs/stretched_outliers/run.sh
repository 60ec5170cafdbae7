#!/usr/bin/env bash
# The stretched-outlier study (decision_rule.md next to this file): the shipped recipe's stage 2 with half of the
# pasted objects stretched (--outlier-stretch-prob 0.5), seeds 5 and 4 side by side from the recipe's stage 1
# (runs/fr/stage1), then each seed's export and held-out sets; with DRIVES=1 also the drive measures of the rule's
# part (2) (study_lib.sh's arm_drive_measures; the study stopped before them, its parts (1) and (3) having failed).
# The paired arms are the shipped recipe's runs (runs/fr/r_seed5 = models/dsa_nano, runs/fr/r_seed4).
# From the repo root: setsid nohup bash THIS_FILE > runs/so.log 2>&1 &   (resumable; about 40 min on an idle 2-core
# machine without DRIVES, 75 min with).
W=runs/fr; TAG=so
source results/train_nano_logs/study_lib.sh
[ -f $W/stage1/final.pt ] || { say "missing $W/stage1/final.pt: run results/train_nano_logs/flat_recipe/run.sh"; exit 1; }
arm() {  # arm SEED
  recipe_stage2_arm $W/s_seed$1 $1 --outlier-stretch-prob 0.5
  [ -z "${DRIVES:-}" ] || arm_drive_measures $W/s_seed$1
  say "seed $1 finished"
}
for s in 5 4; do arm $s & done
wait
say all done
