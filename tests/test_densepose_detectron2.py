"""The optional detectron2 backend (``--pose-backend detectron2``).

detectron2 is not on PyPI and cannot be installed in this project's environments (it must be
compiled against the exact torch), so the comparison test skips wherever it does not import,
*also under CI=true*: unlike the external client tools, CI cannot provide it either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bridge.densepose import DensePoseSettings
from bridge.densepose.backends import detectron2_missing, load_backend
from bridge.errors import ModelLoadError

MISSING = detectron2_missing()
SKIP_REASON = (f"{MISSING} -- skipped everywhere it is missing, CI included (not installable from a package "
               f"registry)") if MISSING else ""


def test_missing_detectron2_is_a_clear_error(tmp_path: Path) -> None:
    if MISSING is None:
        pytest.skip("detectron2 is installed here")
    assert "not on PyPI" in MISSING
    with pytest.raises(ModelLoadError, match="detectron2 \\+ densepose are not importable"):
        load_backend("detectron2", tmp_path / "w.pkl", "densepose_rcnn_R_50_FPN_s1x")
    with pytest.raises(ModelLoadError, match="unknown pose backend"):
        load_backend("caffe2", tmp_path / "w.pkl", "densepose_rcnn_R_50_FPN_s1x")


@pytest.mark.skipif(MISSING is not None, reason=SKIP_REASON or "n/a")
@pytest.mark.parametrize("config_name", ["densepose_rcnn_R_50_FPN_s1x", "densepose_rcnn_R_50_FPN_s1x_legacy"])
def test_same_result_as_detectron2(config_name: str, tmp_path: Path) -> None:
    """Both backends on one random-weight checkpoint in the official layout: same boxes, labels
    equal but for part-boundary pixels, U/V within float tolerance."""
    from densepose_ckpt import official_arrays, write_pkl

    weights = write_pkl(tmp_path / "model_final.pkl", official_arrays(config_name, seed=1))
    frame = np.random.default_rng(3).integers(0, 256, size=(240, 320, 3)).astype(np.uint8)
    settings = DensePoseSettings(short_side=160, max_people=3)
    ours = load_backend("torch", weights, config_name, settings=settings).predict(frame)
    ref = load_backend("detectron2", weights, config_name, settings=settings).predict(frame)
    assert len(ours.instances) == len(ref.instances) > 0
    for a, b in zip(ours.instances, ref.instances):
        assert a.box_xywh == b.box_xywh
        assert a.score == pytest.approx(b.score, abs=1e-5)
        assert (a.labels != b.labels).mean() < 0.01
        same = a.labels == b.labels
        np.testing.assert_allclose(a.uv[:, same], b.uv[:, same], atol=1e-3)
