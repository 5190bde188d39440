"""The real default model (EfficientNet-Lite0 + MiniLM), offline. Slow: ``pytest -m real``.

The weights package ships only a state dict, so the timm trunk is checked against an independent functional
re-implementation of lukemelas' EfficientNet-Lite0 that reads the *original* keys (TF "same" padding,
BN eps 1e-3, ReLU6, no squeeze-excite): equal ImageNet logits prove the key mapping and every layer setting.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from logoid.engine import DEFAULT_MODEL, _effnet, create_embedder

pytestmark = pytest.mark.real

# ImageNet classes of scikit-learn's bundled sample photos.
DAISY, PALACE, MONASTERY = 985, 698, 663
# lukemelas Lite0 stages: repeats (1, 2, 2, 3, 3, 4, 1), first-block strides (1, 2, 2, 2, 1, 2, 1).
_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]


def _sample(name: str) -> Image.Image:
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image(name))


@pytest.fixture(scope="module")
def default():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    emb = create_embedder(DEFAULT_MODEL, device="cpu")
    emb.model  # noqa: B018
    return emb


def _same_pad_conv(x, w, stride, groups=1):
    k = w.shape[-1]
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / stride) - 1) * stride + k - ih, 0)
    pw = max((math.ceil(iw / stride) - 1) * stride + k - iw, 0)
    x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
    return F.conv2d(x, w, stride=stride, groups=groups)


def _reference_lite0(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite0 forward written from the lukemelas keys alone (independent of timm)."""

    def bn(y, p):
        return F.batch_norm(y, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            training=False, eps=1e-3)

    def act(y):
        return y.clamp(0.0, 6.0)

    x = act(bn(_same_pad_conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
    for b, stride in enumerate(_STRIDES):
        p, inp = f"_blocks.{b}", x
        if f"{p}._expand_conv.weight" in sd:
            x = act(bn(_same_pad_conv(x, sd[f"{p}._expand_conv.weight"], 1), f"{p}._bn0"))
        dw = sd[f"{p}._depthwise_conv.weight"]
        x = act(bn(_same_pad_conv(x, dw, stride, groups=dw.shape[0]), f"{p}._bn1"))
        x = bn(_same_pad_conv(x, sd[f"{p}._project_conv.weight"], 1), f"{p}._bn2")
        if stride == 1 and inp.shape[1] == x.shape[1]:
            x = x + inp
    x = act(bn(_same_pad_conv(x, sd["_conv_head.weight"], 1), "_bn1"))
    return F.linear(x.mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])


def test_default_model_loads_offline(default):
    info = default.info
    assert default.dim == 512 and info["embed_dim"] == 512
    assert info["mean"] == [0.5, 0.5, 0.5] and info["std"] == [0.5, 0.5, 0.5] and info["image_size"] == [224, 224]
    assert info["projections"] == "untrained"
    v = default.embed_images([_sample("flower.jpg")])
    t = default.embed_texts(["metallica"])
    assert v.shape == (1, 512) and t.shape == (1, 512)
    assert default.image_features_raw([_sample("flower.jpg")]).shape == (1, 1280)


def test_effnet_trunk_is_the_packaged_weights_exactly(default):
    src = _effnet.load_lukemelas_state_dict()
    trunk = default.model.visual.trunk.state_dict()
    src_trunk = [v for k, v in src.items() if not k.startswith("_fc")]
    assert len(src_trunk) == len(trunk) == 294
    for (key, got), want in zip(trunk.items(), src_trunk, strict=True):
        assert torch.equal(got, want), key


def test_timm_lite0_matches_independent_reference_and_classifies_sample_photos():
    import timm
    from timm.data import create_transform, resolve_data_config

    sd = _effnet.load_lukemelas_state_dict()
    model = timm.create_model(_effnet.TIMM_NAME, pretrained=False).eval()
    _effnet.load_into_timm(model, classifier=True, src=sd)
    tf = create_transform(**resolve_data_config({}, model=model))
    x = torch.stack([tf(_sample("flower.jpg")), tf(_sample("china.jpg"))])
    with torch.inference_mode():
        got, want = model(x), _reference_lite0(sd, x)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)
    top = got.argmax(1).tolist()
    assert top[0] == DAISY
    assert top[1] in (PALACE, MONASTERY)


def test_weights_hash_is_stable_across_loads_and_processes(default):
    again = create_embedder(DEFAULT_MODEL, device="cpu")
    assert again.weights_sha256 == default.weights_sha256
    code = "from logoid.engine import create_embedder; print(create_embedder().weights_sha256)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == default.weights_sha256


def test_shifted_copy_is_closer_than_an_unrelated_image(default):
    flower, china = _sample("flower.jpg"), _sample("china.jpg")
    w, h = flower.size
    shifted = flower.crop((12, 8, w, h))
    v = default.embed_images([flower, shifted, china])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1


def test_untrained_projection_roughly_keeps_trunk_geometry(default):
    rng = np.random.default_rng(0)
    imgs = [_sample("flower.jpg"), _sample("china.jpg")]
    imgs += [Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)) for _ in range(2)]
    raw, emb = default.image_features_raw(imgs), default.embed_images(imgs)
    iu = np.triu_indices(len(imgs), 1)
    assert np.abs((raw @ raw.T)[iu] - (emb @ emb.T)[iu]).max() < 0.1


def test_default_checkpoint_roundtrip(default, tmp_path):
    folder = default.save(tmp_path / "ft")
    loaded = create_embedder(str(folder), device="cpu")
    imgs = [_sample("flower.jpg")]
    np.testing.assert_array_equal(loaded.embed_images(imgs), default.embed_images(imgs))
    np.testing.assert_array_equal(loaded.embed_texts(["slayer"]), default.embed_texts(["slayer"]))
    assert loaded.weights_sha256 == default.weights_sha256
    assert loaded.info["base_model"] == DEFAULT_MODEL
