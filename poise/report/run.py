"""The report of one ``poise train`` run: what was trained, how it learned, what it predicts.

From the run directory: ``config.yaml``, ``method.json`` and ``metrics.json`` give the settings, the learning
curves, the per-epoch Shapley scores and unimodal-output spreads (the weak modalities' collapse) and the final
metrics; with the checkpoint and the data, the model is rebuilt and predicts the test split, for skeletons of
chosen and worst frames and of each modality's unimodal prediction on one frame (``skeletons.png``,
``unimodal.png``). The outputs of ``poise robust`` and ``poise contrib`` are shown when the run has them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from poise.errors import PoiseError
from poise.metrics import mpjpe_mm
from poise.report.page import Page, figure_png
from poise.report.skeleton import skeletons_figure, unimodal_figure
from poise.runtime import frame_batches, to_device

MAIN_COLUMNS = ("epoch", "lr", "train_mpjpe_mm", "val_mpjpe_mm", "test_mpjpe_mm", "test_pa_mpjpe_mm", "seconds")


def read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PoiseError(f"{path}: missing; {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PoiseError(f"{path} is not valid JSON ({err}); {what}") from None


def read_config(run_dir: Path, what: str) -> dict:
    """A run's ``config.yaml`` as a dict, or an error naming it."""
    try:
        return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise PoiseError(f"{run_dir}/config.yaml cannot be read ({err}); {what}") from None


def chosen_rows(n: int, count: int = 2) -> list[int]:
    """Test frames shown for every run (so that two runs' reports show the same frames): evenly spaced."""
    return sorted({int(round(n * (i + 1) / (count + 1))) for i in range(count)} - {n})


def shown_rows(errors: np.ndarray, chosen: list, worst: int) -> list[tuple[int, str]]:
    """(test frame, "chosen" | "worst"): the chosen frames, then the ``worst`` frames of highest error."""
    bad = [r for r in chosen if not 0 <= r < len(errors)]
    if bad:
        raise PoiseError(f"--frames {bad}: the test split has frames 0..{len(errors) - 1}")
    return [(int(r), "chosen") for r in chosen] + [(int(r), "worst") for r in np.argsort(-errors, kind="stable")[:worst]]


@torch.no_grad()
def predictions(run, rows=None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The tested model's predictions and the ground truth (N, 17, 3), metres, on ``rows`` of the test split."""
    from poise.epoch import tested_model

    model = tested_model(run)
    model.eval()
    rows = np.arange(len(run.test)) if rows is None else np.asarray(rows)
    preds, gts = [], []
    for batch in frame_batches(run.test, rows, batch_size):
        batch = to_device(batch, run.device)
        preds.append(model(batch).cpu())
        gts.append(batch["gt"].cpu())
    return torch.cat(preds).numpy(), torch.cat(gts).numpy()


@torch.no_grad()
def unimodal_predictions(run, row: int) -> dict | None:
    """{"fused": pose, modality: pose with only that modality present} on one test frame (17, 3); None for a
    method evaluated as a combination of networks (DivideMix's pair), which has no unimodal prediction."""
    from poise.epoch import tested_model

    if tested_model(run) is not run.model:
        return None
    run.model.eval()
    batch = to_device(run.test.batch([row]), run.device)
    features = run.model.encode(batch)
    out = {"fused": run.model.decode(features)[0].cpu().numpy()}
    out.update({m: run.model.decode(features, (m,))[0].cpu().numpy() for m in run.model.modalities})
    return out


def frame_title(run, row: int, error_mm: float, why: str) -> str:
    b = run.test.batch([row])
    return f"{why}: {b['subject'][0]} {b['action'][0]} frame {int(b['frame'][0]) + 1} ({error_mm:.0f} mm)"


def pose_figures(run, worst: int = 2, frames=None) -> dict:
    """PNG bytes of ``skeletons`` (chosen frames, then the ``worst`` test frames, three views each) and
    ``unimodal`` (each modality alone on the first chosen frame; not for a combination of networks), also saved
    in the run directory."""
    pred, gt = predictions(run)
    errors = mpjpe_mm(torch.from_numpy(pred), torch.from_numpy(gt), reduction="none").numpy()
    chosen = list(frames) if frames is not None else chosen_rows(len(gt))
    rows = shown_rows(errors, chosen, worst)
    shown = [(frame_title(run, r, errors[r], why), gt[r], {run.config.method: pred[r]}) for r, why in rows]
    out = {"skeletons": figure_png(skeletons_figure(shown))}
    unimodal = unimodal_predictions(run, chosen[0]) if chosen else None
    if unimodal is not None:
        r = chosen[0]
        title = frame_title(run, r, errors[r], "each modality alone") + ", absent modalities as the model was trained"
        out["unimodal"] = figure_png(unimodal_figure(title, gt[r], unimodal))
    for name, png in out.items():
        (run.dir / f"{name}.png").write_bytes(png)
    return out


def final_tables(page: Page, last: dict, modalities: list) -> None:
    """The last epoch's row as three tables: errors, per-modality numbers, and the rest (the method's own)."""
    errors = [k for k in last if k.endswith("_mpjpe_mm")]
    page.table(["error (mm)", *errors], [["", *[last[k] for k in errors]]])
    per_modality = {"Shapley-Pearson score": "shapley_", "unimodal-output std (mm)": "unimodal_std_mm_"}
    shown = set(errors)
    rows = []
    for label, prefix in per_modality.items():
        if any(f"{prefix}{m}" in last for m in modalities):
            rows.append([label, *[last.get(f"{prefix}{m}", "") for m in modalities]])
            shown |= {f"{prefix}{m}" for m in modalities}
    if rows:
        page.table(["per modality", *modalities], rows)
    rest = [(k, v) for k, v in last.items() if k not in shown]
    page.table(["other numbers of the epoch", "value"], rest)


def _settings_table(page: Page, values: dict) -> None:
    page.table(["key", "value"], [(k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in values.items()])


def run_report(run_dir, poses: bool = True, worst: int = 2, frames=None, run=None) -> Path:
    """Write ``run_dir/report.html``. ``poses``: draw skeletons, with ``run`` (the live run at the end of
    ``poise train``) or a run rebuilt from the checkpoint and the data."""
    from poise.plots import contributions_figure, curves_figure, spreads_figure

    run_dir = Path(run_dir)
    what = f"{run_dir} is not a `poise train` run with a finished epoch"
    history = read_json(run_dir / "metrics.json", what)
    if not history:
        raise PoiseError(f"{run_dir}/metrics.json holds no epoch; {what}")
    config = read_config(run_dir, what)
    method = read_json(run_dir / "method.json", what)
    last = history[-1]
    if poses and run is None:
        from poise.train import load_run

        try:
            run = load_run(run_dir)
        except (PoiseError, OSError) as err:
            raise PoiseError(f"{run_dir}: cannot rebuild the model to draw its poses ({err}); pass --no-poses for a "
                             f"report without them") from None

    page = Page(f"poise run {run_dir.name}: {method['name']}")
    page.text(f"{run_dir}: {last['epoch']} of {config.get('epochs', '?')} epochs of method {method['name']}, "
              f"{config.get('fusion', '?')} fusion, modalities {', '.join(config.get('modalities', []))}, data "
              f"{config.get('data', '?')}. Last epoch: test MPJPE {last.get('test_mpjpe_mm', float('nan')):.1f} mm, "
              f"PA-MPJPE {last.get('test_pa_mpjpe_mm', float('nan')):.1f} mm (the reported number; every test frame "
              f"at the last epoch).")
    page.heading("Final metrics (last epoch)")
    final_tables(page, last, config.get("modalities") or [])

    page.heading("Learning curves")
    page.image(figure_png(curves_figure(history, run_dir.name)), "learning curves")
    columns = [c for c in MAIN_COLUMNS if c in last]
    page.table(columns, [[h.get(c, "") for c in columns] for h in history],
               folded=f"the {len(history)} epochs' numbers (metrics.csv has every column)")

    page.heading("Modality contributions and the weak modalities' collapse")
    page.text("Shapley-Pearson score of each modality per epoch (paper 001, Eq. 1 with the Pearson profit of Eq. "
              "2-3), and the std of each modality's unimodal output over a fixed slice of training frames against the ground "
              "truth's: a branch whose spread sinks toward zero predicts nearly the same pose for every frame.")
    page.image(figure_png(contributions_figure(history, run_dir.name)), "Shapley scores per epoch")
    if "gt_std_mm" in last:
        page.image(figure_png(spreads_figure(history, run_dir.name)), "unimodal-output spreads per epoch")

    page.heading("Predicted poses")
    if poses:
        figures = pose_figures(run, worst=worst, frames=frames)
        page.text("Prediction (dashed) against the ground truth (black), from the front, the side and obliquely "
                  "above; the chosen frames are the same for every run of this test split, the worst are this "
                  "model's. Left limbs darker. Each title gives the frame's MPJPE.")
        page.image(figures["skeletons"], "skeletons of chosen and worst test frames")
        if "unimodal" in figures:
            page.image(figures["unimodal"], "each modality's unimodal prediction")
        else:
            page.text(f"No unimodal predictions: method {method['name']} is evaluated as a combination of networks.",
                      note=True)
    else:
        page.text("Not drawn: the report was asked for without the model (--no-poses).", note=True)

    extras = [("robust", "Missing sensors (poise robust)"), ("contrib", "Contributions per profit (poise contrib)")]
    for name, title in extras:
        if (run_dir / f"{name}.png").is_file():
            page.heading(title)
            if (run_dir / f"{name}.md").is_file():
                page.markdown((run_dir / f"{name}.md").read_text(), run_dir)
            page.image(run_dir / f"{name}.png", title)

    page.heading("Configuration")
    _settings_table(page, config)
    page.heading(f"Method: {method['name']}")
    _settings_table(page, {**{f"param {k}": v for k, v in method.get("params", {}).items()},
                           **{f"optimizer {k}": v for k, v in (method.get("optimizer") or {}).items()}})
    return page.save(run_dir / "report.html")
