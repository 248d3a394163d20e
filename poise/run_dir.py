"""What a run directory holds beside its checkpoint, for both settings: clearing an earlier run's files before a
new one writes its config (``--overwrite``), ``env.json`` (the record of what each start and resume ran with),
and a Setting-1 run's metric files and plots (``write_reports``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from poise.runtime import write_atomic


def write_environment(run, resumed: bool = False) -> None:
    """``env.json``: the code, libraries, device and data the run trained with (``poise.environment``), one
    record per start and per resume (a run continued elsewhere says so). ``run``: a Run or a ContinualRun."""
    from poise.environment import record

    path = run.dir / "env.json"
    records = []
    if resumed and path.is_file():
        try:
            records = json.loads(path.read_text())
        except (OSError, ValueError):
            records = []  # a damaged record is replaced, not trusted
        records = records if isinstance(records, list) else []
    records.append(record(run.config.data, run.train, run.device))
    write_atomic(path, json.dumps(records, indent=1))


def clear_run(run_dir: Path, files) -> None:
    """Remove what an earlier run wrote into ``run_dir`` (``files``, names or glob patterns; a new TensorBoard
    log clears its own), checkpoint first: a kill part-way leaves a folder that cannot be resumed, never an old
    history under a new config. Files poise did not write stay."""
    for pattern in files:
        for path in run_dir.glob(pattern):
            path.unlink()


def csv_text(rows: list[dict], columns=None) -> str:
    """``rows`` as CSV, with every column any row has (in order of first appearance) unless ``columns`` says."""
    out = io.StringIO()
    writer = csv.DictWriter(out, columns or list(dict.fromkeys(k for r in rows for k in r)), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_reports(run) -> None:
    """metrics.csv/json and contributions.csv from the history so far, each written atomically (the loop
    writes them before the checkpoint that claims their epochs); the two plots once the run is done."""
    if not run.history:
        return
    write_atomic(run.dir / "metrics.csv", csv_text(run.history))
    write_atomic(run.dir / "metrics.json", json.dumps(run.history, indent=1))
    first = f"shapley_{run.model.modalities[0]}"
    assessed = [{"epoch": h["epoch"], **{m: h[f"shapley_{m}"] for m in run.model.modalities}}
                for h in run.history if first in h]
    write_atomic(run.dir / "contributions.csv", csv_text(assessed, ["epoch", *run.model.modalities]))
    if run.epoch < run.config.epochs:
        return
    from poise.plots import plot_contributions, plot_curves

    plot_curves(run.history, run.dir / "curves.png", title=run.config.run_name)
    plot_contributions(run.history, run.dir / "contributions.png", title=run.config.run_name)
