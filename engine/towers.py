"""One tower of a dual encoder without the other, and its whole weights hash without building it.

A photo query needs the image tower only; building the whole model also imports transformers and builds MiniLM,
seconds of a cold ``logoid query``. :func:`build_image_tower` builds just the image tower, with the same weights and
the same outputs as ``model.visual`` of :func:`~logoid.engine.registry.build`: the default model's through the
plain-torch copy in ``_lite0`` (no timm, open_clip, torchvision or transformers imported), others through open_clip's
own tower builder under the same seed. It answers None where it cannot promise that (open_clip ``ARCH:TAG`` models,
a ``pretrained=`` file); the caller then builds the whole model.

An index is checked against the hash of *every* weight, the text tower's included (``Embedder.weights_sha256``).
For a built-in model that hash is a function of its sources: the spec, the library versions and the packaged weight
files. ``build-index`` records a fingerprint of those sources beside the hash (``info["source_fingerprint"]``); an
index that is loaded tells :func:`remember_weights` what it recorded, and an embedder whose sources still have
that fingerprint takes the hash from there instead of building the text tower to compute it. Anything that
changes a source (another torch, timm, open_clip or transformers version, a weight file rewritten) changes the
fingerprint, and the whole model is built and hashed as before.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from importlib import metadata
from pathlib import Path

from logoid.core.errors import ModelError

from .registry import CHECKPOINT_WEIGHTS, ModelSpec, _orthonormal, _resolve_pkg, state_sha256

#: Libraries whose version can change the weights a spec builds (init order, key names, text tower loading).
FINGERPRINT_LIBS = ("torch", "timm", "open_clip_torch", "transformers")

#: Files whose code turns the sources into weights (the whole model's build): part of the fingerprint.
BUILD_CODE = ("registry.py", "_effnet.py")

_KNOWN: dict[str, str | None] = {}  # source fingerprint -> weights_sha256 the loaded indexes recorded; None: contested


def remember_weights(fingerprint: str | None, sha256: str | None, model_id: str | None) -> None:
    """Note that sources with ``fingerprint`` built weights hashing to ``sha256`` (an index sidecar says so).

    A record that disagrees with itself (``model_id`` is ``name@`` the hash's first 12 digits) is not taken, and a
    fingerprint two indexes give different hashes is contested: the whole model is hashed instead."""
    if not (fingerprint and sha256 and model_id and model_id.endswith("@" + sha256[:12])):
        return
    _KNOWN[fingerprint] = sha256 if _KNOWN.get(fingerprint, sha256) == sha256 else None


def known_weights(fingerprint: str | None) -> str | None:
    """The weights hash recorded for ``fingerprint``, if an index loaded in this process recorded one."""
    return _KNOWN.get(fingerprint) if fingerprint else None


def source_fingerprint(spec: ModelSpec) -> str | None:
    """sha256 of what a built-in model's weights are made from: its spec, the versions of the libraries that build
    it, logoid's code that builds it (:data:`BUILD_CODE`), and the name, size and modification time of every
    packaged weight file. None for other kinds (an open_clip tag; a checkpoint, which records its own hash)."""
    if spec.kind != "logoid":
        return None
    here = Path(__file__).parent
    d = {"spec": {k: v for k, v in spec.to_dict().items() if k != "description"},
         "libs": {lib: _version(lib) for lib in FINGERPRINT_LIBS},
         "code": {name: hashlib.sha256((here / name).read_bytes()).hexdigest() for name in BUILD_CODE},
         "files": _source_files(spec)}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _source_files(spec: ModelSpec) -> list[list]:
    paths: list[Path] = []
    if spec.image_trunk_weights == "efficientnet-lite0":
        from . import _effnet

        paths.append(_effnet.weights_path())
    text = (spec.model_cfg or {}).get("text_cfg", {})
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if isinstance(text.get(key), str) and text[key].startswith("pkg:"):
            root = Path(_resolve_pkg(text[key]))
            paths += sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    if spec.pretrained:
        paths.append(Path(spec.pretrained))
    out = []
    for p in paths:
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


# ---------------------------------------------------------------------------------------------- the image tower


def build_image_tower(spec: ModelSpec, device: str = "cpu"):
    """``(image tower in eval mode on device, full weights hash or None)`` built without the text tower, or None
    where only the whole model can promise the same weights (the caller builds that).

    The hash comes back only for a checkpoint, read from its weights file (and checked against the hash it
    recorded); a built-in model's needs :func:`known_weights` or the whole model."""
    cfg = spec.model_cfg or {}
    if spec.kind == "logoid" and not spec.pretrained:
        tower = _logoid_tower(spec, cfg)
        sha = None
    elif spec.kind == "checkpoint" and spec.checkpoint:
        tower, sha = _checkpoint_tower(spec, cfg)
    else:
        return None
    return tower.to(device).eval(), sha


def _fresh_tower(spec: ModelSpec, cfg: dict):
    """The untrained image tower, initialised as the whole model's ``visual`` is (built first, from the seed)."""
    from . import _lite0

    vision = cfg.get("vision_cfg", {})
    trunk_loaded = spec.image_trunk_weights == "efficientnet-lite0" or spec.kind == "checkpoint"
    proj_set = spec.init_projections == "orthogonal" or spec.kind == "checkpoint"
    if _lite0.supports(vision) and trunk_loaded and proj_set:
        return _lite0.Lite0Tower(int(cfg["embed_dim"]))  # every weight is loaded or set below: no seed involved
    import torch
    from open_clip.model import _build_vision_tower

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)  # the whole model builds its image tower first, from this seed
        return _build_vision_tower(int(cfg["embed_dim"]), vision, quick_gelu=bool(cfg.get("quick_gelu", False)))


def _logoid_tower(spec: ModelSpec, cfg: dict):
    tower = _fresh_tower(spec, cfg)
    if spec.image_trunk_weights == "efficientnet-lite0":
        from . import _effnet

        _effnet.load_into_timm(tower.trunk)
    elif spec.image_trunk_weights:
        raise ModelError(f"unknown image_trunk_weights {spec.image_trunk_weights!r} in model config {spec.name}")
    if spec.init_projections == "orthogonal":
        _orthogonal_image_projection(tower, spec.seed)
    return tower


def _orthogonal_image_projection(tower, seed: int) -> None:
    """The image half of ``registry._init_projections_orthogonal``: the first draw of the same generator."""
    import torch

    layer = getattr(getattr(tower, "head", None), "proj", None)
    if isinstance(layer, torch.nn.Linear):
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            rows, cols = layer.weight.shape
            layer.weight.copy_(_orthonormal(rows, cols, gen))
            if layer.bias is not None:
                layer.bias.zero_()


def _checkpoint_tower(spec: ModelSpec, cfg: dict):
    from safetensors.torch import load_file

    path = Path(str(spec.checkpoint)) / CHECKPOINT_WEIGHTS
    try:
        state = load_file(str(path))
    except (OSError, RuntimeError, ValueError) as e:
        raise ModelError(f"cannot load weights {path}: {e}", "the file must hold this architecture's state dict") from e
    sha = state_sha256(state)
    if spec.expected_sha256 and sha != spec.expected_sha256:
        raise ModelError(f"checkpoint {spec.checkpoint} weights do not match their recorded hash",
                         "the file is corrupt or was edited; re-run `logoid finetune`")
    tower = _fresh_tower(spec, cfg)
    visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    try:
        tower.load_state_dict(visual, strict=True)
    except RuntimeError as e:
        raise ModelError(f"cannot load weights {path}: {e}", "the file must hold this architecture's state dict") from e
    return tower, sha


def image_transform(pp: dict):
    """PIL image → model input tensor for preprocess config ``pp``: ``_lite0.preprocess`` where it reproduces
    open_clip's inference transform (no torchvision import), open_clip's transform otherwise."""
    from . import _lite0

    if _lite0.supports_preprocess(pp):
        return partial(_lite0.preprocess, pp=dict(pp))
    from open_clip.transform import PreprocessCfg, image_transform_v2

    known = set(PreprocessCfg.__dataclass_fields__)
    return image_transform_v2(PreprocessCfg(**{k: v for k, v in pp.items() if k in known}), is_train=False)
