"""The report of a ``poise bench`` or ``poise continual-bench`` directory: its ``report.md`` (every table, the
findings and the plots it links, inlined) on one page, with the table of the runs behind it."""

from __future__ import annotations

import csv
from pathlib import Path

from poise.errors import PoiseError
from poise.report.page import Page

RUN_COLUMNS = ("variant", "method", "fusion", "subset", "noise", "ratio", "seed", "epochs", "test_mpjpe_mm",
               "test_pa_mpjpe_mm", "avg_mpjpe_mm", "avg_pa_mpjpe_mm", "mean_forgetting_mm", "seconds", "run")


def bench_report(bench_dir) -> Path:
    """Write ``bench_dir/report.html`` from ``report.md``, its plots and ``results.csv``."""
    bench_dir = Path(bench_dir)
    markdown = bench_dir / "report.md"
    if not markdown.is_file():
        raise PoiseError(f"{bench_dir} has no report.md: it is not a finished bench; run `poise bench` (or "
                         f"`poise continual-bench`) with --out {bench_dir}")
    text = markdown.read_text()
    lines = text.splitlines()
    title = lines[0].lstrip("# ").strip() if lines and lines[0].startswith("# ") else f"poise bench {bench_dir.name}"
    page = Page(title)
    page.markdown("\n".join(lines[1:]) if lines and lines[0].startswith("# ") else text, bench_dir)
    results = bench_dir / "results.csv"
    if results.is_file():
        with open(results, newline="") as f:
            rows = list(csv.DictReader(f))
        columns = [c for c in RUN_COLUMNS if rows and c in rows[0]]
        page.heading(f"The {len(rows)} runs (results.csv)")
        page.text("Last-epoch numbers of every run; each run's folder has its own metrics, checkpoint and plots "
                  "(`poise report RUN_DIR` draws its skeletons).", note=True)
        page.table(columns, [[_number(r[c]) for c in columns] for r in rows])
    return page.save(bench_dir / "report.html")


def _number(text: str):
    try:
        return float(text) if "." in text or "e" in text.lower() else int(text)
    except ValueError:
        return text
