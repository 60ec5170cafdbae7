#!/usr/bin/env bash
# cache the model outputs of the curve's drives (two processes, one thread each)
cd /work/main
export OMP_NUM_THREADS=1
py=.venv/bin/python
c() { taskset -c $1 $py scripts/alert_curve.py (cache_drive) $2 models/dsa_nano $3 2>&1 | tr '\r' '\n' | grep -v 'frame/s]$' ; }
( c 0 runs/longcal/val_drive_3000 runs/curve/cache_caldrive; c 0 runs/curve/obst_drive_5 runs/curve/cache_obst5; c 0 runs/curve/obst_drive_9 runs/curve/cache_obst9 ) > runs/curve/cacheA.log &
( c 1 runs/heldout/clear_drive runs/curve/cache_clear21; c 1 runs/longcal/clear_drive_33 runs/curve/cache_clear33 ) > runs/curve/cacheB.log &
wait
echo done
