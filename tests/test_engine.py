"""Dual-encoder registry and Embedder, on the weightless ``tiny-test`` model (fast)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from logoid.core.errors import ModelError
from logoid.engine import DEFAULT_MODEL, Embedder, _effnet, create_embedder, list_models
from logoid.engine.registry import CHECKPOINT_CONFIG, _orthonormal

TINY = "tiny-test"


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (24 + 3 * i, 40, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def tiny() -> Embedder:
    emb = create_embedder(TINY, device="cpu")
    emb.model  # noqa: B018 - build once for the module
    return emb


# ---------------------------------------------------------------------------------------------- registry


def test_list_models_default_first_and_test_models_hidden():
    assert list_models()[0] == DEFAULT_MODEL
    assert TINY not in list_models()
    assert TINY in list_models(include_test=True)


def test_unknown_name_names_the_choices():
    with pytest.raises(ModelError) as e:
        create_embedder("no-such-model")
    assert DEFAULT_MODEL in str(e.value) and "ARCH:TAG" in str(e.value)


def test_open_clip_arch_needs_known_tag_or_existing_file(tmp_path):
    with pytest.raises(ModelError, match="no weights"):
        create_embedder("ViT-B-32")
    with pytest.raises(ModelError, match="laion2b_s34b_b79k"):  # the error lists the real tags
        create_embedder("ViT-B-32:not-a-tag")
    with pytest.raises(ModelError, match="not-a-tag"):
        create_embedder("ViT-B-32", pretrained=str(tmp_path / "not-a-tag"))
    # A known tag resolves without downloading anything (lazy): construction must not touch the network.
    emb = create_embedder("ViT-B-32:laion2b_s34b_b79k")
    assert emb.dim == 512 and not emb.is_loaded


def test_bad_options_and_missing_pretrained_file(tmp_path):
    with pytest.raises(ModelError, match="unknown create_embedder options"):
        create_embedder(TINY, batchsize=3)
    with pytest.raises(ModelError, match="not found"):
        create_embedder(TINY, pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(ModelError, match="not a logoid checkpoint"):
        create_embedder(str(tmp_path))  # an empty folder


def test_construction_is_lazy():
    emb = create_embedder(TINY)
    assert emb.dim == 32  # read from the config
    assert not emb.is_loaded and emb._model is None


# ---------------------------------------------------------------------------------------------- embedding


def test_embed_images_shape_dtype_norm(tiny):
    imgs = _images(5)
    v = tiny.embed_images(imgs, batch_size=2)
    assert v.shape == (5, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.abs(v[0] - v[1]).max() > 1e-3  # different images, different vectors
    # Batching must not change results.
    np.testing.assert_allclose(tiny.embed_images(imgs, batch_size=5), v, atol=1e-5)
    assert tiny.embed_images([]).shape == (0, 32)


def test_non_rgb_images_are_accepted(tiny):
    grey = Image.new("L", (20, 30), 77)
    v = tiny.embed_images([grey, grey.convert("RGB")])
    np.testing.assert_allclose(v[0], v[1], atol=1e-6)


def test_embed_texts(tiny):
    v = tiny.embed_texts(["metallica", "iron maiden", "metallica"])
    assert v.shape == (3, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(v[0], v[2], atol=1e-6)
    assert np.abs(v[0] - v[1]).max() > 1e-3
    with pytest.raises(ModelError):
        tiny.embed_texts("metallica")


def test_image_features_raw_is_pre_projection_and_restores_projection(tiny):
    imgs = _images(3)
    before = tiny.embed_images(imgs)
    raw = tiny.image_features_raw(imgs)
    assert raw.shape == (3, 64)  # ViT width, not embed_dim
    np.testing.assert_allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-5)
    proj = tiny.model.visual.proj.detach().numpy()
    # Projecting the raw features by hand gives the embedding (up to normalisation).
    np.testing.assert_allclose(tiny.embed_images(imgs), before, atol=1e-6)
    by_hand = raw @ proj
    by_hand /= np.linalg.norm(by_hand, axis=1, keepdims=True)
    np.testing.assert_allclose(by_hand, before, atol=1e-4)


def test_embed_paths_skips_bad_files_and_keeps_order(tiny, tmp_path):
    imgs = _images(4, seed=3)
    paths = []
    for i, im in enumerate(imgs):
        p = tmp_path / f"img{i}.png"
        im.save(p)
        paths.append(p)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    missing = tmp_path / "missing.png"
    order = [paths[0], bad, paths[1], paths[2], missing, paths[3]]
    errors = []
    v, ok = tiny.embed_paths(order, batch_size=2, num_workers=2, on_error=lambda p, e: errors.append((p, e)))
    assert ok == [0, 2, 3, 5]
    assert sorted(p.name for p, _ in errors) == ["bad.jpg", "missing.png"]
    np.testing.assert_allclose(v, tiny.embed_images(imgs), atol=1e-5)
    empty, none_ok = tiny.embed_paths([bad])
    assert empty.shape == (0, 32) and none_ok == []


def test_info_and_model_id(tiny):
    info = tiny.info
    assert info["model"] == TINY and info["embed_dim"] == 32 and info["image_size"] == [32, 32]
    assert re.fullmatch(r"[0-9a-f]{64}", info["weights_sha256"])
    assert tiny.model_id == f"{TINY}@{info['weights_sha256'][:12]}"
    assert info["interpolation"] == "bicubic" and len(info["mean"]) == 3
    json.dumps(info)  # recordable in an index sidecar


# ---------------------------------------------------------------------------------------------- determinism


def test_two_fresh_embedders_agree_and_global_rng_is_untouched(tiny):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    other = create_embedder(TINY)
    imgs = _images(2)
    v = other.embed_images(imgs)
    assert torch.equal(torch.rand(1), expected_next)  # building did not consume the caller's random stream
    assert other.weights_sha256 == tiny.weights_sha256
    np.testing.assert_array_equal(v, tiny.embed_images(imgs))


def test_hash_changes_when_weights_change(tiny):
    emb = create_embedder(TINY)
    before = emb.weights_sha256
    with torch.no_grad():
        emb.model.logit_scale.add_(1e-3)
    assert emb.weights_sha256 == before  # cached until told
    emb.invalidate_cache()
    assert emb.weights_sha256 != before


def test_orthonormal_projection_init_is_exact_and_reproducible():
    a = _orthonormal(16, 40, torch.Generator().manual_seed(0))
    b = _orthonormal(16, 40, torch.Generator().manual_seed(0))
    assert a.shape == (16, 40) and torch.equal(a, b)
    torch.testing.assert_close(a @ a.T, torch.eye(16), atol=2e-4, rtol=0)
    tall = _orthonormal(40, 16, torch.Generator().manual_seed(1))
    torch.testing.assert_close(tall.T @ tall, torch.eye(16), atol=2e-4, rtol=0)


# ---------------------------------------------------------------------------------------------- checkpoints


def _perturbed_state(emb: Embedder, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: (v + 0.05 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v)
            for k, v in emb.model.state_dict().items()}


def test_local_state_dict_file_loads_by_path(tiny, tmp_path):
    state = _perturbed_state(tiny, seed=7)
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    reference = create_embedder(TINY)
    reference.model.load_state_dict(state)
    loaded = create_embedder(TINY, pretrained=str(path))
    imgs = _images(3)
    np.testing.assert_array_equal(loaded.embed_images(imgs), reference.embed_images(imgs))
    assert np.abs(loaded.embed_images(imgs) - tiny.embed_images(imgs)).max() > 1e-3
    assert loaded.info["projections"] == "trained"


def test_open_clip_architecture_with_local_checkpoint_file(tiny, tmp_path):
    import open_clip

    # A tiny architecture registered with open_clip (as open_clip's own tests do), loaded through create_model.
    spec = json.loads(json.dumps(tiny.spec.model_cfg))
    cfg_dir = tmp_path / "cfgs"
    cfg_dir.mkdir()
    (cfg_dir / "logoid-test-tiny-oc.json").write_text(json.dumps(spec))
    open_clip.add_model_config(cfg_dir)
    path = tmp_path / "oc.pt"
    torch.save(_perturbed_state(tiny, seed=9), path)
    emb = create_embedder("logoid-test-tiny-oc", pretrained=str(path))
    assert emb.spec.kind == "open_clip"
    ref = create_embedder(TINY, pretrained=str(path))
    imgs = _images(2)
    # open_clip's own preprocessing differs from ours (no letterbox), so compare on identical input tensors.
    x = torch.stack([ref.preprocess(im) for im in imgs])
    with torch.inference_mode():
        torch.testing.assert_close(emb.model.encode_image(x), ref.model.encode_image(x))


def test_checkpoint_folder_roundtrip(tiny, tmp_path):
    emb = create_embedder(TINY)
    emb.model.load_state_dict(_perturbed_state(tiny, seed=11))
    folder = emb.save(tmp_path / "ft", extra={"epochs": 1})
    cfg = json.loads((folder / CHECKPOINT_CONFIG).read_text())
    assert cfg["base_model"] == TINY and cfg["model_cfg"]["embed_dim"] == 32 and cfg["extra"] == {"epochs": 1}
    loaded = create_embedder(str(folder))
    assert not loaded.is_loaded and loaded.dim == 32
    imgs = _images(3)
    np.testing.assert_array_equal(loaded.embed_images(imgs), emb.embed_images(imgs))
    np.testing.assert_array_equal(loaded.embed_texts(["a", "b"]), emb.embed_texts(["a", "b"]))
    assert loaded.weights_sha256 == emb.weights_sha256 != tiny.weights_sha256
    assert loaded.model_id == f"ft@{emb.weights_sha256[:12]}"
    assert loaded.info["base_model"] == TINY and loaded.info["projections"] == "trained"


def test_checkpoint_with_wrong_hash_is_refused(tiny, tmp_path):
    folder = tiny.save(tmp_path / "ft")
    cfg_path = folder / CHECKPOINT_CONFIG
    cfg = json.loads(cfg_path.read_text())
    cfg["weights_sha256"] = "0" * 64
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="do not match"):
        create_embedder(str(folder)).model  # noqa: B018


def test_custom_model_cfg(tiny):
    cfg = json.loads(json.dumps(tiny.spec.model_cfg))
    cfg["embed_dim"] = 16
    emb = create_embedder("my-tiny", model_cfg=cfg)
    assert emb.embed_images(_images(1)).shape == (1, 16)
    with pytest.raises(ModelError, match="embed_dim"):
        create_embedder("broken", model_cfg={"vision_cfg": {}})


# ---------------------------------------------------------------------------------------------- effnet key mapping


def _fake_pair():
    src = {"_conv_stem.weight": torch.zeros(4, 3, 3, 3), "_bn0.weight": torch.ones(4),
           "_bn0.bias": torch.full((4,), 2.0),
           "_fc.weight": torch.zeros(10, 4), "_fc.bias": torch.zeros(10)}
    dst = {"conv_stem.weight": torch.empty(4, 3, 3, 3), "bn1.weight": torch.empty(4), "bn1.bias": torch.empty(4),
           "classifier.weight": torch.empty(10, 4), "classifier.bias": torch.empty(10)}
    return src, dst


def test_effnet_map_keys_in_order_and_skips_classifier():
    src, dst = _fake_pair()
    out = _effnet.map_keys(src, dst)
    assert list(out) == ["conv_stem.weight", "bn1.weight", "bn1.bias"]
    assert out["bn1.bias"] is src["_bn0.bias"]
    assert set(_effnet.map_keys(src, dst, classifier=True)) == set(dst)


def test_effnet_map_keys_refuses_misaligned_lists():
    src, dst = _fake_pair()
    swapped = {"_conv_stem.weight": src["_conv_stem.weight"], "_bn0.bias": src["_bn0.bias"],
               "_bn0.weight": src["_bn0.weight"]}
    with pytest.raises(ModelError, match="mapping broke"):  # same shapes, wrong kinds
        _effnet.map_keys(swapped, dst)
    with pytest.raises(ModelError, match="tensors"):
        _effnet.map_keys({"_conv_stem.weight": src["_conv_stem.weight"]}, dst)


def test_model_spec_dict_roundtrip(tiny):
    from logoid.engine import ModelSpec

    d = tiny.spec.to_dict()
    assert ModelSpec.from_dict(json.loads(json.dumps(d))) == tiny.spec
