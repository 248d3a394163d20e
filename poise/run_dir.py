"""What a run directory holds beside its checkpoint, for both settings: clearing an earlier run's files before a
new one writes its config (``--overwrite``), and ``env.json``, the record of what each start and resume ran
with."""

from __future__ import annotations

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
