"""Training data for fine-tuning: items, the entity-disjoint split, entity-unique batches, cached frozen features.

Each tower is cut in two at the first trained layer: a frozen *prefix* (run once per image variant or caption,
cached in memory and optionally on disk) and a trained *suffix* (the unlocked trunk blocks, pooling and the
projection). With the trunk frozen the prefix output is the pooled trunk feature, so an epoch is a few matmuls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from logoid.augment import AugmentConfig, make_variants
from logoid.core.atomic import atomic_path
from logoid.core.errors import ConfigError, ModelError
from logoid.core.imageio import file_hash, load_image

CACHE_VERSION = 1


@dataclass
class TrainItem:
    """One catalog reference image and the caption of its entity."""

    entity_key: str  # entity it shows, e.g. "band:12"; variants of one entity are never each other's negatives
    image: Image.Image | str | os.PathLike  # the reference image, or its file
    caption: str  # the entity's caption (catalog.captions)
    scheme: str  # "color" or "bw": how augment recolours it


def image_key(item: TrainItem) -> str:
    """sha256 of the image file, or of the decoded pixels for an in-memory image (augment and caches key on it)."""
    if isinstance(item.image, Image.Image):
        img = item.image.convert("RGB")
        h = hashlib.sha256(f"{img.size}".encode())
        h.update(img.tobytes())
        return h.hexdigest()
    return file_hash(item.image)


def data_hash(items: Sequence[TrainItem], keys: Sequence[str]) -> str:
    """Hash of what was trained on: every (entity, image hash, caption, scheme)."""
    rows = sorted((it.entity_key, k, it.caption, it.scheme) for it, k in zip(items, keys, strict=True))
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def split_entities(entity_keys: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of the distinct entities into (train, val): no entity is on both sides."""
    entities = sorted(set(entity_keys))
    if val_fraction <= 0:
        return entities, []
    n_val = int(round(len(entities) * val_fraction))
    if n_val < 2 or len(entities) - n_val < 2:
        raise ConfigError(f"{len(entities)} entities are too few for a validation split of {val_fraction:.0%}",
                          "add entities (at least 2 on each side) or set val_fraction=0 with a number wise_alpha")
    order = np.random.default_rng(seed).permutation(len(entities))
    val = sorted(entities[i] for i in order[:n_val])
    val_set = set(val)
    return [e for e in entities if e not in val_set], val


def entity_batches(entity_of: Sequence[str], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Every sample index exactly once, in batches where no entity appears twice.

    Round r holds the r-th (shuffled) sample of every entity that has one; each round is shuffled and cut
    into batches, and the batches are shuffled. Batches of one sample (no negative) are dropped.
    """
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(entity_of):
        groups.setdefault(e, []).append(i)
    queues = [rng.permutation(groups[k]) for k in sorted(groups)]
    batches = []
    for r in range(max((len(q) for q in queues), default=0)):
        members = rng.permutation([int(q[r]) for q in queues if r < len(q)])
        batches += [members[i:i + batch_size] for i in range(0, len(members), batch_size)]
    batches = [b for b in batches if len(b) >= 2]
    return [batches[i] for i in rng.permutation(len(batches))]


# ------------------------------------------------------------------------------------------ towers


@contextlib.contextmanager
def _swapped(owner, attr: str, value):
    old = getattr(owner, attr)
    setattr(owner, attr, value)
    try:
        yield
    finally:
        setattr(owner, attr, old)


def _flat_blocks(blocks) -> list:
    out = []
    for b in blocks:
        out += _flat_blocks(b) if type(b).__name__ == "Sequential" else [b]
    return out


class ImageTower:
    """The image tower cut before its last ``unlock`` trunk blocks: ``prefix`` (frozen, cached) → ``suffix``."""

    def __init__(self, model, unlock: int = 0):
        self.visual, self.unlock = model.visual, unlock
        v = self.visual
        if hasattr(v, "trunk") and hasattr(v, "head"):
            self.kind = "timm"
            if unlock and not all(hasattr(v.trunk, a) for a in ("conv_stem", "blocks", "conv_head", "forward_head")):
                raise ConfigError(f"unlock_image_blocks is not supported for the {type(v.trunk).__name__} trunk",
                                  "use unlock_image_blocks=0 (projections only)")
            self.blocks = _flat_blocks(v.trunk.blocks) if unlock else []
        elif hasattr(v, "transformer") and hasattr(v, "proj"):
            self.kind = "vit"
            self.blocks = list(v.transformer.resblocks)
        else:
            raise ModelError(f"cannot fine-tune a {type(v).__name__} image tower", "use a timm or ViT open_clip model")
        if unlock > len(self.blocks) and unlock:
            raise ConfigError(f"unlock_image_blocks={unlock} but the trunk has {len(self.blocks)} blocks")
        self.cut = len(self.blocks) - unlock

    @property
    def tag(self) -> str:
        return f"unlock{self.unlock}" if self.unlock else "pooled"

    def trainable(self) -> list:
        """Parameters of the suffix: the projection, then the unlocked trunk layers."""
        return self.projection_params() + self.trunk_params()

    def projection_params(self) -> list:
        v = self.visual
        if self.kind == "timm":
            return list(v.head.parameters())
        return [v.proj] if v.proj is not None else []

    def trunk_params(self) -> list:
        """Unlocked blocks and every trunk layer after them (final conv / norm); empty when the trunk is frozen."""
        if not self.unlock:
            return []
        v = self.visual
        if self.kind == "timm":
            mods = self.blocks[self.cut:] + [v.trunk.conv_head, v.trunk.bn2]
        else:
            mods = self.blocks[self.cut:] + [v.ln_post] + ([v.attn_pool] if v.attn_pool is not None else [])
        return [p for m in mods for p in m.parameters()]

    def prefix(self, x):
        """Preprocessed batch → cached representation (batch first)."""
        import torch

        v = self.visual
        if self.kind == "timm":
            t = v.trunk
            x = x.contiguous(memory_format=torch.channels_last)
            if not self.unlock:
                return t(x)
            x = t.bn1(t.conv_stem(x))
            for b in self.blocks[:self.cut]:
                x = b(x)
            return x
        x = v._embeds(x)
        tr = v.transformer
        x = x if tr.batch_first else x.transpose(0, 1)
        for b in self.blocks[:self.cut]:
            x = b(x)
        if not self.unlock:
            x = x if tr.batch_first else x.transpose(0, 1)
            return v._pool(x)[0]
        return x if tr.batch_first else x.transpose(0, 1)

    def suffix(self, h):
        """Cached representation → image embedding (not normalised), through the trained layers only."""
        v = self.visual
        if self.kind == "timm":
            if self.unlock:
                for b in self.blocks[self.cut:]:
                    h = b(h)
                h = v.trunk.forward_head(v.trunk.bn2(v.trunk.conv_head(h)))
            return v.head(h)
        if self.unlock:
            tr = v.transformer
            h = h if tr.batch_first else h.transpose(0, 1)
            for b in self.blocks[self.cut:]:
                h = b(h)
            h = v._pool(h if tr.batch_first else h.transpose(0, 1))[0]
        return h @ v.proj if v.proj is not None else h


class TextTower:
    """The text tower cut before its projection: the encoder is always frozen, its pooled output cached."""

    def __init__(self, model):
        self.model = model
        self.hf = hasattr(model, "text") and hasattr(model.text, "proj")
        if not self.hf and not hasattr(model, "text_projection"):
            raise ModelError(f"cannot fine-tune the text tower of {type(model).__name__}")

    def trainable(self) -> list:
        if self.hf:
            return list(self.model.text.proj.parameters())
        tp = self.model.text_projection
        return list(tp.parameters()) if hasattr(tp, "parameters") else [tp]

    def prefix(self, tokens):
        import torch

        if self.hf:
            with _swapped(self.model.text, "proj", torch.nn.Identity()):
                return self.model.text(tokens)
        with _swapped(self.model, "text_projection", None):
            return self.model.encode_text(tokens)

    def suffix(self, h):
        if self.hf:
            return self.model.text.proj(h)
        tp = self.model.text_projection
        return tp(h) if hasattr(tp, "parameters") else h @ tp


# ------------------------------------------------------------------------------------------ caching


def _load_item_image(item: TrainItem) -> Image.Image:
    if isinstance(item.image, Image.Image):
        return item.image.convert("RGB")
    return load_image(item.image)


def image_features(items: Sequence[TrainItem], keys: Sequence[str], embedder, tower: ImageTower,
                   aug: AugmentConfig, batch_size: int, cache_dir: Path | None = None,
                   progress: Callable | None = None) -> np.ndarray:
    """``(n_items, n_variants, *feature_shape)`` frozen-prefix outputs of every variant of every item.

    Disk cache (when ``cache_dir``): one ``.npy`` per image, in a folder keyed by model weights, augment config,
    preprocessing and the cut point, so a change to any of them misses instead of serving stale features.
    Unlocked-trunk activations are stored as float16 (they are large); pooled features as float32.
    """
    import torch

    folder = None
    if cache_dir is not None:
        pp = hashlib.sha256(json.dumps(embedder.preprocess_cfg, sort_keys=True, default=str).encode()).hexdigest()
        folder = (Path(cache_dir) / f"v{CACHE_VERSION}-{embedder.weights_sha256[:16]}-{aug.config_hash()}"
                  f"-{pp[:8]}-{tower.tag}")
    dtype = np.float16 if tower.unlock else np.float32
    out = []
    for i, (item, key) in enumerate(zip(items, keys, strict=True)):
        path = folder / f"{key}.npy" if folder is not None else None
        if path is not None and path.is_file():
            out.append(np.load(path))
        else:
            variants = make_variants(_load_item_image(item), item.scheme, aug, key)
            feats = []
            with torch.no_grad():
                for s in range(0, len(variants), batch_size):
                    x = torch.stack([embedder.preprocess(v) for v in variants[s:s + batch_size]]).to(embedder.device)
                    feats.append(tower.prefix(x).float().cpu().numpy())
            arr = np.concatenate(feats).astype(dtype)
            if path is not None:
                with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as f:
                    np.save(f, arr)
            out.append(arr)
        if progress is not None:
            progress("features", i + 1, len(items), {})
    return np.stack(out)


def text_features(captions: Sequence[str], embedder, tower: TextTower, batch_size: int = 64) -> np.ndarray:
    """``(n, width)`` pooled outputs of the frozen text encoder, one row per caption."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(captions), batch_size):
            tokens = embedder.tokenizer(list(captions[s:s + batch_size])).to(embedder.device)
            out.append(tower.prefix(tokens).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
