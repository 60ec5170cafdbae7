#!/usr/bin/env bash
# The held-out sets redrawn (plan.md next to this file): every held-out set at generator seeds 0, 1 and 2, the shipped
# model evaluated on each with dsa eval (one thread, two evaluations at a time), into runs/redrawn/seedS/{sets,eval}.
# From the repo root: setsid nohup bash THIS_FILE > runs/redrawn.log 2>&1 &   (resumable: a set or an evaluation
# is skipped when it exists; about 15 min on 2 cores).
W=runs/redrawn; TAG=redrawn
source results/train_nano_logs/study_lib.sh
MODEL=models/dsa_nano/model.pt
KINDS="$($py -c 'from dsa_core.data.synth.anomaly_synth import FS_LAF_KINDS as k; print(" ".join(k))')"
one_seed() {  # one_seed SEED: write the seed's sets, then evaluate the model on each
  local s=$1 d=$W/seed$1/sets e=$W/seed$1/eval
  mkdir -p $d $e
  [ -f $d/.cityscapes_done ] || { $dsa synth cityscapes --out $d/cityscapes --train 0 --val 100 --height 256 \
    --width 512 --seed $s --no-progress > /dev/null && touch $d/.cityscapes_done; }
  for b in fs_laf road_anomaly; do
    [ -f $d/.${b}_done ] || { $dsa synth $b --out $d/$b --count 40 --height 256 --width 512 --seed $s \
      --no-progress > /dev/null && touch $d/.${b}_done; }
  done
  for k in $KINDS; do
    [ -f $d/.kind_${k}_done ] || { $dsa synth fs_laf --kind $k --out $d/kinds/$k --count 40 --height 256 \
      --width 512 --seed $s --no-progress > /dev/null && touch $d/.kind_${k}_done; }
  done
  say "seed $s: sets written"
  [ -f $e/bench/metrics.json ] || $dsa eval --checkpoint $MODEL --dataset cityscapes fs_laf road_anomaly \
    --root-for cityscapes=$d/cityscapes --root-for fs_laf=$d/fs_laf --root-for road_anomaly=$d/road_anomaly \
    --out $e/bench --threads 1 --no-progress > /dev/null
  for k in $KINDS; do
    [ -f $e/kinds/$k/metrics.json ] || $dsa eval --checkpoint $MODEL --dataset fs_laf --root-for fs_laf=$d/kinds/$k \
      --out $e/kinds/$k --threads 1 --no-progress > /dev/null
  done
  say "seed $s: evaluated"
}
one_seed 0 & one_seed 1 & wait
one_seed 2
say all done
