"""Markdown for the albums section of BENCHMARKS.md, from the albums.json result dict."""

from __future__ import annotations

from bench._common import fmt, table

TARGETS = {"genre_wf1": 0.65, "artist_top1": 0.40, "artist_auroc": 0.75}


def _genre(g: dict) -> list[str]:
    rows = [[s["name"], s["dim"], s["weighted_f1"], s["accuracy"]] for s in g["steps"]]
    out = ["### Genre from cover (protocol 1: 5-fold over artist-disjoint `genre_fold`, all 1,237 covers)", "",
           "Each row adds one thing to the row above it unless it names another classifier. LR = logistic "
           "regression, C by inner 3-fold CV grouped by artist on the training folds only.", "",
           table(["method", "dim", "weighted F1", "accuracy"], rows), ""]
    best = next(s for s in g["steps"] if s["name"] == g["best"])
    out += [f"Per genre, best model ({best['name']}):", "",
            table(["genre", "n", "precision", "recall", "F1"],
                  [[k, v["n"], v["precision"], v["recall"], v["f1"]] for k, v in best["per_genre"].items()]), "",
            "Confusion (rows truth, columns predicted; " + ", ".join(best["labels"]) + "):", "",
            table(["truth"] + best["labels"], [[lab] + r for lab, r in zip(best["labels"], best["confusion"],
                                                                             strict=True)]), ""]
    hit = best["weighted_f1"] >= TARGETS["genre_wf1"]
    out.append(f"Target weighted F1 ≥ 0.65: **{'met' if hit else 'missed'}** ({fmt(best['weighted_f1'])}; raw "
               f"baselines 0.54 LR / 0.47 kNN).")
    return out


def _artist(a: dict) -> list[str]:
    sb = a["style_best"]
    out = ["", f"### Artist of an unseen album (protocol 2: {a['n_artists']} enrolled artists' gallery covers; "
           "queries = their other albums + 22 unknown artists; settings chosen on calib, reported on test)", "",
           "Style channel, every variant (sorted by test top-1; the row used for fusion was chosen on calib: "
           f"{sb['features']}, top-m {sb['top_m']}, rejection {sb['reject']}):", ""]
    rows = sorted(a["style"], key=lambda r: -r["test"]["top1"])
    seen, keep = set(), []
    for r in rows:  # one row per (features, top_m): its best rejection score by calib AUROC
        k = (r["features"], r["top_m"])
        if k in seen:
            continue
        seen.add(k)
        cand = [x for x in a["style"] if (x["features"], x["top_m"]) == k]
        keep.append(max(cand, key=lambda x: x["calib"]["auroc_known_vs_unknown"]))
    out.append(table(["features", "top-m", "rejection", "test top-1", "test top-5", "test AUROC", "open-set acc"],
                     [[r["features"], r["top_m"], r["reject"], r["test"]["top1"], r["test"]["top5"],
                       r["test"]["auroc_known_vs_unknown"], r["test"]["open_set_accuracy"]] for r in keep]))
    out += ["", "Text channel (OCR of the cover → fuzzy match against the enrolled artists' names) and the fusion "
            "(logistic regression over style z-score + name similarity, fitted on calib):", ""]
    rows = []
    for t in a["text"]:
        rows.append([f"text alone ({t['aliases']})", t["test"]["top1"], t["test"]["auroc_known_vs_unknown"],
                     t["test"]["open_set_accuracy"]])
    for f in a["fusion"]:
        rows.append([f"style + text fusion ({f['aliases']}, {f.get('text_amount', '')})", f["test"]["top1"],
                     f["test"]["auroc_known_vs_unknown"], f["test"]["open_set_accuracy"]])
    rows.insert(0, ["style alone (chosen on calib)", sb["test"]["top1"], sb["test"]["auroc_known_vs_unknown"],
                    sb["test"]["open_set_accuracy"]])
    out.append(table(["method", "test top-1", "test AUROC known vs unknown", "test open-set acc"], rows))
    best = max(a["fusion"], key=lambda f: f["calib"]["top1"] + f["calib"]["auroc_known_vs_unknown"])
    ok = best["test"]["top1"] >= TARGETS["artist_top1"] and best["test"]["auroc_known_vs_unknown"] >= 0.75
    out += ["", f"Targets top-1 ≥ 0.40 and AUROC ≥ 0.75: **{'met' if ok else 'missed'}** by the fusion "
            f"({best['aliases']}, {best.get('text_amount', '')}; chosen on calib): top-1 {fmt(best['test']['top1'])}, AUROC {fmt(best['test']['auroc_known_vs_unknown'])}"
            " (raw baseline 0.15 / 0.45)."]
    return out


def _search(raw: dict, ft: dict | None) -> list[str]:
    out = ["", "### Text search by genre (protocol 3: \"a {genre} album cover\")", ""]
    if ft:
        out += [f"After: per genre fold, the projections fine-tuned ({ft['settings']}, album captions) on the "
                "other four folds' covers, search over the held-out fold's covers (mean over folds). Before: the "
                "raw default model over all covers. Chance AP = share of that genre.", ""]
    rows = []
    for g, v in raw["per_genre"].items():
        f = ft["per_genre"][g] if ft else {}
        rows.append([g, v["chance_ap"], v["ap"], v["recall_at_k"], f.get("ap"), f.get("recall_at_k")])
    rows.append(["**mean**", None, raw["map"], raw["mean_recall_at_10"], ft and ft["map"],
                 ft and ft["mean_recall_at_10"]])
    out.append(table(["query genre", "chance AP", "AP before", "R@10 before", "AP after FT", "R@10 after FT"], rows))
    if ft:
        out += ["", f"Zero-shot genre from captions after fine-tuning (held-out folds): weighted F1 "
                f"{fmt(ft['zero_shot_genre_after_ft']['weighted_f1'])}."]
    return out


def product_lines(p: dict) -> list[str]:
    """The product commands' rows (bench/albums/product.py): what `logoid eval --task genre|artist` reports."""
    out = ["### Product commands (`logoid eval MANIFEST --task genre|artist`, the numbers users get)", "",
           "Same protocols, run as subprocesses of the CLI on a bench home (embedding and OCR caches kept). Genre: "
           "5-fold CV over `genre_fold`, every compared method, the best kept. Artist: the manifest's gallery rows "
           "enrolled, the fusion and threshold calibrated on split=calib queries, reported on split=test.", ""]
    rows = []
    for key, r in p.items():
        if key.startswith("_") or not key.startswith("genre"):
            continue
        m = r["metrics"]
        cmp = ", ".join(f"{k} {fmt(v['weighted_f1'])}" for k, v in (m.get("comparison") or {}).items())
        rows.append([f"`{r['command'].replace(' --json', '').replace('../shared/data/albums-dev/', '')}`", m["method"],
                     m["weighted_f1"], m.get("macro_f1"), m.get("accuracy"), cmp, round(r["seconds"])])
    if rows:
        out += [table(["command", "kept", "weighted F1", "macro F1", "accuracy", "CV weighted F1 per method", "s"],
                       rows), ""]
    rows = []
    for key, r in p.items():
        if key.startswith("_") or not key.startswith("artist"):
            continue
        m = r["metrics"]
        rows.append([f"`{r['command'].replace(' --json', '').replace('../shared/data/albums-dev/', '')}`", m["artists"],
                     m["n_known"], m["n_unknown"], m["top1"], m.get("top5"), m["auroc"], m["open_set_accuracy"],
                     m["rule"], round(r["seconds"])])
    cat = p.get("catalog") or {}
    for key, what in (("eval_loao", "`catalog import gallery.json` → `artist fit` (leave-one-album-out, no photos) → "
                                    "`eval test.csv --task artist`"),
                      ("eval_calibrated", "… → `artist calibrate calib.csv` → `eval test.csv --task artist`")):
        if key in cat:
            m = cat[key]["result"]
            rows.append([what, m["artists"], m["n_known"], m["n_unknown"], m["top1"], m.get("top5"), m["auroc"],
                         m["open_set_accuracy"], m["rule"], round(cat[key]["seconds"])])
    if rows:
        out += [table(["command", "artists", "known", "unknown", "top-1", "top-5", "AUROC", "open-set acc", "rule", "s"],
                      rows), ""]
    g = (p.get("genre_style_text") or {}).get("metrics")
    a = (p.get("artist_style_text") or {}).get("metrics")
    if g and a:
        ok_g = g["weighted_f1"] >= TARGETS["genre_wf1"]
        ok_a = a["top1"] >= TARGETS["artist_top1"] and a["auroc"] >= TARGETS["artist_auroc"]
        out.append(f"Targets through the product defaults: genre weighted F1 ≥ 0.65 **{'met' if ok_g else 'missed'}** "
                   f"({fmt(g['weighted_f1'])}); artist top-1 ≥ 0.40 and AUROC ≥ 0.75 **{'met' if ok_a else 'missed'}**"
                   f" ({fmt(a['top1'])} / {fmt(a['auroc'])}).")
        if g.get("per_class"):
            out += ["", "Per genre (product default):", "",
                    table(["genre", "n", "precision", "recall", "F1"],
                          [[k, v.get("n") or v.get("support"), v.get("precision"), v.get("recall"), v.get("f1")]
                           for k, v in g["per_class"].items()])]
    if p.get("_seeded_ocr"):
        out += ["", f"(Cover text: RapidOCR lines of {p['_seeded_ocr']} covers from `python -m bench albums-ocr`'s cache, the "
                "product's OCR configuration; the product reads uncached covers itself.)"]
    return out + [""]


def report(res: dict) -> str:
    out = [f"Model `{res['model']}` (projections untrained until fine-tuned), {res['n_covers']} covers. "
           "All numbers from `bench/work/albums.json` (this record's numbers).", ""]
    if "product" in res:
        out += product_lines(res["product"])
        out += ["### Research ablation (bench/albums/protocols.py on cached arrays: what each step adds)", ""]
    if "genre" in res:
        out += _genre(res["genre"])
    if "artist" in res:
        out += _artist(res["artist"])
    if "search_raw" in res:
        out += _search(res["search_raw"], res.get("search_finetuned"))
    if "album_photo" in res:
        ap = res["album_photo"]
        out += ["", "### Album side sanity check", "", ap["text"]]
    return "\n".join(out)


def summary(res: dict) -> str:
    """The key numbers, for the current-numbers page: the product defaults, else the ablation's best rows."""
    out = []
    p = res.get("product") or {}
    g = (p.get("genre_style_text") or {}).get("metrics")
    a = (p.get("artist_style_text") or {}).get("metrics")
    if g:
        out.append(f"product defaults: genre weighted F1 **{fmt(g['weighted_f1'])}** (5-fold, artist-disjoint)")
    if a:
        out.append(f"artist of an unseen album ({a['artists']} artists) top-1 **{fmt(a['top1'])}**, AUROC "
                   f"**{fmt(a['auroc'])}**")
    loao = ((p.get("catalog") or {}).get("eval_loao") or {}).get("result")
    if loao:
        out.append(f"without photos (`artist fit`, leave-one-album-out) {fmt(loao['top1'])} / {fmt(loao['auroc'])}")
    if not g and "genre" in res:
        best = next(s for s in res["genre"]["steps"] if s["name"] == res["genre"]["best"])
        out.append(f"genre weighted F1 {fmt(best['weighted_f1'])} ({best['name']})")
    if "search_raw" in res:
        ft = res.get("search_finetuned")
        out.append(f"text search by genre mAP {fmt(res['search_raw']['map'])}"
                   + (f" → {fmt(ft['map'])} after fine-tuning" if ft else ""))
    return "; ".join(out)
