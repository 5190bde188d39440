"""A cold query builds only what it uses: the image tower alone, the weights hash from the index, the default
model's image tower without timm/open_clip/torchvision/transformers (same weights, same vectors). Fast: tiny-test
and randomly initialised towers, no weights files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from synth import photo_of, text_logo

import logoid
from logoid.core.errors import ModelError
from logoid.engine import create_embedder, towers
from logoid.engine.registry import CHECKPOINT_WEIGHTS, CONFIG_DIR, state_sha256
from logoid.index.store import IndexStore

TINY = "tiny-test"


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (24 + 5 * i, 40 - 3 * i, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture
def no_known_weights(monkeypatch):
    """This process has loaded no index yet: no weights hash is known by source fingerprint."""
    monkeypatch.setattr(towers, "_KNOWN", {})


@pytest.fixture(scope="module")
def full():
    emb = create_embedder(TINY, device="cpu")
    emb.model  # noqa: B018 - the whole model, both towers
    return emb


# ---------------------------------------------------------------------------------------------- the image tower alone


def test_image_work_builds_the_image_tower_alone_with_the_same_vectors(full):
    emb = create_embedder(TINY, device="cpu")
    imgs = _images(4)
    v = emb.embed_images(imgs)
    assert emb.towers == {"image"} and not emb.is_loaded  # no text tower was built
    np.testing.assert_array_equal(v, full.embed_images(imgs))
    np.testing.assert_array_equal(emb.image_features_raw(imgs), full.image_features_raw(imgs))
    visual = {f"visual.{k}": t for k, t in emb._visual.state_dict().items()}
    assert visual.keys() == {k for k in full.model.state_dict() if k.startswith("visual.")}
    assert all(torch.equal(t, full.model.state_dict()[k]) for k, t in visual.items())
    assert emb.towers == {"image"}


def test_text_work_builds_the_whole_model_and_its_image_tower_serves_images(full):
    emb = create_embedder(TINY, device="cpu")
    imgs = _images(2)
    before = emb.embed_images(imgs)
    t = emb.embed_texts(["mayhem", "korn"])
    assert emb.towers == {"image", "text"} and emb._visual is None  # one image tower, the whole model's
    np.testing.assert_array_equal(t, full.embed_texts(["mayhem", "korn"]))
    np.testing.assert_array_equal(emb.embed_images(imgs), before)


def test_weights_hash_needs_the_whole_model_unless_an_index_recorded_it(full, no_known_weights):
    emb = create_embedder(TINY, device="cpu")
    assert emb.weights_sha256 == full.weights_sha256 and emb.towers == {"image", "text"}  # built to hash it

    fingerprint = full.info["source_fingerprint"]
    towers.remember_weights(fingerprint, full.weights_sha256, full.model_id)
    emb = create_embedder(TINY, device="cpu")
    info = emb.info
    assert info["weights_sha256"] == full.weights_sha256 and info["source_fingerprint"] == fingerprint
    assert emb.towers == frozenset()  # nothing built to answer it
    assert {k: v for k, v in info.items()} == full.info


def test_a_weights_record_is_taken_only_when_it_agrees_with_itself_and_with_the_others(no_known_weights):
    fp, sha = "f" * 64, "a" * 64
    towers.remember_weights(fp, sha, "tiny-test@" + "b" * 12)  # the hash edited, not the model id
    assert towers.known_weights(fp) is None
    towers.remember_weights(fp, sha, "tiny-test@" + sha[:12])
    assert towers.known_weights(fp) == sha
    towers.remember_weights(fp, sha, "tiny-test@" + sha[:12])  # the same claim again: still known
    assert towers.known_weights(fp) == sha
    towers.remember_weights(fp, "c" * 64, "tiny-test@" + "c" * 12)  # another index, another hash: contested
    assert towers.known_weights(fp) is None
    towers.remember_weights(fp, sha, "tiny-test@" + sha[:12])
    assert towers.known_weights(fp) is None  # for the rest of the process


def test_the_fingerprint_follows_every_source(monkeypatch):
    spec = create_embedder(TINY).spec
    fp = towers.source_fingerprint(spec)
    assert fp == towers.source_fingerprint(create_embedder(TINY).spec) and len(fp) == 64
    spec.seed = 1
    assert towers.source_fingerprint(spec) != fp
    spec.seed = 0
    monkeypatch.setattr(towers, "BUILD_CODE", ("registry.py",))  # logoid's code that builds the weights
    assert towers.source_fingerprint(spec) != fp
    monkeypatch.undo()
    real = towers._version
    monkeypatch.setattr(towers, "_version", lambda lib: "0.0-other" if lib == "transformers" else real(lib))
    assert towers.source_fingerprint(spec) != fp


def test_default_model_fingerprint_names_its_weight_files():
    spec = create_embedder(logoid.DEFAULT_MODEL).spec
    files = towers._source_files(spec)
    names = {f[0].rsplit("/", 1)[-1] for f in files}
    assert any(n.startswith("efficientnet-lite0") for n in names) and "model.safetensors" in names
    assert all(size > 0 for _, size, _ in files)


def test_checkpoint_image_tower_reads_the_file_and_checks_its_hash(full, tmp_path):
    emb = create_embedder(TINY)
    with torch.no_grad():
        for p in emb.model.parameters():
            p.add_(0.01)
    folder = emb.save(tmp_path / "ft")
    loaded = create_embedder(str(folder))
    imgs = _images(3)
    np.testing.assert_array_equal(loaded.embed_images(imgs), emb.embed_images(imgs))
    assert loaded.towers == {"image"} and loaded.weights_sha256 == emb.weights_sha256

    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / CHECKPOINT_WEIGHTS))
    key = next(k for k in state if not k.startswith("visual.") and state[k].is_floating_point())
    state[key] = state[key] + 1  # a text-side weight: not the image tower's, still the model's
    save_file(state, str(folder / CHECKPOINT_WEIGHTS))
    with pytest.raises(ModelError, match="do not match their recorded hash"):
        create_embedder(str(folder)).embed_images(imgs)


# ---------------------------------------------------------------------------------------------- the default model


def test_lite0_tower_is_open_clips_tower_key_for_key_and_bit_for_bit():
    from open_clip.model import _build_vision_tower

    from logoid.engine import _lite0

    cfg = json.loads((CONFIG_DIR / "logoid-effl0-minilm.json").read_text())["model_cfg"]
    assert _lite0.supports(cfg["vision_cfg"])
    torch.manual_seed(0)
    ref = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"]).eval()
    state = ref.state_dict()
    g = torch.Generator().manual_seed(1)
    for k, t in state.items():  # batch-norm statistics away from their defaults, so every layer matters
        if k.endswith(("running_var", "running_mean")):
            t.copy_(torch.rand(t.shape, generator=g) + (0.5 if k.endswith("var") else -0.5))
    ref.load_state_dict(state)
    mine = _lite0.Lite0Tower(cfg["embed_dim"]).eval()
    assert list(mine.state_dict()) == list(state)  # same names, same order (the packaged weights map by order)
    mine.load_state_dict(state, strict=True)
    assert state_sha256(mine.state_dict()) == state_sha256(ref.state_dict())
    for m in (ref, mine):
        m.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for shape in ((2, 3, 224, 224), (1, 3, 231, 199)):
            x = torch.randn(shape, generator=g).contiguous(memory_format=torch.channels_last)
            assert torch.equal(mine(x), ref(x))
            assert torch.equal(mine.trunk(x), ref.trunk(x))


def test_lite0_preprocess_is_open_clips_transform_bit_for_bit():
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from logoid.engine import _lite0

    pp = json.loads((CONFIG_DIR / "logoid-effl0-minilm.json").read_text())["preprocess_cfg"]
    assert _lite0.supports_preprocess(pp)
    ref = image_transform_v2(PreprocessCfg(**pp), is_train=False)
    rng = np.random.default_rng(0)
    for h, w in ((224, 224), (600, 800), (801, 599), (30, 40), (224, 100), (225, 224), (223, 224), (3, 500)):
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        assert torch.equal(_lite0.preprocess(img, pp), ref(img)), (h, w)


def test_default_model_image_work_imports_no_text_or_vision_library():
    code = ("import sys; from PIL import Image; import logoid.engine as e\n"
            "emb = e.create_embedder(e.DEFAULT_MODEL)\n"
            "assert emb.towers == set()\n"
            "emb.embed_images([Image.new('RGB', (300, 200), (10, 200, 30))])\n"
            "print(sorted(emb.towers), [m for m in ('open_clip', 'timm', 'torchvision', 'transformers') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['image'] []"


# ---------------------------------------------------------------------------------------------- through an index


@pytest.fixture
def built_home(tmp_path):
    home = logoid.open_home(tmp_path / "home")
    cat = logoid.Catalog.open(home)
    for name, text, seed in (("Mayhem", "MAYHEM", 1), ("Korn", "KORN", 3)):
        p = tmp_path / f"{name}.png"
        text_logo(text, seed=seed).save(p)
        cat.add_image("band", cat.add_band(name).id, p)
    logoid.build_index(home, cat, create_embedder(TINY), logoid.BuildOptions(augment=_few_variants()))
    return home, cat


def _few_variants():
    from logoid.augment import AugmentConfig

    return AugmentConfig(n_variants=2)


def test_a_query_builds_only_the_image_tower_and_answers_as_the_whole_model(no_known_weights, built_home, tmp_path):
    home, cat = built_home
    assert IndexStore.load_meta_only(home.index_dir)["model"]["source_fingerprint"]
    photo = tmp_path / "photo.jpg"
    photo_of(text_logo("KORN", seed=3)).save(photo)
    cfg = logoid.IdentifyConfig(channels=("global", "local"))
    ident = logoid.Identifier(home, cat, config=cfg)
    lean = logoid.answer_json(ident.identify(photo))
    assert ident.embedder.towers == {"image"}  # the index vouched for the hash
    whole = create_embedder(TINY)
    whole.model  # noqa: B018
    ref = logoid.answer_json(logoid.Identifier(home, cat, config=cfg, embedder=whole).identify(photo))
    lean.pop("timings"), ref.pop("timings")
    assert lean == ref and lean["answer"] == "Korn"


def test_an_index_from_another_model_is_still_refused(no_known_weights, built_home, tmp_path):
    home, cat = built_home
    store = IndexStore.load(home.index_dir)
    other = create_embedder(TINY)
    other.spec.seed = 5  # other sources, other weights: the hash is computed, and differs
    with pytest.raises(logoid.IndexMismatchError):
        store.check_model(other.info)


def test_an_index_without_a_fingerprint_gets_one_at_its_next_write(no_known_weights, built_home):
    home, cat = built_home
    store = IndexStore.load(home.index_dir)
    fp = store.meta["model"].pop("source_fingerprint")
    towers._KNOWN.clear()  # as if the sidecar had never named it (load noted it)
    emb = create_embedder(TINY)
    store.check_model(emb.info)  # the hash computed from the whole model, equal: the fingerprint is noted
    assert emb.towers == {"image", "text"} and store.meta["model"]["source_fingerprint"] == fp
