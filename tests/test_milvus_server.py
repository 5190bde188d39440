"""The global vectors and the local descriptors in a real Milvus server (the standalone server PyPI ships as
``milvus``, which ``make install`` installs; started once for this module on a fresh data folder), against FAISS:
the same neighbours, and the CLI's answers through build, add and remove with ``--backend milvus --uri http://…``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from synth import faiss_and_milvus_homes
from test_milvus_descriptors import FAST, K, _run, _same, answer_alike_through_add_and_remove
from test_milvus_descriptors import data as data  # noqa: PLC0414 - the same seeded references and queries

from bench._milvus_server import available, running
from logoid.index.descriptor_structure import DescriptorConfig
from logoid.index.descriptors import DescriptorIndex
from logoid.index.milvus import MilvusConfig
from logoid.index.milvus_descriptors import SUFFIX, MilvusDescriptorIndex
from logoid.index.store import SIDECAR

pytestmark = [pytest.mark.milvus_server,
              pytest.mark.skipif(not available(), reason="no Milvus server package: `make install` installs it")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running(tmp_path_factory.mktemp("milvus-server")) as srv:
        yield srv


@pytest.mark.parametrize("kind", [None, "IVF_FLAT"], ids=["auto-HNSW", "IVF_FLAT"])
def test_server_descriptors_find_what_faiss_finds(data, server, kind):  # noqa: F811 - the fixture imported above
    items, q = data
    cfg = MilvusConfig(uri=server.uri, index_type=kind, nlist=8, nprobe=8)
    mil = MilvusDescriptorIndex.build(items, cfg, cfg.collection_for(1) + SUFFIX)
    assert mil.structure() == f"Milvus {kind or 'HNSW'} (L2)"  # auto on a server: HNSW
    exact = DescriptorIndex.build(items, DescriptorConfig(ivf=False))
    got, want = mil.search(q, K), exact.search(q, K)
    assert (got[1][:, 0] == want[1][:, 0]).all()  # every photo descriptor's nearest reference keypoint
    _same(mil.search(q, K, restrict=[5, 7, 99]), exact.search(q, K, restrict=[5, 7, 99]))
    assert mil.remove([3, 7]) == exact.remove([3, 7])  # staged, then applied like FAISS
    mil.apply_pending()
    got = mil.search(q, K)
    assert not np.isin(got[1][..., 0], [3, 7]).any() and (got[1][:, 0] == exact.search(q, K)[1][:, 0]).all()


def test_cli_against_the_server_answers_like_faiss(tmp_path, server):
    logos, photos, homes, _ = faiss_and_milvus_homes(tmp_path, _run, FAST, ["--uri", server.uri])
    meta = json.loads((homes["milvus"] / "index" / SIDECAR).read_text())
    assert meta["backend"]["uri"] == server.uri and meta["counts"]["descriptors"] > 0
    answer_alike_through_add_and_remove(homes, logos, photos)
