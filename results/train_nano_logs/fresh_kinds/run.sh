#!/usr/bin/env bash
# Fresh held-out kinds (plan.md next to this file): the four FRESH_KINDS sets (FS L&F format, 40 frames, seed 0),
# then every stage-2 run of the compared studies evaluated on them with dsa eval (one thread), into
# RUN/eval_fresh/KIND. Nothing is trained. From the repo root: setsid nohup bash THIS_FILE > runs/fk.log 2>&1 &
# (resumable: a set or an evaluation is skipped when it exists; about 2 min per run on one thread).
W=runs/fk; TAG=fk
source results/train_nano_logs/study_lib.sh
KINDS="flat cluster dark weather"
RUNS="runs/fr/r_seed5 runs/fr/f_seed5 runs/fr/r_seed4 runs/fr/f_seed4 runs/fr/r_seed3 runs/fr/f_seed3
  runs/fr/s_seed5 runs/fr/s_seed4 runs/fr/m_seed5 runs/fr/m_seed4 runs/s14/x_seed5 runs/s14/x_seed4
  runs/vf/f_seed7 runs/vf/c_seed7 runs/vf/f_seed8 runs/vf/c_seed8"
mkdir -p $W
for k in $KINDS; do
  [ -f $W/.${k}_done ] || { say "synth fs_laf --kind $k"
    $dsa synth fs_laf --kind $k --out $W/$k --count 40 --height 256 --width 512 --seed 0 --no-progress > /dev/null &&
      touch $W/.${k}_done; }
done
for r in $RUNS; do
  for k in $KINDS; do
    [ -f $r/eval_fresh/$k/metrics.json ] || $dsa eval --checkpoint $r/final.pt --dataset fs_laf \
      --root-for fs_laf=$W/$k --out $r/eval_fresh/$k --threads 1 --no-progress > /dev/null
  done
  say "$r done"
done
say all done
