"""Local-features channel: RootSIFT extraction, descriptor index, homography verification (synthetic images)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from synth import background, homography, paste, text_logo
from synth import photo as to_photo

from logoid.core.errors import ConfigError, IndexMismatchError
from logoid.engine.local import ExtractConfig, FeatureCache, Features, extract, extract_reference
from logoid.identify.match import LocalConfig, find_all, match_local
from logoid.identify.verify import VerifyConfig, verify
from logoid.index.descriptors import DescriptorConfig, DescriptorIndex, decode_ids, encode_ids

cv2 = pytest.importorskip("cv2")

# Small working sizes keep the whole file fast on a shared 2-core machine.
CFG = LocalConfig.of(ref_long_side=400, query_long_side=640, ref_max_keypoints=800, query_max_keypoints=2000)
EX = CFG.extract


MAYHEM = text_logo("MAYHEM", (420, 160), 72, 1)
DEFTONES = text_logo("DEFTONES", (460, 140), 58, 2)
KORN = text_logo("KORN", (300, 200), 90, 3)


def _index(refs: dict[int, Image.Image], cfg: LocalConfig = CFG) -> DescriptorIndex:
    return DescriptorIndex.build(((i, extract_reference(img, cfg.extract)) for i, img in refs.items()),
                                 feature_config=cfg.extract)


@pytest.fixture(scope="module")
def dindex() -> DescriptorIndex:
    return _index({11: MAYHEM, 22: DEFTONES, 33: KORN})


QUAD_A = [(180, 150), (560, 190), (540, 360), (170, 330)]  # perspective, slight rotation


# ---- extraction ------------------------------------------------------------------------------
def test_rootsift_unit_norm_and_original_coordinates():
    f = extract(MAYHEM, EX, "ref")
    assert 50 < len(f) <= EX.ref_max_keypoints
    assert f.desc.dtype == np.float32 and f.desc.shape == (len(f), 128)
    np.testing.assert_allclose(np.linalg.norm(f.desc, axis=1), 1.0, atol=1e-4)
    assert (f.desc >= 0).all()
    # Coordinates are in original px even though SIFT ran on an enlarged image.
    assert f.scale == pytest.approx(400 / 420)
    assert f.xy[:, 0].max() < MAYHEM.width and f.xy[:, 1].max() < MAYHEM.height and f.xy.min() > -1
    big = extract(MAYHEM.resize((840, 320)), EX, "ref")
    assert big.scale == pytest.approx(400 / 840)
    # Same content at twice the size: keypoints land at about twice the coordinates.
    d = np.linalg.norm(big.xy[:, None, :] / 2 - f.xy[None, :, :], axis=2).min(axis=1)
    assert np.median(d) < 1.5


def test_keypoint_cap_keeps_strongest():
    assert len(extract(MAYHEM, CFG.override(ref_max_keypoints=40).extract, "ref")) == 40


@pytest.mark.parametrize("img", [
    Image.new("RGB", (300, 200), (255, 255, 255)),
    Image.new("RGB", (300, 200), (12, 200, 40)),
    Image.new("RGB", (8, 8), (0, 0, 0)),
    Image.new("RGB", (1, 500), (0, 0, 0)),
])
def test_blank_or_tiny_image_gives_empty_features(img):
    f = extract(img, EX, "query")
    assert len(f) == 0 and f.desc.shape == (0, 128) and f.size == img.size
    refs = extract_reference(img, EX)
    assert [len(r) for r in refs] == [0, 0]


def test_inverted_reference_variant_differs():
    normal, inverted = extract_reference(MAYHEM, EX)
    assert len(normal) > 0 and len(inverted) > 0
    assert len(extract_reference(MAYHEM, CFG.override(enrol_inverted=False).extract)) == 1


def test_features_roundtrip_and_cache(tmp_path):
    f = extract(KORN, EX, "ref")
    g = Features.from_bytes(f.to_bytes())
    np.testing.assert_array_equal(f.xy, g.xy)
    np.testing.assert_array_equal(f.desc, g.desc)
    assert (g.size, g.scale) == (f.size, f.scale)

    cache = FeatureCache(tmp_path)
    calls = []

    def loader():
        calls.append(1)
        return KORN

    a = cache.get_reference("ab" * 32, loader, EX)
    b = cache.get_reference("ab" * 32, loader, EX)
    assert len(calls) == 1 and len(a) == len(b) == 2
    np.testing.assert_array_equal(a[1].desc, b[1].desc)
    other = CFG.override(ref_max_keypoints=100).extract
    assert cache.get("ab" * 32, other) is None  # another extraction config is another key
    assert cache.get("ab" * 32, CFG.override(ratio=0.7).extract) is not None


def test_config_validation_and_roundtrip():
    with pytest.raises(ConfigError):
        LocalConfig.of(ratio=1.5)
    with pytest.raises(ConfigError):
        VerifyConfig(ransac_method="lmeds")
    with pytest.raises(ConfigError):
        extract(MAYHEM, EX, "photo")
    assert LocalConfig.from_dict(CFG.to_dict()) == CFG


# ---- finding logos -------------------------------------------------------------------------
def test_finds_warped_logo_with_accurate_outline(dindex):
    bg = background(seed=5)
    arr, H = paste(bg, MAYHEM, QUAD_A)
    photo = to_photo(arr)
    q = extract(photo, EX, "query")
    res = match_local(q, dindex, CFG)
    assert res and res[0].image_id == 11 and res[0].variant == 0
    assert res[0].inliers >= 30 and res[0].score >= 20
    assert all(r.inliers < res[0].inliers / 3 and r.score < res[0].score / 5 for r in res[1:])
    err = np.linalg.norm(res[0].polygon - np.float64(QUAD_A), axis=1)
    assert err.max() < 4.0, err


def test_unknown_logo_is_not_matched(dindex):
    arr, _ = paste(background(seed=6), text_logo("SLAYER", (420, 160), 72, 9), QUAD_A)
    res = match_local(extract(to_photo(arr), EX, "query"), dindex, CFG)
    # SLAYER shares the glyph pair "AY" (same font) with MAYHEM: a genuine partial match, but far weaker
    # than a real print of MAYHEM (score ~29 in test_finds_warped_logo_with_accurate_outline).
    assert all(r.score < 8 for r in res)


def test_blank_photo_no_match_no_error(dindex):
    q = extract(Image.new("RGB", (640, 480), (255, 255, 255)), EX, "query")
    assert match_local(q, dindex, CFG) == [] and find_all(q, dindex, CFG) == []


def test_inverted_print_needs_inverted_enrolment():
    inverted_logo = Image.fromarray(255 - np.asarray(DEFTONES))
    arr, _ = paste(background(seed=7), inverted_logo, [(150, 200), (600, 180), (610, 330), (140, 340)])
    q = extract(to_photo(arr), EX, "query")
    refs = {11: MAYHEM, 22: DEFTONES, 33: KORN}
    no_inv = CFG.override(enrol_inverted=False)
    assert not [r for r in match_local(q, _index(refs, no_inv), no_inv) if r.image_id == 22]
    res = match_local(q, _index(refs, CFG), CFG)
    assert res and res[0].image_id == 22 and res[0].variant == 1 and res[0].inliers >= 20


def test_find_all_returns_each_logo_with_outline(dindex):
    quad_m = [(40, 60), (380, 80), (370, 210), (30, 200)]
    quad_d = [(360, 330), (770, 300), (780, 440), (350, 460)]
    arr, _ = paste(background(seed=8), MAYHEM, quad_m)
    arr, _ = paste(arr, DEFTONES, quad_d)
    q = extract(to_photo(arr), EX, "query")
    found = find_all(q, dindex, CFG)
    # Both prints come first and strong; anything after is a chance fit in the clutter (the threshold drops it).
    by_id = {v.image_id: v for v in found[:2]}
    assert set(by_id) == {11, 22}, [(v.image_id, v.inliers, v.score) for v in found]
    assert min(v.score for v in found[:2]) > 15 and all(v.score < 5 for v in found[2:])
    # Outlines within 2 % of the print width (a corner far from any keypoint is extrapolated).
    assert np.linalg.norm(by_id[11].polygon - np.float64(quad_m), axis=1).max() < 7
    assert np.linalg.norm(by_id[22].polygon - np.float64(quad_d), axis=1).max() < 9
    assert len(find_all(q, dindex, CFG, max_logos=1)) == 1


def test_extra_candidate_is_verified_when_restricted(dindex):
    arr, _ = paste(background(seed=9), KORN, [(200, 100), (480, 120), (470, 320), (190, 300)])
    q = extract(to_photo(arr), EX, "query")
    strong = match_local(q, dindex, CFG, restrict=[33])
    assert strong[0].image_id == 33 and strong[0].inliers >= 20
    assert all(r.image_id != 33 and r.inliers < strong[0].inliers / 3
               for r in match_local(q, dindex, CFG, restrict=[11, 22]))
    tiny = CFG.override(shortlist=0)
    assert match_local(q, dindex, tiny) == []
    assert [r.image_id for r in match_local(q, dindex, tiny, extra_candidates=[33])] == [33]


# ---- verification rules --------------------------------------------------------------------
def _synthetic_matches(H: np.ndarray, n=60, size=(400, 200), seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.uniform([0, 0], size, (n, 2)).astype(np.float32)
    p = np.column_stack([ref, np.ones(n)]) @ H.T
    qxy = (p[:, :2] / p[:, 2:]).astype(np.float32)
    q = Features(qxy, np.zeros((n, 128), np.float32), (800, 600), 1.0)
    return q, ref, np.column_stack([np.arange(n), np.arange(n)])


def test_verify_accepts_true_homography_and_rejects_mirror():
    H = homography((400, 200), [(100, 100), (500, 120), (490, 330), (90, 300)])
    q, ref, m = _synthetic_matches(H)
    v = verify(q, ref, m, CFG.verify, ref_size=(400, 200), ref_scale=1.0, image_id=5)
    assert v is not None and v.image_id == 5 and v.inliers == 60 and v.inlier_ratio == 1.0
    np.testing.assert_allclose(v.H / v.H[2, 2], H / H[2, 2], atol=1e-3)
    mirror = homography((400, 200), [(500, 120), (100, 100), (90, 300), (490, 330)])
    q, ref, m = _synthetic_matches(mirror)
    assert verify(q, ref, m, VerifyConfig(similarity_fallback=False), ref_size=(400, 200), ref_scale=1.0) is None
    # The similarity fallback can only explain a chance handful of a mirrored set, never the mirror itself.
    v = verify(q, ref, m, CFG.verify, ref_size=(400, 200), ref_scale=1.0)
    assert v is None or (v.inliers <= 10 and np.linalg.det(v.H[:2, :2]) > 0)


def test_coverage_is_the_inliers_share_of_the_reference():
    H = homography((400, 200), [(100, 100), (500, 120), (490, 330), (90, 300)])
    q, ref, m = _synthetic_matches(H, n=200)
    whole = verify(q, ref, m, CFG.verify, ref_size=(400, 200), ref_scale=1.0)
    assert whole is not None and 0.85 < whole.coverage <= 1.0
    # The same fit from matches in the reference's left quarter only: about a quarter of it covered.
    left = m[ref[:, 0] < 100]
    part = verify(q, ref, left, CFG.verify, ref_size=(400, 200), ref_scale=1.0)
    assert part is not None and 0.15 < part.coverage < 0.26
    assert part.to_dict()["coverage"] == round(part.coverage, 4)


def test_similarity_fallback_rescues_few_matches():
    # Six exact matches under a similarity, plus two outliers: enough for a 4-dof fit.
    S = np.array([[0.8, -0.2, 150], [0.2, 0.8, 90], [0, 0, 1.0]])
    q, ref, m = _synthetic_matches(S, n=8, seed=3)
    q.xy[6:] += 120
    v = verify(q, ref, m, CFG.verify, ref_size=(400, 200), ref_scale=1.0)
    assert v is not None and v.inliers == 6
    np.testing.assert_allclose(v.H, S, atol=1e-2)


def test_verify_rejects_collapsed_and_too_few():
    collapsed = homography((400, 200), [(300, 300), (303, 300), (303, 302), (300, 302)])
    q, ref, m = _synthetic_matches(collapsed)
    assert verify(q, ref, m, CFG.verify, ref_size=(400, 200), ref_scale=1.0) is None
    H = homography((400, 200), [(100, 100), (500, 120), (490, 330), (90, 300)])
    q, ref, m = _synthetic_matches(H, n=CFG.verify.min_inliers - 1)
    assert verify(q, ref, m, CFG.verify, ref_size=(400, 200), ref_scale=1.0) is None


# ---- descriptor index ----------------------------------------------------------------------
def test_ids_encode_owner():
    ids = encode_ids(123456, 1, 5)
    img, var, kp = decode_ids(np.append(ids, -1))
    assert list(img) == [123456] * 5 + [-1] and list(var) == [1] * 5 + [-1] and list(kp) == [0, 1, 2, 3, 4, -1]


def test_add_then_remove_restores_index(dindex):
    q = extract(to_photo(paste(background(seed=3), MAYHEM, QUAD_A)[0]), EX, "query")
    before_n, before_ids = dindex.ntotal, dindex.image_ids()
    D0, O0 = dindex.search(q.desc, k=4)
    added = dindex.add(99, extract_reference(MAYHEM.rotate(180), EX))
    assert added > 0 and dindex.ntotal == before_n + added and 99 in dindex.image_ids()
    D1, O1 = dindex.search(q.desc, k=4)
    assert (O1[..., 0] == 99).any()  # the new image really takes part in search
    assert dindex.remove([99]) == added
    assert dindex.ntotal == before_n and dindex.image_ids() == before_ids
    D2, O2 = dindex.search(q.desc, k=4)
    np.testing.assert_array_equal(O0, O2)
    np.testing.assert_allclose(D0, D2)


def test_readd_replaces_and_owner_consistent(dindex):
    n = dindex.ntotal
    feats = extract_reference(KORN, EX)
    dindex.add(33, feats)
    assert dindex.ntotal == n
    D, own = dindex.search(feats[1].desc[:20], k=1)
    assert (own[:, 0, 0] == 33).all() and (own[:, 0, 1] == 1).all()
    np.testing.assert_allclose(D[:, 0], 0, atol=1e-5)
    # the inverted variant is found through the stored normal one: the hit is the same keypoint of the reference
    xy = np.stack([dindex.ref_xy(33, 1)[j] for j in own[:, 0, 2]])
    np.testing.assert_allclose(xy, feats[1].xy[:20], atol=1e-4)


def test_ratio_uses_other_image_as_second_neighbour():
    rng = np.random.default_rng(0)
    base = rng.random((1, 128)).astype(np.float32)
    a = np.repeat(base, 3, axis=0) + rng.normal(0, 1e-3, (3, 128)).astype(np.float32)  # repeated structure
    b = rng.random((3, 128)).astype(np.float32)
    idx = DescriptorIndex()
    idx.add(1, [Features(np.zeros((3, 2), np.float32), a, (10, 10))])
    idx.add(2, [Features(np.zeros((3, 2), np.float32), b, (10, 10))])
    q = Features(np.zeros((1, 2), np.float32), base.copy(), (10, 10))
    votes = idx.votes(q, ratio=0.8, k=4)
    assert list(votes) == [(1, 0)]  # a same-image second neighbour would have failed the ratio test
    two_nn_first = idx.search(q.desc, k=2)[1][0, :, 0]
    assert list(two_nn_first) == [1, 1]


def test_save_load_roundtrip(tmp_path, dindex):
    p = tmp_path / "descriptors-00001"
    dindex.save(p)
    names = sorted(f.name for f in tmp_path.iterdir())  # the sidecar names this save's .faiss and .npy files
    assert "descriptors-00001.json" in names and all(n.startswith("descriptors-00001.") for n in names)
    assert sorted(n.split(".", 2)[-1] for n in names) == ["faiss", "json", "refs.npy", "xy.npy"]
    dindex.save(p)  # a second save replaces the first one's files
    assert len(list(tmp_path.iterdir())) == 4 and sorted(f.name for f in tmp_path.iterdir()) != names
    back = DescriptorIndex.load(p)
    assert back.ntotal == dindex.ntotal and back.image_ids() == dindex.image_ids()
    np.testing.assert_array_equal(back.ref_xy(22, 1), dindex.ref_xy(22, 1))
    assert back.ref_size(22, 0) == DEFTONES.size
    q = extract(KORN, EX, "query")
    np.testing.assert_array_equal(back.search(q.desc, 3)[1], dindex.search(q.desc, 3)[1])
    back.check_features(EX)
    with pytest.raises(IndexMismatchError):
        back.check_features(CFG.override(ref_long_side=999).extract)
    (tmp_path / "descriptors-00001.json").write_text('{"schema_version": 99}')
    with pytest.raises(IndexMismatchError):
        DescriptorIndex.load(p)


def test_ivf_index_recall_against_exact():
    rng = np.random.default_rng(1)
    feats = []
    for i in range(20):
        d = rng.random((300, 128)).astype(np.float32)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        feats.append((i, [Features(rng.random((300, 2)).astype(np.float32), d, (100, 100))]))
    exact = DescriptorIndex.build(feats)
    ivf = DescriptorIndex.build(feats, DescriptorConfig(ivf=True, nlist=16, nprobe=8))
    assert ivf.config.ivf and not exact.config.ivf and ivf.ntotal == exact.ntotal == 6000
    q = feats[3][1][0].desc[:200] + rng.normal(0, 0.01, (200, 128)).astype(np.float32)
    e, a = exact.search(q, 1)[1][:, 0], ivf.search(q, 1)[1][:, 0]
    assert (e == a).all(axis=1).mean() >= 0.9
    assert ivf.remove([3]) == 300 and ivf.ntotal == 5700
    assert not (ivf.search(q, 5)[1][..., 0] == 3).any()


def test_ivf_save_load_and_restricted_search(tmp_path):
    rng = np.random.default_rng(2)
    feats = [(i, [Features(rng.random((200, 2)).astype(np.float32), rng.random((200, 128)).astype(np.float32),
                           (50, 50))]) for i in range(10)]
    ivf = DescriptorIndex.build(feats, DescriptorConfig(ivf=True, nlist=16, nprobe=5))
    ivf.save(tmp_path / "d")
    back = DescriptorIndex.load(tmp_path / "d")
    assert back.config.ivf and back.config.nprobe == 5 and back.ntotal == 2000
    q = feats[4][1][0].desc[:30]
    np.testing.assert_array_equal(back.search(q, 2)[1], ivf.search(q, 2)[1])
    owners = back.search(q, 3, restrict=[7, 8])[1][..., 0]
    assert set(np.unique(owners)) <= {7, 8, -1} and (owners[:, 0] >= 0).mean() > 0.5



def test_ivf_restricted_search_is_exact_over_the_references_asked(tmp_path):
    # A search restricted to a few references compares every descriptor of theirs (decoded re-ranking codes): the
    # exact index's answers, whatever IVF lists a whole search would visit (nprobe 1 of 32), codes in RAM or mapped.
    rng = np.random.default_rng(5)
    feats = [(i, [Features(rng.random((150, 2)).astype(np.float32), rng.random((150, 128)).astype(np.float32),
                           (50, 50))]) for i in range(20)]
    exact = DescriptorIndex.build(feats)
    ivf = DescriptorIndex.build(feats, DescriptorConfig(ivf=True, nlist=32, nprobe=1))
    assert ivf.config.ivf and ivf._codes is not None
    ivf.save(tmp_path / "d")
    q = feats[6][1][0].desc[:100] + rng.normal(0, 0.02, (100, 128)).astype(np.float32)
    want = exact.search(q, 4, restrict=[6, 9, 13])[1]
    for index in (ivf, DescriptorIndex.load(tmp_path / "d"), DescriptorIndex.load(tmp_path / "d", refine=0)):
        got = index.search(q, 4, restrict=[6, 9, 13])[1]
        assert (got[:, 0] == want[:, 0]).all(axis=1).all()  # every nearest: image, variant and keypoint
        assert (got[:, :, 0] == want[:, :, 0]).mean() > 0.98

# ---- multi-scale tiled extraction, soft candidate matches, cache keys ------------------------
def test_tile_grid_cores_partition_the_image():
    from logoid.engine.local.tiles import _tile_grid

    for n, tile in [(500, 800), (1600, 640), (1999, 640), (641, 640)]:
        grid = _tile_grid(n, tile)
        assert grid[0][0] == 0 and grid[-1][1] == n and all(b - a <= tile for a, b, _, _ in grid)
        cores = [(lo, hi) for _, _, lo, hi in grid]
        assert cores[0][0] == 0 and cores[-1][1] == n and all(cores[i][1] == cores[i + 1][0] for i in range(len(cores) - 1))
        assert all(a <= lo < hi <= b for a, b, lo, hi in grid)


def test_tile_scales_skip_small_photos():
    from logoid.engine.local import tile_scales

    cfg = ExtractConfig(query_long_side=800, tile_levels=2, tile_max_upscale=2.5)
    assert tile_scales((380, 272), 800 / 380, cfg) == []  # already read at 2.1x: no finer level
    assert tile_scales((3200, 2400), 0.25, cfg) == [0.5, 1.0]
    assert tile_scales((1600, 1200), 0.5, ExtractConfig(tile_levels=0)) == []


def test_small_logo_in_large_photo_needs_tiled_extraction(dindex):
    # A 130 px wide print in a 1600x1200 photo: at the 400 px whole-photo working size it is ~33 px wide.
    bg = background((1600, 1200), seed=11)
    quad = [(900, 700), (1030, 705), (1028, 755), (898, 752)]
    photo = to_photo(paste(bg, MAYHEM, quad)[0])
    plain = CFG.override(query_long_side=400)
    tiled = plain.override(tile_levels=2, tile_size=640)
    near = [r for r in match_local(extract(photo, plain.extract, "query"), dindex, plain)
            if r.image_id == 11 and np.linalg.norm(r.polygon - np.float64(quad), axis=1).max() < 20]
    assert not near
    q = extract(photo, tiled.extract, "query")
    assert q.scale == pytest.approx(0.25) and q.size == (1600, 1200)
    res = match_local(q, dindex, tiled)
    assert res and res[0].image_id == 11 and res[0].inliers >= 10 and res[0].score > 5
    assert np.linalg.norm(res[0].polygon - np.float64(quad), axis=1).max() < 6


def test_soft_matches_keep_near_ties_for_the_candidate():
    from logoid.identify.match import soft_matches

    # query kp 0: candidate (5, 0) is first; kp 1: image 7 wins by a hair, candidate second; kp 2: candidate far.
    D = np.array([[1.0, 1.2], [1.0, 1.02], [1.0, 4.0]], np.float32)
    owners = np.array([[[5, 0, 10], [7, 0, 1]], [[7, 0, 2], [5, 0, 11]], [[7, 0, 3], [5, 0, 12]]], np.int64)
    np.testing.assert_array_equal(soft_matches(D, owners, (5, 0), 0.9), [[0, 10], [1, 11]])
    np.testing.assert_array_equal(soft_matches(D, owners, (5, 0), 1.0), [[0, 10]])
    np.testing.assert_array_equal(soft_matches(D, owners, (5, 1), 0.5), np.zeros((0, 2)))
    np.testing.assert_array_equal(soft_matches(D, owners, (5, 0), 0.9, active=np.array([False, True, True])),
                                  [[1, 11]])


def _soft_matches_by_definition(D, owners, key, ratio, active=None):
    out = []
    for i in range(len(D)):
        hit = [j for j in range(owners.shape[1]) if tuple(owners[i, j, :2]) == key]
        if hit and (active is None or active[i]) and \
                np.sqrt(max(D[i, hit[0]], 0)) <= np.sqrt(max(D[i, 0], 0)) / ratio + 1e-9:
            out.append((i, owners[i, hit[0], 2]))
    return np.array(out, np.int64).reshape(-1, 2)


def test_soft_matches_many_equal_the_definition_for_every_candidate():
    from logoid.identify.match import soft_matches_many

    rng = np.random.default_rng(3)
    n, k = 300, 6
    D = np.sort(rng.uniform(0.2, 1.5, (n, k)).astype(np.float32), axis=1)
    owners = np.stack([rng.integers(0, 6, (n, k)), rng.integers(0, 2, (n, k)), rng.integers(0, 500, (n, k))], -1)
    owners[rng.random((n, k)) < 0.1] = -1  # misses
    active = rng.random(n) < 0.8
    keys = [(3, 1), (0, 0), (5, 0), (9, 0), (2, 1)]  # (9, 0) owns nothing
    for act in (None, active):
        got = soft_matches_many(D, owners, keys, 0.8, act)
        assert len(got) == len(keys)
        for key, m in zip(keys, got, strict=True):
            np.testing.assert_array_equal(m, _soft_matches_by_definition(D, owners, key, 0.8, act))
    assert soft_matches_many(D, owners, [], 0.8) == []


def test_group_matches_top_keeps_the_most_voted_groups_in_shortlist_order():
    from logoid.index.descriptors import group_matches

    rows = [(q, img, var, 100 + q) for q, (img, var) in enumerate(
        [(4, 0), (2, 1), (4, 0), (2, 0), (2, 1), (7, 0), (4, 0), (2, 0), (9, 1)])]
    m = np.array(rows, np.int64)
    full = group_matches(m)
    assert list(full) == [(2, 0), (2, 1), (4, 0), (7, 0), (9, 1)]  # (image, variant) order
    np.testing.assert_array_equal(full[(4, 0)], [[0, 100], [2, 102], [6, 106]])
    top = group_matches(m, top=3)
    assert list(top) == [(4, 0), (2, 0), (2, 1)]  # most votes first, ties in (image, variant) order
    assert all(np.array_equal(top[k], full[k]) for k in top)
    assert group_matches(np.zeros((0, 4), np.int64), top=3) == {}


def test_plausibility_in_closed_form_agrees_with_the_svd_definition():
    from logoid.identify.verify import _plausible

    def by_definition(H, ref_size, ref_scale, q, cfg):
        w, h = ref_size
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
        p = np.column_stack([corners, np.ones(4)]) @ H.T
        if np.any(p[:, 2] <= 0):
            return False
        poly = p[:, :2] / p[:, 2:]
        d = np.roll(poly, -1, axis=0) - poly
        cross = d[:, 0] * np.roll(d[:, 1], -1) - d[:, 1] * np.roll(d[:, 0], -1)
        if not (np.all(cross > 0) or np.all(cross < 0)):
            return False
        area = 0.5 * float(np.dot(poly[:, 0], np.roll(poly[:, 1], -1)) - np.dot(poly[:, 1], np.roll(poly[:, 0], -1)))
        if area <= 0 or not cfg.min_scale <= np.sqrt(area / (w * h * ref_scale**2)) <= cfg.max_scale:
            return False
        if not cfg.min_area_frac <= area / q.scale**2 / (q.size[0] * q.size[1]) <= cfg.max_area_frac:
            return False
        c, eps = np.array([w / 2, h / 2]), max(ref_size) * 0.01 + 1e-3
        pts = np.column_stack([np.vstack([c, c + [eps, 0], c + [0, eps]]), np.ones(3)]) @ H.T
        pc = pts[:, :2] / pts[:, 2:]
        J = np.column_stack([pc[1] - pc[0], pc[2] - pc[0]]) / eps
        if np.linalg.det(J) <= 0:
            return False
        s = np.linalg.svd(J, compute_uv=False)
        return bool(s[0] / s[1] <= cfg.max_anisotropy)

    rng = np.random.default_rng(0)
    cfg = VerifyConfig()
    q = Features(size=(640, 480), scale=1.25)
    verdicts = []
    for _ in range(3000):
        A = np.diag([rng.uniform(0.05, 3), rng.uniform(0.05, 3)]) @ np.array(
            [[1, rng.normal(0, 0.8)], [rng.normal(0, 0.8), 1]]) * rng.choice([1, -1], 2)[:, None]
        H = np.eye(3)
        H[:2, :2], H[:2, 2], H[2, :2] = A, rng.uniform(-300, 900, 2), rng.normal(0, 2e-3, 2)
        want = by_definition(H, (300, 200), 1.3, q, cfg)
        assert _plausible(H, (300, 200), 1.3, q, cfg) == want
        verdicts.append(want)
    assert 0.1 < np.mean(verdicts) < 0.9  # both verdicts exercised


def test_reference_cache_key_ignores_query_settings():
    base = ExtractConfig()
    for field, value in [("query_long_side", 1100), ("query_max_keypoints", 8000), ("tile_levels", 2)]:
        other = ExtractConfig.from_dict({**base.to_dict(), field: value})
        assert other.ref_hash() == base.ref_hash(), field
    assert ExtractConfig(query_long_side=1100).query_hash() != base.query_hash()
    assert ExtractConfig(ref_long_side=600).ref_hash() != base.ref_hash()
    assert ExtractConfig(sift_contrast_threshold=0.03).query_hash() != base.query_hash()

