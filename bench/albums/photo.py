"""Protocol-2 album side, a sanity number: a gallery cover "photographed" (perspective warp onto a background,
JPEG) is matched by the local-features channel (RootSIFT + RANSAC homography) against all gallery covers.
Covers not in the gallery (unknown artists) are the negatives."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from logoid.core.imageio import load_image
from logoid.engine.local import extract, extract_reference
from logoid.identify.match import LocalConfig, match_local
from logoid.index.descriptors import DescriptorIndex
from logoid.scoring.stats import auroc


def photograph(cover: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The cover held up in a photo: random perspective within an 800x600 frame, tinted light, JPEG 70."""
    w, h = 800, 600
    bg = np.full((h, w, 3), rng.integers(60, 200, 3), np.uint8)
    bg = cv2.GaussianBlur((bg + rng.normal(0, 12, bg.shape)).clip(0, 255).astype(np.uint8), (0, 0), 3)
    src = np.float32([[0, 0], [cover.width, 0], [cover.width, cover.height], [0, cover.height]])
    side = rng.uniform(300, 420)
    cx, cy = rng.uniform(side / 2 + 40, w - side / 2 - 40), rng.uniform(side / 2 + 40, h - side / 2 - 40)
    base = np.float32([[cx - side / 2, cy - side / 2], [cx + side / 2, cy - side / 2],
                       [cx + side / 2, cy + side / 2], [cx - side / 2, cy + side / 2]])
    dst = (base + rng.uniform(-0.15, 0.15, (4, 2)) * side).astype(np.float32)
    H = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(np.asarray(cover), H, (w, h))
    mask = cv2.warpPerspective(np.full((cover.height, cover.width), 255, np.uint8), H, (w, h)) > 0
    out = np.where(mask[..., None], warped, bg).astype(np.float32)
    out = (out * rng.uniform(0.75, 1.15) + rng.normal(0, 3, out.shape)).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, "JPEG", quality=70)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def run_album_photos(rows, data: Path, n_known: int = 80, n_unknown: int = 80, seed: int = 0) -> dict:
    cfg = LocalConfig()
    gal = [r for r in rows if r["artist_role"] == "gallery"]
    idx = DescriptorIndex.build(((i, extract_reference(load_image(data / r["cover"]), cfg.extract))
                                 for i, r in enumerate(gal)), feature_config=cfg.extract)
    rng = np.random.default_rng(seed)
    known = [gal[i] for i in rng.choice(len(gal), n_known, replace=False)]
    unk_pool = [r for r in rows if r["artist_role"] == "unknown"]
    unknown = [unk_pool[i] for i in rng.choice(len(unk_pool), n_unknown, replace=False)]
    group_of = [r["group"] for r in gal]

    def best(r):
        v = match_local(extract(photograph(load_image(data / r["cover"]), rng), cfg.extract), idx, cfg)
        return (v[0].image_id, v[0].inliers) if v else (-1, 0)

    ok, pos, neg = [], [], []
    for j, r in enumerate(known):
        i, n = best(r)
        ok.append(i >= 0 and group_of[i] == r["group"])
        pos.append(n)
        print(f"photo known {j + 1}/{n_known}", file=sys.stderr, flush=True) if j % 20 == 19 else None
    for r in unknown:
        neg.append(best(r)[1])
    ok_a, pos_a, neg_a = np.asarray(ok), np.asarray(pos), np.asarray(neg)
    res = {"n_gallery": len(gal), "n_known_photos": n_known, "n_unknown_photos": n_unknown,
           "top1": float(ok_a.mean()), "auroc_inliers": auroc(pos_a, neg_a),
           "median_inliers_known": float(np.median(pos_a)), "max_inliers_unknown": int(neg_a.max()),
           "accepted_at_15_inliers": float(np.mean(ok_a & (pos_a >= 15))),
           "false_accept_at_15_inliers": float(np.mean(neg_a >= 15))}
    res["text"] = (f"{n_known} simulated photos of gallery covers (perspective warp, light change, JPEG 70) against "
                   f"all {len(gal)} gallery covers by the local-features channel alone: right album (same near-"
                   f"duplicate group) {res['top1']:.3f}; AUROC of inlier count vs {n_unknown} photos of unknown-"
                   f"artist covers {res['auroc_inliers']:.3f}; median inliers {res['median_inliers_known']:.0f} vs max "
                   f"{res['max_inliers_unknown']} for unknown covers; at >= 15 inliers {res['accepted_at_15_inliers']:.3f}"
                   f" accepted right, {res['false_accept_at_15_inliers']:.3f} of unknown covers falsely accepted.")
    return res
