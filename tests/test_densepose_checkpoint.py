"""DensePose checkpoints: every supported config's official layout loads strictly from .pkl and
.pth (random weights, written here), the documented extra keys are ignored, and hostile, broken
or mismatched files are refused with a clear ModelLoadError, never by running their code."""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge.densepose import CONFIGS, DensePoseSettings, load_predictor
from bridge.densepose.checkpoint import load_into, read_checkpoint, read_pkl
from bridge.densepose.model import build_model
from bridge.errors import ModelLoadError
from densepose_ckpt import official_arrays, write_pkl, write_pth

#: densepose.md §7.3 / §7.1: names and shapes of the official R_50_FPN_s1x file (spot checks).
DOCUMENTED = {
    "backbone.bottom_up.stem.conv1.weight": (64, 3, 7, 7),
    "backbone.bottom_up.stem.conv1.norm.running_var": (64,),
    "backbone.bottom_up.res2.0.shortcut.weight": (256, 64, 1, 1),
    "backbone.bottom_up.res5.2.conv3.norm.running_mean": (2048,),
    "backbone.fpn_lateral5.weight": (256, 2048, 1, 1),
    "backbone.fpn_output2.bias": (256,),
    "proposal_generator.rpn_head.objectness_logits.weight": (3, 256, 1, 1),
    "proposal_generator.rpn_head.anchor_deltas.weight": (12, 256, 1, 1),
    "roi_heads.box_head.fc1.weight": (1024, 256 * 7 * 7),
    "roi_heads.box_predictor.cls_score.weight": (2, 1024),
    "roi_heads.box_predictor.bbox_pred.weight": (4, 1024),
    "roi_heads.decoder.p5.4.weight": (256, 256, 3, 3),
    "roi_heads.decoder.predictor.weight": (256, 256, 1, 1),
    "roi_heads.densepose_head.body_conv_fcn1.weight": (512, 256, 3, 3),
    "roi_heads.densepose_head.body_conv_fcn8.weight": (512, 512, 3, 3),
    "roi_heads.densepose_predictor.ann_index_lowres.weight": (512, 2, 4, 4),
    "roi_heads.densepose_predictor.index_uv_lowres.weight": (512, 25, 4, 4),
}
#: densepose.md §7.3: parameter counts (unique tensors, FrozenBN buffers not counted), millions
PARAMS_M = {"densepose_rcnn_R_50_FPN_s1x": 63.8, "densepose_rcnn_R_50_FPN_s1x_legacy": 59.7,
            "densepose_rcnn_R_50_FPN_DL_s1x": 66.1, "densepose_rcnn_R_101_FPN_s1x": 82.8,
            "densepose_rcnn_R_101_FPN_DL_s1x": 85.0}
SMALL = DensePoseSettings(short_side=64, max_people=1, fast=False)  # fast folds BN: state would differ


def _frame() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, size=(72, 96, 3)).astype(np.uint8)


def test_documented_names_and_parameter_counts() -> None:
    from bridge.densepose.checkpoint import _expected_shapes
    from bridge.densepose.model import build_model

    shapes = _expected_shapes("densepose_rcnn_R_50_FPN_s1x")
    for key, shape in DOCUMENTED.items():
        assert shapes[key] == shape, key
    assert not any("num_batches_tracked" in k for k in shapes)
    assert not any(k.startswith("roi_heads.decoder") for k in _expected_shapes("densepose_rcnn_R_50_FPN_s1x_legacy"))
    assert _expected_shapes("densepose_rcnn_R_50_FPN_s1x_legacy")[
        "roi_heads.densepose_predictor.ann_index_lowres.weight"] == (512, 15, 4, 4)
    assert "backbone.bottom_up.res4.22.conv3.weight" in _expected_shapes("densepose_rcnn_R_101_FPN_s1x")
    for name, millions in PARAMS_M.items():
        with torch.device("meta"):
            model = build_model(CONFIGS[name])
        assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == millions, name


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_official_layout_loads_from_pkl_and_pth(config_name: str, tmp_path: Path) -> None:
    """Strict load from both formats (no stray keys) giving identical weights, output shapes;
    and the same file offered as another config is refused naming its own config."""
    arrays = official_arrays(config_name, seed=len(config_name))
    # protocol 2 (slow for big files) is covered by the small round-trip test below
    protocol = (4, 5, 3, 4, 5, 4)[list(CONFIGS).index(config_name)]
    pkl = write_pkl(tmp_path / "model_final.pkl", arrays, protocol=protocol)
    pth = write_pth(tmp_path / "model_final.pth", arrays)
    probe = {k: arrays[k].copy() for k in list(arrays)[::25]}
    del arrays

    from_pkl = load_predictor(pkl, config_name, settings=SMALL)
    state = from_pkl.model.state_dict()
    for key, value in probe.items():
        np.testing.assert_array_equal(state[key].numpy(), value, err_msg=key)
    # The .pth: same tensors, and a strict load into the module tree (on the meta device, so
    # no second copy of the weights is made).
    from_pth = read_checkpoint(pth)
    assert from_pth.keys() == state.keys()
    for key, value in probe.items():
        np.testing.assert_array_equal(from_pth[key].numpy(), value, err_msg=key)
    with torch.device("meta"):
        meta_model = build_model(CONFIGS[config_name])
    load_into(meta_model, from_pth, config_name, str(pth), assign=True)
    del from_pth, state, meta_model

    cfg = CONFIGS[config_name]
    if cfg.depth == 101:
        # The ROI heads are the R_50 configs' (run there); here the deeper backbone runs.
        from bridge.densepose.preprocess import to_batch

        feats = from_pkl.model.features(to_batch(_frame(), cfg.pixel_mean, cfg.pixel_std, 32))
        assert {k: tuple(v.shape) for k, v in feats.items()} == {
            "p2": (1, 256, 24, 24), "p3": (1, 256, 12, 12), "p4": (1, 256, 6, 6), "p5": (1, 256, 3, 3),
            "p6": (1, 256, 2, 2)}
        assert all(bool(torch.isfinite(v).all()) for v in feats.values())
    else:
        raw = from_pkl.predict_raw(_frame())
        result = from_pkl.to_result(raw)
        assert raw.chart is not None, "the person bias must give detections"
        coarse, fine, u, v = raw.chart
        size = cfg.heatmap_size
        assert coarse.shape == (1, cfg.num_coarse_segm_channels, size, size)
        assert fine.shape == u.shape == v.shape == (1, 25, size, size)
        assert len(result.instances) == 1 and (result.width, result.height) == (96, 72)
        inst = result.instances[0]
        x, y, w, h = inst.box_xywh
        assert inst.labels.shape == (h, w) and inst.uv.shape == (2, h, w)
        assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 72
        assert inst.labels.max() <= 24
    del from_pkl
    gc.collect()
    other = next(n for n in CONFIGS if n != config_name)
    with pytest.raises(ModelLoadError, match=f"not a {other} checkpoint.*looks like a {config_name} checkpoint"):
        load_predictor(pkl, other)


def _small_pkl(path: Path, **kw: object) -> Path:
    arrays = {"backbone.fpn_output2.bias": np.arange(256, dtype=np.float32),
              "roi_heads.box_predictor.cls_score.weight": np.ones((2, 1024), np.float32)}
    return write_pkl(path, arrays, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_restricted_unpickler_round_trips_arrays(protocol: int, tmp_path: Path) -> None:
    model = read_pkl(_small_pkl(tmp_path / "a.pkl", protocol=protocol))
    np.testing.assert_array_equal(model["backbone.fpn_output2.bias"], np.arange(256, dtype=np.float32))
    assert model["roi_heads.box_predictor.cls_score.weight"].shape == (2, 1024)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (eval, ("__import__('os').getpid()",))


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    payload = {"model": {"backbone.fpn_output2.bias": _RunsCode(marker)}, "__author__": "x"}
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ModelLoadError, match=r"(posix|os|nt)\.system"):
        load_predictor(path, "densepose_rcnn_R_50_FPN_s1x")
    assert not marker.exists()
    # A sanity check that the payload really runs code when unpickled normally (in a child).
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.loads(open({str(path)!r}, 'rb').read())"],
                   check=True)
    assert marker.exists()

    path.write_bytes(pickle.dumps({"model": {"a": _Evals()}}, protocol=4))
    with pytest.raises(ModelLoadError, match=r"builtins\.eval"):
        read_pkl(path)


def test_object_arrays_and_non_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.pkl"
    path.write_bytes(pickle.dumps({"model": {"a": np.array([1, "x"], dtype=object)}, "__author__": "x"}))
    with pytest.raises(ModelLoadError, match="builtins|not a numeric array"):
        read_pkl(path)
    path.write_bytes(pickle.dumps({"model": {"a": [1.0, 2.0]}, "__author__": "x"}))
    with pytest.raises(ModelLoadError, match="not a numeric array"):
        read_pkl(path)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ModelLoadError, match="not a detectron2 checkpoint"):
        read_pkl(path)
    path.write_bytes(pickle.dumps({"blobs": {"conv1_w": np.zeros(3, np.float32)}}))
    with pytest.raises(ModelLoadError, match="Caffe2/Detectron1"):
        read_pkl(path)


def test_truncated_files(tmp_path: Path) -> None:
    pkl = _small_pkl(tmp_path / "t.pkl")
    data = pkl.read_bytes()
    pkl.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_predictor(pkl, "densepose_rcnn_R_50_FPN_s1x")
    pth = write_pth(tmp_path / "t.pth", {"a": np.zeros((64, 64), np.float32)})
    data = pth.read_bytes()
    pth.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_predictor(pth, "densepose_rcnn_R_50_FPN_s1x")
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_predictor(empty, "densepose_rcnn_R_50_FPN_s1x")
    with pytest.raises(ModelLoadError, match="no such file"):
        load_predictor(tmp_path / "missing.pkl", "densepose_rcnn_R_50_FPN_s1x")


def test_pth_with_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": _RunsCode(marker)}}, path)
    with pytest.raises(ModelLoadError, match="refused or corrupt"):
        load_predictor(path, "densepose_rcnn_R_50_FPN_s1x")
    assert not marker.exists()


def test_documented_extra_keys_ignored_others_refused(tmp_path: Path) -> None:
    name = "densepose_rcnn_R_50_FPN_s1x_legacy"
    arrays = official_arrays(name)
    extra = {"pixel_mean": np.zeros((3, 1, 1), np.float32), "pixel_std": np.ones((3, 1, 1), np.float32),
             **{f"proposal_generator.anchor_generator.cell_anchors.{i}": np.zeros((3, 4), np.float32)
                for i in range(5)}}
    path = write_pkl(tmp_path / "m.pkl", arrays, protocol=2, extra=extra)
    load_predictor(path, name)  # strict, and no error
    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    with torch.device("meta"):
        meta_model = build_model(CONFIGS[name])
    state["roi_heads.something_new.weight"] = torch.zeros(3)
    del state["backbone.fpn_lateral3.bias"]
    with pytest.raises(ModelLoadError, match=r"1 missing \(e.g. backbone.fpn_lateral3.bias\).*1 unexpected "
                                             r"\(e.g. roi_heads.something_new.weight\).*matches no supported config"):
        load_into(meta_model, state, name, "m.pkl")
    del state["roi_heads.something_new.weight"]
    state["backbone.fpn_lateral3.bias"] = torch.zeros(255)
    with pytest.raises(ModelLoadError, match=r"wrong shapes \(e.g. backbone.fpn_lateral3.bias: file \(255,\), "
                                             r"model \(256,\)\)"):
        load_into(meta_model, state, name, "m.pkl")


def test_unknown_config_name() -> None:
    with pytest.raises(ModelLoadError, match="unknown DensePose config"):
        load_predictor(Path("x.pkl"), "R_18_FPN")


def test_read_only_and_big_endian_arrays_load(tmp_path: Path) -> None:
    frozen = np.arange(6, dtype=np.float32).reshape(2, 3)
    frozen.setflags(write=False)
    big = np.arange(4, dtype=">f4")
    path = write_pkl(tmp_path / "m.pkl", {"a": frozen, "b": big}, protocol=5)
    state = read_checkpoint(path)
    assert state["a"].tolist() == frozen.tolist() and state["b"].tolist() == [0.0, 1.0, 2.0, 3.0]
    state["a"] += 1  # a writable tensor
