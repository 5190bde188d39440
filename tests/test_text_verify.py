"""A name read verifies its logo (``IdentifyConfig.text_verify``): among many logos a print's keypoints can all have
another logo's stroke nearly as near as their own, so the ratio test leaves its band no vote; once the text channel
reads the band's name, the local channel verifies that band's references on their own (tiny fakes, no models)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import logoid.identify.pipeline as pipeline
from logoid.engine.local import Features
from logoid.identify.match import LocalConfig, match_local
from logoid.identify.pipeline import Identifier, IdentifyConfig
from logoid.index.descriptor_structure import DescriptorConfig
from logoid.index.descriptors import DescriptorIndex
from logoid.index.names import NameIndex

pytest.importorskip("faiss")

N = 30
NAMES = {0: "Zeal And Ardor", 1: "Necrophobic", **{i: f"Filler Band {i}" for i in range(2, 12)}}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.maximum(x, 0)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _catalog_and_photo(seed: int = 0) -> tuple[DescriptorIndex, Features]:
    """Band 0's logo printed on a photo: every one of its keypoints has a twin in band 1's logo at 1.02× the
    distance, so the Lowe test (0.95) gives band 0 no vote at all."""
    rng = np.random.default_rng(seed)
    design = _unit(rng.random((N, 128)))
    xy = (rng.random((N, 2)) * [360, 260] + 20).astype(np.float32)
    photo_desc = _unit(design + rng.normal(0, 0.01, design.shape))
    twins = _unit(photo_desc + 1.02 * (photo_desc - design))
    filler = [(i, [Features((rng.random((N, 2)) * 380).astype(np.float32), _unit(rng.random((N, 128))), (400, 300))])
              for i in range(2, 12)]
    items = [(0, [Features(xy, design, (400, 300))]),
             (1, [Features((rng.random((N, 2)) * 380).astype(np.float32), twins, (400, 300))]), *filler]
    dindex = DescriptorIndex.build(items, config=DescriptorConfig(ivf=False))
    return dindex, Features((xy * 1.5 + [50, 40]).astype(np.float32), photo_desc, (800, 600))


class _Catalog:
    def images(self, *_):
        return [SimpleNamespace(id=i, entity_type="band", entity_id=i) for i in NAMES]

    def entity_name(self, etype, eid):
        return NAMES[eid]

    def entity_meta(self, etype, eid):
        return {}


class _Reader:
    def __init__(self, text: str):
        self.text = text

    def read(self, img, regions=None):
        return [SimpleNamespace(text=self.text, conf=0.9, box=[[0, 0], [10, 0], [10, 5], [0, 5]])]


def _identifier(monkeypatch, text_verify: int, read: str) -> Identifier:
    dindex, photo = _catalog_and_photo()
    monkeypatch.setattr(pipeline, "extract", lambda img, cfg, role: photo)
    store = SimpleNamespace(descriptors=dindex, vectors=None, meta={"local": LocalConfig().to_dict()},
                            names=NameIndex([(f"band:{i}", n) for i, n in NAMES.items()]))
    cfg = IdentifyConfig(channels=("local", "text"), text_verify=text_verify, albums=False)
    return Identifier(home=None, catalog=_Catalog(), config=cfg, store=store, reader=_Reader(read))


def test_the_premise_band_0_wins_no_vote_and_is_never_verified():
    dindex, photo = _catalog_and_photo()
    assert match_local(photo, dindex, LocalConfig()) == []


def test_a_name_read_verifies_its_logo_on_its_own_references(monkeypatch):
    ev = _identifier(monkeypatch, 5, "ZEAL AND ARDOR").collect(pipeline.Image.new("RGB", (800, 600)))
    c = ev.cands["band:0"]
    assert c["text_sim"] > 0.9
    assert c["inliers"] >= N - 2 and c["local_image_id"] == 0  # every keypoint, verified by geometry
    assert "text_verify" in ev.timings
    assert all("inliers" not in v for k, v in ev.cands.items() if k != "band:0")


def test_without_text_verify_the_same_photo_has_no_local_evidence(monkeypatch):
    ev = _identifier(monkeypatch, 0, "ZEAL AND ARDOR").collect(pipeline.Image.new("RGB", (800, 600)))
    assert "text_sim" in ev.cands["band:0"] and "inliers" not in ev.cands["band:0"]
    assert "text_verify" not in ev.timings


def test_a_name_read_wrongly_does_not_verify_a_logo_that_is_not_there(monkeypatch):
    # The text reads band 1 (whose strokes are the twins, placed elsewhere): verified on its own, it does not fit.
    ev = _identifier(monkeypatch, 5, "NECROPHOBIC").collect(pipeline.Image.new("RGB", (800, 600)))
    assert ev.cands["band:1"]["text_sim"] > 0.9
    assert "inliers" not in ev.cands["band:1"] and "band:0" not in ev.cands
