"""Which attention read of MiniLM-L6 tracks meaning? The study behind score ``lift``.

Every relevance read tried for issue 12, scored on a probe set (paraphrase
positives, lexical distractors, unrelated negatives;
``attn_env/valuations/probes``) by P@1, nDCG@4, MRR and the distractor-first
rate, beside the cosine of mean-pooled embeddings:

- the library's scores through :func:`attn_env.valuations.relevance`: ``lift``
  (the default) and the earlier ``maxsim`` / ``mass`` definitions;
- pair attention ``[CLS] q [SEP] c [SEP]``: per layer, mean or max over heads,
  the query tokens' maxsim / mass on the candidate and the [CLS] row's mass;
- attention rollout (Abnar & Zuidema 2020: mean over heads, 0.5 A + 0.5 I,
  multiplied up the layers) from the query rows and from [CLS];
- cross attention in the model's own query/key geometry between the query's
  and the candidate's *separately encoded* contextual states (layer l's W_Q,
  W_K on the states entering layer l): mass on the candidate against the
  query's own tokens, per token, and maxsim;
- single heads' mass, raw and calibrated by a content-free query (``lift``).

``--select`` (dev set only) adds the greedy forward selection of lift heads
(with a two-fold cross-validated P@1 per number of heads), which chose the
default ``lift_heads``.

    python scripts/relevance_study.py --probe dev --select     # choose
    python scripts/relevance_study.py --probe heldout          # report once
    python scripts/relevance_study.py --probe dev --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attn_env.valuations import relevance
from attn_env.valuations.lift import NEUTRAL_QUERY
from attn_env.valuations.model import LIFT_HEADS, embed_texts, load_model
from attn_env.valuations.probes import load_probe
from attn_env.valuations.ranking_metrics import ranking_metrics


def pair_features(lm, query: str, cand: str) -> dict[str, np.ndarray]:
    """Per-layer, per-head reads of the pair page (and rollout), one forward pass."""
    import torch

    tok = lm.tokenizer
    enc = tok(query, cand, return_tensors="pt", truncation=True, max_length=128)
    with torch.inference_mode():
        out = lm.model(**enc.to(lm.device), output_attentions=True)
    ids, tt = enc["input_ids"][0].cpu(), enc["token_type_ids"][0].cpu()
    special = (ids == tok.cls_token_id) | (ids == tok.sep_token_id)
    qrow, ccol = (~special) & (tt == 0), (~special) & (tt == 1)
    maps = torch.stack([a[0].float().cpu() for a in out.attentions])  # L,H,T,T

    def sinks_out(a):
        a = a * (~special).float()
        return a / a.sum(-1, keepdim=True).clamp_min(1e-12)

    agg = {"mean": maps.mean(1), "max": maps.amax(1)}
    feats = {"head_mass": sinks_out(maps)[:, :, qrow][..., ccol].sum(-1).mean(-1)}
    for how, a in agg.items():
        a = sinks_out(a)  # L,T,T
        feats[f"maxsim {how}"] = a[:, qrow][..., ccol].amax(-1).mean(-1)
        feats[f"mass {how}"] = a[:, qrow][..., ccol].sum(-1).mean(-1)
        feats[f"cls-mass {how}"] = a[:, 0][..., ccol].sum(-1)
    eye = torch.eye(len(ids))
    rollout, rq, rc = eye, [], []
    for layer in range(maps.shape[0]):
        step = 0.5 * maps[layer].mean(0) + 0.5 * eye
        rollout = (step / step.sum(-1, keepdim=True)) @ rollout
        r = sinks_out(rollout)
        rq.append(r[qrow][:, ccol].sum(-1).mean())
        rc.append(r[0, ccol].sum())
    feats["rollout query"], feats["rollout cls"] = torch.stack(rq), torch.stack(rc)
    return {k: v.numpy().astype(np.float64) for k, v in feats.items()}


def cross_features(lm, hq: list, hc: list) -> dict[str, np.ndarray]:
    """Cross attention between separately encoded states, per layer: ``[L]`` each."""
    import torch

    n_heads = lm.model.config.num_attention_heads
    out: dict[str, list[float]] = {}
    for layer, block in enumerate(lm.model.encoder.layer):
        sa = block.attention.self
        with torch.inference_mode():
            qq = sa.query(hq[layer]).view(-1, n_heads, sa.attention_head_size)
            kq = sa.key(hq[layer]).view(-1, n_heads, sa.attention_head_size)
            kc = sa.key(hc[layer]).view(-1, n_heads, sa.attention_head_size)
        qq, kq, kc = (x.transpose(0, 1).float().cpu() for x in (qq, kq, kc))
        nq, nc = kq.shape[1] - 2, kc.shape[1] - 2
        scale = sa.attention_head_size**-0.5
        for src, rows in (("query", slice(1, -1)), ("cls", slice(0, 1))):
            lq = qq[:, rows] @ kq[:, 1:-1].transpose(1, 2) * scale
            lc = qq[:, rows] @ kc[:, 1:-1].transpose(1, 2) * scale
            lse_q, lse_c = torch.logsumexp(lq, -1), torch.logsumexp(lc, -1)
            both = torch.softmax(torch.cat([lq, lc], -1), -1)[..., nq:]
            reads = {
                "mass": torch.sigmoid(lse_c - lse_q),
                "mass/token": torch.sigmoid(lse_c - lse_q - np.log(nc / nq)),
                "maxsim": both.amax(-1),
            }
            for name, v in reads.items():
                out.setdefault(f"x-attn {src} {name}", []).append(float(v.mean()))
    return {k: np.asarray(v) for k, v in out.items()}


def encode_alone(lm, text: str) -> list:
    """Hidden states entering each layer of ``text`` encoded alone, ``[T, D]`` each."""
    import torch

    enc = lm.tokenizer(text, return_tensors="pt", truncation=True, max_length=128)
    with torch.inference_mode():
        out = lm.model(**enc.to(lm.device), output_hidden_states=True)
    return [h[0] for h in out.hidden_states[:-1]]


def collect(lm, probe) -> dict[str, list[np.ndarray]]:
    """Every read for every item: ``{definition: [scores of item i]}``."""
    scores: dict[str, list[np.ndarray]] = {}
    alone: dict[str, list] = {}
    for item in probe.items:
        cands = item.candidates
        per: dict[str, list] = {}
        for cand in cands:
            for text in (item.query, cand):
                alone.setdefault(text, encode_alone(lm, text))
            rows = {
                **pair_features(lm, item.query, cand),
                **cross_features(lm, alone[item.query], alone[cand]),
                "neutral_mass": pair_features(lm, NEUTRAL_QUERY, cand)["head_mass"],
            }
            for k, v in rows.items():
                per.setdefault(k, []).append(v)
        emb = embed_texts(lm, [item.query, *cands])
        per["cosine"] = list(emb[1:] @ emb[0])
        for name in ("lift", "maxsim"):
            per[f"library {name}"] = list(
                relevance(item.query, cands, model=lm, score=name)
            )
        for k, v in per.items():
            scores.setdefault(k, []).append(np.asarray(v))
    return scores


def lift_of(scores, heads, calibrate: bool = True) -> list[np.ndarray]:
    """Mean log head mass (over a neutral query's) of 1-based (layer, head) pairs."""
    out = []
    for m, n in zip(scores["head_mass"], scores["neutral_mass"], strict=True):
        v = np.stack([m[:, a - 1, b - 1] for a, b in heads], -1)
        if calibrate:
            v = v / np.stack([n[:, a - 1, b - 1] for a, b in heads], -1)
        out.append(np.log(np.maximum(v, 1e-12)).mean(-1))
    return out


def table(scores, kinds, n_layers: int) -> list[tuple[str, dict]]:
    """One row per definition (per layer where it has one)."""
    rows = [
        ("cosine of mean-pooled embeddings (baseline)", scores["cosine"]),
        ("library lift (default lift_heads)", scores["library lift"]),
        (
            "library maxsim, layer 3, max over heads (earlier default)",
            scores["library maxsim"],
        ),
        ("lift, default heads, uncalibrated", lift_of(scores, LIFT_HEADS, False)),
    ]
    for layer in range(n_layers):
        rows += [
            (
                f"pair {name}, layer {layer + 1}, {how} over heads",
                [s[:, layer] for s in scores[f"{name} {how}"]],
            )
            for name in ("maxsim", "mass", "cls-mass")
            for how in ("mean", "max")
        ]
        for src in ("query", "cls"):
            rows.append(
                (
                    f"rollout to layer {layer + 1}, from {src}",
                    [s[:, layer] for s in scores[f"rollout {src}"]],
                )
            )
            rows += [
                (
                    f"x-attn layer {layer + 1}, {src} rows, {read}",
                    [s[:, layer] for s in scores[f"x-attn {src} {read}"]],
                )
                for read in ("mass", "mass/token", "maxsim")
            ]
        rows.append(
            (
                f"lift, mean over the heads of layer {layer + 1}",
                lift_of(scores, [(layer + 1, h + 1) for h in range(12)]),
            )
        )
    return [(name, ranking_metrics(s, kinds)) for name, s in rows]


def greedy_heads(scores, kinds, idx, k: int, calibrate: bool = True) -> list:
    """Forward selection of heads by P@1 (+ MRR / 2 to break ties) on items ``idx``."""
    shape = scores["head_mass"][0].shape[1:]
    pool = [(a + 1, b + 1) for a in range(shape[0]) for b in range(shape[1])]
    chosen: list = []
    sub = [kinds[i] for i in idx]

    def fit(heads):
        s = lift_of(scores, heads, calibrate)
        r = ranking_metrics([s[i] for i in idx], sub)
        return r["p_at_1"] + 0.5 * r["mrr"]

    for _ in range(k):
        chosen.append(
            max((h for h in pool if h not in chosen), key=lambda h: fit([*chosen, h]))
        )
    return chosen


def select(scores, kinds, seed: int = 0) -> list[dict]:
    """Greedy heads on all items (in-sample) and 2-fold CV P@1, for k = 1..8."""
    n = len(kinds)
    rng = np.random.default_rng(seed)
    folds = []
    for _ in range(3):
        perm = rng.permutation(n)
        folds += [(perm[: n // 2], perm[n // 2 :]), (perm[n // 2 :], perm[: n // 2])]
    out = []
    for calibrate in (True, False):
        full = greedy_heads(scores, kinds, range(n), 8, calibrate)
        fold_heads = [greedy_heads(scores, kinds, tr, 8, calibrate) for tr, _ in folds]
        for k in range(1, 9):
            ins = ranking_metrics(lift_of(scores, full[:k], calibrate), kinds)
            cv = [
                ranking_metrics(
                    [lift_of(scores, heads[:k], calibrate)[i] for i in te],
                    [kinds[i] for i in te],
                )["p_at_1"]
                for heads, (_, te) in zip(fold_heads, folds, strict=True)
            ]
            out.append(
                {
                    "calibrated": calibrate,
                    "k": k,
                    "heads": full[:k],
                    "p_at_1_in_sample": ins["p_at_1"],
                    "p_at_1_cv": float(np.mean(cv)),
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe", default="dev", help="dev, heldout or a probe JSON file")
    ap.add_argument("--select", action="store_true", help="greedy head selection (dev)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    lm = load_model(device=args.device)
    probe = load_probe(args.probe)
    kinds = [item.kinds for item in probe.items]
    started = time.perf_counter()
    scores = collect(lm, probe)
    rows = table(scores, kinds, lm.n_layers)
    result = {
        "probe": probe.name,
        "queries": len(kinds),
        "seconds": time.perf_counter() - started,
        "rows": [{"definition": name, **m} for name, m in rows],
    }
    if args.select:
        result["selection"] = select(scores, kinds)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"probe {probe.name}: {len(kinds)} queries, {result['seconds']:.0f} s")
    print(
        "| definition | P@1 | nDCG@4 | MRR | distractor first |\n|---|---|---|---|---|"
    )
    for name, m in sorted(rows, key=lambda r: -r[1]["p_at_1"]):
        print(
            f"| {name} | {m['p_at_1']:.3f} | {m['ndcg_at_4']:.3f} | {m['mrr']:.3f} "
            f"| {m['distractor_first']:.3f} |"
        )
    for row in result.get("selection", []):
        heads = ", ".join(f"L{a}H{b}" for a, b in row["heads"])
        print(
            f"greedy calibrated={row['calibrated']} k={row['k']}: in-sample "
            f"{row['p_at_1_in_sample']:.3f}, 2-fold CV {row['p_at_1_cv']:.3f} ({heads})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
