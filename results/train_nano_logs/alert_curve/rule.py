"""Apply runs/curve/RULE.md to the cached drives (prints the decision and writes rule_result.json)."""
import json, sys
from pathlib import Path
sys.path.insert(0, ".")
from dsa_core.eval.alert_curve import CachedDrive, CurvePoint, replay_many

T = 0.9852299094200134
LADDER = [25, 36, 49, 64, 81, 100, 115, 150, 200, 300, 400]
EXTENDS = [None, 0.95, 0.9, 0.8]
c = lambda n: CachedDrive.load(f"runs/curve/caches/{n}")
points = [CurvePoint(T, a, e) for e in EXTENDS for a in LADDER]
res = {n: replay_many(c(n), points, ego_mask_bottom=0.15) for n in
       ["val_drive_3000", "obst_drive_5", "clear_drive", "clear_drive_33", "obst_drive_9", "drive_bag"]}
json.dump({n: [{k: r[k] for k in ("false_alert_tracks", "obstacles_confirmed", "obstacles_total", "true_alert_frames",
                                  "frames_with_obstacle", "camera_hours", "obstacle_frames_with_box_on_obstacle")}
               for r in rs] for n, rs in res.items()}, open("runs/curve/rule_raw.json", "w"))
idx = {(p.extend, p.min_area_px): i for i, p in enumerate(points)}
get = lambda n, e, a, k: res[n][idx[(e, a)]][k]
dev_false = lambda e, a: get("val_drive_3000", e, a, "false_alert_tracks") + get("obst_drive_5", e, a, "false_alert_tracks")
F0, O0 = dev_false(None, 115), get("obst_drive_5", None, 115, "obstacles_confirmed")
print(f"plain 115 px on dev: F0={F0} false-alert tracks, O0={O0} of {get('obst_drive_5', None, 115, 'obstacles_total')} obstacles")
best = None
for e in EXTENDS[1:]:
    ok = [a for i, a in enumerate(LADDER) if all(dev_false(e, b) <= F0 for b in LADDER[i:])]
    if not ok:
        print(f"extend {e}: no ladder area meets F0"); continue
    a = ok[0]
    key = (get("obst_drive_5", e, a, "obstacles_confirmed"), get("obst_drive_5", e, a, "true_alert_frames"), e)
    print(f"extend {e}: area {a}, dev false {dev_false(e, a)}, drive-5 obstacles {key[0]}, alerted frames {key[1]}")
    if best is None or key > best[0]:
        best = (key, e, a)
(_, e, a) = best
dev_pass = best[0][0] >= O0 + 2
test_false = lambda e, a: sum(get(n, e, a, "false_alert_tracks") for n in ("clear_drive", "clear_drive_33", "obst_drive_9"))
o9 = get("obst_drive_9", e, a, "obstacles_confirmed"); o9p = get("obst_drive_9", None, 115, "obstacles_confirmed")
test_pass = o9 > o9p and test_false(e, a) <= test_false(None, 115)
print(f"e*={e} a*={a}: dev {'PASS' if dev_pass else 'FAIL'} ({best[0][0]} vs O0+2={O0 + 2})")
print(f"test: drive-9 obstacles {o9} vs plain {o9p}; false tracks 21+33+9: {test_false(e, a)} vs plain {test_false(None, 115)}"
      f" -> {'PASS' if test_pass else 'FAIL'}")
print(f"demo (reported only): plain {get('drive_bag', None, 115, 'obstacles_confirmed')} obstacles / "
      f"{get('drive_bag', None, 115, 'false_alert_tracks')} false; e* {get('drive_bag', e, a, 'obstacles_confirmed')} / "
      f"{get('drive_bag', e, a, 'false_alert_tracks')}")
json.dump({"F0": F0, "O0": O0, "extend": e, "area": a, "dev_pass": dev_pass, "test_pass": test_pass}, open("runs/curve/rule_result.json", "w"))
