"""bridge.pose.render against OpenCV's colormaps and detectron2's MatrixVisualizer rule, pixel by pixel.

The expectations are computed independently here: per pixel, with cv2.applyColorMap called on
each value, in plain Python float arithmetic, not through the module's lookup tables.
"""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from bridge.pose.render import STYLES, render_pose, wrap_to_uint8
from bridge.pose.types import PoseInstance, PoseResult


def _instance(x: int, y: int, w: int, h: int, seed: int, score: float = 0.9) -> PoseInstance:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 25, size=(h, w)).astype(np.uint8)
    uv = rng.uniform(-0.01, 1.01, size=(2, h, w)).astype(np.float32)
    uv[:, labels == 0] = 0.0
    return PoseInstance((x, y, w, h), labels, uv, score)


def _cmap_bgr(value: int, cmap: int) -> np.ndarray:
    return cv2.applyColorMap(np.full((1, 1), value, np.uint8), cmap)[0, 0].astype(np.int64)


def _expected_colormap(canvas_bgr: np.ndarray, inst: PoseInstance, plane: str, cmap: int, alpha: float) -> None:
    """detectron2's MatrixVisualizer written out per pixel (in place, BGR)."""
    x, y, w, h = inst.box_xywh
    for r in range(h):
        for c in range(w):
            label = int(inst.labels[r, c])
            if plane == "i":
                val = min(int(np.float32(label) * np.float32(255.0 / 24)), 255)
            else:
                raw = float(np.float32(inst.uv[0 if plane == "u" else 1, r, c]) * np.float32(255.0))
                val = int(raw) % 256 if raw >= 0 else (-int(-raw)) % 256  # truncate toward 0, wrap
            under = canvas_bgr[y + r, x + c].astype(np.float64)
            col = under if label == 0 else _cmap_bgr(val, cmap).astype(np.float64)
            canvas_bgr[y + r, x + c] = (under * (1.0 - alpha) + col * alpha).astype(np.uint8)


@pytest.fixture
def frame() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, size=(40, 50, 3)).astype(np.uint8)


@pytest.fixture
def result() -> PoseResult:
    # Two overlapping people; the second (lower score) is drawn over the first, as detectron2 does.
    return PoseResult(50, 40, (_instance(3, 4, 20, 18, 1, 0.99), _instance(12, 10, 17, 21, 2, 0.85)))


def test_styles_listed() -> None:
    assert {"dp_segm", "vid2densepose", "black", "iuv", "u", "v"} <= set(STYLES)


@pytest.mark.parametrize("style,plane", [("dp_segm", "i"), ("u", "u"), ("v", "v")])
def test_frame_styles_match_matrix_visualizer(style: str, plane: str, frame: np.ndarray, result: PoseResult) -> None:
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    expected = np.stack([gray] * 3, axis=2)
    for inst in result.instances:
        _expected_colormap(expected, inst, plane, cv2.COLORMAP_PARULA, 0.7)
    out = render_pose(result, style, frame)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected[:, :, ::-1])  # RGB out
    # Outside every box the canvas is the grayscale frame, untouched.
    assert (out[0, 0] == gray[0, 0]).all() and (out[39, 49] == gray[39, 49]).all()


def test_frame_styles_without_frame_draw_over_white(result: PoseResult) -> None:
    expected = np.full((40, 50, 3), 255, np.uint8)
    for inst in result.instances:
        _expected_colormap(expected, inst, "i", cv2.COLORMAP_PARULA, 0.7)
    np.testing.assert_array_equal(render_pose(result, "dp_segm"), expected[:, :, ::-1])


def test_vid2densepose_reference_colours() -> None:
    # densepose.md §6.1: over VIRIDIS(0), I=1 -> BGR(94, 11, 70), I=24 -> BGR(51, 162, 197).
    labels = np.array([[0, 1, 24]], np.uint8)
    res = PoseResult(3, 1, (PoseInstance((0, 0, 3, 1), labels, np.zeros((2, 1, 3), np.float32)),))
    out = render_pose(res, "vid2densepose", np.zeros((1, 3, 3), np.uint8))  # frame ignored
    assert out[0].tolist() == [[68, 1, 84], [70, 11, 94], [197, 162, 51]]


def test_vid2densepose_and_black_pixelwise(result: PoseResult) -> None:
    bg = _cmap_bgr(0, cv2.COLORMAP_VIRIDIS)
    expected = np.broadcast_to(bg.astype(np.uint8), (40, 50, 3)).copy()
    for inst in result.instances:
        _expected_colormap(expected, inst, "i", cv2.COLORMAP_VIRIDIS, 0.7)
    np.testing.assert_array_equal(render_pose(result, "vid2densepose"), expected[:, :, ::-1])

    expected = np.zeros((40, 50, 3), np.uint8)
    for inst in result.instances:
        _expected_colormap(expected, inst, "i", cv2.COLORMAP_PARULA, 1.0)
    out = render_pose(result, "black")
    np.testing.assert_array_equal(out, expected[:, :, ::-1])
    # alpha 1: every part pixel is exactly a PARULA colour of I*255/24.
    second = result.instances[1]
    x, y, w, h = second.box_xywh
    r, c = np.argwhere(second.labels == 24)[0]
    assert out[y + r, x + c].tolist() == _cmap_bgr(255, cv2.COLORMAP_PARULA)[::-1].tolist()


def test_drawing_order_later_on_top() -> None:
    full = np.full((10, 10), 5, np.uint8)
    zero_uv = np.zeros((2, 10, 10), np.float32)
    a = PoseInstance((0, 0, 10, 10), full, zero_uv, 0.99)
    b = PoseInstance((5, 5, 10, 10), np.full((10, 10), 20, np.uint8), zero_uv, 0.9)
    out = render_pose(PoseResult(15, 15, (a, b)), "black")
    col = lambda i: _cmap_bgr(int(np.float32(i) * np.float32(255 / 24)), cv2.COLORMAP_PARULA)[::-1].tolist()
    assert out[2, 2].tolist() == col(5)
    assert out[7, 7].tolist() == col(20)  # overlap: the later (lower-scoring) instance wins
    out_rev = render_pose(PoseResult(15, 15, (b, a)), "black")
    assert out_rev[7, 7].tolist() == col(5)


def test_iuv_packing_and_wrap() -> None:
    labels = np.array([[0, 3, 7, 24]], np.uint8)
    uv = np.array([[[0.0, 1.004, -0.006, 0.5]], [[0.0, 0.25, 1.0, 0.999]]], np.float32)
    res = PoseResult(4, 1, (PoseInstance((0, 0, 4, 1), labels, uv),))
    out = render_pose(res, "iuv")
    # U: 1.004*255 = 256.02 wraps to 0; -0.006*255 = -1.53 wraps to 255 (torch's cast).
    assert out[0].tolist() == [[0, 0, 0], [3, 0, 63], [7, 255, 255], [24, 127, 254]]
    assert render_pose(res, "iuv_cv2")[0].tolist() == [[0, 0, 0], [63, 0, 3], [255, 255, 7], [254, 127, 24]]


def test_wrap_matches_torch_cast() -> None:
    torch = pytest.importorskip("torch")
    values = np.concatenate([np.linspace(-700, 700, 20011, dtype=np.float32),
                             np.array([np.nan, np.inf, -np.inf, 255.99, 256.0, -0.99], np.float32)])
    expected = torch.from_numpy(values).type(torch.uint8).numpy()
    np.testing.assert_array_equal(wrap_to_uint8(values), expected)


def test_boxes_outside_frame_are_cropped_and_empty_boxes_skipped() -> None:
    inst = _instance(-3, -2, 8, 6, 3)
    empty = PoseInstance((2, 2, 0, 4), np.zeros((4, 0), np.uint8), np.zeros((2, 4, 0), np.float32))
    res = PoseResult(4, 3, (inst, empty))
    out = render_pose(res, "iuv")
    np.testing.assert_array_equal(out[..., 0], inst.labels[2:5, 3:7])


def test_bad_arguments(result: PoseResult) -> None:
    with pytest.raises(ValueError, match="unknown pose style"):
        render_pose(result, "nope")
    with pytest.raises(ValueError, match="frame_bgr"):
        render_pose(result, "dp_segm", np.zeros((40, 51, 3), np.uint8))


def test_frame_not_modified(frame: np.ndarray, result: PoseResult) -> None:
    before = frame.copy()
    render_pose(result, "dp_segm", frame)
    np.testing.assert_array_equal(frame, before)


def test_renderer_does_not_import_torch() -> None:
    code = "import sys, bridge.pose.render; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
