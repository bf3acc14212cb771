"""What a pose source hands to a renderer: people as DensePose chart results, in frame pixels.

Both pose sources speak this one vocabulary, so one generator can take either:

* the DensePose stage (``bridge.densepose``) fills it from the network's chart output,
  exactly as detectron2's ``DensePoseChartResult`` (labels and U/V inside each box);
* the keypoint source (``bridge.pose.keypoints``) and the synthetic puppet (``bridge.puppet.skeleton``)
  draw limbs as body parts in the same 24-part vocabulary.

Renderers (``bridge.pose.render``) turn a :class:`PoseResult` into the RGB pose image a
generator was trained on. Numpy only: no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: DensePose's fine body parts, index 1..24 (0 is background), as in the DensePose-COCO
#: annotations (detectron2 ``projects/DensePose/doc/DENSEPOSE_IUV.md``).
PART_NAMES: tuple[str, ...] = (
    "background",
    "torso_back", "torso_front", "right_hand", "left_hand", "left_foot", "right_foot",
    "upper_leg_right_back", "upper_leg_left_back", "upper_leg_right_front", "upper_leg_left_front",
    "lower_leg_right_back", "lower_leg_left_back", "lower_leg_right_front", "lower_leg_left_front",
    "upper_arm_left_front", "upper_arm_right_front", "upper_arm_left_back", "upper_arm_right_back",
    "lower_arm_left_front", "lower_arm_right_front", "lower_arm_left_back", "lower_arm_right_back",
    "head_right", "head_left",
)
PART_COUNT = 24  # fine parts, not counting background


@dataclass(frozen=True)
class PoseInstance:
    """One person, as detectron2's chart result for one detection.

    ``box_xywh`` is the integer box in frame pixels that ``labels`` and ``uv`` fill
    (detectron2's visualizers draw a result into exactly this box). ``labels`` is
    ``(h, w)`` uint8, 0 = background, 1..24 = :data:`PART_NAMES`; ``uv`` is ``(2, h, w)``
    float32 in [0, 1], the U and V of the part at each pixel (0 where ``labels`` is 0).
    """

    box_xywh: tuple[int, int, int, int]
    labels: np.ndarray
    uv: np.ndarray
    score: float = 1.0

    def __post_init__(self) -> None:
        x, y, w, h = self.box_xywh
        if w < 0 or h < 0:
            raise ValueError(f"negative box size {self.box_xywh}")
        if self.labels.shape != (h, w) or self.labels.dtype != np.uint8:
            raise ValueError(f"labels must be uint8 {(h, w)}, got {self.labels.dtype} {self.labels.shape}")
        if self.uv.shape != (2, h, w) or self.uv.dtype != np.float32:
            raise ValueError(f"uv must be float32 {(2, h, w)}, got {self.uv.dtype} {self.uv.shape}")


@dataclass(frozen=True)
class PoseResult:
    """Everyone found in one frame of ``width`` x ``height`` pixels, in drawing order
    (detectron2's order: descending detection score; later instances are drawn over earlier)."""

    width: int
    height: int
    instances: tuple[PoseInstance, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.instances
