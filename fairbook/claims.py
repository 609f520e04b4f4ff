"""A paper's claim against this run: estimate, interval, test, Holm, minimum detectable effect, verdict.

Every chapter states its paper's claims as :class:`Claim` objects and judges each one with the
data of the run, replicated over a named unit (seed, resampled dataset, trial, split):

* :func:`difference` -- a directional claim ("A is fairer than B"). ``d`` holds one number per
  replicate, oriented so that **d > 0 is the paper's direction** (for two methods: the paired
  difference over shared seeds, never a comparison of their t statistics). One-sample t-test of
  mean(d) = 0 (two-sided), Student t interval.
* :func:`equivalence` -- a "no change" claim ("average recall is kept"): equivalence within a stated
  margin ``±m``, decided by two one-sided tests (TOST, Schuirmann 1987).
* :func:`nested` -- HBR's design: models nested in resampled datasets. The models of one dataset are
  not independent, so each dataset's models are averaged first and the test runs over datasets.
* :func:`permutation` -- a mechanism claim judged against a null distribution (a permuted attribute,
  a placebo group) drawn by the chapter: one-sided permutation p-value.
* :func:`custom` -- a chapter-specific analysis that already has an estimate, interval and p.

:func:`table` collects a chapter's claims into its **family**, adds Holm-adjusted p-values
(``scipy.stats.false_discovery_control`` is BH, so Holm is computed here) and the verdicts:

* ``reproduced`` -- Holm-adjusted p < α and the estimate lies on the paper's side: the paper's
  direction for a difference, inside the margin for an equivalence claim. (p_holm ≥ p, so the
  shown unadjusted 95 % interval then excludes 0 too.)
* ``contradicted`` -- Holm-adjusted p < α and the estimate lies on the other side: the opposite
  direction, or, for an equivalence claim, significantly outside the margin.
* ``inconclusive`` -- otherwise. When the paper states its effect size (``paper_effect``) and the
  run's minimum detectable effect (MDE: the true effect the two-sided t-test finds with 80 % power
  at α = 0.05, given the observed spread and n) is larger, the note says the run is underpowered.

For an equivalence claim ``p`` is the TOST p when the estimate lies inside the margin and the p of
the one-sided test "|mean| > m" on the estimate's side otherwise; either is a level-α test of the
hypothesis whose rejection the verdict reports.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import integrate as _integ
from scipy import optimize as _opt
from scipy import stats as _st

__all__ = [
    "VERDICTS", "COLUMNS", "Claim", "difference", "equivalence", "nested", "permutation", "custom",
    "holm", "mde_t", "table", "summary", "glue", "ALPHA", "POWER",
]

VERDICTS = ("reproduced", "contradicted", "inconclusive")
ALPHA = 0.05
POWER = 0.8
#: Columns of ``results/claims.csv`` (the Scorecard page reads them).
COLUMNS = ["chapter", "key", "claim", "source", "paper", "quantity", "unit", "n", "estimate",
           "ci_low", "ci_high", "p", "p_holm", "mde", "paper_effect", "kind", "margin", "verdict",
           "note", "section"]


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, as the chapter tests it.

    Parameters
    ----------
    key : str
        Short identifier, unique within the chapter (``[a-z0-9_]``); glue names start with it.
    claim : str
        The paper's statement in words.
    source : str
        Where the paper makes it: "Table 3", "Fig. 2", "§4.2".
    paper : str
        The paper's own figure for it, cited as the paper's ("WST 84.2 vs 82.7").
    quantity : str
        What this run compares, with its unit and orientation ("test −ΔEO, GCM − EOR; > 0: GCM fairer").
    unit : str
        The replicated experimental unit ("seed", "resampled dataset", "trial", "split").
    section : str
        MyST label of the chapter section that measures it (the Scorecard links there).
    paper_effect : float, optional
        The paper's effect in the units of ``quantity`` (oriented like ``d``), for the power note.
    """

    key: str
    claim: str
    source: str
    paper: str
    quantity: str
    unit: str
    section: str = ""
    paper_effect: float | None = None

    def __post_init__(self):
        if not self.key or not all(c.isalnum() or c == "_" for c in self.key) or self.key != self.key.lower():
            raise ValueError(f"Claim key must be lower-case letters, digits and '_', got {self.key!r}")
        for f in ("claim", "source", "paper", "quantity", "unit"):
            if not str(getattr(self, f)).strip():
                raise ValueError(f"Claim {self.key!r}: '{f}' must not be empty")


def _values(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def _row(claim: Claim, kind: str, n: int, estimate: float, ci: tuple[float, float], p: float,
         mde: float, on_paper_side: bool, margin: float = np.nan, note: str = "") -> dict:
    row = asdict(claim)
    row.update(kind=kind, n=int(n), estimate=float(estimate), ci_low=float(ci[0]), ci_high=float(ci[1]),
               p=float(p), mde=float(mde), margin=float(margin), note=note,
               paper_effect=np.nan if claim.paper_effect is None else float(claim.paper_effect),
               _paper_side=bool(on_paper_side))
    return row


def mde_t(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable mean difference of a two-sided one-sample t-test with ``n`` units.

    The smallest true mean μ with P(reject | μ) = ``power`` when the units' standard deviation is
    ``sd`` (power from the noncentral t with noncentrality μ√n/sd). ``inf`` for n < 2, 0 for sd = 0.
    """
    if n < 2 or not np.isfinite(sd):
        return math.inf
    return float(sd * _mde_unit(int(n), float(alpha), float(power)))


@functools.lru_cache(maxsize=256)
def _mde_unit(n: int, alpha: float, power: float) -> float:
    """The MDE for sd = 1 (the MDE scales with sd)."""
    df = n - 1
    crit = _st.t.ppf(1 - alpha / 2, df)

    def gap(ncp):  # power − target, from the noncentral t
        g = _st.nct.sf(crit, df, ncp) + _st.nct.cdf(-crit, df, ncp) - power
        return g if np.isfinite(g) else _gap_quad(ncp)

    def _gap_quad(ncp):  # where nct is NaN: T = (Z + ncp) / sqrt(V/df), V ~ χ²(df), integrated over V
        def integrand(v):
            s = math.sqrt(v / df)
            return (_st.norm.cdf(ncp - crit * s) + _st.norm.cdf(-ncp - crit * s)) * _st.chi2.pdf(v, df)
        return _integ.quad(integrand, 0, math.inf, limit=200)[0] - power

    hi = 1.0
    while gap(hi) < 0:
        hi *= 2
    return _opt.brentq(gap, 0.0, hi, xtol=1e-10) / math.sqrt(n)


def _t_summary(d: np.ndarray, level: float) -> tuple[float, float, tuple[float, float]]:
    """(mean, sd, t interval) of ``d``; a degenerate interval when sd = 0 or n < 2."""
    n, mean = d.size, float(d.mean()) if d.size else math.nan
    if n < 2:
        return mean, math.nan, (math.nan, math.nan)
    sd = float(d.std(ddof=1))
    half = _st.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, sd, (mean - half, mean + half)


def _t_p(d: np.ndarray, mu: float = 0.0, alternative: str = "two-sided") -> float:
    if d.size < 2:
        return math.nan
    if np.all(d == d[0]):  # zero spread: the t statistic is undefined, so there is no test
        return math.nan
    return float(_st.ttest_1samp(d, mu, alternative=alternative).pvalue)


def difference(claim: Claim, d: Any, *, level: float = 0.95) -> dict:
    """A directional claim from per-unit values ``d`` (d > 0: the paper's direction).

    Two-sided one-sample t-test of mean(d) = 0, Student t interval at ``level``, MDE at this n.
    NaN entries (a unit where the quantity is undefined) are dropped and counted in the note.
    """
    raw = np.asarray(d, dtype=float).ravel()
    x = _values(raw, "d")
    mean, sd, ci = _t_summary(x, level)
    note = f"{raw.size - x.size} of {raw.size} units undefined" if x.size < raw.size else ""
    return _row(claim, "difference", x.size, mean, ci, _t_p(x), mde_t(sd, x.size),
                bool(mean > 0), note=note)


def equivalence(claim: Claim, d: Any, margin: float, *, level: float = 0.95) -> dict:
    """A "no change" claim: |mean(d)| < ``margin`` (TOST); ``margin`` is stated in the chapter.

    The interval reported is the (1 − 2α) t interval that TOST's decision corresponds to.
    """
    if not margin > 0:
        raise ValueError(f"equivalence margin must be > 0, got {margin!r}")
    x = _values(d, "d")
    alpha = 1 - level
    mean, sd, ci = _t_summary(x, 1 - 2 * alpha)
    inside = abs(mean) < margin if np.isfinite(mean) else False
    if x.size < 2:
        p = math.nan
    elif inside:  # TOST: both one-sided tests must reject
        p = max(_t_p(x, -margin, "greater"), _t_p(x, margin, "less"))
    else:  # significantly outside the margin on the estimate's side
        p = _t_p(x, margin, "greater") if mean > 0 else _t_p(x, -margin, "less")
    return _row(claim, "equivalence", x.size, mean, ci, p, mde_t(sd, x.size), bool(inside),
                margin=margin)


def nested(claim: Claim, d: Any, groups: Any, *, level: float = 0.95) -> dict:
    """A directional claim whose units are nested: ``d`` per model, ``groups`` its dataset.

    The models of one resampled dataset share that dataset, so they are averaged first and the
    t-test runs over the datasets (the summary-measures analysis of a nested design); n is the
    number of datasets.
    """
    frame = pd.DataFrame({"d": np.asarray(d, dtype=float).ravel(), "g": np.asarray(groups).ravel()})
    means = frame.dropna().groupby("g", sort=True)["d"].mean().to_numpy()
    row = difference(claim, means, level=level)
    row["note"] = (row["note"] + "; " if row["note"] else "") + (
        f"{len(frame)} models in {means.size} datasets, averaged per dataset")
    return row


def permutation(claim: Claim, observed: float, null: Any, *, n: int | None = None,
                level: float = 0.95) -> dict:
    """A mechanism claim against a null distribution: is ``observed`` larger than the null draws?

    ``null`` holds the statistic recomputed under the null (permuted attribute, placebo group);
    the estimate is observed − mean(null), the interval the central ``level`` range of that
    difference under the null shifted to the estimate, and p = (1 + #{null ≥ observed}) / (1 + B).
    The MDE is the excess over the null mean that the null's 95th percentile requires. ``n`` is the
    number of replicated units the statistic is computed from (the null's size when not given).
    """
    z = _values(null, "null")
    if z.size < 1:
        raise ValueError(f"claim {claim.key!r}: the null distribution is empty")
    est = float(observed) - float(z.mean())
    lo, hi = np.quantile(z - z.mean(), [(1 - level) / 2, (1 + level) / 2])
    p = (1 + int(np.sum(z >= observed))) / (1 + z.size)
    mde = float(np.quantile(z, 1 - ALPHA) - z.mean())
    return _row(claim, "permutation", z.size if n is None else n, est, (est - hi, est - lo), p, mde, bool(est > 0),
                note=f"null: {z.size} draws, mean {z.mean():.4g}")


def custom(claim: Claim, *, n: int, estimate: float, ci: tuple[float, float], p: float,
           mde: float = math.nan, kind: str = "difference", note: str = "") -> dict:
    """A chapter's own analysis (estimate > 0 is the paper's direction); verdict rules as above."""
    return _row(claim, kind, n, estimate, ci, p, mde, bool(estimate > 0), note=note)


def holm(p: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count toward m)."""
    p = np.asarray(list(p), dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def table(rows: Iterable[dict], chapter: str, *, alpha: float = ALPHA) -> pd.DataFrame:
    """The chapter's family of claims with Holm-adjusted p-values and verdicts (columns :data:`COLUMNS`)."""
    rows = list(rows)
    keys = [r["key"] for r in rows]
    if len(set(keys)) != len(keys):
        raise ValueError(f"claim keys must be unique in chapter {chapter!r}: {keys}")
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.DataFrame(rows)
    df["chapter"] = chapter
    df["p_holm"] = holm(df["p"])
    sig = df["p_holm"] < alpha
    df["verdict"] = np.where(sig & df["_paper_side"], "reproduced",
                             np.where(sig & ~df["_paper_side"], "contradicted", "inconclusive"))
    weak = (df["verdict"] == "inconclusive") & np.isfinite(df["paper_effect"]) & (
        df["mde"] > df["paper_effect"].abs())
    for i in np.flatnonzero(weak):
        extra = (f"underpowered: MDE {df.at[i, 'mde']:.3g} > the paper's effect "
                 f"{abs(df.at[i, 'paper_effect']):.3g}")
        df.at[i, "note"] = f"{df.at[i, 'note']}; {extra}" if df.at[i, "note"] else extra
    for i in np.flatnonzero(df["n"] < 2):
        if df.at[i, "kind"] in ("difference", "equivalence"):
            df.at[i, "note"] = (df.at[i, "note"] + "; " if df.at[i, "note"] else "") + "n < 2: no test"
    for i in np.flatnonzero((df["n"] >= 2) & df["p"].isna() & df["kind"].isin(["difference", "equivalence"])):
        df.at[i, "note"] = (df.at[i, "note"] + "; " if df.at[i, "note"] else "") + "zero spread: no test"
    return df[COLUMNS].reset_index(drop=True)


def summary(claims: pd.DataFrame) -> str:
    """"k reproduced, m contradicted, n inconclusive (of N)"."""
    c = claims["verdict"].value_counts()
    return (f"{c.get('reproduced', 0)} reproduced, {c.get('contradicted', 0)} contradicted, "
            f"{c.get('inconclusive', 0)} inconclusive (of {len(claims)} claims)")


def _fmt(x: float, digits: int = 3) -> str:
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}".replace("-", "−")


def interval_text(row: pd.Series | dict, digits: int = 3) -> str:
    """"0.012 [−0.003, 0.027]": the estimate with its interval, as the prose shows it."""
    return f"{_fmt(row['estimate'], digits)} [{_fmt(row['ci_low'], digits)}, {_fmt(row['ci_high'], digits)}]"


class Text(str):
    """A string whose notebook display is itself (no quotes), for ``{glue:text}``."""

    def __repr__(self) -> str:
        return str(self)


def glue(claims: pd.DataFrame, prefix: str | None = None) -> None:
    """Glue every claim's numbers for the prose: ``<key>_verdict``, ``<key>_estimate`` (estimate with
    interval), ``<key>_p`` (Holm-adjusted), ``<key>_n``, plus ``<prefix>_claims_summary``."""
    from myst_nb import glue as _glue

    for _, r in claims.iterrows():
        _glue(f"{r.key}_verdict", Text(r.verdict), display=False)
        _glue(f"{r.key}_estimate", Text(interval_text(r)), display=False)
        _glue(f"{r.key}_p", Text(_fmt(r.p_holm, 2)), display=False)
        _glue(f"{r.key}_n", Text(str(int(r.n))), display=False)
    if prefix:
        _glue(f"{prefix}_claims_summary", Text(summary(claims)), display=False)


__all__ += ["interval_text", "Text"]
