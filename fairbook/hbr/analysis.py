"""Post-hoc analysis of the HBR chapter's case studies (a :class:`~fairbook.hbr.experiment.Study`),
at the unit the design replicates: the resampled dataset.

* changes and tests: :func:`metric_changes` (Figs. 5, 6, 8), :func:`paired_changes`,
  :func:`dataset_ttest`, :func:`table_tests` (the Table D1-D6 analogs, Holm within a table),
  :func:`d_table`, :func:`control_table` (HBR against the controls the paper lacks);
* the generated pool: :func:`candidate_sets`, :func:`candidate_recognition`;
* mechanism (appendix E): :func:`prediction_changes`, :func:`cluster_share`;
* :func:`aum_stability` -- how the allocation depends on the size of the AUM ensemble.

The paper's claims, judged from these, are in :mod:`fairbook.hbr.claims`.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from .. import stats
from ..claims import holm
from .experiment import BIAS_METRICS, Study
from .hardness import class_hardness
from .resampling import POOL_STRATEGIES, Pool, parse_strategy, pool_candidates, resampling_counts

__all__ = ["metric_changes", "paired_changes", "dataset_ttest", "table_tests", "d_table", "control_table",
           "candidate_sets", "candidate_recognition", "prediction_changes", "cluster_share", "aum_stability"]


# --- a study's changes and tests at the unit of the resampled dataset (Tables D1-D6) -----------------
def metric_changes(study: Study) -> pd.DataFrame:
    """Mean of every metric per (setting, strategy, score) minus the mean of the base models of the
    same setting (Figs. 5, 6, 8: negative = smaller gap for the Δ metrics)."""
    long = study.scores.melt(id_vars=["parameter", "strategy", "score"], value_vars=list(BIAS_METRICS) + ["avg"],
                             var_name="metric")
    means = long.groupby(["parameter", "strategy", "score", "metric"], sort=False)["value"].mean().reset_index()
    base = means[means.strategy == "none"].drop(columns="strategy").rename(columns={"value": "base"})
    out = means[means.strategy != "none"].merge(base, on=["parameter", "score", "metric"], validate="many_to_one")
    out["change"] = out["value"] - out["base"]
    return out


def paired_changes(scores: pd.DataFrame, strategy: str, metric: str, score: str,
                   against: str = "none") -> pd.DataFrame:
    """Per (parameter, i, j): how much ``strategy`` improved ``metric`` over ``against`` on the same pair.

    ``scores`` is a :class:`Study`'s ``scores``; ``against`` is ``"none"`` (the base models: the
    paper's pairs of appendix C) or another strategy (two strategies compared pair by pair: the same
    setting, dataset replicate i and model seed j). ``d`` > 0 means ``strategy`` did better: a smaller
    gap for the Δ metrics (``against − strategy``), a larger class average for ``avg``
    (``strategy − against``). Returns columns ``parameter, i, j, d``.
    """
    key = ["parameter", "i", "j"]
    sel = scores[scores["score"] == score]
    a = sel[sel["strategy"] == strategy].set_index(key)[metric].sort_index()
    b = sel[sel["strategy"] == against].set_index(key)[metric].sort_index()
    if a.empty or b.empty:
        raise ValueError(f"no {score} rows for strategy {strategy!r} or {against!r}")
    if not (a.index.is_unique and b.index.is_unique and a.index.equals(b.index)):
        raise ValueError(f"{strategy!r} and {against!r} rows must pair one to one on (parameter, i, j)")
    sign = 1.0 if metric == "avg" else -1.0
    return (sign * (a - b)).rename("d").reset_index()


def dataset_ttest(d, groups) -> dict:
    """Two-sided t-test of mean(d) = 0 at the unit of the dataset replicate (HBR's nested design).

    The models of one resampled dataset share that dataset, so their ``d`` are averaged per group
    first and the test runs over the groups (n = number of datasets, df = n − 1). NaN entries are
    dropped. Returns ``mean``, ``t``, ``p`` (two-sided), ``n`` (datasets); ``t`` and ``p`` are NaN
    with fewer than two datasets or when all dataset means are equal (no spread to test against).
    """
    frame = pd.DataFrame({"d": np.asarray(d, dtype=float), "g": np.asarray(groups)}).dropna()
    x = frame.groupby("g", sort=True)["d"].mean().to_numpy()
    n = x.size
    if n < 2:
        return {"mean": float(x.mean()) if n else math.nan, "t": math.nan, "p": math.nan, "n": n}
    sd = x.std(ddof=1)
    if sd <= 1e-12 * max(1.0, abs(x.mean())):  # every dataset the same (a discrete metric on a small test set): no t-test
        return {"mean": float(x.mean()), "t": math.nan, "p": math.nan, "n": n}
    t = float(x.mean() / (sd / math.sqrt(n)))
    return {"mean": float(x.mean()), "t": t, "p": float(2 * sps.t.sf(abs(t), n - 1)), "n": n}


def table_tests(scores: pd.DataFrame, metrics: Sequence[str] = BIAS_METRICS, alpha: float = 0.05,
                n_boot: int = 2000) -> pd.DataFrame:
    """The t-tests of a Table D1-D6 analog, at the unit of the resampled dataset, Holm within the table.

    One row per (score, metric, parameter, strategy) of ``scores`` (a :class:`Study`'s ``scores``;
    ``metrics`` picks the table: the Δ metrics for D1-D4, ``("avg",)`` for D5-D6). Columns:

    * ``t_naive``, ``p_naive`` -- the paper's analysis (appendix C): the paired t-test over all
      n_datasets × n_models pairs, as if the models of one dataset were independent (they are
      not: with dataset sd = model sd its one-sided version rejects a true null ≈ 16 % of the time
      at nominal 5 %); two-sided, as the authors' code calls ``ttest_rel``;
    * ``mean``, ``t``, ``p``, ``n`` -- :func:`dataset_ttest`: d averaged over the models of each
      dataset, two-sided t-test over the datasets (the paper marks significant changes of either
      sign);
    * ``ci_low``, ``ci_high`` -- the 95 % paired bootstrap interval of the mean change over datasets
      (:func:`fairbook.stats.paired_bootstrap_ci`, percentile, ``n_boot`` resamples of the datasets);
    * ``p_holm`` -- Holm's adjustment of ``p`` over every row of this table; ``significant`` is
      ``p_holm < alpha``.

    d > 0 (and t > 0) means the strategy improved the metric: a smaller gap, a larger average.
    """
    rows = []
    for (score, strategy, parameter), grp in scores[scores.strategy != "none"].groupby(
            ["score", "strategy", "parameter"], sort=False):
        for metric in metrics:
            ch = paired_changes(scores[scores.parameter == parameter], strategy, metric, score)
            ok = ch["d"].notna()
            if ok.sum() >= 2 and ch.loc[ok, "d"].std(ddof=1) > 0:
                naive = stats.paired_ttest(ch.loc[ok, "d"].to_numpy(), np.zeros(int(ok.sum())))
                t_naive, p_naive = float(naive.statistic), float(naive.pvalue)
            else:
                t_naive = p_naive = math.nan
            res = dataset_ttest(ch["d"], ch["i"])
            per_dataset = ch[ok].groupby("i")["d"].mean().to_numpy()
            lo = hi = math.nan
            if per_dataset.size >= 2 and per_dataset.std() > 0:
                ci = stats.paired_bootstrap_ci(per_dataset, np.zeros(per_dataset.size), n_resamples=n_boot,
                                               method="percentile")
                lo, hi = float(ci.low), float(ci.high)
            rows.append({"score": score, "metric": metric, "parameter": parameter, "strategy": strategy,
                         "pairs": int(ok.sum()), "t_naive": t_naive, "p_naive": p_naive, **res,
                         "ci_low": lo, "ci_high": hi})
    out = pd.DataFrame(rows, columns=["score", "metric", "parameter", "strategy", "pairs", "t_naive",
                                      "p_naive", "mean", "t", "p", "n", "ci_low", "ci_high"])
    out["p_holm"] = holm(out["p"]) if len(out) else []
    out["significant"] = out["p_holm"] < alpha
    return out


def d_table(tests: pd.DataFrame, imbalance: pd.DataFrame | None, index, columns) -> pd.DataFrame:
    """A Table D1-D6 analog for display: per cell the dataset-level t, ``*`` when Holm-significant
    within the table, and in brackets the paper's naive t; beside them what each resampling did to
    the data (rows/columns ``target b'/a max`` — the allocation's, or for the controls the weight or
    prior ratio — and ``moved`` from a :class:`Study`'s ``imbalance``, and
    ``recognised`` — the share of generated candidates the ensemble assigns to their class — where
    the strategy draws from a generated pool)."""
    cell = [f"{t:.2f}{'*' if sig else ''} ({tn:.2f})" for t, sig, tn in zip(tests.t, tests.significant, tests.t_naive)]
    rows = [tests.assign(cell=cell)]
    extra = {"target b'/a max": ("max_ratio", "{:.2f}"), "moved": ("moved", "{:.0f}"),
             "recognised": ("recognised", "{:.0%}")}
    for score in tests["score"].unique() if imbalance is not None else []:
        for label, (col, fmt) in extra.items():
            if col not in imbalance or imbalance[col].isna().all():
                continue
            part = imbalance[imbalance[col].notna()]
            rows.append(pd.DataFrame({"score": score, "metric": label, "parameter": part["parameter"],
                                      "strategy": part["strategy"],
                                      "cell": [fmt.format(v) for v in part[col]]}))
    return pd.concat(rows, ignore_index=True).pivot_table(index=index, columns=columns, values="cell",
                                                          aggfunc="first", sort=False)


def control_table(tests: pd.DataFrame, avg_tests: pd.DataFrame, imbalance: pd.DataFrame) -> pd.DataFrame:
    """Per (strategy, setting): the mean reduction of the recall gap Δhe with its bootstrap interval
    and Holm p (``tests``, :func:`table_tests` of the Δ metrics), the class-averaged recall change
    (``avg_tests``, :func:`table_tests` of ``("avg",)``) and what the strategy did to the data
    (``imbalance``, a :class:`Study`'s): the chapter's comparison of HBR with its controls."""
    he = tests[(tests.metric == "delta_he") & (tests.score == "recall")]
    avg = avg_tests[avg_tests.score == "recall"][["strategy", "parameter", "mean"]].rename(
        columns={"mean": "avg recall change"})
    out = he[["strategy", "parameter", "mean", "ci_low", "ci_high", "p_holm"]].merge(avg, on=["strategy", "parameter"])
    return out.merge(imbalance.drop(columns=["level"]), on=["strategy", "parameter"]).rename(
        columns={"mean": "Δhe reduction"})


# --- what a generated-pool strategy draws from -------------------------------------------------------
def candidate_sets(pool: Pool, predicted, a, counts, strategy: str, classes=None) -> pd.DataFrame:
    """What a generated-pool strategy can draw from, per oversampled class: the number of extra
    samples it needs (``need``, at least 1 for listed ``classes`` that this allocation does not
    grow), its candidate images (:func:`~fairbook.hbr.resampling.pool_candidates`), the share the
    baseline ensemble assigns to their own class (``predicted``: its argmax per pool image) and their
    mean confidence. Empty for strategies without a pool."""
    over = parse_strategy(strategy)[1]
    a, counts, predicted = np.asarray(a), np.asarray(counts), np.asarray(predicted)
    classes = np.flatnonzero(counts > a) if classes is None else classes
    rows = []
    for c in classes if over in POOL_STRATEGIES else []:
        where = np.flatnonzero(pool.y == c)
        need = max(int(counts[c] - a[c]), 1)
        conf = np.zeros(len(where)) if pool.confidence is None else pool.confidence[where]
        correct = None if pool.correct is None else pool.correct[where]
        target = None if pool.real_confidence is None else pool.real_confidence[c]
        cand = where[pool_candidates(over, conf, need, target, correct)]
        rows.append({"class": int(c), "strategy": strategy, "need": need, "candidates": len(cand),
                     "recognised as their class": float((predicted[cand] == c).mean()),
                     "mean confidence": float(conf[np.searchsorted(where, cand)].mean())})
    return pd.DataFrame(rows, columns=["class", "strategy", "need", "candidates", "recognised as their class",
                                       "mean confidence"])


def candidate_recognition(pool: Pool, predicted, a, counts, strategy: str) -> float:
    """The share of a generated-pool strategy's candidate images that the baseline ensemble assigns
    to their own class, over the classes the strategy oversamples, each weighted by its number of
    extra samples (:func:`candidate_sets`). NaN for strategies without a pool."""
    t = candidate_sets(pool, predicted, a, counts, strategy)
    return float(np.average(t["recognised as their class"], weights=t["need"])) if len(t) else math.nan


# --- mechanism: what the resampled models predict differently (Appendix E) ---------------------------
def prediction_changes(study: Study, strategy: str, n_classes: int) -> pd.DataFrame:
    """Per (parameter, i, j, class): the change of TP, FP and FN (``strategy`` − base on the same
    pair) on the test set, from the confusion matrices of :func:`~fairbook.hbr.experiment.score_logits` (HBR appendix E:
    oversampled classes are predicted more often — TP and FP up, FN down)."""
    cm = study.confusion
    key = ["parameter", "i", "j"]
    cols = [f"n_{t}_{q}" for t in range(n_classes) for q in range(n_classes)]

    def counts(rows):
        m = rows.set_index(key)[cols].sort_index()
        arr = m.to_numpy().reshape(len(m), n_classes, n_classes)
        tp = np.einsum("ncc->nc", arr)
        return m.index, tp, arr.sum(1) - tp, arr.sum(2) - tp  # TP, FP (column sums), FN (row sums)

    base = cm[cm.strategy == "none"].drop_duplicates(key)
    idx_b, tp_b, fp_b, fn_b = counts(base)
    idx_s, tp_s, fp_s, fn_s = counts(cm[cm.strategy == strategy])
    if not idx_b.equals(idx_s):
        raise ValueError(f"{strategy!r} and the base models must pair one to one on (parameter, i, j)")
    out = []
    for what, d in (("TP", tp_s - tp_b), ("FP", fp_s - fp_b), ("FN", fn_s - fn_b)):
        frame = pd.DataFrame(d, index=idx_b, columns=range(n_classes)).stack().rename("change").reset_index()
        out.append(frame.rename(columns={"level_3": "class"}).assign(count=what))
    return pd.concat(out, ignore_index=True)


def cluster_share(study: Study, strategy: str, cluster, n_classes: int) -> pd.DataFrame:
    """Are the changes boundary shifts inside a confusable ``cluster`` of classes?

    Per (parameter, i, j): ``share`` = the part of the total absolute change of the off-diagonal
    confusion counts (``strategy`` − base) that lies inside the cluster (true and predicted class
    both in it), and ``null`` = the part of the base models' own confusions that lies inside it —
    the share expected if the changes were spread like the existing errors."""
    cm = study.confusion
    key = ["parameter", "i", "j"]
    cols = [f"n_{t}_{q}" for t in range(n_classes) for q in range(n_classes)]
    inside = np.zeros((n_classes, n_classes), dtype=bool)
    inside[np.ix_(list(cluster), list(cluster))] = True
    off = ~np.eye(n_classes, dtype=bool)
    base = cm[cm.strategy == "none"].drop_duplicates(key).set_index(key)[cols].sort_index()
    res = cm[cm.strategy == strategy].set_index(key)[cols].sort_index()
    if not base.index.equals(res.index):
        raise ValueError(f"{strategy!r} and the base models must pair one to one on (parameter, i, j)")
    b = base.to_numpy().reshape(len(base), n_classes, n_classes).astype(float)
    d = np.abs(res.to_numpy().reshape(len(res), n_classes, n_classes) - b)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (d * (inside & off)).sum((1, 2)) / (d * off).sum((1, 2))
        null = (b * (inside & off)).sum((1, 2)) / (b * off).sum((1, 2))
    return pd.DataFrame({"share": share, "null": null}, index=base.index).reset_index()


# --- how many models the AUM needs -------------------------------------------------------------------
def aum_stability(aum_per_model, y, n_classes: int, a, alpha: float = 1.0, f: str = "identity",
                  n_draws: int = 20, seed: int = 0, rounding: str = "paper") -> pd.DataFrame:
    """How the allocation depends on the size of the AUM ensemble (the paper: "10 models suffice").

    For each ensemble size k < K (K = the models trained), up to ``n_draws`` random k-subsets of the
    models: class AUM (eq. 4) from their mean AUM, compared with the full K-model ensemble — the
    Spearman correlation of class AUM, and the largest and total absolute change of the allocation
    b' (eqs. 5-6) in samples. Rows per (k, draw)."""
    per_model = np.asarray(aum_per_model, dtype=float)
    K = len(per_model)
    full_h = class_hardness(per_model.mean(0), y, n_classes)
    full_b = resampling_counts(full_h, a, alpha, f, rounding)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(1, K):
        combos = list(itertools.combinations(range(K), k))
        if len(combos) > n_draws:
            combos = [combos[c] for c in rng.choice(len(combos), n_draws, replace=False)]
        for draw, members in enumerate(combos):
            h = class_hardness(per_model[list(members)].mean(0), y, n_classes)
            try:
                b = resampling_counts(h, a, alpha, f, rounding)
                dmax, dsum = int(np.abs(b - full_b).max()), int(np.abs(b - full_b).sum())
            except ValueError:  # this subset's AUMs admit no allocation at this α
                dmax = dsum = math.nan
            rows.append({"k": k, "draw": draw, "spearman_class_aum": float(sps.spearmanr(h, full_h).statistic),
                         "max_abs_change": dmax, "total_abs_change": dsum})
    return pd.DataFrame(rows)
