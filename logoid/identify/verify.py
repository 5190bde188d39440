"""Geometric verification of local-feature matches: a RANSAC homography per candidate reference.

Each candidate that the descriptor votes picked (``logoid.identify.match``) is verified by fitting a
homography (reference px → photo px) to its matches. Only plausible homographies count: not
mirrored, not collapsed, not wildly sheared, and the reference outline lands in the photo as a
convex quad of sane size. The score of a candidate is its number of distinct inliers, weighed by
their share of its matches.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from logoid.core.errors import ConfigError
from logoid.engine.local import Features
from logoid.engine.local.config import from_stored


@dataclass
class VerifyConfig:
    """How a candidate's matches are fitted, judged and scored (the local channel's last stage)."""

    # Verified candidates are ranked by inliers × inlier_ratio^w: 8 inliers among 12 tentative matches are
    # stronger evidence than 8 among 400 (chance finds a few inliers in any large set). 0 = raw inliers.
    inlier_ratio_weight: float = 0.5
    min_inliers: int = 5  # fewer distinct inliers is no match (the calibrated threshold decides the rest)
    similarity_fallback: bool = True  # if the homography is implausible, try a 4-dof similarity fit
    ransac_threshold: float = 6.0  # max reprojection error, in px of the query at its working size
    # RANSAC iteration cap (both fits). 1000, was 2000: the same calib accuracy on the 276 designs and the same
    # accuracy on every metric at 10k references, verification -25 % (BENCHMARKS.md#local-e2e, run of 2026-12-05 07:41).
    ransac_max_iters: int = 1000
    ransac_confidence: float = 0.995  # RANSAC confidence
    ransac_method: str = "magsac"  # "magsac" (cv2.USAC_MAGSAC) or "ransac" (cv2.RANSAC)
    min_scale: float = 0.02  # smallest allowed linear scale of the reference in the query (working px)
    max_scale: float = 20.0  # largest allowed linear scale
    max_anisotropy: float = 8.0  # largest ratio of the two singular values of the affine part (extreme shear)
    min_area_frac: float = 0.0005  # projected reference area / photo area must be at least this
    max_area_frac: float = 4.0  # ... and at most this (a logo may be cropped by the photo edge)

    def __post_init__(self) -> None:
        if self.ransac_method not in ("magsac", "ransac"):
            raise ConfigError(f"ransac_method must be 'magsac' or 'ransac', got {self.ransac_method!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> VerifyConfig:
        """From a stored dict (its own or the flat one of every local setting that older sidecars hold)."""
        return from_stored(cls, d, {})


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
    score: float = 0.0  # ranking score: inliers × inlier_ratio ** VerifyConfig.inlier_ratio_weight
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
               cfg: VerifyConfig, qscale: float | None = None) -> bool:
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


def _fit_homography(src: np.ndarray, dst: np.ndarray, cfg: VerifyConfig) -> tuple[np.ndarray, np.ndarray] | None:
    import cv2

    method = cv2.USAC_MAGSAC if cfg.ransac_method == "magsac" else cv2.RANSAC
    H, mask = cv2.findHomography(src, dst, method, cfg.ransac_threshold, maxIters=cfg.ransac_max_iters,
                                 confidence=cfg.ransac_confidence)
    if H is None or mask is None or abs(H[2, 2]) < 1e-12:
        return None
    return H / H[2, 2], mask.reshape(-1).astype(bool)


def _fit_similarity(src: np.ndarray, dst: np.ndarray, cfg: VerifyConfig) -> tuple[np.ndarray, np.ndarray] | None:
    import cv2

    A, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=cfg.ransac_threshold,
                                          maxIters=cfg.ransac_max_iters, confidence=cfg.ransac_confidence)
    if A is None or mask is None:
        return None
    return np.vstack([A, [0.0, 0.0, 1.0]]), mask.reshape(-1).astype(bool)


def verify(query: Features, ref_xy: np.ndarray, matches: np.ndarray, cfg: VerifyConfig | None = None, *,
           ref_size: tuple[int, int], ref_scale: float, image_id: int = -1, variant: int = 0) -> Verification | None:
    """Fit a homography reference → photo to ``matches`` ((m, 2) query_kp, ref_kp); None if implausible or weak.

    ``ref_scale``: working px per px at which the reference's keypoints were found (``ExtractConfig.ref_scale``).
    """
    cfg = cfg or VerifyConfig()
    matches = np.asarray(matches, np.int64).reshape(-1, 2)
    if len(matches) < max(4, cfg.min_inliers):
        return None
    src = np.asarray(ref_xy, np.float64)[matches[:, 1]]
    # RANSAC runs in the photo's working px, so its threshold means the same on every photo.
    # Tiled photos mix levels: work at the level where this candidate's matches were found.
    qscale = query.level_scale(matches[:, 0])
    dst = np.asarray(query.xy, np.float64)[matches[:, 0]] * qscale
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


__all__ = ["Verification", "VerifyConfig", "verify"]
