"""Matching a photo's local features to the references: descriptor votes, a shortlist, every logo in the photo.

Each photo keypoint's k nearest reference descriptors vote for their (image, variant) when the Lowe ratio test
passes (``index.descriptors.ratio_matches``); the most-voted candidates get soft matches (every near tie of
theirs) and go to geometric verification (``logoid.identify.verify``). :class:`LocalConfig` gathers the local
channel's settings of every stage, as the index sidecar stores them under ``"local"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from logoid.core.errors import ConfigError
from logoid.core.pool import thread_map
from logoid.engine.local import ExtractConfig, Features, tile_windows
from logoid.engine.local.config import from_stored
from logoid.index.descriptors import DescriptorIndex, group_matches, ratio_matches

from .verify import Verification, VerifyConfig, verify

# Values that reproduce what logoid did before a field existed (applied by from_dict to older sidecars).
_LEGACY = {"tile_shortlist": 0, "tile_min_votes": 4, "extras_until_inliers": 0}


@dataclass
class MatchConfig:
    """How descriptor votes pick the candidates that are verified (the local channel's middle stage)."""

    ratio: float = 0.95  # Lowe ratio: best distance / best distance to ANOTHER reference image
    neighbours: int = 8  # k of the k-NN search; the second-best other-image neighbour is sought among these
    # Once a candidate is picked by votes, its tentative matches are every query keypoint whose nearest keypoint
    # of that candidate (among the k neighbours) is within d1 / candidate_ratio; 0 = ratio-test matches only.
    candidate_ratio: float = 0.7  # chosen on threadless-dev calib (0.9 / 0.8 / 0.7 / 0.6 tried)
    shortlist: int = 50  # most-voted (image, variant) candidates sent to geometric verification
    # An (image, variant) with fewer ratio-test votes is not verified. Votes only pick candidates: a picked one is
    # fitted on all its soft matches (often 10+ for 3 votes). 3, was 4: votes thin out as the catalog grows (a
    # print's second-nearest is more often another logo's), and at 50k references a third of the lost photos had
    # their design verifiable but at 3 votes. Test top-1 0.915 -> 0.943 at 50k, calib 0.933 -> 0.941; no size (276,
    # 1k, 10k) a photo worse on either split (BENCHMARKS.md#local-roster-votes).
    min_votes: int = 3
    # find_all on a tiled photo also votes inside each tile window of the finer levels: a logo filling one window
    # of a busy photo wins few votes against chance votes from the whole photo, and its matches elsewhere dilute
    # its inlier ratio. This many most-voted candidates per window are verified on the window's matches only.
    tile_shortlist: int = 3
    tile_min_votes: int = 4  # votes a candidate needs inside one tile window (min_votes's value before 3, kept)
    # match_local's extra candidates (the global shortlist's images the votes did not verify) are searched and
    # verified only while the votes' best verified reference has fewer inliers than this; 0 = always. Their exact
    # search (every photo descriptor, normal and flipped, against ~20k rows) is the costliest step after the
    # whole-catalog one. On threadless-dev (464 photos, the 276 designs alone and among 50k references) the images
    # this leaves unverified had at most 6 and 7 inliers, the fused top-1, AUROC and open-set accuracy stayed the
    # same, and the median search + verification went 0.51 -> 0.32 s and 0.67 -> 0.48 s
    # (BENCHMARKS.md#local-roster-fused).
    extras_until_inliers: int = 20

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"ratio must be in (0, 1], got {self.ratio}")
        if not 0.0 <= self.candidate_ratio <= 1.0:
            raise ConfigError(f"candidate_ratio must be in [0, 1], got {self.candidate_ratio}")
        if self.neighbours < 2:
            raise ConfigError(f"neighbours must be at least 2, got {self.neighbours}")
        if self.tile_shortlist < 0:
            raise ConfigError(f"tile_shortlist must be >= 0, got {self.tile_shortlist}")
        if self.extras_until_inliers < 0:
            raise ConfigError(f"extras_until_inliers must be >= 0 (0 = always), got {self.extras_until_inliers}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> MatchConfig:
        """From a stored dict (its own or the flat one of every local setting that older sidecars hold); a sidecar
        written before a field existed keeps the behaviour it was built with."""
        return from_stored(cls, d, _LEGACY)


_STAGES = ("extract", "match", "verify")


@dataclass
class LocalConfig:
    """Settings of the local-features channel, one part per stage (the index sidecar's ``"local"``).

    The extraction part is fixed by the built index (its reference features); matching and verification may
    change between queries. How many logos ``find_all`` reports is ``IdentifyConfig.max_logos``.
    """

    extract: ExtractConfig = field(default_factory=ExtractConfig)  # keypoints of references and photos
    match: MatchConfig = field(default_factory=MatchConfig)  # descriptor votes and the candidates' shortlist
    verify: VerifyConfig = field(default_factory=VerifyConfig)  # RANSAC fits, plausibility and scores

    def to_dict(self) -> dict:
        return {"extract": self.extract.to_dict(), "match": self.match.to_dict(), "verify": self.verify.to_dict()}

    @classmethod
    def from_dict(cls, d: dict | None) -> LocalConfig:
        """From ``{"extract": …, "match": …, "verify": …}``, or from the flat dict of every field that sidecars held
        before the stages were split (each stage takes its own fields; its ``max_logos`` is left out: the
        Identifier always used ``IdentifyConfig.max_logos``)."""
        d = d or {}
        if not any(s in d for s in _STAGES):
            return cls(ExtractConfig.from_dict(d), MatchConfig.from_dict(d), VerifyConfig.from_dict(d))
        return cls(ExtractConfig.from_dict(d.get("extract")), MatchConfig.from_dict(d.get("match")),
                   VerifyConfig.from_dict(d.get("verify")))

    @classmethod
    def of(cls, **changes) -> LocalConfig:
        """The defaults with some fields changed, each by its own name: ``LocalConfig.of(ratio=0.8, tile_levels=2)``."""
        return cls().override(**changes)

    def override(self, **changes) -> LocalConfig:
        """A copy with some fields changed, each by its own name (``ratio=0.8``, ``tile_levels=2``): the stage that
        holds the field is found."""
        parts = {s: getattr(self, s).to_dict() for s in _STAGES}
        for k, v in changes.items():
            stage = self.stage_of(k)
            parts[stage][k] = v
        return LocalConfig(ExtractConfig(**parts["extract"]), MatchConfig(**parts["match"]),
                           VerifyConfig(**parts["verify"]))

    @staticmethod
    def stage_of(name: str) -> str:
        """The stage (``extract``, ``match`` or ``verify``) that holds the field ``name``."""
        for s, kind in zip(_STAGES, (ExtractConfig, MatchConfig, VerifyConfig), strict=True):
            if name in kind.__dataclass_fields__:
                return s
        known = sorted(f.name for kind in (ExtractConfig, MatchConfig, VerifyConfig) for f in fields(kind))
        raise ConfigError(f"unknown local-feature setting {name!r}", f"choose from {', '.join(known)}")

    def flat(self) -> dict:
        """Every field by its own name, the stages merged (names are unique across stages)."""
        return {k: v for s in _STAGES for k, v in getattr(self, s).to_dict().items()}


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
    mc = cfg.match
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    cands = [(k, m) for k, m in ranked[: mc.shortlist] if len(m) >= mc.min_votes]
    if search is not None and mc.candidate_ratio > 0:
        keys = [k for k, _ in cands]
        cands = list(zip(keys, soft_matches_many(search[0], search[1], keys, mc.candidate_ratio, active), strict=True))
    seen = {k for k, _ in cands}
    cands += [(k, m) for k, m in (extra or {}).items() if k not in seen and len(m) >= mc.min_votes]

    # candidates are verified side by side on the shared pool (the RANSAC fits release the GIL), in order
    def one(cand: tuple[tuple[int, int], np.ndarray]) -> Verification | None:
        return _verify_one(query, dindex, cand[0], cand[1], cfg)

    best: dict[int, Verification] = {}
    for ((image_id, _), _), v in zip(cands, thread_map(one, cands), strict=True):
        if v is not None and (image_id not in best or v.score > best[image_id].score):
            best[image_id] = v
    return sorted(best.values(), key=lambda v: (-v.score, -v.inliers, v.image_id))


def verify_search(query_feats: Features, dindex: DescriptorIndex, D: np.ndarray, owners: np.ndarray,
                  cfg: LocalConfig | None = None, extra: dict | None = None) -> list[Verification]:
    """Verified references from a k-NN result ``(D, owners)`` of ``dindex.search(query_feats.desc, k)``."""
    cfg = cfg or LocalConfig()
    groups = group_matches(ratio_matches(D, owners, cfg.match.ratio), top=cfg.match.shortlist)
    return _verify_groups(query_feats, dindex, groups, cfg, extra, search=(D, owners))


def match_local(query_feats: Features, dindex: DescriptorIndex, cfg: LocalConfig | None = None,
                restrict: Iterable[int] | None = None, extra_candidates: Iterable[int] = (),
                search: tuple[np.ndarray, np.ndarray] | None = None) -> list[Verification]:
    """Verified references in the photo, best first (one per image id, sorted by inliers).

    ``restrict``: search only these reference image ids. ``extra_candidates``: image ids (e.g. from
    the global-embedding shortlist) that are verified even if the votes did not verify them (too few votes, or too
    few soft matches among a crowd); their matches come from a search restricted to them, so a crowded vote cannot
    hide them; not once the votes verified a reference with ``MatchConfig.extras_until_inliers`` inliers.
    ``search``: the ``(D, owners)`` k-NN result of this photo's descriptors with these settings, if already done.
    """
    cfg = cfg or LocalConfig()
    if len(query_feats) == 0 or dindex.ntotal == 0:
        return []
    D, owners = search if search is not None else \
        dindex.search(query_feats.desc, k=max(2, cfg.match.neighbours), restrict=restrict)
    groups = group_matches(ratio_matches(D, owners, cfg.match.ratio), top=cfg.match.shortlist)
    found = _verify_groups(query_feats, dindex, groups, cfg, search=(D, owners))
    until = cfg.match.extras_until_inliers
    if until and any(v.inliers >= until for v in found):
        return found
    extra_ids = {int(i) for i in extra_candidates} - {v.image_id for v in found}
    if restrict is not None:
        extra_ids &= {int(i) for i in restrict}
    extra_ids = {i for i in extra_ids if dindex.contains(i)}  # not a set of every id per photo (10-20 ms at 180k)
    if not extra_ids:
        return found
    extra = group_matches(dindex.match(query_feats, cfg.match.ratio, cfg.match.neighbours, extra_ids))
    return sorted(found + _verify_groups(query_feats, dindex, {}, cfg, extra),
                  key=lambda v: (-v.score, -v.inliers, v.image_id))


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
    ``max_logos``: stop after this many (None: when no candidate verifies; the Identifier passes
    ``IdentifyConfig.max_logos``).
    """
    cfg = cfg or LocalConfig()
    if len(query_feats) == 0 or dindex.ntotal == 0:
        return []
    D, owners = search if search is not None else \
        dindex.search(query_feats.desc, k=max(2, cfg.match.neighbours), restrict=restrict)
    matches = ratio_matches(D, owners, cfg.match.ratio)
    windows = _window_masks(query_feats, cfg)
    cache: dict = {}
    active = np.ones(len(query_feats), bool)
    found: list[Verification] = []
    while max_logos is None or len(found) < max_logos:
        live = matches[active[matches[:, 0]]]
        results = _verify_groups(query_feats, dindex, group_matches(live, top=cfg.match.shortlist), cfg,
                                 search=(D, owners), active=active)
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
    wins = tile_windows(query_feats, cfg.extract) if cfg.match.tile_shortlist > 0 else []
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
    mc = cfg.match
    out: list[Verification] = []
    for w, inside in enumerate(windows):
        sel = inside[live[:, 0]]
        if int(sel.sum()) < mc.tile_min_votes:
            continue
        keys, votes = np.unique(live[sel][:, 1:3], axis=0, return_counts=True)
        n_active = int(np.count_nonzero(active & inside))
        for j in np.argsort(-votes, kind="stable")[: mc.tile_shortlist]:
            if votes[j] < mc.tile_min_votes:
                break
            key = (int(keys[j, 0]), int(keys[j, 1]))
            hit = cache.get((key, w))
            if hit is None or hit[0] != n_active:
                if mc.candidate_ratio > 0:
                    m = soft_matches(search[0], search[1], key, mc.candidate_ratio, active & inside)
                else:
                    rows = live[sel & (live[:, 1] == key[0]) & (live[:, 2] == key[1])]
                    m = rows[:, [0, 3]]
                hit = cache[(key, w)] = (n_active, _verify_one(query, dindex, key, m, cfg))
            if hit[1] is not None:
                out.append(hit[1])
    return out


def _verify_one(query: Features, dindex: DescriptorIndex, key: tuple[int, int], matches: np.ndarray,
                cfg: LocalConfig) -> Verification | None:
    """:func:`verify` of one candidate (image, variant) of the index."""
    size = dindex.ref_size(*key)
    return verify(query, dindex.ref_xy(*key), matches, cfg.verify, ref_size=size, ref_scale=cfg.extract.ref_scale(size),
                  image_id=key[0], variant=key[1])


__all__ = ["LocalConfig", "MatchConfig", "find_all", "match_local", "soft_matches", "soft_matches_many",
           "verify_search"]
