"""The config table: every detectron2 config value the chart-DensePose inference path reads.

One frozen :class:`DensePoseConfig` per supported model-zoo config name, with the values
detectron2 ends up with after ``get_cfg()`` + ``add_densepose_config()`` + the project's
``Base-DensePose-RCNN-FPN.yaml`` + the config's own yaml (detectron2 ``02b5c4e``,
``projects/DensePose/configs``). Field comments name the detectron2 key. No torch here.

Live deviations (smaller input, top-N people, fp16) are not config values: they live in
:class:`bridge.densepose.settings.DensePoseSettings`, so a config always means "exactly the
published model".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ..config import DEFAULT_DENSEPOSE_MODEL
from ..errors import ModelLoadError

HeadName = Literal["DensePoseV1ConvXHead", "DensePoseDeepLabHead"]


@dataclass(frozen=True)
class DensePoseConfig:
    """Inference-relevant values of one detectron2 DensePose config (R_50_FPN_s1x defaults)."""

    name: str = DEFAULT_DENSEPOSE_MODEL
    # INPUT
    min_size_test: int = 800  # INPUT.MIN_SIZE_TEST (short side, px)
    max_size_test: int = 1333  # INPUT.MAX_SIZE_TEST (long side cap, px)
    input_format: str = "BGR"  # INPUT.FORMAT
    # MODEL
    pixel_mean: tuple[float, float, float] = (103.530, 116.280, 123.675)  # MODEL.PIXEL_MEAN, BGR
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)  # MODEL.PIXEL_STD
    size_divisibility: int = 32  # FPN's largest stride: ImageList pads bottom/right to it
    # RESNETS
    depth: int = 50  # RESNETS.DEPTH
    norm: str = "FrozenBN"  # RESNETS.NORM
    frozen_bn_eps: float = 1e-5  # FrozenBatchNorm2d eps
    stride_in_1x1: bool = True  # RESNETS.STRIDE_IN_1X1 (MSRA weights)
    num_groups: int = 1  # RESNETS.NUM_GROUPS
    width_per_group: int = 64  # RESNETS.WIDTH_PER_GROUP
    stem_out_channels: int = 64  # RESNETS.STEM_OUT_CHANNELS
    res2_out_channels: int = 256  # RESNETS.RES2_OUT_CHANNELS
    res5_dilation: int = 1  # RESNETS.RES5_DILATION
    out_features: tuple[str, ...] = ("res2", "res3", "res4", "res5")  # RESNETS.OUT_FEATURES
    # FPN
    fpn_in_features: tuple[str, ...] = ("res2", "res3", "res4", "res5")  # FPN.IN_FEATURES
    fpn_out_channels: int = 256  # FPN.OUT_CHANNELS
    fpn_norm: str = ""  # FPN.NORM
    fpn_fuse_type: str = "sum"  # FPN.FUSE_TYPE
    # ANCHOR_GENERATOR
    anchor_sizes: tuple[tuple[float, ...], ...] = ((32,), (64,), (128,), (256,), (512,))  # one per p2..p6
    anchor_aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # ANCHOR_GENERATOR.ASPECT_RATIOS
    anchor_offset: float = 0.0  # ANCHOR_GENERATOR.OFFSET
    # RPN
    rpn_in_features: tuple[str, ...] = ("p2", "p3", "p4", "p5", "p6")  # RPN.IN_FEATURES
    rpn_pre_nms_topk_test: int = 1000  # RPN.PRE_NMS_TOPK_TEST, per level
    rpn_post_nms_topk_test: int = 1000  # RPN.POST_NMS_TOPK_TEST, per image
    rpn_nms_thresh: float = 0.7  # RPN.NMS_THRESH
    rpn_bbox_reg_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # RPN.BBOX_REG_WEIGHTS
    rpn_min_size: float = 0.0  # MODEL.PROPOSAL_GENERATOR.MIN_SIZE
    # ROI_HEADS
    num_classes: int = 1  # ROI_HEADS.NUM_CLASSES
    roi_in_features: tuple[str, ...] = ("p2", "p3", "p4", "p5")  # ROI_HEADS.IN_FEATURES
    score_thresh_test: float = 0.05  # ROI_HEADS.SCORE_THRESH_TEST (apply_net show: --min_score 0.8)
    nms_thresh_test: float = 0.5  # ROI_HEADS.NMS_THRESH_TEST
    detections_per_image: int = 100  # TEST.DETECTIONS_PER_IMAGE
    # ROI_BOX_HEAD
    box_num_fc: int = 2  # ROI_BOX_HEAD.NUM_FC
    box_fc_dim: int = 1024  # ROI_BOX_HEAD.FC_DIM
    box_pooler_resolution: int = 7  # ROI_BOX_HEAD.POOLER_RESOLUTION
    box_pooler_sampling_ratio: int = 2  # ROI_BOX_HEAD.POOLER_SAMPLING_RATIO
    box_pooler_aligned: bool = False  # POOLER_TYPE "ROIAlign" (not the default ROIAlignV2)
    box_bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)  # ROI_BOX_HEAD.BBOX_REG_WEIGHTS
    box_cls_agnostic_bbox_reg: bool = False  # ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG
    box_scale_clamp_ratio: float = 1000.0 / 16  # _DEFAULT_SCALE_CLAMP = log(1000/16)
    pooler_canonical_box_size: int = 224  # ROIPooler canonical_box_size
    pooler_canonical_level: int = 4  # ROIPooler canonical_level
    # ROI_DENSEPOSE_HEAD
    head_name: HeadName = "DensePoseV1ConvXHead"  # ROI_DENSEPOSE_HEAD.NAME
    dp_pooler_resolution: int = 28  # ROI_DENSEPOSE_HEAD.POOLER_RESOLUTION (legacy 14)
    dp_pooler_sampling_ratio: int = 2  # ROI_DENSEPOSE_HEAD.POOLER_SAMPLING_RATIO
    dp_pooler_aligned: bool = False  # POOLER_TYPE "ROIAlign"
    num_stacked_convs: int = 8  # ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS
    conv_head_dim: int = 512  # ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM
    conv_head_kernel: int = 3  # ROI_DENSEPOSE_HEAD.CONV_HEAD_KERNEL
    deconv_kernel: int = 4  # ROI_DENSEPOSE_HEAD.DECONV_KERNEL
    up_scale: int = 2  # ROI_DENSEPOSE_HEAD.UP_SCALE
    heatmap_size: int = 112  # ROI_DENSEPOSE_HEAD.HEATMAP_SIZE (legacy 56)
    num_coarse_segm_channels: int = 2  # ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS (legacy 15)
    num_patches: int = 24  # ROI_DENSEPOSE_HEAD.NUM_PATCHES (+1 background channel)
    decoder_on: bool = True  # ROI_DENSEPOSE_HEAD.DECODER_ON (legacy False)
    decoder_conv_dims: int = 256  # ROI_DENSEPOSE_HEAD.DECODER_CONV_DIMS
    decoder_num_classes: int = 256  # ROI_DENSEPOSE_HEAD.DECODER_NUM_CLASSES
    decoder_norm: str = ""  # ROI_DENSEPOSE_HEAD.DECODER_NORM
    decoder_common_stride: int = 4  # ROI_DENSEPOSE_HEAD.DECODER_COMMON_STRIDE
    deeplab_norm: str = "GN"  # ROI_DENSEPOSE_HEAD.DEEPLAB.NORM (DL configs only)
    deeplab_nonlocal_on: bool = False  # ROI_DENSEPOSE_HEAD.DEEPLAB.NONLOCAL_ON
    deeplab_aspp_rates: tuple[int, int, int] = (6, 12, 56)  # hard-coded in DensePoseDeepLabHead
    predictor_name: str = "DensePoseChartWithConfidencePredictor"  # confidences off: = chart predictor
    # Model zoo (projects/DensePose/doc/DENSEPOSE_IUV.md)
    zoo_path: str = "165712039/model_final_162be9.pkl"  # <model_id>/model_final_<md5 prefix>.pkl
    zoo_seconds_per_image_v100: float = 0.066  # train_net --eval-only, batch 1
    zoo_box_ap: float = 61.2
    zoo_dp_ap_gps: float = 63.7
    zoo_dp_ap_gpsm: float = 65.3

    @property
    def legacy(self) -> bool:
        return not self.decoder_on

    @property
    def res_blocks(self) -> tuple[int, int, int, int]:
        """Blocks in res2..res5."""
        return {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[self.depth]

    @property
    def zoo_url(self) -> str:
        return f"https://dl.fbaipublicfiles.com/densepose/{self.name}/{self.zoo_path}"

    @property
    def zoo_md5_prefix(self) -> str:
        """The 6-hex md5 prefix detectron2 puts in every model-zoo file name (MODEL_ZOO.md)."""
        return self.zoo_path.rsplit("_", 1)[1].split(".", 1)[0]


_BASE = DensePoseConfig()
_LEGACY = dict(num_coarse_segm_channels=15, dp_pooler_resolution=14, heatmap_size=56, decoder_on=False)

CONFIGS: dict[str, DensePoseConfig] = {
    c.name: c
    for c in (
        _BASE,
        replace(_BASE, name="densepose_rcnn_R_101_FPN_s1x", depth=101,
                zoo_path="165712084/model_final_c6ab63.pkl", zoo_seconds_per_image_v100=0.079,
                zoo_box_ap=62.3, zoo_dp_ap_gps=64.5, zoo_dp_ap_gpsm=66.2),
        replace(_BASE, name="densepose_rcnn_R_50_FPN_s1x_legacy", **_LEGACY,
                zoo_path="164832157/model_final_d366fa.pkl", zoo_seconds_per_image_v100=0.051,
                zoo_box_ap=58.1, zoo_dp_ap_gps=52.1, zoo_dp_ap_gpsm=54.9),
        replace(_BASE, name="densepose_rcnn_R_101_FPN_s1x_legacy", depth=101, **_LEGACY,
                zoo_path="164832182/model_final_10af0e.pkl", zoo_seconds_per_image_v100=0.063,
                zoo_box_ap=59.5, zoo_dp_ap_gps=53.2, zoo_dp_ap_gpsm=56.0),
        replace(_BASE, name="densepose_rcnn_R_50_FPN_DL_s1x", head_name="DensePoseDeepLabHead",
                zoo_path="165712097/model_final_0ed407.pkl", zoo_seconds_per_image_v100=0.070,
                zoo_box_ap=61.1, zoo_dp_ap_gps=65.6, zoo_dp_ap_gpsm=66.7),
        replace(_BASE, name="densepose_rcnn_R_101_FPN_DL_s1x", depth=101, head_name="DensePoseDeepLabHead",
                zoo_path="165712116/model_final_844d15.pkl", zoo_seconds_per_image_v100=0.083,
                zoo_box_ap=62.3, zoo_dp_ap_gps=66.3, zoo_dp_ap_gpsm=67.6),
    )
}

DEFAULT_CONFIG = DEFAULT_DENSEPOSE_MODEL


def get_config(name: str) -> DensePoseConfig:
    """The config called ``name`` (the ``densepose_rcnn_`` prefix may be left off)."""
    key = name if name in CONFIGS else f"densepose_rcnn_{name}"
    try:
        return CONFIGS[key]
    except KeyError:
        raise ModelLoadError(f"unknown DensePose config {name!r}; known: {', '.join(CONFIGS)}") from None
