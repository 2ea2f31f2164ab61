"""The claims ledger: each paper's testable claims, checked against our results files.

``book/data/claims/<chapter>.yaml`` is a list of claims::

    - id: oap-improves-map
      claim: OAP improves mAP over a multi-branch model without it
      paper_evidence: Table 4, rows 2 and 3 (Market-1501 mAP 82.2 -> 84.7)
      comparison: {metric: mAP, better: cama_oap, worse: cama_no_oap, min_margin: 0.0}

Comparison kinds (``kind``, default ``pair``):

- ``pair``: run ``better`` beats run ``worse`` on ``metric`` by more than ``min_margin`` (a negative
  ``min_margin`` states non-inferiority: ``better`` is at most ``-min_margin`` below ``worse``).
- ``best_of``: run ``best`` beats every run in ``others`` by more than ``min_margin``.

``higher_is_better`` (default true) flips the direction for losses and errors. Margins are in the
metric's stored unit (fractions for mAP / CMC). A run name stands for an *arm*: the run and its seed
replicas ``<run>_seed<k>``; the arms are compared seed by seed (:func:`judge`). A verdict is computed per
scale, never written by hand: ``reproduced`` (the 95% interval of the paired difference clears the margin),
``contradicted`` (it lies below zero), ``inconclusive`` (it straddles, or fewer than 3 paired seeds) or
``not yet run`` (an arm has no results file).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reidlib.results.intervals import (
    CONTRADICTED,
    INCONCLUSIVE,
    INTERVAL_VERDICTS,
    NOT_YET_RUN,
    REPRODUCED,
    interval_verdict,
    paired_difference,
)
from reidlib.results.paths import book_data_root
from reidlib.results.store import list_runs, load_run, lookup_metric
from reidlib.scale import SCALES

#: The four verdicts (:mod:`reidlib.results.intervals`), in the order pages list them.
VERDICTS = INTERVAL_VERDICTS
#: Paired seeds a claim needs before its interval can decide it.
MIN_SEEDS = 3
KINDS = ("pair", "best_of")
_CLAIM_KEYS = {"id", "claim", "paper_evidence", "comparison"}
_COMPARISON_KEYS = {
    "pair": {"kind", "metric", "better", "worse", "min_margin", "higher_is_better"},
    "best_of": {"kind", "metric", "best", "others", "min_margin", "higher_is_better"},
}


@dataclass(frozen=True)
class Claim:
    """One testable claim. ``winner`` must beat every run in ``losers`` on ``metric``."""

    chapter: str
    id: str
    claim: str
    paper_evidence: str
    kind: str
    metric: str
    winner: str
    losers: tuple[str, ...]
    min_margin: float = 0.0
    higher_is_better: bool = True


def claims_path(chapter: str, data_root: str | os.PathLike | None = None) -> Path:
    """``<book data>/claims/<chapter>.yaml``."""
    return book_data_root(data_root) / "claims" / f"{chapter}.yaml"


def claim_chapters(data_root: str | os.PathLike | None = None) -> list[str]:
    """Chapters that have a claims file, sorted."""
    folder = book_data_root(data_root) / "claims"
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _parse_claim(chapter: str, entry: Any, where: str) -> Claim:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping with keys {sorted(_CLAIM_KEYS)}, got {entry!r}")
    missing = sorted(_CLAIM_KEYS - set(entry))
    unknown = sorted(set(entry) - _CLAIM_KEYS)
    if missing or unknown:
        raise ValueError(f"{where}: missing keys {missing}, unknown keys {unknown}")
    for key in ("id", "claim", "paper_evidence"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise ValueError(f"{where}: {key!r} must be a non-empty string")
    comp = entry["comparison"]
    if not isinstance(comp, dict):
        raise ValueError(f"{where}: 'comparison' must be a mapping, got {comp!r}")
    kind = comp.get("kind", "pair")
    if kind not in KINDS:
        raise ValueError(f"{where}: comparison kind {kind!r} unknown; expected one of {KINDS}")
    unknown = sorted(set(comp) - _COMPARISON_KEYS[kind])
    required = {"metric", "better", "worse"} if kind == "pair" else {"metric", "best", "others"}
    missing = sorted(required - set(comp))
    if missing or unknown:
        raise ValueError(f"{where}: comparison ({kind}) missing keys {missing}, unknown keys {unknown}")
    if kind == "pair":
        winner, losers = comp["better"], (comp["worse"],)
    else:
        winner, others = comp["best"], comp["others"]
        if not isinstance(others, list) or not others:
            raise ValueError(f"{where}: 'others' must be a non-empty list of run names")
        losers = tuple(others)
    names = (winner, *losers)
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{where}: run names must be non-empty strings, got {names}")
    if winner in losers:
        raise ValueError(f"{where}: run {winner!r} is compared with itself")
    try:
        margin = float(comp.get("min_margin", 0.0))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: min_margin {comp.get('min_margin')!r} is not a number") from None
    if not math.isfinite(margin) or margin <= -1:  # negative: a non-inferiority claim ("close to")
        raise ValueError(f"{where}: min_margin must be a finite number above -1, got {margin}")
    higher = comp.get("higher_is_better", True)
    if not isinstance(higher, bool):
        raise ValueError(f"{where}: higher_is_better must be true or false, got {higher!r}")
    if not isinstance(comp["metric"], str) or not comp["metric"]:
        raise ValueError(f"{where}: metric must be a non-empty string")
    return Claim(
        chapter=chapter,
        id=entry["id"].strip(),
        claim=" ".join(entry["claim"].split()),
        paper_evidence=" ".join(entry["paper_evidence"].split()),
        kind=kind,
        metric=comp["metric"],
        winner=winner,
        losers=losers,
        min_margin=margin,
        higher_is_better=higher,
    )


def load_claims(chapter: str, data_root: str | os.PathLike | None = None) -> list[Claim]:
    """Parse and validate ``claims/<chapter>.yaml``.

    Raises:
        FileNotFoundError: no claims file for the chapter.
        ValueError: malformed file; the message names the file and the claim (index and id).
    """
    import yaml

    path = claims_path(chapter, data_root)
    if not path.is_file():
        have = claim_chapters(data_root)
        raise FileNotFoundError(f"no claims file for chapter {chapter!r} at {path}; have {have}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty list of claims, got {type(data).__name__}")
    claims, ids = [], set()
    for index, entry in enumerate(data):
        label = entry.get("id") if isinstance(entry, dict) else None
        claim = _parse_claim(chapter, entry, f"{path}, claim {index}" + (f" ({label})" if label else ""))
        if claim.id in ids:
            raise ValueError(f"{path}, claim {index}: duplicate id {claim.id!r}")
        ids.add(claim.id)
        claims.append(claim)
    return claims


def seeded_values(chapter: str, run: str, metric: str, scale: str, root: str | os.PathLike | None = None,
                  stored: Iterable[str] | None = None) -> dict[int, float]:
    """``{seed: metric}`` of one arm: the run ``run`` and its seed replicas ``run_seed<k>``, each keyed by
    the seed its results file records.

    Raises:
        KeyError: a stored run lacks ``metric``. ValueError: two runs of the arm record the same seed.
    """
    names = list_runs(chapter, scale, root) if stored is None else stored
    replica = re.compile(re.escape(run) + r"_seed\d+")
    values: dict[int, float] = {}
    for name in sorted(n for n in names if n == run or replica.fullmatch(n)):
        record = load_run(chapter, name, scale, root)
        seed = int(record.seed or 0)
        if seed in values:
            raise ValueError(f"{record.path}: seed {seed} of arm {run!r} is stored twice")
        values[seed] = float(lookup_metric(record.metrics, metric, where=str(record.path)))
    return values


def judge(claim: Claim, scale: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Verdict of one claim at one scale from the paired seeds of its arms
    (:func:`reidlib.results.intervals.paired_difference`, a 95% t-interval over seeds).

    Every pair (winner, loser) is judged on its own; the claim is *reproduced* when every pair's interval
    clears ``min_margin``, *contradicted* when some pair's lies entirely below zero, *inconclusive*
    otherwise (also with fewer than :data:`MIN_SEEDS` paired seeds), and *not yet run* when an arm has no
    result.

    Returns:
        ``{"verdict", "detail", "margin", "low", "high", "seeds"}``: the mean paired lead of the pair that
        decided (the smallest), its interval and its number of paired seeds (metric units, positive =
        winner ahead; ``None`` when not yet run).

    Raises:
        KeyError: a stored run lacks the claim's metric (the message lists the metrics it has).
    """
    stored = list_runs(claim.chapter, scale, root)
    needed = (claim.winner, *claim.losers)
    missing = [run for run in needed if run not in stored]
    if missing:
        return {"verdict": NOT_YET_RUN, "detail": f"no results for {', '.join(missing)}", "margin": None,
                "low": None, "high": None, "seeds": 0}
    sign = 1.0 if claim.higher_is_better else -1.0
    arms = {run: seeded_values(claim.chapter, run, claim.metric, scale, root, stored) for run in needed}
    pairs = []
    for loser in claim.losers:
        diff = paired_difference({s: sign * v for s, v in arms[claim.winner].items()},
                                 {s: sign * v for s, v in arms[loser].items()})
        pairs.append((loser, diff, interval_verdict(diff, claim.min_margin, MIN_SEEDS)))
    verdicts = [v for _, _, v in pairs]
    if all(v == REPRODUCED for v in verdicts):
        verdict = REPRODUCED
    elif CONTRADICTED in verdicts:
        verdict = CONTRADICTED
    else:
        verdict = INCONCLUSIVE
    paired = [(loser, d) for loser, d, _ in pairs if d is not None]
    if not paired:
        return {"verdict": INCONCLUSIVE, "detail": f"{claim.metric}: the arms share no seed", "margin": None,
                "low": None, "high": None, "seeds": 0}
    loser, worst = min(paired, key=lambda item: item[1].mean)
    direction = "" if claim.higher_is_better else " (lower is better)"
    parts = []
    for other, d in paired:
        interval = "no interval" if d.n < 2 else f"95% interval [{d.low:+.4f}, {d.high:+.4f}]"
        parts.append(f"{claim.winner} - {other}: {d.mean:+.4f} over {d.n} paired seed(s), {interval}")
    detail = f"{claim.metric}{direction}: " + "; ".join(parts) + f"; min margin {claim.min_margin:g}"
    return {"verdict": verdict, "detail": detail, "margin": worst.mean, "low": worst.low, "high": worst.high,
            "seeds": worst.n}


def evaluate_claims(
    chapter: str,
    scales: Iterable[str] = SCALES,
    root: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
):
    """Every claim of ``chapter`` judged at every scale, as a long DataFrame.

    Columns: ``chapter, id, claim, paper_evidence, metric, scale, verdict, margin`` (mean paired lead),
    ``low, high`` (its 95% interval), ``seeds`` (paired seeds), ``detail`` (one row per claim and scale).
    """
    import pandas as pd

    scales = list(scales)
    for scale in scales:
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
    rows = []
    for claim in load_claims(chapter, data_root):
        for scale in scales:
            result = judge(claim, scale, root)
            rows.append(
                {
                    "chapter": chapter,
                    "id": claim.id,
                    "claim": claim.claim,
                    "paper_evidence": claim.paper_evidence,
                    "metric": claim.metric,
                    "scale": scale,
                    "verdict": result["verdict"],
                    "margin": result["margin"],
                    "low": result["low"],
                    "high": result["high"],
                    "seeds": result["seeds"],
                    "detail": result["detail"],
                }
            )
    return pd.DataFrame(rows)


def ledger(
    chapters: Iterable[str] | None = None,
    scales: Iterable[str] = SCALES,
    root: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
):
    """The claims ledger in wide form: one row per claim, one verdict column per scale.

    ``chapters`` defaults to every chapter with a claims file. Columns: ``chapter, id, claim,
    paper_evidence`` then one column per scale holding the verdict, and ``evidence (<scale>)`` columns
    with the numbers behind each verdict.
    """
    import pandas as pd

    scales = list(scales)
    chapters = claim_chapters(data_root) if chapters is None else list(chapters)
    frames = [evaluate_claims(ch, scales, root, data_root) for ch in chapters]
    frames = [f for f in frames if len(f)]
    keys = ["chapter", "id", "claim", "paper_evidence"]
    if not frames:
        return pd.DataFrame(columns=keys + scales + [f"evidence ({s})" for s in scales])
    long = pd.concat(frames, ignore_index=True)
    order = long[keys].drop_duplicates().reset_index(drop=True)
    verdicts = long.pivot(index=["chapter", "id"], columns="scale", values="verdict")
    details = long.pivot(index=["chapter", "id"], columns="scale", values="detail")
    wide = order.set_index(["chapter", "id"])
    for scale in scales:
        wide[scale] = verdicts[scale]
    for scale in scales:
        wide[f"evidence ({scale})"] = details[scale]
    return wide.reset_index()


def verdict_counts(ledger_table, scales: Iterable[str] = SCALES):
    """Counts of each verdict per scale (rows: verdicts, columns: scales) for a ledger table."""
    import pandas as pd

    scales = list(scales)
    counts = {
        s: [int((ledger_table[s] == v).sum()) if s in ledger_table else 0 for v in VERDICTS] for s in scales
    }
    return pd.DataFrame(counts, index=list(VERDICTS))
