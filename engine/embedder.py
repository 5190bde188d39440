"""The dual encoder behind every global vector: images and captions → L2-normalised float32 rows.

About the default ``logoid-effl0-minilm``: both towers are pretrained (EfficientNet-Lite0 on ImageNet,
all-MiniLM-L6-v2 on sentence pairs) but the two projections into the shared 512-d space are *untrained*
(deterministic orthogonal matrices). Image→image similarity is meaningful from the start, because an orthogonal
projection roughly keeps the cosine geometry of the trunk's pooled features; text→image similarity is
meaningless until ``logoid finetune`` has trained the projections on (image, caption) pairs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from logoid.core.errors import ConfigError, ImageError, ModelError
from logoid.core.imageio import load_image

from . import towers
from .registry import ModelSpec, build, save_checkpoint, weights_sha256


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _channels_last():
    import torch

    return torch.channels_last


#: What ``precision`` may ask for: "auto" resolves to one of the others (:func:`resolve_precision`).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Suffix of a precision whose image tower runs traced and frozen by TorchScript (``"bf16+frozen"``): the batch norms
#: folded into the convolutions, one graph instead of Python module calls; the raw bf16 pass 1.44x the eager one at
#: batch 8 on an Intel Xeon (BENCHMARKS.md#build-stages). fp32 gives the eager tower's vectors to rounding (4e-7);
#: bf16 (traced in fp32, run under autocast) its own, a mean cosine of 0.9956 to fp32 against eager bf16's 0.9982
#: (README). They have their own cache (:meth:`Embedder.vectors_id`), and an index records which it holds.
FROZEN = "+frozen"


def default_precision(device: str) -> str:
    """What a build of a new index runs in: ``"auto+frozen"`` on a CPU (bf16 where the CPU computes it natively, else
    fp32; the frozen tower either way), ``"auto"`` on a GPU (the frozen tower under CUDA autocast is unmeasured).
    Measured on an Intel Xeon with native bf16: a 180k build 6.4-7.7 h against 15-17 h in eager fp32, and the answers on
    threadless-dev and albums-dev the same within each set's noise (README, building the index)."""
    return "auto" + (FROZEN if device == "cpu" else "")


def split_precision(precision: str) -> tuple[str, bool]:
    """``("bf16", True)`` for ``"bf16+frozen"``: the arithmetic, and whether the tower runs frozen."""
    return (precision[:-len(FROZEN)], True) if precision.endswith(FROZEN) else (precision, False)


#: CPU flags of native bf16 arithmetic (x86 AVX512-BF16 / AMX, Arm's BF16 extension).
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when this CPU computes bf16 natively: there bf16 autocast runs the image tower ~2.5x faster than fp32;
    elsewhere torch emulates it, slower than fp32. Read from ``/proc/cpuinfo`` (False where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):  # x86, Arm
            return bool(_BF16_FLAGS & set(line.partition(":")[2].split()))
    return False


def resolve_precision(precision: str, device: str) -> str:
    """The arithmetic the image tower runs in: "fp32", or autocast in "bf16" or "fp16".

    "auto": bf16 on a CPU that computes it natively (:func:`cpu_native_bf16`), fp32 on other CPUs; on CUDA bf16
    where the GPU supports it, else fp16. Vectors always come out float32 and L2-normalised. A :data:`FROZEN` suffix
    is kept (``"auto+frozen"`` → ``"bf16+frozen"``).
    """
    precision, frozen = split_precision(precision)
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
    return _resolve(precision, device) + (FROZEN if frozen else "")


def _resolve(precision: str, device: str) -> str:
    cuda = device.startswith("cuda")
    if precision == "auto":
        if cuda:
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device == "cpu" and cpu_native_bf16() else "fp32"
    if precision == "fp16" and not cuda:
        raise ConfigError(f"fp16 autocast is for CUDA devices, not {device}", "use --precision bf16 or fp32")
    return precision


def _rgb_at_side(img: Image.Image | np.ndarray, side: int, pp: dict) -> np.ndarray:
    """An RGB (or L) image as a uint8 array with its long side ``side``, resized as ``_lite0.preprocess`` does (PIL);
    an RGB array already at that size as it is."""
    if isinstance(img, np.ndarray):
        if img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and max(img.shape[:2]) == side:
            return img
        img = Image.fromarray(img)
    w, h = img.size
    ratio = max(h / side, w / side)
    if (round(h / ratio), round(w / ratio)) != (h, w):
        resample = Image.Resampling.BILINEAR if pp.get("interpolation") == "bilinear" else Image.Resampling.BICUBIC
        img = img.resize((round(w / ratio), round(h / ratio)), resample)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def _lite0_input(img: Image.Image | np.ndarray, pp: dict, out: np.ndarray | None = None) -> np.ndarray:
    """``_lite0.preprocess(img, pp)`` of an RGB or L image as a height × width × channels float32 array, without
    torch: :func:`input_bytes`, then ``(x / 255 - mean) / std`` looked up per byte value and channel
    (:func:`_byte_table`), so every value is the same float.

    The build's reader thread makes one per variant beside the model: the table and OpenCV's padding take ~0.08 ms of a
    224-px variant where numpy's pad and three float passes took ~0.12 (Intel Xeon, scratch, 2026-12-06)."""
    side = _side(pp)
    x = out if out is not None else np.empty((side, side, 3), np.float32)
    return bytes_to_input(input_bytes(img, pp), pp, x)


def _side(pp: dict) -> int:
    size = pp.get("size", 224)
    return int(size if isinstance(size, int) else size[0])


def input_bytes(img: Image.Image | np.ndarray, pp: dict, out: np.ndarray | None = None) -> np.ndarray:
    """An RGB or L image resized, padded with ``fill_color`` and centre-cropped as ``_lite0.preprocess`` does: the
    side × side × 3 uint8 pixels the model's input is made of (:func:`bytes_to_input`), written into ``out`` when
    given. Torch-free, for processes that augment a build's references."""
    import cv2

    side = _side(pp)
    arr = _rgb_at_side(img, side, pp)
    h, w = arr.shape[:2]
    if side > w or side > h:  # open_clip's center_crop_or_pad: pad to at least the side, then crop the centre
        px, py = max(side - w, 0), max(side - h, 0)
        fill = int(pp.get("fill_color", 0))
        arr = cv2.copyMakeBorder(arr, py // 2, (py + 1) // 2, px // 2, (px + 1) // 2, cv2.BORDER_CONSTANT,
                                 value=(fill, fill, fill))
        h, w = arr.shape[:2]
    top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
    square = arr[top:top + side, left:left + side]
    if out is None:
        return np.ascontiguousarray(square)
    out[...] = square
    return out


def bytes_to_input(pixels: np.ndarray, pp: dict, out: np.ndarray) -> np.ndarray:
    """:func:`input_bytes`' pixels as the model's float32 input, into ``out`` (side × side × 3)."""
    import cv2

    table = _byte_table(tuple(pp["mean"]), tuple(pp["std"]))
    if not (out.flags.c_contiguous and out.dtype == np.float32):  # OpenCV writes in place only into these
        out[...] = cv2.LUT(np.ascontiguousarray(pixels), table)
        return out
    got = cv2.LUT(np.ascontiguousarray(pixels), table, dst=out)
    if not np.may_share_memory(got, out):
        out[...] = got
    return out


@functools.lru_cache(maxsize=4)
def _byte_table(mean: tuple, std: tuple) -> np.ndarray:
    """``(256, 1, 3)`` float32: ``(v / 255 - mean[c]) / std[c]`` of every byte value ``v`` and channel ``c``, by the
    float32 operations :func:`_lite0.preprocess` applies to each pixel, in its order (each correctly rounded, so a
    value looked up here is the value computed there)."""
    v = np.repeat(np.arange(256, dtype=np.uint8), 3).reshape(256, 1, 3)
    table = np.divide(v, np.float32(255), dtype=np.float32)
    table -= np.asarray(mean, np.float32)
    table /= np.asarray(std, np.float32)
    table.flags.writeable = False
    return table


def _autocast(precision: str, device: str):
    """The autocast context of a resolved precision (none for fp32)."""
    precision = split_precision(precision)[0]
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


class _Loaded(NamedTuple):
    """What :meth:`Embedder._ensure_loaded` sets up."""

    model: Any  # open_clip model (open_clip is untyped)
    tokenizer: Callable[..., Any]
    transform: Callable[[Image.Image], Any]
    preprocess_cfg: dict


class Embedder:
    """One dual encoder. Construction is cheap; weights load on first use (``model``, ``embed_*``, ``info``).

    Images need the image tower only: ``embed_images`` and friends build just that one where
    :func:`towers.build_image_tower` can (same weights, same vectors as the whole model's), and ``info`` takes the
    whole model's weights hash from an index that recorded it for these sources (:func:`towers.known_weights`).
    ``model``, ``tokenizer`` and ``embed_texts`` build the whole model, whose image tower then serves images.
    """

    def __init__(self, spec: ModelSpec, device: str | None = None):
        self.spec = spec
        self.name = spec.name
        self._device = device
        self._lock = threading.RLock()
        self._frozen: dict[tuple, Any] = {}  # (precision, input shape) -> the traced and frozen image tower
        self._model: Any = None  # open_clip model; set last by _ensure_loaded, so not None means loaded
        self._tokenizer: Callable[..., Any] | None = None
        self._transform: Callable[[Image.Image], Any] | None = None
        self._preprocess_cfg: dict | None = None
        self._sha: str | None = None
        self._visual: Any = None  # the image tower built alone (None once the whole model is loaded)

    def __repr__(self) -> str:
        return f"Embedder({self.name!r}, loaded={self.is_loaded})"

    # ------------------------------------------------------------------ lazy state

    @property
    def is_loaded(self) -> bool:
        """True once the whole model (both towers) is built."""
        return self._model is not None

    @property
    def towers(self) -> frozenset[str]:
        """The towers built so far: ``{"image", "text"}`` with the whole model, ``{"image"}`` after image work alone."""
        if self._model is not None:
            return frozenset({"image", "text"})
        return frozenset({"image"}) if self._visual is not None else frozenset()

    @property
    def device(self) -> str:
        if self._device is None:
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    @property
    def dim(self) -> int:
        """Embedding size; read from the config, so it does not load the model."""
        if self.spec.model_cfg is not None:
            return int(self.spec.model_cfg["embed_dim"])
        return int(self.embed_texts(["x"]).shape[1])  # hf-hub names: no config until loaded

    def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            model, pp, tokenizer = build(self.spec, device=self.device)
            self._prepare_image_tower(model.visual)
            self._transform = towers.image_transform(pp)
            self._preprocess_cfg, self._tokenizer = pp, tokenizer
            if self.spec.expected_sha256:
                sha = weights_sha256(model)
                if sha != self.spec.expected_sha256:
                    raise ModelError(f"checkpoint {self.spec.checkpoint} weights do not match their recorded hash",
                                     "the file is corrupt or was edited; re-run `logoid finetune`")
                self._sha = sha
            self._model = model
            self._visual = None  # the whole model's image tower has the same weights; one copy serves

    def _prepare_image_tower(self, visual) -> None:
        if self.device == "cpu":
            import torch

            # EfficientNet activations underflow into denormal floats, which x86 CPUs handle ~50x slower:
            # measured 1.3 s vs 0.02 s for one 224 px image here. Flushing them to zero changes no result
            # beyond 1e-38.
            torch.set_flush_denormal(True)
        # channels_last about doubles CPU conv throughput (depthwise convs); values and hash are unchanged.
        visual.to(memory_format=_channels_last())

    def _image_tower(self):
        """The image tower: the whole model's when it is loaded, else one built alone (the whole model where
        :func:`towers.build_image_tower` cannot)."""
        if self._model is not None:
            return self._model.visual
        with self._lock:
            if self._model is None and self._visual is None:
                built = towers.build_image_tower(self.spec, self.device)
                if built is None:
                    self._ensure_loaded()
                else:
                    visual, sha = built
                    self._prepare_image_tower(visual)
                    self._sha = self._sha or sha
                    self._visual = visual
            return self._model.visual if self._model is not None else self._visual

    def _image_transform(self):
        if self._transform is None:
            with self._lock:
                if self._transform is None:
                    self._transform = towers.image_transform(self.preprocess_cfg)
        return self._transform

    def _loaded(self) -> _Loaded:
        """Load on first use; the loaded model, tokenizer, image transform and preprocess config."""
        self._ensure_loaded()
        tokenizer, transform, pp = self._tokenizer, self._transform, self._preprocess_cfg
        if tokenizer is None or transform is None or pp is None:  # _ensure_loaded sets all of them
            raise ModelError(f"model {self.name!r} is not fully loaded")
        return _Loaded(self._model, tokenizer, transform, pp)

    @property
    def model(self):
        """The open_clip model (eval mode). Built on first access."""
        self._ensure_loaded()
        return self._model

    @property
    def tokenizer(self):
        self._ensure_loaded()
        return self._tokenizer

    @property
    def preprocess_cfg(self) -> dict:
        if self._preprocess_cfg is None and self.spec.kind != "open_clip" and self.spec.preprocess_cfg is not None:
            return dict(self.spec.preprocess_cfg)  # what build() uses for these kinds; no weights needed
        return dict(self._loaded().preprocess_cfg)

    @property
    def weights_sha256(self) -> str:
        """Hash of every weight; cached. Call :meth:`invalidate_cache` after changing ``model`` in place."""
        if self._sha is None and self._model is None:
            if self.spec.kind == "checkpoint":
                self._image_tower()  # reads the weights file, checks it against its recorded hash, keeps the hash
            else:
                self._sha = towers.known_weights(self.source_fingerprint)
        if self._sha is None:
            self._sha = weights_sha256(self.model)
        return self._sha

    @property
    def source_fingerprint(self) -> str | None:
        """What this model's weights are made from (:func:`towers.source_fingerprint`); None for other kinds."""
        return towers.source_fingerprint(self.spec)

    def invalidate_cache(self) -> None:
        """Forget the cached weights hash (after fine-tuning ``model`` in place)."""
        self._sha = None

    @property
    def model_id(self) -> str:
        """Short id for indexes and caches: ``name@hash12`` (a checkpoint folder is named by its folder name)."""
        label = Path(self.name).name if self.spec.kind == "checkpoint" else self.name
        return f"{label}@{self.weights_sha256[:12]}"

    def vectors_id(self, precision: str = "fp32") -> str:
        """:attr:`model_id`, and the precision when it is not fp32: what the embedding cache is keyed by, so vectors
        of two precisions, or of the eager and the frozen tower, never mix in it (``precision`` resolved,
        :func:`resolve_precision`)."""
        return self.model_id if precision == "fp32" else f"{self.model_id}+{precision}"

    @property
    def info(self) -> dict:
        """What built the vectors: record it next to anything made from them."""
        pp = self.preprocess_cfg
        size = pp.get("size", 224)
        return {
            "model": self.name,
            "model_id": self.model_id,
            "kind": self.spec.kind,
            "base_model": self.spec.base_model,
            "weights_sha256": self.weights_sha256,
            "embed_dim": self.dim,
            "image_size": list(size) if isinstance(size, (tuple, list)) else [size, size],
            "mean": list(pp.get("mean", ())),
            "std": list(pp.get("std", ())),
            "interpolation": pp.get("interpolation"),
            "resize_mode": pp.get("resize_mode"),
            "fill_color": pp.get("fill_color"),
            # A built-in without a weights file has projections nobody trained; checkpoints and open_clip tags do.
            "projections": "untrained" if self.spec.kind == "logoid" and not self.spec.pretrained else "trained",
            "open_clip_version": _open_clip_version(),
            "source_fingerprint": self.source_fingerprint,
        }

    # ------------------------------------------------------------------ preprocessing

    def preprocess(self, img: Image.Image):
        """PIL image → normalised CHW float tensor, exactly as the model expects it."""
        transform = self._image_transform()
        if img.mode != "RGB":
            img = img.convert("RGB")
        return transform(img)

    @property
    def input_side(self) -> int:
        """Side of the model's square input, in pixels."""
        size = self.preprocess_cfg.get("size", 224)
        return int(size if isinstance(size, int) else size[0])

    def image_input(self, img: Image.Image | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One image (PIL, or an RGB uint8 array) as the model reads it: ``preprocess(img)`` laid out
        height × width × channels (float32), written into ``out`` when given. A batch of these is
        :meth:`embed_inputs`' input; decoding and augmenting threads build them without torch.

        Where the model's transform is open_clip's "longest" resize (:func:`_lite0.supports_preprocess`) this is
        numpy with the transform's own operations in its order, so the values are the very same floats; an RGB array
        already at the input size skips the resize."""
        from . import _lite0

        pp = self.preprocess_cfg
        if _lite0.supports_preprocess(pp) and (isinstance(img, np.ndarray) or img.mode in ("RGB", "L")):
            return _lite0_input(img, pp, out)
        # other transforms, and modes PIL pads in their own way (palette, alpha): the transform itself
        pil = img if isinstance(img, Image.Image) else Image.fromarray(img)
        arr = self.preprocess(pil).permute(1, 2, 0).numpy()
        if out is None:
            return arr
        out[...] = arr
        return out

    def input_bytes_config(self) -> dict | None:
        """The preprocess settings with which :func:`input_bytes` and :func:`bytes_to_input` make this model's inputs
        without torch (what :meth:`image_input` computes), or None where its transform needs torch."""
        from . import _lite0

        return dict(self.preprocess_cfg) if _lite0.supports_preprocess(self.preprocess_cfg) else None

    def embed_inputs(self, batch: np.ndarray, precision: str = "fp32") -> np.ndarray:
        """``(n, side, side, 3)`` float32 model inputs (:meth:`image_input`) → ``(n, dim)`` float32, L2-normalised.

        ``precision`` (resolved: "fp32", "bf16", "fp16") is the tower's arithmetic, :func:`resolve_precision`.
        The rows are not batch-invariant in every precision (oneDNN picks kernels by batch size): callers that
        need the same vector for an image whatever else shares its batch keep the batch size fixed."""
        import torch

        # Height × width × channels rows are the channels_last layout of an NCHW batch: the permute copies nothing.
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2).to(self.device)
        tower = self._frozen_tower(precision, x) if split_precision(precision)[1] else self._image_tower()
        with torch.inference_mode(), _autocast(precision, self.device):
            out = tower(x).float().cpu().numpy()
        return _l2(out)

    def _frozen_tower(self, precision: str, x) -> Any:
        """The image tower traced on inputs shaped like ``x`` and frozen (:data:`FROZEN`), made once per precision
        and shape (~1-5 s); raises :class:`ModelError` for a tower TorchScript cannot trace."""
        import torch

        key = (precision, tuple(x.shape), x.device.type)
        with self._lock:
            if key not in self._frozen:
                tower = self._image_tower()
                try:
                    # Traced and frozen in fp32 (the batch norms folded into fp32 weights), then run under the
                    # precision's autocast: traced under bf16 autocast, the folded weights themselves are rounded to
                    # bf16 and the vectors drift (mean cosine 0.982 to fp32 against 0.998 eager; README).
                    with torch.inference_mode(), warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # the tracer's notes on Python values it records as constants
                        self._frozen[key] = torch.jit.freeze(torch.jit.trace(tower.eval(), torch.zeros_like(x),
                                                                             check_trace=False))
                except Exception as e:  # noqa: BLE001 - any tracing failure means: this tower does not freeze
                    why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]  # torch's can run to pages
                    raise ModelError(f"the image tower of {self.name} cannot be frozen by TorchScript: {why}",
                                     "build the index with `logoid build-index --eager-tower`") from e
            return self._frozen[key]

    # ------------------------------------------------------------------ embedding

    def _encode_batches(self, tensors: list, fn: Callable, precision: str = "fp32") -> np.ndarray:
        import torch

        with torch.inference_mode(), _autocast(precision, self.device):
            batch = torch.stack(tensors).to(self.device).contiguous(memory_format=torch.channels_last)
            return fn(batch).float().cpu().numpy()

    def _run_images(self, images: Sequence[Image.Image], batch_size: int, fn: Callable, width: int | None,
                    precision: str = "fp32"):
        if batch_size < 1:
            raise ModelError(f"batch_size must be at least 1, got {batch_size}")
        out = []
        for i in range(0, len(images), batch_size):
            out.append(self._encode_batches([self.preprocess(im) for im in images[i:i + batch_size]], fn, precision))
        if not out:
            return np.zeros((0, width if width is not None else self.dim), dtype=np.float32)
        return _l2(np.concatenate(out))

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 32, precision: str = "fp32") -> np.ndarray:
        """Images → ``(n, dim)`` float32, rows L2-normalised. ``precision``: :func:`resolve_precision` ("auto"
        resolves here). Queries stay fp32: one image's bf16 saving is milliseconds of a query's second, and an fp32
        query meets a bf16-built index at cosine ≥ 0.999 of its fp32 twin."""
        return self._run_images(images, batch_size, self._image_tower(), self.dim,
                                resolve_precision(precision, self.device))

    def image_features_raw(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Pooled trunk features before the projection (1280-d for EfficientNet-Lite0), L2-normalised.

        Independent of the (possibly untrained) projection: for benchmarks and fine-tuning caches.
        """
        return self._run_images(images, batch_size, self._raw_fn(), None)

    def _raw_fn(self) -> Callable:
        visual = self._image_tower()
        if hasattr(visual, "trunk") and hasattr(visual, "head"):  # open_clip TimmModel: trunk pools, head projects
            return visual.trunk
        if hasattr(visual, "proj") and hasattr(visual, "transformer"):  # open_clip VisionTransformer
            def vit_raw(x):
                with self._lock:  # proj is swapped out for the call; not safe to interleave
                    proj, visual.proj = visual.proj, None
                    try:
                        return visual(x)
                    finally:
                        visual.proj = proj
            return vit_raw
        raise ModelError(f"raw image features are not available for {type(visual).__name__} towers",
                         "use embed_images instead")

    def embed_paths(self, paths: Sequence[str | os.PathLike], batch_size: int = 32, num_workers: int = 2,
                    on_error: Callable[[Path, Exception], None] | None = None) -> tuple[np.ndarray, list[int]]:
        """Decode and embed image files; bad files are skipped (``on_error(path, exc)`` is told).

        Returns ``(vectors, ok_indices)``: row ``j`` of ``vectors`` belongs to ``paths[ok_indices[j]]``.
        Decoding and preprocessing run in ``num_workers`` threads while the model works on the previous batch.
        """
        if batch_size < 1:
            raise ModelError(f"batch_size must be at least 1, got {batch_size}")
        tower = self._image_tower()
        paths = [Path(p) for p in paths]

        def load(i: int):
            try:
                return i, self.preprocess(load_image(paths[i]))
            except ImageError as e:
                return i, e

        vectors: list[np.ndarray] = []
        ok: list[int] = []
        with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
            chunks = [range(i, min(i + batch_size, len(paths))) for i in range(0, len(paths), batch_size)]
            # Keep one batch decoding ahead: bounded memory, decoder and model busy at the same time.
            pending = [pool.map(load, c) for c in chunks[:2]]
            for k in range(len(chunks)):
                results = list(pending[k])
                if k + 2 < len(chunks):
                    pending.append(pool.map(load, chunks[k + 2]))
                good = [(i, t) for i, t in results if not isinstance(t, Exception)]
                for i, t in results:
                    if isinstance(t, Exception) and on_error is not None:
                        on_error(paths[i], t)
                if good:
                    vectors.append(self._encode_batches([t for _, t in good], tower))
                    ok.extend(i for i, _ in good)
        if not vectors:
            return np.zeros((0, self.dim), dtype=np.float32), []
        return _l2(np.concatenate(vectors)), ok

    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Captions → ``(n, dim)`` float32, rows L2-normalised."""
        import torch

        if isinstance(texts, str):
            raise ModelError("embed_texts takes a list of strings, got one string", "wrap it in a list")
        loaded = self._loaded()
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tokens = loaded.tokenizer(list(texts[i:i + batch_size])).to(self.device)
                out.append(loaded.model.encode_text(tokens).float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _l2(np.concatenate(out))

    # ------------------------------------------------------------------ persistence

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the current weights as a logoid checkpoint folder (see :func:`registry.save_checkpoint`)."""
        self.invalidate_cache()
        base = self.spec.base_model or self.name
        return save_checkpoint(self.model, folder, base_model=base, model_cfg=self.spec.model_cfg,
                               preprocess_cfg=self.preprocess_cfg, extra=extra)


def _open_clip_version() -> str:
    """open_clip's version, read from the installed package's metadata (importing open_clip takes seconds)."""
    from importlib import metadata

    try:
        return metadata.version("open_clip_torch")
    except metadata.PackageNotFoundError:
        import open_clip

        return open_clip.__version__
