#!/usr/bin/env python3
"""How long filling sensor_msgs/Image.data takes at 1280x720: `bytes` (what the node did before) against
`fill_image_msg` (an array.array('B')), with the generated setter's field checks off (Jazzy/Kilted default) and on
(Humble without -O; ROS_PYTHON_CHECK_FIELDS=1 later). Prints a markdown table; results/bench_image_msg_fill.md.

    .venv/bin/python -P scripts/bench_image_msg_fill.py > results/bench_image_msg_fill.md
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent.parent))  # last: the venv's dsa_perception wins


def main() -> int:
    from sensor_msgs.msg import Image

    from dsa_core.perception.image_codec import fill_image_msg

    rng = np.random.default_rng(0)
    arrays = {"rgb8": rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8),
              "mono8": rng.integers(0, 19, (720, 1280), dtype=np.uint8),
              "32FC1": rng.random((720, 1280), dtype=np.float32)}
    print(f"# Filling Image.data at 1280x720 (load average before: {os.getloadavg()[0]:.2f}, 2 cores)\n")
    print("| encoding | field checks | `msg.data = bytes` ms | `fill_image_msg` ms |\n|---|---|---|---|")
    for encoding, array in arrays.items():
        for check in (False, True):
            as_bytes, filled = [], []
            for _ in range(5):
                msg = Image(check_fields=check)
                t = time.perf_counter()
                msg.data = np.ascontiguousarray(array).tobytes()
                as_bytes.append(time.perf_counter() - t)
                msg = Image(check_fields=check)
                t = time.perf_counter()
                fill_image_msg(msg, array, encoding)
                filled.append(time.perf_counter() - t)
            print(f"| {encoding} | {'on' if check else 'off'} | {1e3 * statistics.median(as_bytes):.1f} | "
                  f"{1e3 * statistics.median(filled):.2f} |")
    print(f"\nMedians of 5 (wall). Load average after: {os.getloadavg()[0]:.2f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
