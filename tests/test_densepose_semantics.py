"""detectron2's inference semantics, step by step, against expectations computed here
independently (hand-worked numbers, PIL/torchvision called directly, detectron2's loops written
out) rather than through the module under test. densepose.md §3-§5 is the source of each rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import roi_align

from bridge.densepose import CONFIGS, DensePoseSettings
from bridge.densepose.checkpoint import load_into
from bridge.densepose.model import build_model
from bridge.densepose.postprocess import chart_to_instance, int_box_xywh, rescale_boxes, select_people
from bridge.densepose.predictor import DensePosePredictor
from bridge.densepose.preprocess import output_size, padded_size, resize_bgr, to_batch
from bridge.densepose.roi_heads import ROIPooler, detections_from_box_outputs
from bridge.densepose.rpn import apply_deltas, cell_anchors, grid_anchors
from bridge.errors import ConfigError
from densepose_ckpt import NOBODY_BIAS, PERSON_BIAS, official_arrays

R50 = "densepose_rcnn_R_50_FPN_s1x"


# --- preprocessing --------------------------------------------------------------------------

@pytest.mark.parametrize("hw,resized,padded", [
    ((480, 640), (800, 1067), (800, 1088)),
    ((720, 1280), (750, 1333), (768, 1344)),
    ((1080, 1920), (750, 1333), (768, 1344)),
    ((640, 480), (1067, 800), (1088, 800)),
    ((800, 800), (800, 800), (800, 800)),
])
def test_resize_shortest_edge_sizes(hw: tuple[int, int], resized: tuple[int, int], padded: tuple[int, int]) -> None:
    assert output_size(*hw, 800, 1333) == resized
    assert padded_size(*resized, 32) == padded


def test_short_side_512_sizes() -> None:
    assert output_size(480, 640, 512, 1333) == (512, 683)
    assert padded_size(512, 683) == (512, 704)


def test_resize_is_pil_bilinear_and_batch_is_normalised_then_padded() -> None:
    frame = np.random.default_rng(1).integers(0, 256, size=(30, 40, 3)).astype(np.uint8)
    out = resize_bgr(frame, 45, 60)
    expected = np.asarray(Image.fromarray(frame).resize((60, 45), Image.BILINEAR))
    np.testing.assert_array_equal(out, expected)
    import cv2

    assert not np.array_equal(out, cv2.resize(frame, (60, 45), interpolation=cv2.INTER_LINEAR))
    mean = (103.530, 116.280, 123.675)
    batch = to_batch(out, mean, (1.0, 1.0, 1.0), 32)
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == torch.float32
    for c in range(3):  # channels stay BGR: channel 0 is blue minus the blue mean
        np.testing.assert_allclose(batch[0, c, :45, :60].numpy(), out[:, :, c].astype(np.float32) - np.float32(mean[c]))
    assert not batch[0, :, 45:, :].any() and not batch[0, :, :, 60:].any()  # zeros after normalisation


# --- anchors, box decoding, pooling ----------------------------------------------------------

def test_cell_anchors_and_grid_order() -> None:
    base = cell_anchors((32.0,), (0.5, 1.0, 2.0))
    w = math.sqrt(32 * 32 / 0.5)
    np.testing.assert_allclose(base[0].numpy(), [-w / 2, -0.5 * w / 2, w / 2, 0.5 * w / 2], rtol=1e-6)
    np.testing.assert_allclose(base[1].numpy(), [-16, -16, 16, 16])
    grid = grid_anchors(base, 2, 3, 4, 0.0)
    assert grid.shape == (2 * 3 * 3, 4)
    # location-major (row, then column), anchor-minor; offset 0: the first cell is centred on 0
    np.testing.assert_allclose(grid[1].numpy(), [-16, -16, 16, 16])
    np.testing.assert_allclose(grid[3 + 1].numpy(), [-12, -16, 20, 16])  # column 1 -> x + 4
    np.testing.assert_allclose(grid[9 + 1].numpy(), [-16, -12, 16, 20])  # row 1 -> y + 4


def test_apply_deltas_by_hand() -> None:
    box = torch.tensor([[10.0, 20.0, 50.0, 100.0]])  # w 40, h 80, centre (30, 60)
    deltas = torch.tensor([[1.0, -2.0, math.log(2.0) * 5, 0.0]])
    out = apply_deltas(deltas, box, (10.0, 10.0, 5.0, 5.0), math.log(1000 / 16))
    # dx = 0.1 -> ctr_x 34; dy = -0.2 -> ctr_y 44; w * 2 = 80; h stays 80
    np.testing.assert_allclose(out.numpy(), [[34 - 40, 44 - 40, 34 + 40, 44 + 40]], rtol=1e-6)
    huge = apply_deltas(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), box, (1.0, 1.0, 1.0, 1.0), math.log(1000 / 16))
    assert float(huge[0, 2] - huge[0, 0]) == pytest.approx(40 * 1000 / 16, rel=1e-5)  # dw clamped


def test_pooler_is_roialign_unaligned_with_fpn_levels() -> None:
    pooler = ROIPooler(7, (1 / 4, 1 / 8, 1 / 16, 1 / 32), 2, aligned=False)
    # sqrt(area): 10 -> p2, 112 -> p3, 224 -> p4, 448 and 1000 -> p5
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 112, 112], [0, 0, 224, 224], [0, 0, 448, 448], [0, 0, 1000, 1000.0]])
    assert pooler.level_of(boxes).tolist() == [0, 1, 2, 3, 3]
    feats = [torch.randn(1, 4, 256 // s, 256 // s, generator=torch.Generator().manual_seed(s)) for s in (4, 8, 16, 32)]
    box = torch.tensor([[13.3, 21.7, 163.1, 170.9]])  # sqrt(area) ~ 149.8 -> floor(4 - 0.58) = p3
    out = pooler(feats, box)
    rois = torch.tensor([[0.0, 13.3, 21.7, 163.1, 170.9]])
    torch.testing.assert_close(out, roi_align(feats[1], rois, 7, 1 / 8, 2, aligned=False), rtol=0, atol=0)
    assert not torch.allclose(out, roi_align(feats[1], rois, 7, 1 / 8, 2, aligned=True))


def test_detection_filtering_threshold_nms_topk() -> None:
    cfg = CONFIGS[R50]
    proposals = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 30, 30], [70, 0, 90, 5.0]])
    # softmax over [fg, bg] (background last): person scores 0.9, 0.95, 0.8 (== thresh), 0.85, 0.99
    p = torch.tensor([0.9, 0.95, 0.8, 0.85, 0.99])
    logits = torch.stack([torch.log(p), torch.log(1 - p)], dim=1)
    boxes, scores = detections_from_box_outputs(logits, torch.zeros(5, 4), proposals, cfg, (40, 80), 0.8, 0.5, 100)
    # 0.8 is not > 0.8; box 0 overlaps box 1 (IoU 0.68) and loses; box 4 is clipped to x <= 80
    np.testing.assert_allclose(scores.numpy(), [0.99, 0.95, 0.85], rtol=1e-6)
    np.testing.assert_allclose(boxes.numpy(), [[70, 0, 80, 5], [1, 1, 11, 11], [0, 0, 30, 30]])
    boxes, scores = detections_from_box_outputs(logits, torch.zeros(5, 4), proposals, cfg, (40, 80), 0.8, 0.5, 2)
    assert scores.shape == (2,)


# --- postprocessing ---------------------------------------------------------------------------

def test_box_rescale_clip_and_drop_empty() -> None:
    boxes = torch.tensor([[10.0, 20.0, 500.0, 700.0], [0.0, 0.0, 2000.0, 900.0], [1066.9, 10.0, 1066.95, 30.0]])
    out, keep = rescale_boxes(boxes, (800, 1067), (480, 640))
    sx, sy = 640 / 1067, 480 / 800
    np.testing.assert_allclose(out[0].numpy(), [10 * sx, 20 * sy, 500 * sx, 700 * sy], rtol=1e-6)
    np.testing.assert_allclose(out[1].numpy(), [0, 0, 640, 480])  # clipped to the frame
    assert keep.tolist() == [True, True, True]
    out, keep = rescale_boxes(torch.tensor([[700.0, 10.0, 800.0, 30.0]]), (800, 1067), (480, 640))
    assert keep.tolist() == [True]
    out, keep = rescale_boxes(torch.tensor([[1100.0, 10.0, 1200.0, 30.0]]), (800, 1067), (480, 640))
    assert keep.tolist() == [False]  # entirely right of the frame: zero width after clipping


def test_int_box_truncates_each_value() -> None:
    # w = 50.5 - 10.7 = 39.8 -> 39 (not int(50.5) - int(10.7) = 40); h = 80.3 - 20.6 = 59.7 -> 59
    assert int_box_xywh(torch.tensor([10.7, 20.6, 50.5, 80.3])) == (10, 20, 39, 59)
    assert int_box_xywh(torch.tensor([0.0, 0.0, 0.999, 5.0])) == (0, 0, 0, 5)


def _reference_chart(coarse: torch.Tensor, fine: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                     w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """detectron2's converter written out: per-part masked copies into zeros."""
    size = (max(h, 1), max(w, 1))
    c = F.interpolate(coarse, size, mode="bilinear", align_corners=False).argmax(dim=1)
    labels = F.interpolate(fine, size, mode="bilinear", align_corners=False).argmax(dim=1) * (c > 0).long()
    labels = labels[0]
    ub = F.interpolate(u, size, mode="bilinear", align_corners=False)
    vb = F.interpolate(v, size, mode="bilinear", align_corners=False)
    uv = torch.zeros([2, *size])
    for part in range(1, 25):
        uv[0][labels == part] = ub[0, part][labels == part]
        uv[1][labels == part] = vb[0, part][labels == part]
    return labels.numpy(), uv.numpy()


@pytest.mark.parametrize("coarse_channels", [2, 15])
def test_chart_conversion_matches_detectron2_loops(coarse_channels: int) -> None:
    g = torch.Generator().manual_seed(coarse_channels)
    coarse = torch.randn(1, coarse_channels, 112, 112, generator=g)
    coarse[:, 0, :, :40] += 10.0  # background on the left: labels must be 0 there
    fine = torch.randn(1, 25, 112, 112, generator=g)
    u, v = torch.randn(1, 25, 112, 112, generator=g), torch.randn(1, 25, 112, 112, generator=g)
    box = torch.tensor([5.5, 7.25, 5.5 + 61.9, 7.25 + 93.2])
    inst = chart_to_instance(coarse, fine, u, v, box, 0.9)
    assert inst.box_xywh == (5, 7, 61, 93)
    labels, uv = _reference_chart(coarse, fine, u, v, 61, 93)
    np.testing.assert_array_equal(inst.labels, labels.astype(np.uint8))
    np.testing.assert_array_equal(inst.uv, uv)
    assert inst.labels.dtype == np.uint8 and inst.uv.dtype == np.float32
    assert not inst.labels[:, :15].any() and inst.labels.any()
    assert (inst.uv[:, inst.labels == 0] == 0).all()


def test_sub_pixel_box_draws_nothing() -> None:
    z = torch.zeros(1, 25, 112, 112)
    inst = chart_to_instance(z[:, :2], z, z, z, torch.tensor([3.0, 4.0, 3.5, 20.0]), 0.9)
    assert inst.box_xywh == (3, 4, 0, 16) and inst.labels.shape == (16, 0)


def test_select_people() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 20, 20], [0, 0, 50, 50.0]])
    assert select_people(boxes, 0, "score").tolist() == [0, 1, 2, 3]
    assert select_people(boxes, 2, "score").tolist() == [0, 1]
    assert select_people(boxes, 2, "area").tolist() == [1, 3]  # kept in score (detection) order
    assert select_people(boxes, 3, "area").tolist() == [1, 2, 3]


def test_settings_validation() -> None:
    with pytest.raises(ConfigError):
        DensePoseSettings(min_score=1.5)
    with pytest.raises(ConfigError):
        DensePoseSettings(max_people=-1)
    with pytest.raises(ConfigError):
        DensePoseSettings(short_side=8)


# --- the whole predictor (random weights in the official layout) -----------------------------

@pytest.fixture(scope="module")
def predictor() -> DensePosePredictor:
    cfg = CONFIGS[R50]
    with torch.device("meta"):
        model = build_model(cfg)
    load_into(model, {k: torch.from_numpy(v) for k, v in official_arrays(R50, seed=3).items()}, R50, "test",
              assign=True)
    return DensePosePredictor(model, cfg, settings=DensePoseSettings(short_side=64, max_people=2))


def _frame() -> np.ndarray:
    return np.random.default_rng(9).integers(0, 256, size=(64, 80, 3)).astype(np.uint8)


def test_predictor_deterministic_ordered_and_timed(predictor: DensePosePredictor) -> None:
    frame = _frame()
    raw = predictor.predict_raw(frame)
    first = predictor.to_result(raw)
    assert raw.resized_hw == (64, 80) and raw.padded_hw == (64, 96)
    assert raw.scores.shape[0] > 2 and bool((raw.scores > 0.8).all())
    assert bool((raw.scores[:-1] >= raw.scores[1:]).all())  # detectron2's order: best first
    assert len(first.instances) == 2  # max_people = the first two detections
    assert [i.score for i in first.instances] == pytest.approx(raw.scores[:2].tolist())
    assert set(predictor.timings) >= {"preprocess", "backbone", "rpn", "box_head", "decoder", "densepose_head",
                                      "densepose_head_per_person", "postprocess", "total"}
    assert predictor.timings["decoder"] > 0
    second = predictor.predict(frame)
    for a, b in zip(first.instances, second.instances):
        assert a.box_xywh == b.box_xywh
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.uv, b.uv)


def test_no_person_gives_empty_result(predictor: DensePosePredictor) -> None:
    bias = predictor.model.roi_heads.box_predictor.cls_score.bias
    saved = bias.clone()
    try:
        with torch.no_grad():
            bias.copy_(torch.tensor(NOBODY_BIAS))
        result = predictor.predict(np.zeros((50, 70, 3), np.uint8))
    finally:
        with torch.no_grad():
            bias.copy_(saved)
    assert result.empty and (result.width, result.height) == (70, 50)
    assert predictor.timings["decoder"] == 0.0 and predictor.timings["densepose_head"] == 0.0
    assert tuple(saved.tolist()) == PERSON_BIAS


def test_bad_frames_refused(predictor: DensePosePredictor) -> None:
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(np.zeros((20, 20), np.uint8))


def test_fast_path_equals_reference_path() -> None:
    """Folded FrozenBN + channels-last + windowed decoder: same detections and labels, chart
    outputs equal up to float rounding (the windowed decoder is exact inside its window)."""
    arrays = official_arrays(R50, seed=11)
    frame = np.random.default_rng(2).integers(0, 256, size=(96, 128, 3)).astype(np.uint8)
    outs = []
    for fast in (False, True):
        with torch.device("meta"):
            model = build_model(CONFIGS[R50])
        load_into(model, {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}, R50, "t", assign=True)
        pred = DensePosePredictor(model, CONFIGS[R50], settings=DensePoseSettings(short_side=96, max_people=1,
                                                                                   fast=fast))
        raw = pred.predict_raw(frame)
        outs.append((raw, pred.to_result(raw)))
    (ref_raw, ref), (fast_raw, fast) = outs
    torch.testing.assert_close(fast_raw.boxes_resized, ref_raw.boxes_resized, rtol=1e-5, atol=1e-3)
    assert ref_raw.chart is not None and fast_raw.chart is not None
    for a, b in zip(ref_raw.chart, fast_raw.chart):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    (a,), (b,) = ref.instances, fast.instances
    assert a.box_xywh == b.box_xywh
    assert (a.labels != b.labels).mean() < 0.002  # argmax ties at part borders may flip
    np.testing.assert_allclose(b.uv[:, a.labels == b.labels], a.uv[:, a.labels == b.labels], atol=1e-3)


def test_decoder_window_is_exact_inside() -> None:
    from bridge.densepose.fast import decoder_in_window, decoder_window

    cfg = CONFIGS[R50]
    torch.manual_seed(0)
    decoder = build_model(cfg).roi_heads.decoder
    feats = [torch.randn(1, 256, 64 // s, 96 // s) for s in (1, 2, 4, 8)]  # p2..p5 of a 256x384 input
    boxes = torch.tensor([[101.3, 40.2, 170.9, 150.7]])
    window = decoder_window(boxes, 64, 96)
    assert window == (8, 41, 23, 46)
    with torch.inference_mode():
        full = decoder(feats)
        part = decoder_in_window(decoder, feats, window)
    y0, y1, x0, x1 = window
    torch.testing.assert_close(part[..., y0:y1, x0:x1], full[..., y0:y1, x0:x1], rtol=1e-5, atol=1e-5)
    assert not part[..., :y0, :].any() and not part[..., :, x1:].any()
    rois = torch.cat([torch.zeros(1, 1), boxes], dim=1)
    torch.testing.assert_close(roi_align(part, rois, 28, 0.25, 2, False), roi_align(full, rois, 28, 0.25, 2, False),
                               rtol=1e-5, atol=1e-5)


def test_settings_from_a_model_card() -> None:
    from bridge.cards import load_card, shipped_models_dir
    from bridge.densepose.settings import settings_from_card

    card = load_card(shipped_models_dir() / R50)
    settings = settings_from_card(card.extra["densepose"], max_people=1, fp16=None)
    assert settings == DensePoseSettings(min_score=0.8, short_side=800, max_side=1333, max_people=1)
    with pytest.raises(ConfigError, match="not a DensePose setting"):
        settings_from_card({"min_scor": 0.5})
    with pytest.raises(ConfigError, match="min score"):
        settings_from_card({"min_score": 2.0})


def test_parallel_roi_align_is_bit_identical() -> None:
    from bridge.densepose.roi_heads import _roi_align

    g = torch.Generator().manual_seed(5)
    feature = torch.randn(1, 8, 40, 50, generator=g).contiguous(memory_format=torch.channels_last)
    boxes = torch.rand(300, 4, generator=g) * 120
    boxes[:, 2:] += boxes[:, :2] + 5
    rois = torch.cat([torch.zeros(300, 1), boxes], dim=1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = _roi_align(feature, rois, 7, 0.25, 2, False)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out, roi_align(feature.contiguous(), rois, 7, 0.25, 2, False))


def test_fp16_plumbing_runs(predictor: DensePosePredictor) -> None:
    """The CUDA fp16 path's dtype handling (half convs, fp32 pooling, box decoding and chart
    conversion), exercised on CPU half kernels: no dtype errors, finite output, same people count."""
    import copy

    half = copy.deepcopy(predictor)
    half.model.half()
    half.half = True
    frame = _frame()
    ref, out = predictor.predict(frame), half.predict(frame)
    assert len(out.instances) == len(ref.instances) == 2
    for inst in out.instances:
        assert np.isfinite(inst.uv).all() and inst.labels.max() <= 24
        assert 0.9 < inst.score <= 1.0


def test_decoder_windows_per_person() -> None:
    from bridge.densepose.fast import decoder_in_windows, decoder_windows

    cfg = CONFIGS[R50]
    torch.manual_seed(1)
    decoder = build_model(cfg).roi_heads.decoder
    feats = [torch.randn(1, 256, 64 // s, 128 // s) for s in (1, 2, 4, 8)]  # a 256x512 input
    boxes = torch.tensor([[10.0, 20.0, 60.0, 120.0], [400.0, 30.0, 470.0, 200.0], [40.0, 90.0, 90.0, 140.0]])
    windows = decoder_windows(boxes, 64, 128)
    assert len(windows) == 2  # the first and third overlap and merge; the second is far away
    with torch.inference_mode():
        full = decoder(feats)
        part = decoder_in_windows(decoder, feats, windows)
    for y0, y1, x0, x1 in windows:
        torch.testing.assert_close(part[..., y0:y1, x0:x1], full[..., y0:y1, x0:x1], rtol=1e-5, atol=1e-5)
    rois = torch.cat([torch.zeros(3, 1), boxes], dim=1)
    torch.testing.assert_close(roi_align(part, rois, 28, 0.25, 2, False), roi_align(full, rois, 28, 0.25, 2, False),
                               rtol=1e-5, atol=1e-5)
