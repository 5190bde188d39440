"""Text reading: the band's name printed in the photo, read with RapidOCR (ONNX models shipped in its wheel).

The engine is created on first use, so importing this module is free. When ``rapidocr_onnxruntime`` is missing
or fails to start, :class:`TextReader` degrades: ``available`` is False and :meth:`TextReader.read` returns no
lines (one warning), so the other channels still answer.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np
from PIL import Image

from logoid.core.errors import ConfigError
from logoid.core.imageio import geometry

__all__ = ["OcrConfig", "TextLine", "TextReader"]


@dataclass
class OcrConfig:
    """How :class:`TextReader` prepares images and filters what RapidOCR reads."""

    # The longest side the detector works at: larger photos are shrunk, smaller ones enlarged up to it.
    # 960 keeps a whole photo under ~0.3 s on one CPU core pair; small text is recovered from region crops.
    work_side: int = 960
    # Images (or crops) whose longest side is below this are enlarged to it before reading, because the
    # recogniser's 48-px line height needs a few pixels per stroke.
    min_side: int = 320
    # Lines the recogniser is less sure of than this are dropped.
    min_conf: float = 0.5
    # Detector box score threshold (RapidOCR's default 0.5); lower finds fainter, stylised lettering.
    box_thresh: float = 0.5
    # How far detected boxes are grown before recognition (RapidOCR default 1.6).
    unclip_ratio: float = 1.6
    # Also read the inverted image when the plain one yields fewer than ``invert_below_chars`` letters:
    # band logos are often light on black, the detector was trained mostly on dark-on-light print.
    try_inverted: bool = True
    # See ``try_inverted``: fewer letters/digits than this counts as "little text".
    invert_below_chars: int = 4
    # Run the 0°/180° direction classifier; off by default because merch is nearly always upright
    # and the classifier costs ~20% of the time.
    use_cls: bool = False
    # Region crops are grown by this fraction of their size on each side, so edge letters are not cut.
    region_pad: float = 0.08
    # ONNX Runtime threads per session; -1 lets ONNX Runtime decide.
    threads: int = -1

    def __post_init__(self) -> None:
        if self.work_side < 64 or self.min_side < 16 or self.min_side > self.work_side:
            raise ConfigError(
                f"OcrConfig: need 16 <= min_side <= work_side and work_side >= 64 "
                f"(got min_side={self.min_side}, work_side={self.work_side})"
            )
        if not 0.0 <= self.min_conf <= 1.0:
            raise ConfigError(f"OcrConfig.min_conf must be in [0, 1] (got {self.min_conf})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def photo_side(self) -> int:
        """The long side a photo must keep for this reader (what it may be decoded down to): the whole photo is
        read at ``work_side``, and a logo's outline re-read as a region still reaches ``work_side`` when it spans
        half the photo's long side."""
        return 2 * self.work_side

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OcrConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"OcrConfig: unknown field(s) {sorted(unknown)}")
        return cls(**d)


@dataclass
class TextLine:
    """One line of text read in the photo."""

    text: str
    # Recogniser confidence in [0, 1].
    conf: float
    # (4, 2) float32 corner points (x, y) in the original image's pixel coordinates.
    box: np.ndarray
    # Whether it was read from the inverted image.
    inverted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "conf": self.conf, "box": self.box.tolist(), "inverted": self.inverted}


def _n_alnum(lines: list[TextLine]) -> int:
    return sum(ch.isalnum() for ln in lines for ch in ln.text)


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of the axis-aligned bounding rectangles of two quads (enough to spot the same line read twice)."""
    ax0, ay0 = a.min(0)
    ax1, ay1 = a.max(0)
    bx0, by0 = b.min(0)
    bx1, by1 = b.max(0)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return float(inter / union) if union > 0 else 0.0


def _dedupe(lines: list[TextLine]) -> list[TextLine]:
    """Drop repeats of the same text at the same place (whole photo + region crop), keeping the surest."""
    out: list[TextLine] = []
    for ln in sorted(lines, key=lambda x: -x.conf):
        key = ln.text.casefold().strip()
        if any(o.text.casefold().strip() == key and _box_iou(o.box, ln.box) > 0.3 for o in out):
            continue
        out.append(ln)
    # Reading order: top to bottom, then left to right (what the name index concatenates).
    out.sort(key=lambda x: (round(float(x.box[:, 1].mean()) / 16), float(x.box[:, 0].min())))
    return out


def _order_quad(pts: np.ndarray) -> np.ndarray:
    """Corners as top-left, top-right, bottom-right, bottom-left."""
    s = pts.sum(1)
    d = np.diff(pts, axis=1).ravel()
    return np.array([pts[s.argmin()], pts[d.argmin()], pts[s.argmax()], pts[d.argmax()]], dtype=np.float32)


class TextReader:
    """Reads text lines from a photo and from regions of it. Thread-unsafe; one per worker."""

    def __init__(self, config: OcrConfig | None = None):
        self.config = config or OcrConfig()
        self._engine: Any = None
        self._failed: str | None = None
        self._warned = False

    @property
    def available(self) -> bool:
        """True when the OCR engine can run (creating it if needed)."""
        return self._get_engine() is not None

    def _get_engine(self):
        if self._engine is not None or self._failed is not None:
            return self._engine
        try:
            from rapidocr_onnxruntime import RapidOCR

            c = self.config
            self._engine = RapidOCR(
                det_limit_type="max",  # we size the image ourselves; stop the detector enlarging it again
                det_limit_side_len=c.work_side,
                det_box_thresh=c.box_thresh,
                det_unclip_ratio=c.unclip_ratio,
                text_score=c.min_conf,
                intra_op_num_threads=c.threads,
                # Global max/min are RapidOCR's own resizes; keep them out of the way of ours.
                max_side_len=max(2000, c.work_side),
            )
        except Exception as e:  # ImportError, onnxruntime session errors, broken model files
            self._failed = f"{type(e).__name__}: {e}"
        return self._engine

    def _warn_unavailable(self) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"text reading disabled: rapidocr_onnxruntime unavailable ({self._failed}); "
                "install the `ocr` extra (pip install 'logoid[ocr]')",
                RuntimeWarning,
                stacklevel=3,
            )

    def read(self, img: Image.Image, regions: list | None = None) -> list[TextLine]:
        """Text lines in ``img`` (whole image, then each region polygon), boxes in the photo's coordinates (a photo
        decoded below full size maps back through ``geometry(img)``).

        ``regions`` are polygons (N×2 points, N >= 3, photo px) from other channels, e.g. a detected logo's outline;
        each is cut out upright at the image's full resolution, so small lettering the whole-photo pass misses is
        read (a photo decoded for this reader keeps at least :meth:`OcrConfig.photo_side` px on its long side).
        """
        engine = self._get_engine()
        if engine is None:
            self._warn_unavailable()
            return []
        geo = geometry(img)
        bgr = cv2.cvtColor(np.asarray(img.convert("RGB")), cv2.COLOR_RGB2BGR)
        lines = self._read_array(bgr)
        for poly in regions or []:
            if geo.reduced:
                poly = geo.to_decoded(np.asarray(poly, np.float32))
            crop, to_orig = self._crop_region(bgr, poly)
            if crop is None or to_orig is None:
                continue
            for ln in self._read_array(crop):
                ln.box = cv2.perspectiveTransform(ln.box.reshape(-1, 1, 2), to_orig).reshape(4, 2)
                lines.append(ln)
        if geo.reduced:
            for ln in lines:
                ln.box = geo.to_original(ln.box)
        return _dedupe(lines)

    def _crop_region(self, bgr: np.ndarray, poly) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Upright crop of the polygon's minimum-area rectangle and the homography back to the image."""
        pts = np.asarray(poly, dtype=np.float32).reshape(-1, 2)
        if len(pts) < 3 or not np.isfinite(pts).all():
            return None, None
        (cx, cy), (w, h), ang = cv2.minAreaRect(pts)
        pad = self.config.region_pad
        w, h = w * (1 + 2 * pad), h * (1 + 2 * pad)
        if w < 4 or h < 4:
            return None, None
        quad = _order_quad(cv2.boxPoints(((cx, cy), (w, h), ang)).astype(np.float32))
        out_w = int(round(np.linalg.norm(quad[1] - quad[0])))
        out_h = int(round(np.linalg.norm(quad[3] - quad[0])))
        dst = np.array([[0, 0], [out_w - 1, 0], [out_w - 1, out_h - 1], [0, out_h - 1]], dtype=np.float32)
        fwd = cv2.getPerspectiveTransform(quad, dst)
        crop = cv2.warpPerspective(bgr, fwd, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return crop, np.linalg.inv(fwd)

    def _read_array(self, bgr: np.ndarray) -> list[TextLine]:
        """Read one BGR array at the working size, plus its inverse when it shows little text."""
        c = self.config
        h, w = bgr.shape[:2]
        long_side = max(h, w)
        scale = 1.0
        if long_side > c.work_side:
            scale = c.work_side / long_side
        elif long_side < c.min_side:
            scale = c.min_side / long_side
        work = bgr if scale == 1.0 else cv2.resize(
            bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
        )
        lines = self._run(work, scale, inverted=False)
        if c.try_inverted and _n_alnum(lines) < c.invert_below_chars:
            inv = self._run(255 - work, scale, inverted=True)
            if _n_alnum(inv) > _n_alnum(lines):
                lines = inv
        return lines

    def _run(self, work: np.ndarray, scale: float, inverted: bool) -> list[TextLine]:
        try:
            result, _ = self._engine(work, use_cls=self.config.use_cls)
        except Exception as e:  # an engine crash on one odd image must not take the photo down
            warnings.warn(f"OCR failed on one image ({type(e).__name__}: {e}); no text read", RuntimeWarning,
                          stacklevel=3)
            return []
        out = []
        for box, text, conf in result or []:
            text = str(text).strip()
            if not text or float(conf) < self.config.min_conf:
                continue
            pts = np.asarray(box, dtype=np.float32).reshape(4, 2) / scale
            out.append(TextLine(text=text, conf=float(conf), box=pts, inverted=inverted))
        return out
