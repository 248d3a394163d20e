"""Training, scoring and contributions of a user's model on a user's data: the loop ``poise train`` runs, with the
model, the data and the objective given rather than built from an MM-Fi root."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from poise import methods
from poise.data.arrays import TARGET, RegressionData
from poise.checkpoint import CHECKPOINT, load_checkpoint
from poise.config import TrainConfig
from poise.contrib.shapley import Contributions, modality_contributions
from poise.errors import PoiseError
from poise.objective import Objective, regression
from poise.run import Run
from poise.selection import HOLDOUT_SEED  # held-out groups are drawn as poise train draws its sequences
from poise.runtime import FIT_RECORD, configure, encode_split, resolve_device, run_lock, to_device
from poise.runtime import trained_from_python, write_atomic
from poise.runtime import evaluate as evaluate_rows

# config keys of the MM-Fi pipeline (what ``poise train`` reads and builds); on a user's model and data they have
# no meaning, so passing one to ``fit`` is an error rather than silently ignored
MMFI_ONLY = ("data", "protocol", "split", "fusion", "modalities", "encoder", "dim", "rgb_window", "lidar_points",
             "mmwave_points", "train_stride", "train_subjects", "on_error", "out")


def check_model(model) -> None:
    """Raise unless ``model`` follows the model contract (``poise.MultiModalModel``)."""
    members = ("modalities", "encode", "decode", "modality_parameters", "forward")
    lacking = [m for m in members if not hasattr(model, m)]
    if isinstance(model, torch.nn.Module) and type(model).forward is torch.nn.Module.forward:
        lacking.append("forward")
    if lacking or not isinstance(model, torch.nn.Module):
        raise PoiseError(f"{type(model).__name__} is not a poise model: it needs to be a torch.nn.Module with "
                         f"{', '.join(members)}" + (f" (it lacks {', '.join(lacking)})" if lacking else "")
                         + "; see poise.MultiModalModel, or build it as poise.MultiModalRegressor")


def check_data(data, model, what: str) -> dict:
    """Raise unless ``data`` is a ``RegressionData`` whose batches hold every modality of ``model`` and a target;
    returns the batch of its first (up to) two frames that it checked."""
    if not isinstance(data, RegressionData):
        raise PoiseError(f"{what} must have __len__ and batch(rows) -> {{modality: tensor, 'gt': target}} "
                         f"(poise.RegressionData); wrap arrays in poise.ArrayData, a dataset of dict items in "
                         f"poise.ArrayData.from_items. A DataLoader is not enough: methods draw frames by index")
    if not len(data):
        raise PoiseError(f"{what} holds no frames")
    batch = data.batch(np.arange(min(2, len(data))))
    missing = [m for m in (*model.modalities, TARGET) if m not in batch]
    if missing:
        raise PoiseError(f"{what}'s batches lack {missing} (they hold {sorted(batch)}); the model's modalities are "
                         f"{list(model.modalities)}, and the target is batch[{TARGET!r}]")
    return batch


def holdout_groups(data, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(trained rows, held-out rows): ``fraction`` of the data's groups (``data.groups``, whole groups) or, without
    groups, of its frames, drawn from the seed; at least one group when ``fraction`` > 0, never all of them."""
    rows = np.arange(len(data))
    if not fraction:
        return rows, rows[:0]
    groups = getattr(data, "groups", None)
    labels = rows if groups is None else np.asarray(groups)
    unique = np.unique(labels)
    if len(unique) < 2:
        raise PoiseError(f"holdout={fraction}: the data has a single group, so none can be held out; pass "
                         f"holdout=0 or more groups")
    n = min(max(1, int(round(fraction * len(unique)))), len(unique) - 1)
    held = np.random.default_rng([seed, HOLDOUT_SEED]).choice(unique, n, replace=False)
    is_val = np.isin(labels, held)
    return rows[~is_val], rows[is_val]


def make_config(method, method_params: dict | None, settings: dict, model) -> TrainConfig:
    """A ``TrainConfig`` of the loop's settings (an unknown or an MM-Fi-only key is an error naming it), with the
    model's own modality names (the MM-Fi check of names belongs to the MM-Fi reader) and, for a ``Method`` built
    in Python (registered or not, or a ``Composite``), its name and parameters as it holds them."""
    wrong = [k for k in settings if k in MMFI_ONLY]
    if wrong:
        raise PoiseError(f"fit(): {', '.join(wrong)} configure the MM-Fi pipeline (poise train); on your own model "
                         f"and data they mean nothing: the model brings its modalities, encoders and fusion")
    built = isinstance(method, methods.Method)
    if built and method_params:
        raise PoiseError("fit(): method_params goes with a method's name; a Method object holds its own "
                         "parameters (set them when building it)")
    values = {"method": "baseline" if built else method, "method_params": {} if built else method_params or {}}
    config = TrainConfig.from_dict({**values, **settings}, source="fit()")
    config.modalities = list(model.modalities)
    if built:
        config.method, config.method_params = method.name, _plain(method.params())
    return config


def _plain(params: dict) -> dict:
    """The parameters a config can hold (a method built in Python may hold objects, e.g. MMANet's teacher model)."""
    return {k: v for k, v in params.items() if isinstance(v, (str, int, float, bool, type(None), list, dict))}


def run_record(model, data, objective: Objective, method) -> dict:
    """What ``out/api.json`` records of a run besides its settings, and what ``resume`` must find again: the model,
    the data's size, the objective's names and the method."""
    return {"model": type(model).__name__, "modalities": list(model.modalities),
            "out_shape": list(getattr(model, "out_shape", ()) or []), "frames": len(data),
            "objective": {"loss": objective.loss_name, "metrics": list(objective.metrics)},
            "method": {"name": method.name, "module": type(method).__module__}}


def check_output_shape(model, batch: dict, device) -> None:
    """The model's prediction on ``batch`` (two frames) has the target's shape, or an error says both (before
    anything is written or trained; eval mode, no gradient: nothing about the model changes)."""
    batch = to_device(batch, device)
    model.eval()
    with torch.no_grad():
        pred = model(batch)
    if tuple(pred.shape) != tuple(batch[TARGET].shape):
        raise PoiseError(f"the model predicts {tuple(pred.shape)} for {len(batch[TARGET])} frames and their target "
                         f"is {tuple(batch[TARGET].shape)}; make the model's output the target's shape per frame"
                         + (f" (MultiModalRegressor(..., out_shape={tuple(batch[TARGET].shape[1:])}))"
                            if hasattr(model, "out_shape") else ""))


def fit(model, train_data, method="baseline", *, test_data=None, objective: Objective | None = None,
        method_params: dict | None = None, out=None, resume: bool = False, progress: bool = True,
        on_epoch=None, **settings) -> Run:
    """Train ``model`` on ``train_data`` with ``method`` (a registered name with its ``method_params``, or a
    ``Method`` object) and return the ``Run`` (``run.model``, ``run.history``: one dict of metrics per epoch).

    ``objective``: the per-sample loss and the metrics (default ``poise.regression()``: the Euclidean error, MPJPE's
    form for any target; ``poise.POSE`` for poses in metres). ``settings``: the loop's config keys (``epochs``,
    ``batch_size``, ``lr``, ``optimizer``, ``holdout``, ``seed``, ``eval_every``, ``device``, ...; ``poise train
    --help`` documents each). ``test_data`` is scored at the evaluation cadence and at the last epoch.

    ``out``: a new or empty folder (or one of an earlier ``fit``) for the checkpoint and the metric files, written
    each epoch; ``resume=True`` continues the run saved there (the same model, data, objective, method and
    settings, checked; ``epochs`` as saved unless given, and may only grow) and ends with the numbers an
    uninterrupted run gives. ``on_epoch(row)`` is called after each epoch (and its checkpoint) with the epoch's
    metrics; an exception it raises stops the training there.

    Like ``poise train``, it seeds torch's global generator with ``seed``, moves the model to ``device`` (``auto``:
    CUDA when available) and leaves it in eval mode; a ``MultiModalRegressor`` whose ``offset`` is still zero is
    centred on the mean training target first."""
    from poise.train import fit as fit_epochs, prepare

    check_model(model)
    first = check_data(train_data, model, "train_data")
    if test_data is not None:
        check_data(test_data, model, "test_data")
    objective = objective or regression()
    out = Path(out) if out is not None else None
    if out is not None:
        settings.setdefault("name", out.name or out.resolve().name)  # what its plots are titled
    if resume:
        config = resumed_config(out, method, method_params, settings, model)
    else:
        config = make_config(method, method_params, settings, model)
        if out is not None:
            check_new_out(out)
    method = method if isinstance(method, methods.Method) else methods.get(config.method, **config.method_params)
    record = run_record(model, train_data, objective, method)
    if resume:
        check_same_run(out, record)
    device = resolve_device(config.device)
    configure(device, config.deterministic)
    torch.manual_seed(config.seed)
    model.to(device)
    check_output_shape(model, first, device)
    train_rows, val_rows = holdout_groups(train_data, config.holdout, config.seed)
    if hasattr(model, "set_offset") and not resume and not bool(model.offset.any()):
        model.set_offset(mean_target(train_data, train_rows))
    assess_rows = np.sort(np.random.default_rng(config.seed).permutation(train_rows)[: config.assess_frames])
    run = Run(config, out, model, method, train_data, test_data, train_rows, val_rows,
              to_device(train_data.batch(assess_rows), device), device=device, objective=objective,
              test_rows=None if test_data is not None else np.zeros(0, np.int64), label="",
              loggers=[on_epoch] if on_epoch is not None else [])
    with run_lock(out) if out is not None else contextlib.nullcontext():
        prepare(run)
        if resume:
            try:
                load_checkpoint(run, "start again without resume=True")
            except RuntimeError as err:  # torch's load_state_dict: another architecture
                raise PoiseError(f"{out / CHECKPOINT} does not fit this model ({str(err).splitlines()[0]}); resume "
                                 f"with the model the run was started with") from None
            write_atomic(out / "config.yaml", yaml.safe_dump(settings_of(config), sort_keys=False))  # epochs may grow
        elif out is not None:
            write_run_files(run, out, train_data, record)
        return fit_epochs(run, progress)


def check_new_out(out: Path) -> None:
    """A fresh run writes into a new or empty folder, or one a ``fit`` wrote and never checkpointed (a start that
    failed); never over a run, and never among files poise did not write."""
    if (out / CHECKPOINT).exists():
        raise FileExistsError(f"{out} already holds a run; continue it with resume=True, or choose another out")
    if out.is_dir() and any(out.iterdir()) and not trained_from_python(out):
        raise PoiseError(f"out={str(out)!r} holds files poise did not write; a run writes config.yaml, metrics.csv "
                         f"and more there, so choose a new or empty folder")


def mean_target(data, rows) -> torch.Tensor:
    """The mean target over ``rows`` (float64 sums, a batch at a time)."""
    total, count = None, 0
    for start in range(0, len(rows), 4096):
        gt = data.batch(rows[start:start + 4096])[TARGET].double()
        total = gt.sum(0) if total is None else total + gt.sum(0)
        count += len(gt)
    return (total / count).float()


def settings_of(config: TrainConfig) -> dict:
    """The config keys a ``fit`` run has (the MM-Fi-only ones left out), as ``config.yaml`` holds them."""
    return {k: v for k, v in config.to_dict().items() if k not in MMFI_ONLY}


def write_run_files(run: Run, out: Path, data, record: dict) -> None:
    """``config.yaml`` (the loop's settings), ``api.json`` (the model, data, objective and method: what resume
    checks), ``method.json`` and ``env.json``."""
    from poise.environment import record as environment

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "config.yaml", yaml.safe_dump(settings_of(run.config), sort_keys=False))
    write_atomic(out / FIT_RECORD, json.dumps(record, indent=1))
    write_atomic(out / "method.json", json.dumps({"name": run.method.name, "params": _plain(run.method.params()),
                                                  "module": type(run.method).__module__}, indent=1))
    about = {"kind": type(data).__name__, "frames": len(data), "modalities": list(run.model.modalities),
             "model": type(run.model).__name__}
    write_atomic(out / "env.json", json.dumps([environment(None, data, run.device, data=about)], indent=1))


def resumed_config(out, method, method_params, settings: dict, model) -> TrainConfig:
    """The saved run's config: the settings passed now must match it; ``epochs`` is the saved one unless given,
    and may only grow."""
    if out is None or not (out / CHECKPOINT).is_file() or not (out / "config.yaml").is_file():
        raise PoiseError(f"resume=True needs out= a folder of a fit() run (config.yaml and {CHECKPOINT}); "
                         f"{out} has none")
    saved = yaml.safe_load((out / "config.yaml").read_text()) or {}
    settings = {**settings, "epochs": settings.get("epochs", saved.get("epochs"))}
    if settings["epochs"] < saved.get("epochs", 0):
        raise PoiseError(f"resume=True with epochs={settings['epochs']}: the run in {out} is set to "
                         f"{saved['epochs']} epochs; pass more to continue it further, or none")
    config = make_config(method, method_params, settings, model)
    now = settings_of(config)
    differ = [k for k in saved if k not in ("epochs", "name") and now.get(k) != saved[k]]
    if differ:
        raise PoiseError(f"resume=True: {', '.join(differ)} differ from the run saved in {out} (saved "
                         f"{ {k: saved[k] for k in differ} }, now { {k: now.get(k) for k in differ} }); pass the "
                         f"settings it was started with")
    return config


def check_same_run(out: Path, record: dict) -> None:
    """The model, data, objective and method of a resumed run are those it was started with."""
    saved = json.loads((out / FIT_RECORD).read_text()) if trained_from_python(out) else {}
    differ = [k for k in record if saved.get(k) != record[k]]
    if differ:
        raise PoiseError(f"resume=True: the run in {out} was started with another "
                         f"{', '.join(differ)} ({ {k: saved.get(k) for k in differ} }; now "
                         f"{ {k: record[k] for k in differ} }); resume with what it was started with")


def evaluate(model, data, objective: Objective | None = None, rows=None) -> dict:
    """The ``objective``'s metrics (default ``poise.regression()``'s) of ``model`` on ``data``, each the mean
    over its frames (``rows``: default every frame)."""
    check_model(model)
    check_data(data, model, "data")
    return evaluate_rows(model, data, rows, objective=objective or regression(), prefix="")


def contributions(model, data, profit="pearson", rows=None, frames: int = 512, seed: int = 0) -> Contributions:
    """Each modality's Shapley contribution to ``model``'s predictions on ``frames`` frames of ``data`` (drawn from
    ``seed``; ``rows`` to choose them), with ``profit`` ``"pearson"`` (001 Eq. 1-3, the default), ``"neg_mse"``
    (either for any target), ``"neg_mpjpe"`` (poses) or a function ``(target, prediction) -> float``: one encoder
    pass, 2^M decodes."""
    check_model(model)
    check_data(data, model, "data")
    if rows is None:
        rows = np.sort(np.random.default_rng(seed).permutation(len(data))[:frames])
    device = next(model.parameters()).device
    features, target = encode_split(model, data, device, rows)
    return modality_contributions(model, features, target, profit=profit)
