"""INT8 calibration data: an image list -> fixed-size uint8 batches through the runtime's own resize step.

Pure Python (PIL + numpy + the shared resize), so it is tested without TensorRT. The TensorRT calibrator in
dsa_core.export.tensorrt_engine only copies these batches to the GPU and stores the cache file.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from dsa_core.atomic import write_bytes_atomic
from dsa_core.export.resize import images_to_export_size

log = logging.getLogger(__name__)


def read_image_list(list_file: str | os.PathLike) -> list[Path]:
    """One image path per line (relative paths are relative to the list file); blank lines and '#' comments skipped."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"calibration image list not found: {list_file}")
    paths = []
    for lineno, line in enumerate(list_file.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line) if Path(line).is_absolute() else list_file.parent / line
        if not path.is_file():
            raise FileNotFoundError(f"{list_file}:{lineno}: calibration image {path} does not exist")
        paths.append(path)
    if not paths:
        raise ValueError(f"calibration image list {list_file} names no images")
    return paths


class CalibrationBatches:
    """Iterate uint8 [batch, 3, height, width] arrays; the last partial batch is dropped (TensorRT needs full ones)."""

    def __init__(self, image_paths: list[Path], batch: int, height: int, width: int):
        if batch <= 0:
            raise ValueError(f"batch must be positive, got {batch}")
        if len(image_paths) < batch:
            raise ValueError(f"need at least one full batch of {batch} calibration images, got {len(image_paths)}")
        self.image_paths, self.batch, self.height, self.width = list(image_paths), batch, height, width
        dropped = len(self.image_paths) % batch
        if dropped:
            log.warning("calibration: dropping the last %d image(s) that do not fill a batch of %d", dropped, batch)

    def __len__(self) -> int:
        return len(self.image_paths) // self.batch

    def _load(self, path: Path) -> np.ndarray:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
        return images_to_export_size(rgb[None], self.height, self.width)[0]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            paths = self.image_paths[i * self.batch:(i + 1) * self.batch]
            yield np.ascontiguousarray(np.stack([self._load(p) for p in paths]))


class CalibrationCache:
    """The calibration table file TensorRT writes after calibrating; reused so a rebuild skips calibration."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> bytes | None:
        if self.path.is_file() and self.path.stat().st_size > 0:
            log.info("using calibration cache %s", self.path)
            return self.path.read_bytes()
        return None

    def write(self, data: bytes) -> None:
        write_bytes_atomic(self.path, data)
        log.info("wrote calibration cache %s (%d bytes)", self.path, len(data))
