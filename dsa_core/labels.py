"""Cityscapes label conventions, defined once: the 19 train-id class names and colours, the label id -> train id
table, and the special label values every dataset, loss, metric and tool shares.

Cheap to import (the node imports it): the cityscapesscripts table is read only when the id -> train id table is
first asked for."""
from __future__ import annotations

import functools

import numpy as np

#: The 19 Cityscapes train-id classes, in train-id order.
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
#: The official Cityscapes colour of each train id.
CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
NUM_CLASSES = len(CITYSCAPES_CLASSES)
#: No class: Cityscapes void/ignore, crop padding. No Mask2Former target; out-of-distribution for L_ubhl; in the
#: anomaly benchmarks' 0/1/255 labels, not scored.
VOID = 255
#: Pixels of a pasted outlier object (AnomalyMix, Mask2Anomaly's ``label == 254``).
OUTLIER = 254
#: Training-only marker for void *ground* (VOID_GROUND_NAMES): no class, like VOID, but a stage-1 run with
#: ``ubhl_void_ground="id"`` counts it in-distribution for L_ubhl. Only a training set asked for it produces it, and
#: the stage objective turns it back into VOID for every other loss.
VOID_GROUND = 253
#: Cityscapes void ids that are drivable-looking ground at the road edge, not objects (parking strips, gravel or
#: traffic-island ground, rail track), and the flat class a training set read with ``void_ground="flat"`` gives
#: each. A vehicle sees them every minute, yet Cityscapes labels them void and the paper's L_ubhl trains void as OOD.
VOID_GROUND_FLAT_CLASS: dict[str, str] = {"ground": "terrain", "parking": "sidewalk", "rail track": "terrain"}
VOID_GROUND_NAMES: tuple[str, ...] = tuple(VOID_GROUND_FLAT_CLASS)
#: How a training set reads void ground: "void" (Cityscapes), "marked" (VOID_GROUND), "flat" (VOID_GROUND_FLAT_CLASS).
VOID_GROUND_MODES: tuple[str, ...] = ("void", "marked", "flat")
ROAD = CITYSCAPES_CLASSES.index("road")


@functools.cache
def id_to_train_id_lut(void_ground: str = "void") -> np.ndarray:
    """uint8 [256]: Cityscapes label id -> train id (0..18), VOID for void and ignored classes (cityscapesscripts);
    void ground (VOID_GROUND_NAMES) as ``void_ground`` says (VOID_GROUND_MODES)."""
    from cityscapesscripts.helpers.labels import labels as cs_labels

    if void_ground not in VOID_GROUND_MODES:
        raise ValueError(f"void_ground must be one of {VOID_GROUND_MODES}, got {void_ground!r}")
    lut = np.full(256, VOID, np.uint8)
    for label in cs_labels:
        if 0 <= label.id < 256:
            lut[label.id] = label.trainId if 0 <= label.trainId < NUM_CLASSES else VOID
            if label.name in VOID_GROUND_NAMES and void_ground != "void":
                lut[label.id] = (VOID_GROUND if void_ground == "marked"
                                 else CITYSCAPES_CLASSES.index(VOID_GROUND_FLAT_CLASS[label.name]))
    lut.setflags(write=False)
    return lut


def label_ids_to_train_ids(label_ids: np.ndarray, void_ground: str = "void") -> np.ndarray:
    """Map Cityscapes label ids (0..33) to train ids (0..18, VOID = ignore) via the cityscapesscripts table
    (``void_ground``: see id_to_train_id_lut)."""
    if label_ids.dtype != np.uint8:
        if label_ids.size and (label_ids.min() < 0 or label_ids.max() > 255):
            raise ValueError(f"label ids must lie in 0..255, got range {label_ids.min()}..{label_ids.max()}")
        label_ids = label_ids.astype(np.uint8)
    return id_to_train_id_lut(void_ground)[label_ids]
