"""ROI heads: box head + predictor + detection filtering, and the DensePose branch (Panoptic-FPN
decoder, ``DensePoseV1ConvXHead`` or ``DensePoseDeepLabHead``, chart predictor).

Names (under ``roi_heads.``): ``box_head.fc{1,2}``, ``box_predictor.{cls_score,bbox_pred}``,
``decoder.p{2..5}.{i}``, ``decoder.predictor``, ``densepose_head.body_conv_fcn{1..8}`` (DeepLab:
plus ``ASPP.*`` and ``.norm``), ``densepose_predictor.{ann_index,index_uv,u,v}_lowres``.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, roi_align

from .backbone import Conv2dNorm
from .configs import DensePoseConfig
from .rpn import apply_deltas, clip_boxes


_POOL: ThreadPoolExecutor | None = None
_PARALLEL_MIN_ROIS = 64


def _roi_align(feature: torch.Tensor, rois: torch.Tensor, resolution: int, scale: float, sampling: int,
               aligned: bool) -> torch.Tensor:
    """torchvision ``roi_align``; on CPU with several threads and many ROIs, split over threads
    (torchvision's CPU kernel runs on one core). Each ROI is computed by the same kernel either
    way, so the result is bit-identical."""
    global _POOL
    threads = torch.get_num_threads()
    if feature.device.type != "cpu" or threads < 2 or rois.shape[0] < _PARALLEL_MIN_ROIS:
        return roi_align(feature, rois, resolution, scale, sampling, aligned)
    if _POOL is None or _POOL._max_workers != threads:  # noqa: SLF001 (resized with set_num_threads)
        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="roi_align")
    pool = _POOL
    feature = feature.contiguous()  # once, not in every thread (the kernel wants NCHW)
    parts = list(pool.map(lambda r: roi_align(feature, r, resolution, scale, sampling, aligned), rois.chunk(threads)))
    return torch.cat(parts)


class ROIPooler(nn.Module):
    """detectron2 ``ROIPooler`` with ``ROIAlign`` (``aligned`` per config): one level, or FPN level
    assignment ``floor(canonical_level + log2(sqrt(area) / canonical_size + 1e-8))`` clamped."""

    def __init__(self, resolution: int, scales: tuple[float, ...], sampling_ratio: int, aligned: bool,
                 canonical_box_size: int = 224, canonical_level: int = 4) -> None:
        super().__init__()
        self.resolution = resolution
        self.scales = scales
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.min_level = int(-math.log2(scales[0]))
        self.max_level = int(-math.log2(scales[-1]))
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level

    def level_of(self, boxes: torch.Tensor) -> torch.Tensor:
        """Level index (0 = finest) of each XYXY box."""
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        levels = torch.floor(self.canonical_level + torch.log2(torch.sqrt(area) / self.canonical_box_size + 1e-8))
        return (torch.clamp(levels, min=self.min_level, max=self.max_level) - self.min_level).to(torch.int64)

    def forward(self, features: list[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        if features[0].dtype == torch.float16:
            # fp16 (GPU) runs pool in fp32, as torchvision's autocast roi_align does: fp16 box
            # coordinates would be quantised to 0.5-1 px at 1000+ px.
            features = [f.float() for f in features]
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes.float()], dim=1).to(features[0].dtype)
        if len(features) == 1:
            return _roi_align(features[0], rois, self.resolution, self.scales[0], self.sampling_ratio, self.aligned)
        out = features[0].new_zeros((boxes.shape[0], features[0].shape[1], self.resolution, self.resolution))
        levels = self.level_of(boxes)
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            idx = torch.nonzero(levels == level, as_tuple=True)[0]
            if idx.numel():
                out[idx] = _roi_align(feature, rois[idx], self.resolution, scale, self.sampling_ratio, self.aligned)
        return out


class FastRCNNConvFCHead(nn.Module):
    """flatten (C*H*W) -> fc1 + ReLU -> fc2 + ReLU (``NUM_CONV 0``, ``NUM_FC 2``)."""

    def __init__(self, cfg: DensePoseConfig) -> None:
        super().__init__()
        dim = cfg.fpn_out_channels * cfg.box_pooler_resolution ** 2
        self.fcs = []
        for k in range(cfg.box_num_fc):
            fc = nn.Linear(dim, cfg.box_fc_dim)
            self.add_module(f"fc{k + 1}", fc)
            self.fcs.append(fc)
            dim = cfg.box_fc_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fcs = self.fcs
        conv_weight = getattr(self, "fc1_conv_weight", None)  # set by fast.fc1_as_conv
        if conv_weight is not None and x.dim() == 4:
            # fc1 over the flattened (C, H, W) = a conv whose kernel covers the whole map
            x = F.relu(F.conv2d(x.contiguous(memory_format=torch.channels_last), conv_weight, fcs[0].bias))
            x = torch.flatten(x, start_dim=1)
            fcs = fcs[1:]
        else:
            x = torch.flatten(x, start_dim=1)
        for fc in fcs:
            x = F.relu(fc(x))
        return x


class FastRCNNOutputLayers(nn.Module):
    """``cls_score`` (K + 1, background last) and class-specific ``bbox_pred`` (4K)."""

    def __init__(self, cfg: DensePoseConfig) -> None:
        super().__init__()
        k = cfg.num_classes
        self.cls_score = nn.Linear(cfg.box_fc_dim, k + 1)
        self.bbox_pred = nn.Linear(cfg.box_fc_dim, 4 * (1 if cfg.box_cls_agnostic_bbox_reg else k))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


def detections_from_box_outputs(
    logits: torch.Tensor, deltas: torch.Tensor, proposals: torch.Tensor, cfg: DensePoseConfig,
    image_size: tuple[int, int], score_thresh: float, nms_thresh: float, topk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """detectron2 ``fast_rcnn_inference_single_image``: decode, clip, ``score > thresh``,
    per-class NMS, first ``topk``. Returns (boxes (D, 4) XYXY, scores (D,)), best first."""
    boxes = apply_deltas(deltas, proposals, cfg.box_bbox_reg_weights, math.log(cfg.box_scale_clamp_ratio))
    scores = F.softmax(logits.float(), dim=-1)
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    if not bool(valid.all()):
        boxes, scores = boxes[valid], scores[valid]
    scores = scores[:, :-1]
    num_reg = boxes.shape[1] // 4
    boxes = clip_boxes(boxes.reshape(-1, 4), *image_size).view(-1, num_reg, 4)
    mask = scores > score_thresh
    inds = mask.nonzero()
    boxes = boxes[inds[:, 0], 0] if num_reg == 1 else boxes[mask]
    scores = scores[mask]
    keep = batched_nms(boxes.float(), scores, inds[:, 1], nms_thresh)
    if topk >= 0:
        keep = keep[:topk]
    return boxes[keep], scores[keep]


class Decoder(nn.Module):
    """Panoptic-FPN semantic decoder: per level ``max(1, log2(stride) - log2(4))`` x (3x3 conv +
    ReLU [+ bilinear x2 if stride != 4]), summed, then a 1x1 ``predictor``. Output at stride 4."""

    def __init__(self, cfg: DensePoseConfig) -> None:
        super().__init__()
        self.in_features = cfg.roi_in_features
        common = cfg.decoder_common_stride
        dims = cfg.decoder_conv_dims
        self.scale_heads: list[nn.Sequential] = []
        for feature in self.in_features:
            stride = 2 ** int(feature[1:])
            ops: list[nn.Module] = []
            for k in range(max(1, int(math.log2(stride) - math.log2(common)))):
                if cfg.decoder_norm:
                    raise ValueError("DECODER_NORM is not supported (no zoo config uses it)")
                ops.append(Conv2dNorm(cfg.fpn_out_channels if k == 0 else dims, dims, 3, padding=1, bias=True,
                                      relu=True))
                if stride != common:
                    ops.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            head = nn.Sequential(*ops)
            self.add_module(feature, head)
            self.scale_heads.append(head)
        self.predictor = nn.Conv2d(dims, cfg.decoder_num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.scale_heads[0](features[0])
        for head, feature in zip(self.scale_heads[1:], features[1:]):
            x = x + head(feature)
        return self.predictor(x)


class DensePoseV1ConvXHead(nn.Module):
    """``NUM_STACKED_CONVS`` x (3x3 conv ``CONV_HEAD_DIM`` + ReLU), ``body_conv_fcn1..N``."""

    def __init__(self, cfg: DensePoseConfig, in_channels: int) -> None:
        super().__init__()
        self.n = cfg.num_stacked_convs
        ch = in_channels
        for i in range(self.n):
            self.add_module(f"body_conv_fcn{i + 1}", nn.Conv2d(ch, cfg.conv_head_dim, cfg.conv_head_kernel,
                                                               padding=cfg.conv_head_kernel // 2))
            ch = cfg.conv_head_dim
        self.n_out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.n):
            x = F.relu(getattr(self, f"body_conv_fcn{i + 1}")(x))
        return x


class _ASPP(nn.Module):
    """DeepLabV3 ASPP as ``DensePoseDeepLabHead`` builds it: 1x1, three dilated 3x3, image pooling
    (each conv without bias + GroupNorm(32) + ReLU), concat, 1x1 ``project`` + ReLU."""

    def __init__(self, cin: int, rates: tuple[int, int, int], cout: int) -> None:
        super().__init__()
        convs: list[nn.Module] = [nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.GroupNorm(32, cout), nn.ReLU())]
        for rate in rates:
            convs.append(nn.Sequential(nn.Conv2d(cin, cout, 3, padding=rate, dilation=rate, bias=False),
                                       nn.GroupNorm(32, cout), nn.ReLU()))
        convs.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                                   nn.GroupNorm(32, cout), nn.ReLU()))
        self.convs = nn.ModuleList(convs)
        self.project = nn.Sequential(nn.Conv2d(5 * cout, cout, 1, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [conv(x) for conv in self.convs[:-1]]
        pooled = self.convs[-1](x)
        outs.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.project(torch.cat(outs, dim=1))


class DensePoseDeepLabHead(nn.Module):
    """ASPP (rates 6, 12, 56), then ``NUM_STACKED_CONVS`` x (3x3 conv, no bias, GroupNorm(32)
    as ``.norm``, ReLU). The non-local block (``NONLOCAL_ON``) is off in every zoo config."""

    def __init__(self, cfg: DensePoseConfig, in_channels: int) -> None:
        super().__init__()
        if cfg.deeplab_nonlocal_on:
            raise ValueError("DEEPLAB.NONLOCAL_ON is not supported (no zoo config uses it)")
        self.ASPP = _ASPP(in_channels, cfg.deeplab_aspp_rates, in_channels)
        self.n = cfg.num_stacked_convs
        ch = in_channels
        gn = cfg.deeplab_norm == "GN"
        for i in range(self.n):
            self.add_module(f"body_conv_fcn{i + 1}", Conv2dNorm(
                ch, cfg.conv_head_dim, cfg.conv_head_kernel, padding=cfg.conv_head_kernel // 2, bias=not gn,
                norm=nn.GroupNorm(32, cfg.conv_head_dim) if gn else None))
            ch = cfg.conv_head_dim
        self.n_out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ASPP(x)
        for i in range(self.n):
            x = F.relu(getattr(self, f"body_conv_fcn{i + 1}")(x))
        return x


class DensePoseChartPredictor(nn.Module):
    """Four ``ConvTranspose2d(k 4, s 2, p 1)`` each followed by bilinear x2 (align_corners False):
    coarse segm (2 or 15), fine segm, U, V (25 each)."""

    def __init__(self, cfg: DensePoseConfig, in_channels: int) -> None:
        super().__init__()
        k = cfg.deconv_kernel
        pad = int(k / 2 - 1)
        patches = cfg.num_patches + 1
        self.ann_index_lowres = nn.ConvTranspose2d(in_channels, cfg.num_coarse_segm_channels, k, stride=2, padding=pad)
        self.index_uv_lowres = nn.ConvTranspose2d(in_channels, patches, k, stride=2, padding=pad)
        self.u_lowres = nn.ConvTranspose2d(in_channels, patches, k, stride=2, padding=pad)
        self.v_lowres = nn.ConvTranspose2d(in_channels, patches, k, stride=2, padding=pad)
        self.scale_factor = cfg.up_scale

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(coarse_segm, fine_segm, u, v), each (N, C, heatmap, heatmap)."""
        return (self._up(self.ann_index_lowres(x)), self._up(self.index_uv_lowres(x)),
                self._up(self.u_lowres(x)), self._up(self.v_lowres(x)))


class DensePoseROIHeads(nn.Module):
    """Holds the ROI-head modules under detectron2's names; the model drives them stage by stage."""

    def __init__(self, cfg: DensePoseConfig) -> None:
        super().__init__()
        strides = [2 ** int(f[1:]) for f in cfg.roi_in_features]
        scales = tuple(1.0 / s for s in strides)
        self.box_pooler = ROIPooler(cfg.box_pooler_resolution, scales, cfg.box_pooler_sampling_ratio,
                                    cfg.box_pooler_aligned, cfg.pooler_canonical_box_size, cfg.pooler_canonical_level)
        self.box_head = FastRCNNConvFCHead(cfg)
        self.box_predictor = FastRCNNOutputLayers(cfg)
        self.decoder = Decoder(cfg) if cfg.decoder_on else None
        dp_scales = (scales[0],) if cfg.decoder_on else scales
        self.densepose_pooler = ROIPooler(cfg.dp_pooler_resolution, dp_scales, cfg.dp_pooler_sampling_ratio,
                                          cfg.dp_pooler_aligned, cfg.pooler_canonical_box_size,
                                          cfg.pooler_canonical_level)
        head_cls = {"DensePoseV1ConvXHead": DensePoseV1ConvXHead, "DensePoseDeepLabHead": DensePoseDeepLabHead}
        self.densepose_head = head_cls[cfg.head_name](cfg, cfg.fpn_out_channels)
        self.densepose_predictor = DensePoseChartPredictor(cfg, self.densepose_head.n_out_channels)
