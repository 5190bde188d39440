"""Simulated prints: a band logo printed on the shirt of a person in a real photo (threadless-dev photos).

Every print is made on the fly and deterministic from (seed, logo id); nothing is written into the repository.
The recipe, per logo:
  - background: one of the threadless-dev person photos (seeded pick), whose shirt already carries a printed
    design; where that design is (found once per photo by SIFT + RANSAC homography of the design onto the photo,
    cached in bench/work/print_placements.json) gives the torso and its perspective; only the photos where
    it was found are used (265 of 464);
  - the old print is inpainted away under the new one, the photo is enlarged to 1024 px on its long side
    (the 380×272 originals are thumbnails; a phone photo of a shirt has far more pixels on the print) and the
    logo is warped onto the chest region (mild random perspective jitter on top of the shirt's own);
  - polarity as merch is printed: the garment's luminance under the print decides light ink (the logo as it is,
    light on black) on a dark garment or dark ink (the logo inverted, darkened) on a light garment;
  - ink follows the fabric's shading (folds and lighting of the photo), then blur, brightness/contrast, noise and
    JPEG compression.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bench._common import WORK, read_manifest

RESULTS = WORK
OUT_LONG_SIDE = 1024


@dataclass
class Placement:
    """Where a photo's shirt print is: a quad (TL, TR, BR, BL) in the photo's pixels, and how it was found."""

    quad: list[list[float]]
    how: str  # "design" (homography of the known print) or "centre" (the photo's centre)


def _sift_quad(design: np.ndarray, photo: np.ndarray) -> np.ndarray | None:
    sift = cv2.SIFT_create()
    kd, dd = sift.detectAndCompute(cv2.cvtColor(design, cv2.COLOR_RGB2GRAY), None)
    kp, dp = sift.detectAndCompute(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), None)
    if dd is None or dp is None or len(kd) < 8 or len(kp) < 8:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dd, dp, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < 0.8 * n.distance]
    if len(good) < 10:
        return None
    src = np.float32([kd[m.queryIdx].pt for m in good])
    dst = np.float32([kp[m.trainIdx].pt for m in good])
    H, mask = cv2.findHomography(src, dst, cv2.RANSAC, 5.0)
    if H is None or int(mask.sum()) < 10:
        return None
    h, w = design.shape[:2]
    quad = cv2.perspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2), H).reshape(4, 2)
    ph, pw = photo.shape[:2]
    area = cv2.contourArea(quad)
    if not cv2.isContourConvex(quad.reshape(-1, 1, 2)) or not 0.02 * ph * pw < area < 1.5 * ph * pw:
        return None
    # Sides must not shrink or stretch wildly relative to each other (a degenerate homography).
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    if sides.min() < 0.3 * sides.max():
        return None
    return quad


def find_placements(threadless: Path, cache: Path = RESULTS / "print_placements.json") -> dict[str, Placement]:
    """Torso quad of every threadless-dev photo (cached)."""
    if cache.exists():
        return {k: Placement(**v) for k, v in json.loads(cache.read_text()).items()}
    rows = read_manifest(threadless)
    out: dict[str, Placement] = {}
    for r in rows:
        photo = np.asarray(Image.open(threadless / r["photo"]).convert("RGB"))
        design = np.asarray(Image.open(threadless / r["design"]).convert("RGB"))
        q, how = _sift_quad(design, photo), "design"
        if q is None:
            ph, pw = photo.shape[:2]
            q, how = np.float32([[0.33 * pw, 0.35 * ph], [0.67 * pw, 0.35 * ph], [0.67 * pw, 0.8 * ph],
                                 [0.33 * pw, 0.8 * ph]]), "centre"
        out[r["id"]] = Placement(np.asarray(q, dtype=np.float64).round(2).tolist(), how)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({k: vars(v) for k, v in out.items()}))
    return out


def _logo_quad(torso: np.ndarray, aspect: float, rng: np.random.Generator) -> np.ndarray:
    """The logo's quad inside the torso quad: chest area, logo aspect kept, through the torso's perspective."""
    w_t, h_t = 1000.0, 1000.0 * max(0.4, min(2.5, _quad_aspect_hw(torso)))
    H = cv2.getPerspectiveTransform(np.float32([[0, 0], [w_t, 0], [w_t, h_t], [0, h_t]]), torso.astype(np.float32))
    width = w_t * rng.uniform(0.7, 0.95)
    height = width / aspect
    if height > 0.6 * h_t:
        height = 0.6 * h_t
        width = height * aspect
    cx = w_t / 2 + rng.uniform(-0.04, 0.04) * w_t
    top = h_t * rng.uniform(0.08, 0.2)
    rect = np.float32([[cx - width / 2, top], [cx + width / 2, top], [cx + width / 2, top + height],
                       [cx - width / 2, top + height]])
    jitter = rng.uniform(-0.03, 0.03, (4, 2)).astype(np.float32) * np.float32([width, height])
    return cv2.perspectiveTransform((rect + jitter).reshape(-1, 1, 2), H).reshape(4, 2)


def _quad_aspect_hw(q: np.ndarray) -> float:
    w = (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2
    h = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
    return float(h / max(w, 1e-6))


def _fit_in_image(quad: np.ndarray, pw: int, ph: int) -> np.ndarray:
    """Shrink the logo quad about its centre so it fits in the photo and is at most 60% of its width."""
    c = quad.mean(0)
    span = quad.max(0) - quad.min(0)
    s = min(1.0, 0.6 * pw / max(span[0], 1e-6), 0.6 * ph / max(span[1], 1e-6))
    q = c + (quad - c) * s
    lo, hi = q.min(0), q.max(0)
    shift = np.maximum(0, -lo) - np.maximum(0, hi - np.float32([pw - 1, ph - 1]))
    return (q + shift).astype(np.float32)


def _content_box(logo: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of the logo's ink (the canvas is mostly black) so the print is sized by the lettering."""
    ink = logo.max(axis=2) > 40
    ys, xs = np.nonzero(ink)
    if len(xs) < 20:
        return 0, 0, logo.shape[1], logo.shape[0]
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def make_print(logo_img: Image.Image, photo_img: Image.Image, placement: Placement, seed: int, logo_id: str
               ) -> tuple[Image.Image, dict]:
    """One simulated print of ``logo_img`` on ``photo_img`` (deterministic in seed and logo id) and its facts."""
    rng = np.random.default_rng([seed, zlib.crc32(logo_id.encode())])
    logo = np.asarray(logo_img.convert("RGB"))
    x0, y0, x1, y1 = _content_box(logo)
    pad = int(0.04 * max(x1 - x0, y1 - y0))
    x0, y0 = max(0, x0 - pad), max(0, y0 - pad)
    x1, y1 = min(logo.shape[1], x1 + pad), min(logo.shape[0], y1 + pad)
    logo = logo[y0:y1, x0:x1]
    photo = np.asarray(photo_img.convert("RGB"))
    ph, pw = photo.shape[:2]
    torso = np.float32(placement.quad)
    quad = _fit_in_image(_logo_quad(torso, logo.shape[1] / logo.shape[0], rng), pw, ph)

    # Remove the shirt's own print under the new one (a shirt carries one print), then enlarge.
    mask = np.zeros((ph, pw), np.uint8)
    c = quad.mean(0)
    cv2.fillConvexPoly(mask, (c + (quad - c) * 1.12).astype(np.int32), 255)
    base = cv2.inpaint(photo, mask, 5, cv2.INPAINT_TELEA)
    scale = OUT_LONG_SIDE / max(ph, pw)
    W, H_ = round(pw * scale), round(ph * scale)
    bg = cv2.resize(base, (W, H_), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    quad_up = quad * scale

    # Polarity from the garment under the print.
    lum = cv2.cvtColor(base, cv2.COLOR_RGB2GRAY).astype(np.float32)
    garment = float(np.median(lum[mask > 0])) if (mask > 0).any() else 128.0
    light_ink = garment < 120
    alpha = logo.max(axis=2).astype(np.float32) / 255.0
    colour = logo.astype(np.float32) / np.maximum(alpha[..., None], 1e-3)
    colour = colour.clip(0, 255)
    ink = colour if light_ink else colour * rng.uniform(0.05, 0.25)
    if not light_ink and garment < 170:  # mid-tone garment: a black ink still needs to read
        ink = ink * 0.5
    # Ink opacity below 1 lets the fabric show through (screen print on cotton).
    opacity = rng.uniform(0.8, 0.97)
    h_l, w_l = logo.shape[:2]
    Hm = cv2.getPerspectiveTransform(np.float32([[0, 0], [w_l, 0], [w_l, h_l], [0, h_l]]), quad_up)
    ink_w = cv2.warpPerspective(ink, Hm, (W, H_), flags=cv2.INTER_LINEAR)
    a_w = cv2.warpPerspective(alpha, Hm, (W, H_), flags=cv2.INTER_LINEAR)[..., None] * opacity
    # Shading of the fabric (folds, light), relative to its median under the print.
    lum_up = cv2.GaussianBlur(cv2.cvtColor(bg.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 6)
    under = a_w[..., 0] > 0.05
    ref = float(np.median(lum_up[under])) if under.any() else 128.0
    shade = (lum_up / max(ref, 1.0)).clip(0.55, 1.3)[..., None]
    out = bg * (1 - a_w) + ink_w * shade * a_w

    # Camera: blur, exposure, noise, JPEG.
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.4))
    out = out * rng.uniform(0.8, 1.15) + rng.uniform(-15, 15)
    out = out + rng.normal(0, rng.uniform(2, 6), out.shape).astype(np.float32)
    out_img = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    q = int(rng.integers(55, 91))
    buf = io.BytesIO()
    out_img.save(buf, "JPEG", quality=q)
    buf.seek(0)
    facts = {"light_ink": bool(light_ink), "garment_lum": round(garment, 1), "jpeg_q": q,
             "placement": placement.how, "logo_quad": quad_up.round(1).tolist()}
    return Image.open(buf).convert("RGB"), facts


class PrintMaker:
    """Prints of band-logos on threadless-dev photos, one per logo, made on demand."""

    def __init__(self, band_logos: Path, threadless: Path, seed: int = 0):
        self.band_logos, self.threadless, self.seed = band_logos, threadless, seed
        cv2.setNumThreads(1)  # the bench machine is shared; prints are made one at a time anyway
        self.placements = find_placements(threadless)
        # Only photos whose shirt print was located: the centre fallback can land on a wall in a group photo.
        self.photo_ids = sorted(k for k, v in self.placements.items() if v.how == "design")

    def photo_for(self, logo_id: str) -> str:
        rng = np.random.default_rng([self.seed, 7, zlib.crc32(logo_id.encode())])
        return self.photo_ids[int(rng.integers(len(self.photo_ids)))]

    def make(self, logo_id: str, logo_path: str) -> tuple[Image.Image, dict]:
        from logoid.core.imageio import load_image

        pid = self.photo_for(logo_id)
        photo = Image.open(self.threadless / "photos" / f"{pid}.jpg")
        img, facts = make_print(load_image(self.band_logos / logo_path), photo, self.placements[pid], self.seed,
                                logo_id)
        facts["photo"] = pid
        return img, facts
