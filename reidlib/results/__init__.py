"""Results with provenance, the papers' numbers, and the claims ledger.

- :mod:`reidlib.results.store`: one JSON file per run (``results/<chapter>/<scale>/<run>.json``),
  ``save_run`` / ``load_run`` / ``load_runs`` / ``run_or_reuse``.
- :mod:`reidlib.results.paper_numbers`: the papers' reported tables as data, side by side with ours.
- :mod:`reidlib.results.claims`: testable claims and their computed verdicts.
- :mod:`reidlib.results.compare`: differences between two trees of results files (``make reproduce``).
"""

from reidlib.results.claims import evaluate_claims, ledger, load_claims
from reidlib.results.paper_numbers import load_paper_numbers, side_by_side
from reidlib.results.store import RunOutcome, RunRecord, load_run, load_runs, run_or_reuse, save_run

__all__ = [
    "RunOutcome",
    "RunRecord",
    "evaluate_claims",
    "ledger",
    "load_claims",
    "load_paper_numbers",
    "load_run",
    "load_runs",
    "run_or_reuse",
    "save_run",
    "side_by_side",
]
