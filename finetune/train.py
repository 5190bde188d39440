"""Contrastive fine-tuning of the dual encoder on catalog reference images and their captions.

Loss: open_clip's :class:`~open_clip.loss.ClipLoss` (image→text and text→image cross-entropy, averaged), plus
optionally the same loss between two augmented variants of one image (``image_pair_weight``). Why ClipLoss
and not a supervised-contrastive loss: it is exactly the objective the towers were built for and the cosine
geometry the index searches, and its one flaw here, false negatives (two variants of one band, or two images
with the same caption, pushed apart), is removed at the source: every batch holds each entity at most once
(:func:`~logoid.finetune.data.entity_batches`), so every off-diagonal pair really is a different entity. A
label-aware loss would only be needed if batches could repeat an entity.

Only the projections (and the logit scale, and optionally the last image-trunk blocks) train; the frozen
parts run once per variant and are cached, so an epoch over 300 images x 20 variants is seconds on a CPU.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from logoid.core.errors import ConfigError

from .config import FinetuneConfig
from .data import (
    ImageTower,
    TextTower,
    TrainItem,
    data_hash,
    entity_batches,
    image_features,
    image_key,
    split_entities,
    text_features,
)

#: ``progress(stage, done, total, info)``: stage is "features", "epoch" or "wise"; info holds the metrics so far.
Progress = Callable[[str, int, int, dict], None]
_MAX_LOGIT_SCALE = 100.0


@dataclass
class FinetuneResult:
    """What a run did and measured; saved in the checkpoint's config.json."""

    history: list[dict] = field(default_factory=list)  # per epoch: epoch, loss, lr, val metrics, score
    best_epoch: int = 0  # 1-based epoch whose weights were kept (before WiSE-FT)
    stopped_early: bool = False  # patience ran out before cfg.epochs
    wise_alpha: float = 1.0  # mix applied: alpha x fine-tuned + (1 - alpha) x start weights
    wise_scores: dict = field(default_factory=dict)  # alpha (str) -> validation score, when chosen on validation
    val_before: dict = field(default_factory=dict)  # validation metrics of the start weights
    val_after: dict = field(default_factory=dict)  # validation metrics of the final weights
    trained: list[str] = field(default_factory=list)  # names of the parameters that were trained
    val_entities: list[str] = field(default_factory=list)  # entities held out (never trained on)
    n_train_entities: int = 0
    n_train_pairs: int = 0  # (variant, caption) pairs per epoch
    data_sha256: str = ""  # hash of the items (entity, image hash, caption, scheme)
    base_weights_sha256: str = ""  # weights the run started from
    feature_seconds: float = 0.0  # augmenting + frozen forward passes (0 when all came from the disk cache)
    train_seconds: float = 0.0  # the epochs and the WiSE-FT search

    def to_dict(self) -> dict:
        return asdict(self)


def _check_items(items: Sequence[TrainItem]) -> None:
    if not items:
        raise ConfigError("nothing to fine-tune on: no training items", "add reference images to the catalog")
    for it in items:
        if it.scheme not in ("color", "bw"):
            raise ConfigError(f"item {it.entity_key}: unknown scheme {it.scheme!r}", "use 'color' or 'bw'")
        if not it.caption:
            raise ConfigError(f"item {it.entity_key}: empty caption", "give every entity a caption")
    if len({it.entity_key for it in items}) < 2:
        raise ConfigError("fine-tuning needs at least 2 entities", "a contrastive loss needs negatives")


def _named_trainable(model, itower: ImageTower, ttower: TextTower, learn_scale: bool) -> dict:
    wanted = {id(p) for p in itower.trainable() + ttower.trainable()}
    if learn_scale and hasattr(model, "logit_scale"):
        wanted.add(id(model.logit_scale))
    return {n: p for n, p in model.named_parameters() if id(p) in wanted}


def _optimizer(params: dict, itower: ImageTower, cfg: FinetuneConfig):
    import torch

    trunk = {id(p) for p in itower.trunk_params()}
    groups: dict[str, list] = {"decay": [], "no_decay": [], "trunk_decay": [], "trunk_no_decay": []}
    for name, p in params.items():
        decay = p.ndim >= 2 and name != "logit_scale"
        groups[("trunk_" if id(p) in trunk else "") + ("decay" if decay else "no_decay")].append(p)
    spec = [
        {"params": groups["decay"], "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": groups["no_decay"], "lr": cfg.lr, "weight_decay": 0.0},
        {"params": groups["trunk_decay"], "lr": cfg.trunk_lr, "weight_decay": cfg.weight_decay},
        {"params": groups["trunk_no_decay"], "lr": cfg.trunk_lr, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in spec if g["params"]], betas=(0.9, 0.98), eps=1e-6)


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


class _Trainer:
    """The state of one run: cached features on the device, towers, and which rows are train / val."""

    def __init__(self, items, cfg: FinetuneConfig, embedder, feats: np.ndarray, tfeats: np.ndarray,
                 cap_idx: np.ndarray, val_entities: set):
        import torch

        self.cfg, self.model, self.device = cfg, embedder.model, embedder.device
        self.itower = ImageTower(self.model, cfg.unlock_image_blocks)
        self.ttower = TextTower(self.model)
        self.n_items, self.n_var = feats.shape[:2]
        self.X = torch.from_numpy(np.ascontiguousarray(feats.reshape(self.n_items * self.n_var, *feats.shape[2:])))
        self.X = self.X.to(self.device)
        self.T = torch.from_numpy(tfeats).to(self.device)
        self.cap_idx = torch.from_numpy(cap_idx).to(self.device)
        self.entity = [it.entity_key for it in items]
        self.train_items = np.array([i for i, e in enumerate(self.entity) if e not in val_entities], dtype=np.int64)
        self.val_items = np.array([i for i, e in enumerate(self.entity) if e in val_entities], dtype=np.int64)

    # ---------------------------------------------------------------- forward

    def image_emb(self, rows):
        import torch.nn.functional as F

        return F.normalize(self.itower.suffix(self.X[rows].float()), dim=-1)

    def text_emb(self, items):
        import torch.nn.functional as F

        return F.normalize(self.ttower.suffix(self.T[self.cap_idx[items]]), dim=-1)

    def scale(self):
        import torch

        if self.cfg.learn_logit_scale and hasattr(self.model, "logit_scale"):
            return self.model.logit_scale.exp()
        return torch.tensor(self.cfg.logit_scale, device=self.device)

    # ---------------------------------------------------------------- validation

    def evaluate(self) -> dict:
        """Image→entity top-1 of val variants 1.. against val variant 0s; caption→image recall@5 on the same gallery."""
        import torch

        if not len(self.val_items):
            return {}
        v = self.n_var
        with torch.no_grad():
            rows = torch.from_numpy(self.val_items[:, None] * v + np.arange(v)[None, :]).to(self.device)
            emb = torch.cat([self.image_emb(rows[s:s + 256].reshape(-1)) for s in range(0, len(rows), 256)])
            emb = emb.reshape(len(self.val_items), v, -1)
            gallery = emb[:, 0]
            ents = np.array([self.entity[i] for i in self.val_items])
            out = {}
            if v > 1:
                sims = emb[:, 1:].reshape(-1, emb.shape[-1]) @ gallery.T
                best = sims.argmax(dim=1).cpu().numpy()
                out["image_top1"] = float(np.mean(ents[best] == np.repeat(ents, v - 1)))
            first: dict = {}
            for pos, e in enumerate(ents):
                first.setdefault(e, pos)
            q = torch.from_numpy(self.val_items[list(first.values())]).to(self.device)
            sims = self.text_emb(q) @ gallery.T
            top = sims.topk(min(5, len(ents)), dim=1).indices.cpu().numpy()
            out["text_r5"] = float(np.mean([e in set(ents[t]) for e, t in zip(first, top, strict=True)]))
        return out

    def score(self, metrics: dict) -> float:
        m = self.cfg.select_metric
        if m == "mean" or m not in metrics:
            vals = [metrics[k] for k in ("image_top1", "text_r5") if k in metrics]
            return float(np.mean(vals)) if vals else 0.0
        return metrics[m]

    # ---------------------------------------------------------------- one epoch

    def epoch(self, batches, rng, opt, sched, loss_fn) -> float:
        import torch

        v, w = self.n_var, self.cfg.image_pair_weight
        losses = []
        for b in batches:
            items = torch.from_numpy(self.train_items[b // v]).to(self.device)
            var = torch.from_numpy(b % v).to(self.device)
            img = self.image_emb(items * v + var)
            scale = self.scale()
            loss = loss_fn(img, self.text_emb(items), scale)
            if w > 0 and v > 1:
                other = torch.from_numpy((b % v + rng.integers(1, v, len(b))) % v).to(self.device)
                loss = loss + w * loss_fn(img, self.image_emb(items * v + other), scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if hasattr(self.model, "logit_scale"):
                with torch.no_grad():
                    self.model.logit_scale.clamp_(max=math.log(_MAX_LOGIT_SCALE))
            losses.append(float(loss.detach()))
        return float(np.mean(losses)) if losses else float("nan")


@contextlib.contextmanager
def _cpu_threads(tr: _Trainer):
    """Heads-only steps on a CPU are tiny matmuls: one thread beats a pool (no fork/join stalls on a busy machine)."""
    import torch

    if tr.device != "cpu" or tr.itower.unlock:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _set_params(params: dict, state: dict) -> None:
    import torch

    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state[n])


def _mix(init: dict, tuned: dict, alpha: float) -> dict:
    return {n: (1 - alpha) * init[n] + alpha * tuned[n] for n in init}


def finetune(items: Sequence[TrainItem], cfg: FinetuneConfig, embedder, progress: Progress | None = None, *,
             cache_dir=None) -> FinetuneResult:
    """Fine-tune ``embedder.model`` IN PLACE on ``items``; returns what happened. Save with :func:`save_checkpoint`.

    ``cache_dir``: where frozen features are kept between runs (keyed by weights, augment config and cut point).
    Deterministic for ``cfg.seed`` on one machine and device.
    """
    import torch
    from open_clip.loss import ClipLoss

    _check_items(items)
    torch.manual_seed(cfg.seed)
    model = embedder.model
    result = FinetuneResult(base_weights_sha256=embedder.weights_sha256)
    keys = [image_key(it) for it in items]
    result.data_sha256 = data_hash(items, keys)
    train_e, val_e = split_entities([it.entity_key for it in items], cfg.val_fraction, cfg.seed)
    result.val_entities, result.n_train_entities = val_e, len(train_e)

    t0 = time.perf_counter()
    itower = ImageTower(model, cfg.unlock_image_blocks)
    feats = image_features(items, keys, embedder, itower, cfg.augment, cfg.feature_batch_size, cache_dir, progress)
    captions = sorted({it.caption for it in items})
    tfeats = text_features(captions, embedder, TextTower(model))
    cap_idx = np.array([captions.index(it.caption) for it in items], dtype=np.int64)
    result.feature_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    tr = _Trainer(items, cfg, embedder, feats, tfeats, cap_idx, set(val_e))
    params = _named_trainable(model, tr.itower, tr.ttower, cfg.learn_logit_scale)
    result.trained = sorted(params)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    init = {n: p.detach().clone() for n, p in params.items()}
    try:
        for n, p in model.named_parameters():
            p.requires_grad_(n in params)
        if cfg.learn_logit_scale and "logit_scale" in params:
            with torch.no_grad():
                model.logit_scale.fill_(math.log(cfg.logit_scale))
        with _cpu_threads(tr):
            result.val_before = tr.evaluate()
            best_state = _train_epochs(tr, params, cfg, result, progress, ClipLoss())
            _set_params(params, best_state)
            _apply_wise(tr, params, init, best_state, cfg, result, progress)
            result.val_after = tr.evaluate()
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
    result.train_seconds = time.perf_counter() - t0
    embedder.invalidate_cache()
    return result


def _train_epochs(tr: _Trainer, params: dict, cfg: FinetuneConfig, result: FinetuneResult, progress, loss_fn) -> dict:
    import torch

    rng = np.random.default_rng(cfg.seed)
    entity_of = [tr.entity[i] for i in tr.train_items for _ in range(tr.n_var)]
    batch = min(cfg.batch_size, result.n_train_entities)
    per_epoch = len(entity_batches(entity_of, batch, np.random.default_rng(0)))
    result.n_train_pairs = len(entity_of)
    total = per_epoch * cfg.epochs
    opt = _optimizer(params, tr.itower, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, int(cfg.warmup_fraction * total)))
    best_score, best_state, stale = -math.inf, None, 0
    for ep in range(1, cfg.epochs + 1):
        batches = entity_batches(entity_of, batch, rng)
        loss = tr.epoch(batches, rng, opt, sched, loss_fn)
        metrics = tr.evaluate()
        score = tr.score(metrics) if metrics else -loss  # without validation: keep the last epoch
        row = {"epoch": ep, "loss": loss, "lr": opt.param_groups[0]["lr"], **metrics, "score": score}
        result.history.append(row)
        if progress is not None:
            progress("epoch", ep, cfg.epochs, row)
        if score > best_score or not metrics:
            best_score, stale, result.best_epoch = score, 0, ep
            best_state = {n: p.detach().clone() for n, p in params.items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                result.stopped_early = ep < cfg.epochs
                break
    if best_state is None:  # no epoch ran (epochs=0): keep the start weights
        best_state = {n: p.detach().clone() for n, p in params.items()}
    return best_state


def _apply_wise(tr: _Trainer, params: dict, init: dict, tuned: dict, cfg: FinetuneConfig, result: FinetuneResult,
                progress) -> None:
    """WiSE-FT (Wortsman et al. 2022): interpolate trained parameters between start and fine-tuned weights."""
    if cfg.wise_alpha != "auto":
        result.wise_alpha = float(cfg.wise_alpha)
        _set_params(params, _mix(init, tuned, result.wise_alpha))
        return
    best_alpha, best = 1.0, -math.inf
    # Ties go to the larger alpha: the grid is walked from 1 down and only a strictly better score moves it.
    for k, alpha in enumerate(sorted(cfg.wise_grid, reverse=True)):
        _set_params(params, _mix(init, tuned, alpha))
        score = tr.score(tr.evaluate())
        result.wise_scores[f"{alpha:g}"] = score
        if score > best:
            best_alpha, best = alpha, score
        if progress is not None:
            progress("wise", k + 1, len(cfg.wise_grid), {"alpha": alpha, "score": score})
    result.wise_alpha = best_alpha
    _set_params(params, _mix(init, tuned, best_alpha))
