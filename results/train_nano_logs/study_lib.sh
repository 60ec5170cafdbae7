# Shared by the full-length study scripts of results/train_nano.md: source it from the repo root after setting
# W (the study's work dir) and TAG (its log prefix). Data and training steps are skipped when their product exists,
# and a killed training stage resumes from its last.pt, so a study script can be rerun after a kill.
set -uo pipefail
cd "$(git rev-parse --show-toplevel)"
dsa=.venv/bin/dsa; py=.venv/bin/python
D=runs/recipe/data
export OMP_NUM_THREADS=1
say() { echo "[$TAG $(date +%H:%M:%S)] $*"; }

study_data() {  # the recipe's data (same seeds and sizes as scripts/train_demo_model.sh), the unseen validation
  # objects (model selection only), the drive, the pool split
  mkdir -p $W $D
  [ -f $D/.cityscapes_done ] || { say data
    ( $dsa synth cityscapes --out $D/cityscapes --train 3000 --val 100 --height 256 --width 512 --seed 0 --no-progress && touch $D/.cityscapes_done ) &
    ( $dsa synth coco --out $D/coco --images 600 --height 160 --width 224 --seed 0 --no-progress && touch $D/.coco_done
      for b in fs_laf road_anomaly; do $dsa synth $b --out $D/$b --count 40 --height 256 --width 512 --seed 0 --no-progress; done
      for k in road_coloured tiny thin_pole photo_like large_near; do
        $dsa synth fs_laf --kind $k --out $D/kinds/$k --count 40 --height 256 --width 512 --seed 0 --no-progress; done
      touch $D/.evalsets_done ) &
    wait; }
  [ -d $W/drive_bag ] || $py -c "
from dsa_core.bags.drive import DriveSpec; from dsa_core.bags.writer import write_drive_bag
write_drive_bag('$W/drive_bag', DriveSpec(frames=120, height=256, width=512, fps=5.0, seed=0, segment_frames=40, obstacle_probability=1.0), storage='sqlite3', version=8, progress=False)"
  [ -f $D/.validation_objects_done ] || { $dsa synth coco --families validation --out $D/validation_objects \
    --images 300 --height 160 --width 224 --seed 0 --no-progress && touch $D/.validation_objects_done; }
  [ -f $W/pool/held_out/annotations/instances_train2017.json ] || \
    $py scripts/pool_category_split.py $D/coco $W/pool --held-out handbag kite "teddy bear"
}

study_wide_pool() {  # $W/pool_wide: the recipe's pool merged with the pre-training object set (12 families)
  [ -f $D/.pretrain_objects_done ] || { $dsa synth coco --families pretrain --out $D/pretrain_objects --images 600 \
    --height 160 --width 224 --seed 0 --no-progress && touch $D/.pretrain_objects_done; }
  [ -f $W/pool_wide/annotations/instances_train2017.json ] || \
    $py scripts/merge_coco_pools.py $W/pool_wide $D/coco $D/pretrain_objects
}

stage() {  # stage NAME OUT PRODUCT THREADS ARGS...: one `dsa train` stage of the dsa_nano preset
  local name=$1 out=$2 product=$3 th=$4; shift 4
  [ -f "$out/$product" ] && { say "$name done ($out)"; return; }
  local resume=(); [ -f "$out/last.pt" ] && resume=(--resume)
  say "$name -> $out"
  $dsa train --preset dsa_nano --stage $name --data $D/cityscapes --out $out --threads $th --no-progress "${resume[@]}" "$@"
}

stage2_run() {  # stage2_run PREFIX POOL SEED CHAIN_LOG_PREFIX [TRAIN_FLAGS...]: one stage-2 seed from $W/stage1,
  # then evaluate_stage2_run.sh; run dir $W/PREFIX_seedSEED
  local prefix=$1 pool=$2 s=$3 chain=$4; shift 4
  ( O=$W/${prefix}_seed$s
    stage stage2 $O final.pt 1 --init $W/stage1/final.pt --coco $pool --coco-min-size 128 --val-every 200 \
      --val-max-images 50 --anomaly-from-coco --seed $s "$@" > $W/${prefix}_seed$s.log 2>&1
    bash results/train_nano_logs/evaluate_stage2_run.sh $O $D $W/pool/held_out $W/drive_bag
    say "$prefix seed $s finished" ) > $W/${chain}_seed$s.log 2>&1
}

from_replicate1() {  # link replicate 1's stage 1, pools and drive into $W (stage-2 studies paired with its runs)
  local need l
  for need in stage1/final.pt pool_wide/annotations/instances_train2017.json pool/held_out drive_bag; do
    [ -e runs/urc1/$need ] || { say "missing runs/urc1/$need: run unseen_rule_confirm/run.sh first"; return 1; }
  done
  mkdir -p $W
  for l in stage1 pool_wide pool drive_bag; do [ -e $W/$l ] || ln -s ../urc1/$l $W/$l; done
}

compare_with_shipped_recipe() {  # compare_with_shipped_recipe PREFIX: each seed's run against the shipped recipe's
  # run of that seed (replicates 1 and 2 of unseen_rule_confirm), into $W/compare_seedS.md
  local s ref
  for s in 2 3; do
    ref=runs/urc1/w_seed2; [ $s = 3 ] && ref=runs/urc2/w_seed3
    $py results/train_nano_logs/compare_stage2_runs.py $ref $W/$1_seed$s > $W/compare_seed$s.md
  done
}

stage2_seeds() {  # stage2_seeds PREFIX POOL CHAIN_LOG_PREFIX: stage 2 seeds 0 and 1 side by side (stage2_run)
  stage2_run $1 $2 0 $3 &
  stage2_run $1 $2 1 $3 &
  wait
}

stage1_seconds_per_step() {  # stage1_seconds_per_step THREADS: times 20 stage-1 steps (steps 11-20) on a 2-step
  # pre-trained backbone in a scratch dir; prints seconds per step
  local th=$1 tmp=$W/speed_check
  rm -rf $tmp
  $dsa train --preset dsa_nano --stage pretrain --data $D/cityscapes --out $tmp/pre --iterations 2 --threads $th \
    --no-progress --val-max-images 1 > /dev/null 2>&1 &&
  $dsa train --preset dsa_nano --stage stage1 --data $D/cityscapes --out $tmp/s1 --iterations 20 --threads $th \
    --backbone-weights $tmp/pre/backbone.safetensors --no-progress --val-max-images 1 > /dev/null 2>&1 &&
  $py -c "
import csv; t = {int(r['step']): float(r['time_s']) for r in csv.DictReader(open('$tmp/s1/metrics.csv'))}
print(f'{(t[20] - t[10]) / 10:.3f}')"
  rm -rf $tmp
}

replicate_stage1() {  # the recipe's pre-training and 6500-step stage 1 into $W (2 threads); before a fresh start,
  # times 20 stage-1 steps and stops (exit 3) when the replicate (two stage-2 arms side by side and ~15 min of
  # evaluation included) would take longer than MAX_MINUTES (default 150); FORCE=1 skips the check
  if [ ! -f $W/stage1/final.pt ] && [ -z "${FORCE:-}" ]; then
    local sps est
    sps=$(stage1_seconds_per_step 2) || { say "speed check failed"; exit 1; }
    # pre-training ~1/4 of a stage-1 step; 6500 stage-1 steps; 3000 stage-2 steps of two runs side by side (about
    # a stage-1 step each); ~15 min of evaluation
    est=$($py -c "print(round((3000 / 4 + 6500 + 3000) * $sps / 60 + 15))")
    say "stage 1 at $sps s/step with 2 threads: about $est min from here (limit ${MAX_MINUTES:-150})"
    [ "$est" -le "${MAX_MINUTES:-150}" ] || { say "too slow for one session: not started (FORCE=1 to run anyway)"; exit 3; }
  fi
  stage pretrain $W/pretrain backbone.safetensors 2 --val-every 1000 --val-max-images 50 > $W/pretrain.log 2>&1
  stage stage1 $W/stage1 final.pt 2 --backbone-weights $W/pretrain/backbone.safetensors --val-every 1000 \
    --val-max-images 50 --coco $D/coco --coco-min-size 128 --anomaly-from-coco > $W/stage1.log 2>&1
}

study_drives() {  # the alert-curve drives (results/train_nano.md, "The alert operating curve"): obstacle-free
  # runs/clear/clear_drive_{21,33} (3000 frames) and runs/drives2/obst_drive_{5,9} (20 test-family obstacles each)
  local s
  for s in 21 33; do [ -f runs/clear/clear_drive_$s/metadata.yaml ] || $dsa synth bag --out runs/clear/clear_drive_$s \
    --seed $s --frames 3000 --fps 5 --segment-frames 40 --obstacle-probability 0 --no-progress > /dev/null; done
  for s in 5 9; do [ -f runs/drives2/obst_drive_$s/metadata.yaml ] || $dsa synth bag --out runs/drives2/obst_drive_$s \
    --seed $s --frames 800 --fps 5 --segment-frames 40 --obstacle-probability 1.0 --no-progress > /dev/null; done
}

cache_drives() {  # cache_drives MODEL_DIR CACHE_ROOT DRIVE...: one model's maps of each drive dir
  # (dsa_core.eval.alert_curve.cache_drive, one thread; a finished cache is kept)
  local model=$1 root=$2 bag; shift 2
  for bag in "$@"; do
    $py -c "from dsa_core.eval.alert_curve import cache_drive
cache_drive('$bag', '$model', '$root/$(basename $bag)', threads=1, progress=False)"
  done
}

recipe_stage2_arm() {  # recipe_stage2_arm OUT SEED [TRAIN_FLAGS...]: the shipped recipe's stage 2 (flat void-ground
  # labels, every pasted object on the road) from $W/stage1 and $W/pool_wide on one thread, with TRAIN_FLAGS added;
  # then its export and held-out sets (heldout_eval.sh)
  local O=$1 s=$2; shift 2
  stage stage2 $O final.pt 1 --init $W/stage1/final.pt --coco $W/pool_wide --coco-min-size 128 --val-every 200 \
    --val-max-images 50 --anomaly-from-coco --seed $s --void-ground-labels flat --outlier-road-prob 1.0 "$@" \
    >> $O.log 2>&1
  [ -f $O/model/manifest.json ] || $dsa export --checkpoint $O/final.pt --out $O/model --height 256 --width 512 \
    --graphs fused > /dev/null
  bash results/train_nano_logs/heldout_eval.sh $O $D
}

arm_drive_measures() {  # arm_drive_measures OUT: one arm's maps of the alert-curve drives (study_drives), its road-FPR
  # ladder (dry-run calibration) and the demo drive ($W/drive_bag)
  local O=$1
  study_drives
  cache_drives $O/model $O/caches runs/drives2/obst_drive_5 runs/drives2/obst_drive_9 runs/clear/clear_drive_21 \
    runs/clear/clear_drive_33
  [ -f $O/ladder/calibration.md ] || $dsa calibrate --model $O/model --val $D/cityscapes --pool $D/coco \
    --pool-min-size 128 --threads 1 --ego-mask-bottom 0.15 --dry-run --out $O/ladder --no-progress > /dev/null
  [ -d $O/drive ] || $dsa bag-eval --bag $W/drive_bag --model $O/model --out $O/drive --ego-mask-bottom 0.15 \
    --no-progress > /dev/null
}
