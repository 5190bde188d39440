"""The default model's image tower in plain torch: no timm, open_clip, torchvision or transformers to import.

A cold ``logoid query`` needs one thing from the dual encoder, the image tower, yet importing it through open_clip
costs seconds: open_clip imports transformers (the text tower) and torchvision, and both timm and torchvision import
``torch._dynamo``. This is the same network as open_clip's ``TimmModel`` over timm's ``tf_efficientnet_lite0`` with
``timm_pool="avg"``, ``timm_proj="linear"``: the same modules under the same names in the same order (so the same
state dict, key for key, and the same weights hash), running the same torch calls in the same order (so the same
vectors, bit for bit). ``tests/test_engine.py`` checks both against open_clip's tower.

:func:`preprocess` is open_clip's inference transform for ``resize_mode="longest"`` (resize the long side, pad to
the square, normalise) written with PIL and torch alone, the same PIL and torch calls torchvision makes.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn

TIMM_NAME = "tf_efficientnet_lite0"
#: (block kind, repeats, kernel, first stride, expansion, out channels) per stage: timm's Lite0 arch_def.
STAGES = (("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40), ("ir", 3, 3, 2, 6, 80),
          ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192), ("ir", 1, 3, 1, 6, 320))
STEM, HEAD = 32, 1280  # Lite keeps the stem and head widths fixed
BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon (timm's tf_ variants)


def supports(vision_cfg: dict) -> bool:
    """True when ``vision_cfg`` (an open_clip model config's) describes the tower built here."""
    return (vision_cfg.get("timm_model_name") == TIMM_NAME and not vision_cfg.get("timm_model_pretrained")
            and vision_cfg.get("timm_pool", "avg") == "avg" and vision_cfg.get("timm_proj", "linear") == "linear"
            and not vision_cfg.get("timm_proj_bias") and not vision_cfg.get("timm_drop")
            and vision_cfg.get("timm_drop_path") is None and not vision_cfg.get("patch_dropout"))


class _ConvSame(nn.Conv2d):
    """TensorFlow "same" padding computed from the input size (timm's ``Conv2dSame``: strided convolutions)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.size()[-2:]
        pad_h = _same_padding(ih, self.kernel_size[0], self.stride[0])
        pad_w = _same_padding(iw, self.kernel_size[1], self.stride[1])
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0)
        return F.conv2d(x, self.weight, self.bias, self.stride, (0, 0), self.dilation, self.groups)


def _same_padding(size: int, kernel: int, stride: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) + 1 - size, 0)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """timm's ``create_conv2d(padding="same")``: static padding where stride 1 allows it, dynamic otherwise."""
    if stride == 1:
        return nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2, groups=groups, bias=False)
    return _ConvSame(cin, cout, k, stride, padding=0, groups=groups, bias=False)


class _BNAct(nn.BatchNorm2d):
    """timm's ``BatchNormAct2d``: inference batch norm, then ReLU6 (or nothing)."""

    def __init__(self, ch: int, act: bool = True):
        super().__init__(ch, eps=BN_EPS)
        self.drop = nn.Identity()
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("this image tower is for inference; fine-tune the open_clip model instead")
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, self.momentum or 0.0, self.eps)
        return self.act(self.drop(x))


class _DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int):
        super().__init__()
        self.has_skip = stride == 1 and cin == cout
        self.conv_dw = _conv(cin, cin, k, stride, groups=cin)
        self.bn1 = _BNAct(cin)
        self.aa, self.se = nn.Identity(), nn.Identity()
        self.conv_pw = _conv(cin, cout, 1)
        self.bn2 = _BNAct(cout, act=False)
        self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_pw(self.se(self.aa(self.bn1(self.conv_dw(x)))))
        x = self.bn2(x)
        return self.drop_path(x) + shortcut if self.has_skip else x


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_skip = stride == 1 and cin == cout
        self.conv_pw = _conv(cin, mid, 1)
        self.bn1 = _BNAct(mid)
        self.conv_dw = _conv(mid, mid, k, stride, groups=mid)
        self.bn2 = _BNAct(mid)
        self.aa, self.se = nn.Identity(), nn.Identity()
        self.conv_pwl = _conv(mid, cout, 1)
        self.bn3 = _BNAct(cout, act=False)
        self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.bn1(self.conv_pw(x))
        x = self.se(self.aa(self.bn2(self.conv_dw(x))))
        x = self.bn3(self.conv_pwl(x))
        return self.drop_path(x) + shortcut if self.has_skip else x


class _Pool(nn.Module):
    """timm's ``SelectAdaptivePool2d("avg", flatten=True)``."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(x))


class Lite0Trunk(nn.Module):
    """timm ``tf_efficientnet_lite0`` after ``reset_classifier(0, global_pool="avg")``: photo → 1280 pooled features."""

    def __init__(self):
        super().__init__()
        self.conv_stem = _conv(3, STEM, 3, 2)
        self.bn1 = _BNAct(STEM)
        stages, cin = [], STEM
        for kind, repeats, k, stride, expand, cout in STAGES:
            blocks = []
            for i in range(repeats):
                s = stride if i == 0 else 1
                blocks.append(_DepthwiseSeparable(cin, cout, k, s) if kind == "ds"
                              else _InvertedResidual(cin, cout, k, s, expand))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = _conv(cin, HEAD, 1)
        self.bn2 = _BNAct(HEAD)
        self.global_pool = _Pool()
        self.classifier = nn.Identity()
        self.num_features = HEAD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv_stem(x))
        x = self.blocks(x)
        x = self.bn2(self.conv_head(x))
        return self.classifier(self.global_pool(x))


class Lite0Tower(nn.Module):
    """open_clip's ``TimmModel`` over :class:`Lite0Trunk`: pooled features → dropout(0) → linear projection."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.trunk = Lite0Trunk()
        self.head = nn.Sequential(OrderedDict([("drop", nn.Dropout(0.0)),
                                               ("proj", nn.Linear(HEAD, embed_dim, bias=False))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


# ---------------------------------------------------------------------------------------------- preprocessing


def supports_preprocess(pp: dict) -> bool:
    """True when :func:`preprocess` reproduces open_clip's inference transform for ``pp``."""
    size = pp.get("size", 224)
    square = isinstance(size, int) or (isinstance(size, list | tuple) and len(size) == 2 and size[0] == size[1])
    return (pp.get("resize_mode") == "longest" and square and pp.get("interpolation", "bicubic") in ("bicubic",
            "bilinear", "random") and isinstance(pp.get("fill_color", 0), int)
            and len(pp.get("mean", ())) == 3 and len(pp.get("std", ())) == 3)


def preprocess(img: Image.Image, pp: dict) -> torch.Tensor:
    """open_clip's ``image_transform_v2(pp, is_train=False)`` for ``resize_mode="longest"``: RGB PIL image →
    normalised CHW float tensor. Same steps as torchvision's PIL path: ``Image.resize`` of the long side to
    ``size`` (the short side rounded), ``ImageOps.expand`` with ``fill_color`` and a centre crop to the square,
    ``to_tensor`` (uint8 → float / 255) and ``(x - mean) / std``."""
    size = pp.get("size", 224)
    side = int(size if isinstance(size, int) else size[0])
    resample = Image.Resampling.BILINEAR if pp.get("interpolation") == "bilinear" else Image.Resampling.BICUBIC
    w, h = img.size
    ratio = max(h / side, w / side)
    out_h, out_w = round(h / ratio), round(w / ratio)
    if (out_h, out_w) != (h, w):
        img = img.resize((out_w, out_h), resample)
    img = _pad_crop(img, side, int(pp.get("fill_color", 0)))
    img = img.convert("RGB")
    x = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(img.size[1], img.size[0], 3)
    x = x.permute((2, 0, 1)).contiguous().to(dtype=torch.get_default_dtype()).div(255)
    mean = torch.as_tensor(pp["mean"], dtype=x.dtype).view(-1, 1, 1)
    std = torch.as_tensor(pp["std"], dtype=x.dtype).view(-1, 1, 1)
    return x.sub_(mean).div_(std)


def _pad_crop(img: Image.Image, side: int, fill: int) -> Image.Image:
    """open_clip's ``center_crop_or_pad`` on a PIL image."""
    w, h = img.size
    if side > w or side > h:
        pad = (max(side - w, 0) // 2, max(side - h, 0) // 2, (max(side - w, 0) + 1) // 2, (max(side - h, 0) + 1) // 2)
        img = ImageOps.expand(img, border=pad, fill=(fill,) * len(img.getbands()) if len(img.getbands()) > 1 else fill)
        w, h = img.size
        if (w, h) == (side, side):
            return img
    top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
    return img.crop((left, top, left + side, top + side))
