"""Fuzzy name index: match text read in a photo against band names and album titles.

Two stages so it scales to hundreds of thousands of names: an inverted index of character trigrams (over the
name with spaces removed, since logos space letters oddly) ranks candidates by idf-weighted overlap; then
``rapidfuzz`` scores the few hundred survivors. The similarity is 1 when the read text *is* the name, and drops
when the name is only part of a longer text (or the text only part of the name).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz, process

from logoid.core.atomic import atomic_path
from logoid.core.errors import ConfigError, IndexMismatchError, IndexMissingError

__all__ = ["NameIndex", "NameMatch", "normalise", "name_similarity", "rank_score"]

SCHEMA_VERSION = 1

# OCR and logo lettering confuse these with letters; mapping both sides the same way makes them match.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
# Letters NFKD does not decompose.
_FOLD = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "ł": "l", "þ": "th", "ı": "i"})
# Deleted rather than spaced: "Guns N' Roses", "R.E.M." read as "GUNS N ROSES", "REM".
_DELETE = frozenset("'’‘`.´")


def normalise(s: str) -> str:
    """Matching form of a name or read text: casefolded, no diacritics, leetspeak undone, words single-spaced."""
    s = unicodedata.normalize("NFKD", s.casefold())
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).translate(_FOLD)
    s = s.replace("&", " and ").translate(_LEET)
    out = []
    for ch in s:
        if ch in _DELETE:
            continue
        out.append(ch if ch.isalnum() else " ")
    return " ".join("".join(out).split())


def _compact(norm: str) -> str:
    return norm.replace(" ", "")


def _trigrams(compact: str) -> set[str]:
    padded = f"^{compact}$"
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


def _similarities(query_compact: str, names_compact: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Similarity of one compact query to many compact names, and each name's partial-alignment score."""
    if not names_compact:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    sim = process.cdist([query_compact], names_compact, scorer=fuzz.ratio, dtype=np.float32)[0] / 100.0
    partial = process.cdist([query_compact], names_compact, scorer=fuzz.partial_ratio, dtype=np.float32)[0] / 100.0
    ln = np.fromiter((len(c) for c in names_compact), dtype=np.float32, count=len(names_compact))
    short = np.minimum(ln, len(query_compact))
    long_ = np.maximum(ln, len(query_compact))
    # partial_ratio forgives trimming both strings' ends, so between near-equal lengths it would lift
    # "metallics" to 0.94 against "metallica"; use it only for a real substring situation, discounted by
    # sqrt(length ratio): a name filling half the line is fair evidence, one filling a tenth of it is not.
    use = (short >= 3) & (long_ - short >= 2)
    sim = np.where(use, np.maximum(sim, partial * np.sqrt(short / long_)), sim)
    # A 1-3 character string matches something by chance too easily.
    sim = np.where(short < 4, sim * (0.7 + 0.1 * short), sim)
    return sim.astype(np.float32), partial


def name_similarity(text: str, name: str) -> float:
    """Similarity in [0, 1] of ``text`` to ``name`` (both normalised, spaces ignored: "IRONMAIDEN" = "Iron Maiden").

    The whole-string ratio or, when one is clearly longer, the best partial alignment discounted by the length
    mismatch: "metallica" vs "metallica" = 1, vs "metallics" ≈ 0.89, the name inside a text twice its length ≈ 0.71.
    """
    t, n = _compact(normalise(text)), _compact(normalise(name))
    if not t or not n:
        return 0.0
    return float(_similarities(t, [n])[0][0])


#: How much of the ordering is "the name explains all the read text" rather than "the name matches some of it".
COVERAGE_WEIGHT = 0.5


def rank_score(similarity, coverage):  # floats, or numpy arrays of them (one per candidate)
    """What matches are ordered by: similarity, weighed by how much of the read text the name explains.

    Without it "Corpse" (a line read exactly) would beat "Cannibal Corpse" (both lines, one letter misread). The
    weight is even (0.5) because a big roster holds a name for almost any single word read: "Alice" (one of two
    lines, exact) must lose to "Alice Cooper" (both lines, "CORER" misread). With 0.25, band-logos' 1,206 clean
    logos against a 200k-name roster scored 0.690 top-1, with 0.5 0.716 (0.820 → 0.828 among the 1,206 names).
    """
    return similarity * (1.0 - COVERAGE_WEIGHT + COVERAGE_WEIGHT * coverage)


@dataclass
class NameMatch:
    """One catalog entity matched by the text read in a photo."""

    entity_key: str
    # The catalog name or alias that matched (original spelling).
    name: str
    # Similarity in [0, 1] of the best query (line, line pair or all lines) to the name.
    similarity: float
    # Fraction of all the read text (letters, spaces ignored) that the name explains.
    coverage: float
    # OCR confidence of the line(s) that matched (mean when several); 1.0 for plain string queries.
    line_conf: float
    # The (normalised) query text that matched.
    query: str = ""
    # Ordering key: ``rank_score(similarity, coverage)``.
    score: float = 0.0

    def to_dict(self) -> dict:
        return {
            "entity_key": self.entity_key, "name": self.name, "similarity": self.similarity,
            "coverage": self.coverage, "line_conf": self.line_conf, "query": self.query,
            "score": self.score,
        }


class NameIndex:
    """Names and aliases of catalog entities, matched fuzzily against read text. Scales to ~10^6 names."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = (), *, auto_alias: bool = True, candidates: int = 150):
        # auto_alias: also index "The Cure" as "Cure" (logos often drop or shrink the article).
        self.auto_alias = auto_alias
        # How many prefilter candidates per query reach the exact fuzzy scoring.
        if candidates < 1:
            raise ConfigError(f"NameIndex: candidates must be >= 1 (got {candidates})")
        self.candidates = candidates
        self._keys: list[str] = []
        self._names: list[str] = []
        self._norms: list[str] = []
        self._compacts: list[str] = []
        self._alive: list[bool] = []
        self._by_key: dict[str, list[int]] = {}
        # Entries [0, _n_built) are in the trigram postings; later ones are scored exhaustively until the next
        # rebuild, so adding a few names to a big index does not cost a full rebuild.
        self._n_built = 0
        self._alive_np = np.zeros(0, dtype=bool)
        self.add(pairs)

    # ---- contents -------------------------------------------------------------------------------------------
    def add(self, pairs: Iterable[tuple[str, str]] | tuple[str, str], aliases: Iterable[str] = ()) -> int:
        """Add ``(entity_key, name)`` pairs (or one pair plus its ``aliases``); returns how many entries were added."""
        if isinstance(pairs, tuple) and len(pairs) == 2 and isinstance(pairs[0], str):
            pairs = [pairs] + [(pairs[0], a) for a in aliases]
        added = 0
        for key, name in pairs:
            if not isinstance(key, str) or not isinstance(name, str):
                raise ConfigError(f"NameIndex.add: expected (str, str) pairs, got ({key!r}, {name!r})")
            variants = [name]
            if self.auto_alias:
                words = name.split()
                if len(words) > 1 and words[0].casefold() == "the":
                    variants.append(" ".join(words[1:]))
            for v in variants:
                added += self._add_one(key, v)
        return added

    def _add_one(self, key: str, name: str) -> int:
        norm = normalise(name)
        if not norm:
            return 0
        ids = self._by_key.setdefault(key, [])
        if any(self._norms[i] == norm for i in ids):
            return 0
        ids.append(len(self._keys))
        self._keys.append(key)
        self._names.append(name)
        self._norms.append(norm)
        self._compacts.append(_compact(norm))
        self._alive.append(True)
        return 1

    def remove(self, entity_key: str) -> int:
        """Remove every name of ``entity_key``; returns how many entries went."""
        ids = self._by_key.pop(entity_key, [])
        for i in ids:
            self._alive[i] = False
            if i < self._n_built:
                self._alive_np[i] = False
        return len(ids)

    def __len__(self) -> int:
        """Number of live names and aliases."""
        return sum(len(v) for v in self._by_key.values())

    def __contains__(self, entity_key: str) -> bool:
        return entity_key in self._by_key

    @property
    def entity_count(self) -> int:
        return len(self._by_key)

    # ---- prefilter ------------------------------------------------------------------------------------------
    #: Pending (unindexed) entries above this trigger a rebuild of the postings at the next match.
    MAX_PENDING = 1000

    def _build(self) -> None:
        """Freeze the trigram postings of all entries into CSR arrays (trigram id → entry ids)."""
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        for i, comp in enumerate(self._compacts):
            for g in _trigrams(comp):
                rows.append(vocab.setdefault(g, len(vocab)))
                cols.append(i)
        n = len(self._compacts)
        r = np.asarray(rows, dtype=np.int32)
        c = np.asarray(cols, dtype=np.int32)
        self._post = c[np.argsort(r, kind="stable")]
        self._indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=len(vocab)), out=self._indptr[1:])
        df = np.diff(self._indptr).astype(np.float32)
        self._idf = np.log1p(max(1, n) / np.maximum(df, 1.0)).astype(np.float32)
        # Squared norm of each entry's idf vector, for cosine.
        self._sqnorm = np.bincount(c, weights=self._idf[r] ** 2, minlength=n).astype(np.float32)
        self._vocab = vocab
        self._alive_np = np.asarray(self._alive, dtype=bool)
        self._n_built = n

    def _candidates(self, compact: str) -> np.ndarray:
        """Entry ids sharing the most idf-weighted trigrams with the query (by cosine and by containment),
        plus every live entry added since the last build."""
        pending = [i for i in range(self._n_built, len(self._compacts)) if self._alive[i]]
        ids = [self._vocab[g] for g in _trigrams(compact) if g in self._vocab] if self._n_built else []
        if not ids:
            return np.asarray(pending, dtype=np.int64)
        ids_a = np.asarray(ids)
        starts, ends = self._indptr[ids_a], self._indptr[ids_a + 1]
        post = np.concatenate([self._post[s:e] for s, e in zip(starts, ends, strict=True)])
        w = np.repeat(self._idf[ids_a] ** 2, ends - starts)
        shared_all = np.bincount(post, weights=w, minlength=self._n_built)
        nz = np.flatnonzero(shared_all)
        nz = nz[self._alive_np[nz]]
        if not len(nz):
            return np.asarray(pending, dtype=np.int64)
        shared = shared_all[nz]
        d_sq = self._sqnorm[nz]
        cosine = shared / np.sqrt(float((self._idf[ids_a] ** 2).sum()) * d_sq + 1e-12)
        contain = shared / (d_sq + 1e-12)  # how much of the name is in the text (name inside a long line)
        k = min(self.candidates, len(nz))
        pick = np.union1d(np.argpartition(-cosine, k - 1)[:k], np.argpartition(-contain, k - 1)[: max(1, k // 3)])
        return np.concatenate([nz[pick], np.asarray(pending, dtype=np.int64)])

    # ---- matching -------------------------------------------------------------------------------------------
    def match(self, lines, k: int = 5, line_confs: list[float] | None = None) -> list[NameMatch]:
        """Best ``k`` entities for the read text, best first (by :func:`rank_score`), one per entity.

        ``lines`` is a string, a list of strings, or a list of OCR lines (objects with ``.text`` and ``.conf``).
        Each line, each pair of neighbouring lines and all lines together are tried, so a logo split over two
        lines still matches.
        """
        texts, confs = _as_lines(lines, line_confs)
        norms = [(normalise(t), c) for t, c in zip(texts, confs, strict=True)]
        norms = [(t, c) for t, c in norms if _compact(t)]
        if not norms or not self._by_key:
            return []
        if len(self._compacts) - self._n_built > self.MAX_PENDING:
            self._build()
        total_chars = sum(len(_compact(t)) for t, _ in norms)
        best: dict[str, tuple] = {}  # entity key → (score, entry id, similarity, coverage, conf, query)
        for query, conf in _queries(norms):
            qc = _compact(query)
            cand = self._candidates(qc)
            if not len(cand):
                continue
            comps = [self._compacts[i] for i in cand.tolist()]
            sims, partial = _similarities(qc, comps)
            lens = np.fromiter((len(c) for c in comps), dtype=np.float32, count=len(comps))
            # Coverage against everything read: a name that explains one line of a wall of text is weaker.
            covs = np.minimum(1.0, partial * np.minimum(len(qc), lens) / total_chars)
            self._keep_best(best, rank_score(sims, covs), cand, sims, covs, conf, query, k)
        out = [NameMatch(key, self._names[i], round(float(sim), 4), round(float(cov), 4), round(conf, 4), query,
                         round(float(score), 4)) for key, (score, i, sim, cov, conf, query) in best.items()]
        out.sort(key=lambda m: (-m.score, -m.similarity, m.entity_key))
        return out[:k]

    def _keep_best(self, best: dict, scores: np.ndarray, cand: np.ndarray, sims, covs, conf: float, query: str,
                   k: int) -> None:
        """Fold one query's scored candidates into ``best`` (each entity's best so far).

        Only the candidates down to this query's k-th distinct entity can reach the overall top k (any entity
        scoring above one of the final k would itself be in it), so the rest are skipped unlooked-at.
        """
        seen: set[str] = set()
        kth = -1.0
        for j in np.argsort(-scores, kind="stable").tolist():
            s = float(scores[j])
            if len(seen) >= k and s < kth:
                break
            i = int(cand[j])
            key = self._keys[i]
            if key not in seen:
                seen.add(key)
                kth = s
            cur = best.get(key)
            if cur is None or s > cur[0]:
                best[key] = (s, i, sims[j], covs[j], conf, query)

    # ---- persistence ----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the live entries to ``path`` (.npz, atomic); the trigram index is rebuilt on load."""
        path = Path(path)
        live = [i for i, a in enumerate(self._alive) if a]
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                schema=np.asarray(SCHEMA_VERSION),
                auto_alias=np.asarray(self.auto_alias),
                candidates=np.asarray(self.candidates),
                keys=np.asarray([self._keys[i] for i in live], dtype=str),
                names=np.asarray([self._names[i] for i in live], dtype=str),
            )

    @classmethod
    def load(cls, path: str | Path) -> NameIndex:
        """Read an index written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise IndexMissingError(f"no name index at {path}", "run `logoid build-index`")
        try:
            with np.load(path, allow_pickle=False) as z:
                schema = int(z["schema"])
                auto_alias, cand = bool(z["auto_alias"]), int(z["candidates"])
                keys, names = z["keys"].tolist(), z["names"].tolist()
        except (OSError, ValueError, KeyError) as e:
            raise IndexMismatchError(f"unreadable name index {path} ({e})",
                                     "rebuild it with `logoid build-index`") from e
        if schema != SCHEMA_VERSION:
            raise IndexMismatchError(
                f"name index {path} has schema {schema}, this logoid reads {SCHEMA_VERSION}",
                "rebuild it with `logoid build-index`",
            )
        # Aliases were saved as entries already; do not derive them twice.
        idx = cls(auto_alias=False, candidates=cand)
        idx.add(zip(keys, names, strict=True))
        idx.auto_alias = auto_alias
        return idx


def _as_lines(lines, line_confs) -> tuple[list[str], list[float]]:
    if isinstance(lines, str):
        lines = [lines]
    if line_confs is not None and len(line_confs) != len(lines):
        raise ConfigError(f"match: {len(line_confs)} line_confs for {len(lines)} lines")
    texts, confs = [], []
    for j, ln in enumerate(lines):
        if isinstance(ln, str):
            texts.append(ln)
            confs.append(float(line_confs[j]) if line_confs is not None else 1.0)
        else:  # an OCR TextLine (duck-typed: index/ must not import engine/)
            texts.append(str(ln.text))
            confs.append(float(getattr(ln, "conf", 1.0)))
    return texts, confs


def _queries(norms: list[tuple[str, float]], max_lines: int = 12) -> list[tuple[str, float]]:
    """Each line, each neighbouring pair and (up to ``max_lines`` lines) all of them joined."""
    if len(norms) > max_lines:
        # Long walls of text: keep the surest, longest lines (a logo is rarely the faint tiny print).
        keep = sorted(range(len(norms)), key=lambda j: -norms[j][1] * len(norms[j][0]))[:max_lines]
        norms = [norms[j] for j in sorted(keep)]
    out = list(norms)
    for a, b in zip(norms, norms[1:], strict=False):
        out.append((f"{a[0]} {b[0]}", (a[1] + b[1]) / 2))
    if len(norms) > 2:
        out.append((" ".join(t for t, _ in norms), sum(c for _, c in norms) / len(norms)))
    return out
