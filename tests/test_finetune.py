"""Fine-tuning on tiny random models (no weights): loss, determinism, splits, batches, towers, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from logoid.augment import AugmentConfig
from logoid.core.errors import ConfigError
from logoid.engine import create_embedder
from logoid.finetune import FinetuneConfig, TrainItem, entity_batches, finetune, save_checkpoint, split_entities
from logoid.finetune.data import ImageTower, TextTower, image_key

COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 220), "orange": (240, 140, 20)}
SHAPES = ("circle", "square", "triangle")

# A tiny EfficientNet-Lite0 trunk (random init, 32 px) to exercise the timm tower and unlocked blocks.
TINY_EFFNET_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"timm_model_name": "tf_efficientnet_lite0", "timm_model_pretrained": False,
                   "timm_pool": "avg", "timm_proj": "linear", "image_size": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def shape_image(colour: str, shape: str) -> Image.Image:
    img = Image.new("RGB", (64, 64), (255, 255, 255))
    d, rgb = ImageDraw.Draw(img), COLOURS[colour]
    if shape == "circle":
        d.ellipse((10, 10, 54, 54), fill=rgb)
    elif shape == "square":
        d.rectangle((12, 12, 52, 52), fill=rgb)
    else:
        d.polygon([(32, 6), (58, 58), (6, 58)], fill=rgb)
    return img


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: a thread pool only adds fork/join stalls on a shared CI box."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def items() -> list[TrainItem]:
    return [TrainItem(f"{c}-{s}", shape_image(c, s), f"a {c} {s}", "color") for c in COLOURS for s in SHAPES]


def small_cfg(**kw) -> FinetuneConfig:
    base = dict(epochs=4, batch_size=6, lr=5e-3, val_fraction=0.0, wise_alpha=1.0, warmup_fraction=0.0,
                augment=AugmentConfig(n_variants=3, size=40))
    return FinetuneConfig(**{**base, **kw})


def tiny():
    return create_embedder("tiny-test", device="cpu")


def trained_state(emb, result) -> dict:
    sd = emb.model.state_dict()
    return {n: sd[n].clone() for n in result.trained}


def test_loss_falls_on_coloured_shapes(items):
    res = finetune(items, small_cfg(epochs=8), tiny())
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 8
    assert losses[-1] < 0.85 * losses[0], losses
    assert set(res.trained) == {"visual.proj", "text_projection", "logit_scale"}


def test_deterministic_for_a_seed(items):
    a, b, c = tiny(), tiny(), tiny()
    ra = finetune(items, small_cfg(epochs=2), a)
    rb = finetune(items, small_cfg(epochs=2), b)
    rc = finetune(items, small_cfg(epochs=2, seed=1), c)
    sa, sb, sc = trained_state(a, ra), trained_state(b, rb), trained_state(c, rc)
    assert all(torch.equal(sa[n], sb[n]) for n in sa)
    assert a.weights_sha256 == b.weights_sha256
    assert not torch.equal(sa["visual.proj"], sc["visual.proj"])


def test_frozen_parameters_do_not_move(items):
    emb = tiny()
    before = {n: t.clone() for n, t in emb.model.state_dict().items()}
    res = finetune(items, small_cfg(epochs=2), emb)
    after = emb.model.state_dict()
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved == set(res.trained)
    assert all(p.requires_grad for p in emb.model.parameters())  # flags restored


def test_entity_split_is_disjoint_and_seeded():
    keys = [f"band:{i // 3}" for i in range(60)]  # 20 entities, 3 images each
    train, val = split_entities(keys, 0.25, seed=3)
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(keys)
    assert len(val) == 5
    assert split_entities(keys, 0.25, seed=3) == (train, val)
    assert split_entities(keys, 0.25, seed=4)[1] != val
    with pytest.raises(ConfigError):
        split_entities(keys[:6], 0.25, seed=0)  # 2 entities cannot be split 2 + 2


def test_batches_hold_each_entity_once_and_cover_every_sample():
    rng = np.random.default_rng(0)
    entity_of = [f"e{i}" for i in range(7) for _ in range(1 + i % 4)]  # unbalanced: 1..4 samples each
    batches = entity_batches(entity_of, 4, rng)
    for b in batches:
        ents = [entity_of[i] for i in b]
        assert len(ents) == len(set(ents)) >= 2
    seen = sorted(int(i) for b in batches for i in b)
    assert len(seen) == len(set(seen))
    # Only a lone sample in a round's tail (no negative) may be dropped.
    assert len(entity_of) - len(seen) <= 4


def test_validation_wise_and_early_stopping(items):
    emb = tiny()
    cfg = small_cfg(epochs=6, val_fraction=0.34, wise_alpha="auto", patience=1)
    res = finetune(items, cfg, emb)
    assert len(res.val_entities) == 4
    train_keys = {it.entity_key for it in items} - set(res.val_entities)
    assert res.n_train_entities == len(train_keys)
    assert res.n_train_pairs == len([it for it in items if it.entity_key in train_keys]) * 3
    assert set(res.wise_scores) == {"0", "0.25", "0.5", "0.75", "1"}
    assert res.wise_scores[f"{res.wise_alpha:g}"] == max(res.wise_scores.values())
    assert {"image_top1", "text_r5"} <= set(res.history[0])
    assert 1 <= res.best_epoch <= len(res.history)


def test_wise_alpha_zero_restores_start_weights(items):
    emb = tiny()
    sha = emb.weights_sha256
    finetune(items, small_cfg(epochs=2, wise_alpha=0.0), emb)
    assert emb.weights_sha256 == sha


def test_checkpoint_round_trip(items, tmp_path):
    emb = tiny()
    base_sha = emb.weights_sha256
    cfg = small_cfg(epochs=2)
    res = finetune(items, cfg, emb)
    out = save_checkpoint(tmp_path / "ckpt", emb, cfg, res)
    loaded = create_embedder(str(out), device="cpu")
    imgs = [it.image for it in items[:4]]
    np.testing.assert_array_equal(loaded.embed_images(imgs), emb.embed_images(imgs))
    np.testing.assert_array_equal(loaded.embed_texts(["a red circle"]), emb.embed_texts(["a red circle"]))
    assert loaded.weights_sha256 == emb.weights_sha256 != base_sha
    meta = json.loads((out / "config.json").read_text())
    assert meta["base_model"] == "tiny-test"
    run = meta["extra"]["finetune"]
    assert FinetuneConfig.from_dict(run["config"]) == cfg
    assert run["trained"] == res.trained and run["data_sha256"] == res.data_sha256


def test_disk_cache_reused(items, tmp_path, monkeypatch):
    cfg = small_cfg(epochs=1)
    a = tiny()
    ra = finetune(items, cfg, a, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(items)

    def boom(*_a, **_k):
        raise AssertionError("variants recomputed despite the cache")

    monkeypatch.setattr("logoid.finetune.data.make_variants", boom)
    b = tiny()
    rb = finetune(items, cfg, b, cache_dir=tmp_path / "cache")
    sa, sb = trained_state(a, ra), trained_state(b, rb)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[n], sb[n]) for n in sa)


@pytest.mark.parametrize("unlock", [0, 1])
def test_vit_tower_split_matches_full_forward(unlock):
    model = tiny().model
    x = torch.randn(3, 3, 32, 32)
    tower = ImageTower(model, unlock)
    with torch.no_grad():
        np.testing.assert_allclose(tower.suffix(tower.prefix(x)).numpy(), model.encode_image(x).numpy(), atol=1e-5)
        tokens = tiny().tokenizer(["a red circle", "blue"])
        text = TextTower(model)
        np.testing.assert_allclose(text.suffix(text.prefix(tokens)).numpy(), model.encode_text(tokens).numpy(),
                                   atol=1e-5)


def test_effnet_unlocked_blocks_train_and_split_matches(items):
    emb = create_embedder("tiny-effnet", model_cfg=TINY_EFFNET_CFG, device="cpu")
    model = emb.model
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for unlock in (0, 2):
            tower = ImageTower(model, unlock)
            np.testing.assert_allclose(tower.suffix(tower.prefix(x)).numpy(), model.encode_image(x).numpy(),
                                       atol=1e-4)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    res = finetune(items[:6], small_cfg(epochs=1, unlock_image_blocks=1, augment=AugmentConfig(n_variants=2, size=32)),
                   emb)
    after = model.state_dict()
    assert any(n.startswith("visual.trunk.blocks.6.") for n in res.trained)
    assert any(n.startswith("visual.trunk.conv_head") for n in res.trained)
    assert not any(n.startswith("visual.trunk.blocks.5.") for n in res.trained)
    assert not torch.equal(before["visual.trunk.blocks.6.0.conv_pwl.weight"], after["visual.trunk.blocks.6.0.conv_pwl.weight"])
    assert torch.equal(before["visual.trunk.blocks.5.0.conv_pwl.weight"], after["visual.trunk.blocks.5.0.conv_pwl.weight"])
    # Batch-norm statistics stay frozen (the model is never put in train mode).
    assert torch.equal(before["visual.trunk.bn2.running_mean"], after["visual.trunk.bn2.running_mean"])


def test_config_round_trip_and_validation():
    cfg = FinetuneConfig(epochs=3, wise_alpha=0.5, augment=AugmentConfig(n_variants=5))
    assert FinetuneConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in ({"batch_size": 1}, {"wise_alpha": 1.5}, {"wise_alpha": "best"}, {"select_metric": "loss"},
                {"val_fraction": 0.0, "wise_alpha": "auto"}):
        with pytest.raises(ConfigError):
            FinetuneConfig(**bad)
    with pytest.raises(ConfigError):
        FinetuneConfig.from_dict({"epochz": 3})


def test_bad_items_are_refused(items):
    with pytest.raises(ConfigError):
        finetune([], small_cfg(), tiny())
    with pytest.raises(ConfigError):
        finetune([TrainItem("a", items[0].image, "x", "sepia"), items[1]], small_cfg(), tiny())
    with pytest.raises(ConfigError):
        finetune([items[0], items[0]], small_cfg(), tiny())  # one entity: no negatives


def test_image_key_is_pixel_hash_for_memory_images(items, tmp_path):
    path = tmp_path / "a.png"
    items[0].image.save(path)
    assert image_key(TrainItem("a", items[0].image, "x", "color")) == image_key(TrainItem("b", items[0].image, "y", "bw"))
    assert image_key(TrainItem("a", items[0].image, "x", "color")) != image_key(TrainItem("a", items[1].image, "x", "color"))
    assert len(image_key(TrainItem("a", path, "x", "color"))) == 64
