"""Geometric verification of local-feature matches: a RANSAC homography per candidate reference.

Votes from the descriptor index pick a shortlist of reference images; each is verified by fitting a
homography (reference px → photo px) to its matches. Only plausible homographies count: not
mirrored, not collapsed, not wildly sheared, and the reference outline lands in the photo as a
convex quad of sane size. The score of a candidate is its number of distinct inliers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from logoid.core.pool import thread_map
from logoid.engine.local import Features, LocalConfig
from logoid.index.descriptors import DescriptorIndex, group_matches, ratio_matches


@dataclass
class Verification:
    """One verified reference in a photo."""

    image_id: int  # reference image id
    variant: int  # 0 matched the reference as enrolled, 1 its inverted version
    inliers: int  # distinct inlier correspondences (the score)
    inlier_ratio: float  # inliers / ratio-test matches of this candidate
    H: np.ndarray  # (3, 3) homography, reference original px -> photo original px
    polygon: np.ndarray  # (4, 2) reference corners (tl, tr, br, bl) projected into the photo, original px
    inlier_query_idx: np.ndarray  # indices of the photo keypoints that are inliers
    score: float = 0.0  # ranking score: inliers × inlier_ratio ** LocalConfig.inlier_ratio_weight
    # Area of the convex hull of the inliers in the reference / the reference's area: a whole print seen is
    # covered widely, a chance fit (a few letters of a long caption, one corner of a design) is not.
    coverage: float = 0.0

    def to_dict(self) -> dict:
        return {
            "image_id": self.image_id, "variant": self.variant, "inliers": self.inliers,
            "inlier_ratio": round(float(self.inlier_ratio), 4), "score": round(float(self.score), 4),
            "coverage": round(float(self.coverage), 4), "H": self.H.tolist(),
            "polygon": self.polygon.round(2).tolist(),
        }


def _corners(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)


def _project(H: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.column_stack([pts, np.ones(len(pts))]) @ H.T
    return p[:, :2] / p[:, 2:3], p[:, 2]


def _plausible(H_work: np.ndarray, ref_size: tuple[int, int], ref_scale: float, query: Features,
               cfg: LocalConfig, qscale: float | None = None) -> bool:
    """Reject degenerate, mirrored, over-sheared or absurdly sized homographies (H_work: ref px -> query work px).

    Plain float arithmetic on the four corners: this runs for every candidate of every photo (twice for most
    rejected ones), where numpy's per-call overhead on 4-point arrays cost more than the RANSAC fits.
    """
    (h00, h01, h02), (h10, h11, h12), (h20, h21, h22) = (tuple(float(v) for v in row) for row in H_work)
    w_ref, h_ref = ref_size

    def project(x: float, y: float) -> tuple[float, float, float]:
        w = h20 * x + h21 * y + h22
        if w == 0.0:
            return math.inf, math.inf, w
        return (h00 * x + h01 * y + h02) / w, (h10 * x + h11 * y + h12) / w, w

    poly = [project(0.0, 0.0), project(w_ref, 0.0), project(w_ref, h_ref), project(0.0, h_ref)]
    # A corner behind the camera (w <= 0) means the quad wraps through infinity.
    if not all(math.isfinite(x) and math.isfinite(y) and w > 0 for x, y, w in poly):
        return False
    cross = []
    for i in range(4):
        (x0, y0, _), (x1, y1, _), (x2, y2, _) = poly[i], poly[(i + 1) % 4], poly[(i + 2) % 4]
        cross.append((x1 - x0) * (y2 - y1) - (y1 - y0) * (x2 - x1))
    if not (all(c > 0 for c in cross) or all(c < 0 for c in cross)):
        return False
    # Reference corners run clockwise on screen (y down), i.e. positive signed area; mirrored flips it.
    area = 0.5 * sum(poly[i][0] * poly[(i + 1) % 4][1] - poly[(i + 1) % 4][0] * poly[i][1] for i in range(4))
    if area <= 0:
        return False
    ref_area_work = w_ref * h_ref * ref_scale**2
    scale = math.sqrt(area / max(ref_area_work, 1e-9))
    if not cfg.min_scale <= scale <= cfg.max_scale:
        return False
    qscale = query.scale if qscale is None else qscale
    area_frac = area / (qscale**2) / max(query.size[0] * query.size[1], 1)
    if not cfg.min_area_frac <= area_frac <= cfg.max_area_frac:
        return False
    # Local affine part at the reference centre: shear / anisotropy bound.
    cx, cy = w_ref / 2, h_ref / 2
    eps = max(ref_size) * 0.01 + 1e-3
    (x0, y0, _), (x1, y1, _), (x2, y2, _) = project(cx, cy), project(cx + eps, cy), project(cx, cy + eps)
    a, b, c, d = (x1 - x0) / eps, (x2 - x0) / eps, (y1 - y0) / eps, (y2 - y0) / eps
    det = a * d - b * c
    if not det > 0:
        return False
    # Singular values of the 2x2 Jacobian [[a, b], [c, d]] in closed form: s0 * s1 = det, s0^2 + s1^2 = frob.
    frob = a * a + b * b + c * c + d * d
    s0 = math.sqrt(0.5 * (frob + math.sqrt(max(frob * frob - 4.0 * det * det, 0.0))))
    return s0 * s0 <= cfg.max_anisotropy * det  # s0 / s1 <= max_anisotropy with s1 = det / s0


def _hull_fraction(pts: np.ndarray, size: tuple[int, int]) -> float:
    """Area of the convex hull of ``pts`` as a fraction of a ``size`` image (clipped to [0, 1])."""
    import cv2

    if len(pts) < 3:
        return 0.0
    hull = cv2.convexHull(np.ascontiguousarray(pts, np.float32))
    return float(min(1.0, cv2.contourArea(hull) / max(1.0, float(size[0] * size[1]))))


def _distinct(pts: np.ndarray) -> int:
    # SIFT returns one point per orientation at the same spot; count places, not keypoints.
    if len(pts) == 0:
        return 0
    p = np.round(pts).astype(np.int64)
    p -= p.min(axis=0)
    return len(np.unique(p[:, 0] * (int(p[:, 1].max()) + 1) + p[:, 1]))


def _fit_homography(src: np.ndarray, dst: np.ndarray, cfg: LocalConfig) -> tuple[np.ndarray, np.ndarray] | None:
    import cv2

    method = cv2.USAC_MAGSAC if cfg.ransac_method == "magsac" else cv2.RANSAC
    H, mask = cv2.findHomography(src, dst, method, cfg.ransac_threshold, maxIters=cfg.ransac_max_iters,
                                 confidence=cfg.ransac_confidence)
    if H is None or mask is None or abs(H[2, 2]) < 1e-12:
        return None
    return H / H[2, 2], mask.reshape(-1).astype(bool)


def _fit_similarity(src: np.ndarray, dst: np.ndarray, cfg: LocalConfig) -> tuple[np.ndarray, np.ndarray] | None:
    import cv2

    A, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=cfg.ransac_threshold,
                                          maxIters=cfg.ransac_max_iters, confidence=cfg.ransac_confidence)
    if A is None or mask is None:
        return None
    return np.vstack([A, [0.0, 0.0, 1.0]]), mask.reshape(-1).astype(bool)


def verify(query: Features, ref_xy: np.ndarray, matches: np.ndarray, cfg: LocalConfig | None = None, *,
           ref_size: tuple[int, int], image_id: int = -1, variant: int = 0) -> Verification | None:
    """Fit a homography reference → photo to ``matches`` ((m, 2) query_kp, ref_kp); None if implausible or weak."""
    cfg = cfg or LocalConfig()
    matches = np.asarray(matches, np.int64).reshape(-1, 2)
    if len(matches) < max(4, cfg.min_inliers):
        return None
    src = np.asarray(ref_xy, np.float64)[matches[:, 1]]
    # RANSAC runs in the photo's working px, so its threshold means the same on every photo.
    # Tiled photos mix levels: work at the level where this candidate's matches were found.
    qscale = query.level_scale(matches[:, 0])
    dst = np.asarray(query.xy, np.float64)[matches[:, 0]] * qscale
    ref_scale = cfg.ref_long_side / max(ref_size) if (cfg.upscale or max(ref_size) > cfg.ref_long_side) else 1.0
    fit = _fit_homography(src, dst, cfg)
    if fit is None or not _plausible(fit[0], ref_size, ref_scale, query, cfg, qscale):
        # A homography from a handful of matches is often wild (a corner through infinity); a similarity
        # transform needs 2 points and still fits a print seen without strong perspective.
        fit = _fit_similarity(src, dst, cfg) if cfg.similarity_fallback else None
        if fit is None or not _plausible(fit[0], ref_size, ref_scale, query, cfg, qscale):
            return None
    H, inl = fit
    n_inl = min(_distinct(src[inl]), _distinct(dst[inl]))
    if n_inl < cfg.min_inliers:
        return None
    H_orig = np.diag([1 / qscale, 1 / qscale, 1.0]) @ H
    H_orig /= H_orig[2, 2]
    poly, _ = _project(H_orig, _corners(ref_size))
    ratio = float(n_inl / len(matches))
    return Verification(
        image_id=int(image_id), variant=int(variant), inliers=int(n_inl),
        inlier_ratio=ratio, H=H_orig, polygon=poly.astype(np.float64),
        inlier_query_idx=np.unique(matches[inl, 0]), score=float(n_inl * ratio ** cfg.inlier_ratio_weight),
        coverage=_hull_fraction(src[inl], ref_size),
    )


def soft_matches(D: np.ndarray, owners: np.ndarray, key: tuple[int, int], candidate_ratio: float,
                 active: np.ndarray | None = None) -> np.ndarray:
    """Tentative matches of one candidate (image, variant) from a k-NN result: (m, 2) (query_kp, ref_kp).

    A query keypoint matches the candidate when the candidate's nearest keypoint among its k neighbours lies
    within ``d1 / candidate_ratio`` (d1: its nearest neighbour over all references). The ratio test against
    the whole catalog is what picks candidates; once picked, a true print's keypoints whose nearest neighbour
    happened to be another design by a hair still count, and RANSAC sorts them out.
    """
    return soft_matches_many(D, owners, [key], candidate_ratio, active)[0]


def soft_matches_many(D: np.ndarray, owners: np.ndarray, keys: list[tuple[int, int]], candidate_ratio: float,
                      active: np.ndarray | None = None) -> list[np.ndarray]:
    """:func:`soft_matches` of several candidates at once, in one pass over the k-NN result (same answers)."""
    n, k = owners.shape[:2]
    empty = np.zeros((0, 2), np.int64)
    if not keys or n == 0:
        return [empty for _ in keys]
    kk = np.asarray(keys, np.int64).reshape(-1, 2)
    # (image, variant) as one int64 code; candidates looked up by binary search in their sorted codes
    nvar = int(max(owners[..., 1].max(), kk[:, 1].max())) + 1
    code = owners[..., 0].astype(np.int64) * nvar + owners[..., 1]
    kcode = kk[:, 0] * nvar + kk[:, 1]
    order = np.argsort(kcode, kind="stable")
    pos = np.minimum(np.searchsorted(kcode[order], code), len(kcode) - 1)
    cand = np.where((kcode[order][pos] == code) & (owners[..., 0] >= 0), order[pos], -1)  # (n, k) candidate or -1
    # first[i, c]: column of candidate c's nearest neighbour in row i (-1: none among the k)
    first = np.full((n, len(keys)), -1, np.int64)
    for j in range(k - 1, -1, -1):
        r = np.nonzero(cand[:, j] >= 0)[0]
        first[r, cand[r, j]] = j
    rows = np.arange(n)[:, None]
    col = np.maximum(first, 0)
    d = np.sqrt(np.maximum(D[rows, col], 0))
    d1 = np.sqrt(np.maximum(D[:, 0], 0))
    keep = (first >= 0) & (d <= (d1 / candidate_ratio + 1e-9)[:, None])
    if active is not None:
        keep &= active[:, None]
    c_idx, q = np.nonzero(keep.T)  # sorted by candidate, then query keypoint
    pairs = np.column_stack([q, owners[q, col[q, c_idx], 2]]).astype(np.int64)
    bounds = np.searchsorted(c_idx, np.arange(len(keys) + 1))
    return [pairs[bounds[c]:bounds[c + 1]] for c in range(len(keys))]


def _verify_groups(query: Features, dindex: DescriptorIndex, groups: dict, cfg: LocalConfig,
                   extra: dict | None = None, search: tuple | None = None,
                   active: np.ndarray | None = None) -> list[Verification]:
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    cands = [(k, m) for k, m in ranked[: cfg.shortlist] if len(m) >= cfg.min_votes]
    if search is not None and cfg.candidate_ratio > 0:
        keys = [k for k, _ in cands]
        cands = list(zip(keys, soft_matches_many(search[0], search[1], keys, cfg.candidate_ratio, active), strict=True))
    seen = {k for k, _ in cands}
    cands += [(k, m) for k, m in (extra or {}).items() if k not in seen and len(m) >= cfg.min_votes]

    # candidates are verified side by side on the shared pool (the RANSAC fits release the GIL), in order
    def one(cand: tuple[tuple[int, int], np.ndarray]) -> Verification | None:
        (image_id, variant), m = cand
        return verify(query, dindex.ref_xy(image_id, variant), m, cfg, ref_size=dindex.ref_size(image_id, variant),
                      image_id=image_id, variant=variant)

    best: dict[int, Verification] = {}
    for ((image_id, _), _), v in zip(cands, thread_map(one, cands), strict=True):
        if v is not None and (image_id not in best or v.score > best[image_id].score):
            best[image_id] = v
    return sorted(best.values(), key=lambda v: (-v.score, -v.inliers, v.image_id))


def verify_search(query_feats: Features, dindex: DescriptorIndex, D: np.ndarray, owners: np.ndarray,
                  cfg: LocalConfig | None = None, extra: dict | None = None) -> list[Verification]:
    """Verified references from a k-NN result ``(D, owners)`` of ``dindex.search(query_feats.desc, k)``."""
    cfg = cfg or LocalConfig()
    groups = group_matches(ratio_matches(D, owners, cfg.ratio), top=cfg.shortlist)
    return _verify_groups(query_feats, dindex, groups, cfg, extra, search=(D, owners))


def match_local(query_feats: Features, dindex: DescriptorIndex, cfg: LocalConfig | None = None,
                restrict: Iterable[int] | None = None, extra_candidates: Iterable[int] = (),
                search: tuple[np.ndarray, np.ndarray] | None = None) -> list[Verification]:
    """Verified references in the photo, best first (one per image id, sorted by inliers).

    ``restrict``: search only these reference image ids. ``extra_candidates``: image ids (e.g. from
    the global-embedding shortlist) that are verified even if they did not win enough votes; their
    matches come from a search restricted to them, so a crowded vote cannot hide them. ``search``: the
    ``(D, owners)`` k-NN result of this photo's descriptors with these settings, if already done.
    """
    cfg = cfg or LocalConfig()
    if len(query_feats) == 0 or dindex.ntotal == 0:
        return []
    D, owners = search if search is not None else \
        dindex.search(query_feats.desc, k=max(2, cfg.neighbours), restrict=restrict)
    groups = group_matches(ratio_matches(D, owners, cfg.ratio), top=cfg.shortlist)
    extra_ids = {int(i) for i in extra_candidates} - {k[0] for k in _top(groups, cfg)}
    if restrict is not None:
        extra_ids &= {int(i) for i in restrict}
    extra_ids &= set(dindex.image_ids())
    extra = group_matches(dindex.match(query_feats, cfg.ratio, cfg.neighbours, extra_ids)) if extra_ids else {}
    return _verify_groups(query_feats, dindex, groups, cfg, extra, search=(D, owners))


def _top(groups: dict, cfg: LocalConfig) -> list[tuple[int, int]]:
    return [k for k, _ in sorted(groups.items(), key=lambda kv: -len(kv[1]))[: cfg.shortlist]]


def _inside_convex(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    d = np.roll(poly, -1, axis=0) - poly
    rel = pts[:, None, :] - poly[None, :, :]
    cross = d[None, :, 0] * rel[..., 1] - d[None, :, 1] * rel[..., 0]
    return np.all(cross >= 0, axis=1) | np.all(cross <= 0, axis=1)


def find_all(query_feats: Features, dindex: DescriptorIndex, cfg: LocalConfig | None = None,
             max_logos: int | None = None, restrict: Iterable[int] | None = None,
             search: tuple[np.ndarray, np.ndarray] | None = None) -> list[Verification]:
    """Every verified logo in the photo, each with its outline, strongest first.

    After each find, its inlier keypoints and every keypoint inside its outline are taken out and the
    remaining matches are voted and verified again (the descriptor search runs once). A photo read in
    tiles (``Features.kp_scale``) is also voted and verified per tile window (:func:`_verify_windows`).
    """
    cfg = cfg or LocalConfig()
    max_logos = cfg.max_logos if max_logos is None else max_logos
    if len(query_feats) == 0 or dindex.ntotal == 0:
        return []
    D, owners = search if search is not None else \
        dindex.search(query_feats.desc, k=max(2, cfg.neighbours), restrict=restrict)
    matches = ratio_matches(D, owners, cfg.ratio)
    windows = _window_masks(query_feats, cfg)
    cache: dict = {}
    active = np.ones(len(query_feats), bool)
    found: list[Verification] = []
    while len(found) < max_logos:
        live = matches[active[matches[:, 0]]]
        results = _verify_groups(query_feats, dindex, group_matches(live, top=cfg.shortlist), cfg, search=(D, owners), active=active)
        results += _verify_windows(query_feats, dindex, live, windows, cfg, (D, owners), active, cache)
        if not results:
            break
        best = min(results, key=lambda v: (-v.score, -v.inliers, v.image_id))
        found.append(best)
        active[best.inlier_query_idx] = False
        active &= ~_inside_convex(query_feats.xy.astype(np.float64), best.polygon)
    return found


def _window_masks(query_feats: Features, cfg: LocalConfig) -> np.ndarray:
    """(n_windows, n_keypoints) bool: which keypoints (of any level) lie in each tile window of the finer levels."""
    from logoid.engine.local import tile_windows

    wins = tile_windows(query_feats, cfg) if cfg.tile_shortlist > 0 else []
    if not wins:
        return np.zeros((0, len(query_feats)), bool)
    b = np.asarray(wins, np.float64)[:, None, :]
    x, y = query_feats.xy[None, :, 0], query_feats.xy[None, :, 1]
    return (x >= b[..., 0]) & (x < b[..., 2]) & (y >= b[..., 1]) & (y < b[..., 3])


def _verify_windows(query: Features, dindex: DescriptorIndex, live: np.ndarray, windows: np.ndarray,
                    cfg: LocalConfig, search: tuple, active: np.ndarray, cache: dict) -> list[Verification]:
    """Candidates most voted inside each tile window, verified on that window's matches only.

    Voting over the whole photo lets chance votes from every other region outnumber a logo that fills one
    window, and its tentative matches from elsewhere drag down its inlier ratio. ``cache`` keeps each
    (candidate, window) verification until keypoints of that window are taken out.
    """
    out: list[Verification] = []
    for w, inside in enumerate(windows):
        sel = inside[live[:, 0]]
        if int(sel.sum()) < cfg.min_votes:
            continue
        keys, votes = np.unique(live[sel][:, 1:3], axis=0, return_counts=True)
        n_active = int(np.count_nonzero(active & inside))
        for j in np.argsort(-votes, kind="stable")[: cfg.tile_shortlist]:
            if votes[j] < cfg.min_votes:
                break
            key = (int(keys[j, 0]), int(keys[j, 1]))
            hit = cache.get((key, w))
            if hit is None or hit[0] != n_active:
                if cfg.candidate_ratio > 0:
                    m = soft_matches(search[0], search[1], key, cfg.candidate_ratio, active & inside)
                else:
                    rows = live[sel & (live[:, 1] == key[0]) & (live[:, 2] == key[1])]
                    m = rows[:, [0, 3]]
                v = verify(query, dindex.ref_xy(*key), m, cfg, ref_size=dindex.ref_size(*key), image_id=key[0],
                           variant=key[1])
                hit = cache[(key, w)] = (n_active, v)
            if hit[1] is not None:
                out.append(hit[1])
    return out


__all__ = ["Verification", "verify", "verify_search", "soft_matches", "match_local", "find_all"]
