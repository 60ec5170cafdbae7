#!/usr/bin/env bash
# "Stage 2 for 4500 steps" (results/train_nano.md; rule in decision_rule.md next to this file, written before the
# run): arm L, stage 2 with --iterations 4500, seeds 2 and 3 side by side from replicate 1's stage 1 and wider pool
# (needs runs/urc1 from unseen_rule_confirm/run.sh). From the repo root:
#   setsid nohup bash THIS_FILE > runs/s2l.log 2>&1 &      (resumable; rerun after a kill)
W=runs/s2l; TAG=s2l
source results/train_nano_logs/study_lib.sh
for need in stage1/final.pt pool_wide/annotations/instances_train2017.json pool/held_out drive_bag; do
  [ -e runs/urc1/$need ] || { say "missing runs/urc1/$need: run unseen_rule_confirm/run.sh first"; exit 1; }
done
mkdir -p $W
for l in stage1 pool_wide pool drive_bag; do [ -e $W/$l ] || ln -s ../urc1/$l $W/$l; done
stage2_run l $W/pool_wide 2 chain_l --iterations 4500 &
stage2_run l $W/pool_wide 3 chain_l --iterations 4500 &
wait
for s in 2 3; do
  ref=runs/urc1/w_seed2; [ $s = 3 ] && ref=runs/urc2/w_seed3
  $py results/train_nano_logs/compare_stage2_runs.py $ref $W/l_seed$s > $W/compare_seed$s.md
done
say all done
