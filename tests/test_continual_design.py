"""One design for both settings: a stream's tasks are phases of the Setting-1 loop, its strategies are method
plugins (combined by ``Composite``), a Setting-1 balancing method runs inside a stream, NIS scores like with
like, and online EWC protects every task so far."""

import ast
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from poise.objective import POSE

from poise import methods
from poise.continual import tasks
from poise.continual.config import ContinualConfig, switch_of, tuned
from poise.continual.ewc import EWC, fisher_generic
from poise.continual.nis import NIS
from poise.continual.runner import run_continual
from poise.data.layout import MODALITIES as ALL
from poise.errors import PoiseError
from poise.methods.base import Method
from poise.methods.compose import Composite
from poise.models.pose import build_model

CONTINUAL = Path(__file__).resolve().parents[1] / "poise" / "continual"
SMALL = dict(split="S2", tasks=2, epochs=3, dim=16, lidar_points=32, mmwave_points=16, train_stride=3,
             batch_size=32, assess_frames=128)
TUNED = {"nis": {"gamma": 1}, "ewc": {"fisher_frames": 64}}  # where the recipe has them on


def small(**kw) -> ContinualConfig:
    return ContinualConfig(**tuned({**SMALL, **kw}, TUNED))


# ----------------------------------------------------------------------------------------------------------------
# the composite


@dataclasses.dataclass
class _Part(Method):
    value: float = 1.0
    weight: float = 1.0
    decides: bool = False

    def extra_loss(self, run, step):
        return torch.tensor(self.value)

    def pose_loss_weight(self, run):
        return self.weight

    def predict(self, run, batch, features):
        return torch.zeros(1) if self.decides else None


def _named(name, **kw):
    cls = type(name, (_Part,), {"name": name})
    return dataclasses.dataclass(cls)(**kw)


def test_composite_adds_losses_multiplies_weights_and_refuses_two_deciders():
    a, b = _named("a", value=2.0, weight=0.5), _named("b", value=3.0, weight=0.0)
    both = Composite([a, b])
    assert float(both.extra_loss(None, None)) == 5.0 and both.pose_loss_weight(None) == 0.0
    assert both.predict(None, {}, {}) is None
    with pytest.raises(PoiseError, match="each decide predict"):
        Composite([_named("c", decides=True), _named("d", decides=True)]).predict(None, {}, {})
    with pytest.raises(PoiseError, match="name one twice"):
        Composite([_named("e"), _named("e")])
    assert Composite([methods.get("ogm_ge"), a]).reference_optimizer == "sgd"  # the balancing method's recipe
    assert Composite([a, methods.get("ogm_ge")], reference=a).reference_optimizer == "adam"


# ----------------------------------------------------------------------------------------------------------------
# the design, read from the source: no loop of its own, no method name in the runner


def test_continual_has_no_training_loop_and_the_runner_names_no_method():
    for path in CONTINUAL.glob("*.py"):
        calls = {node.func.attr for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
        assert not calls & {"backward", "step", "zero_grad"}, f"{path.name} trains on its own: {calls & {'backward', 'step'}}"
    names = set(methods.available()) | {"ours", "naive", "ewc", "coteaching", "dividemix", "nis"}
    runner = ast.parse((CONTINUAL / "runner.py").read_text())
    constants = {node.value for node in ast.walk(runner) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not constants & names, f"the runner compares method names: {constants & names}"


def test_no_strategy_calls_the_loop():
    """A strategy asks for a training phase (``Method.probes``) and the stream runs it (issue 30): no file of
    the strategies imports the loop."""
    for name in ("nis.py", "ewc.py", "peers.py", "strategies.py"):
        tree = ast.parse((CONTINUAL / name).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {f"{node.module}.{alias.name}" for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}
        loop = sorted(n for n in imported if n.startswith(("poise.train", "poise.epoch")))
        assert not loop, f"{name} imports {loop}"


# ----------------------------------------------------------------------------------------------------------------
# online EWC


def _fake_run(model, batch, task):
    data = SimpleNamespace(batch=lambda rows: {k: v[torch.as_tensor(rows)] if torch.is_tensor(v) else v
                                               for k, v in batch.items()})
    run = SimpleNamespace(model=model, train=data, train_rows=np.arange(len(batch["gt"])), task=task, record={},
                          config=SimpleNamespace(seed=0, batch_size=4), scores=lambda: {}, objective=POSE)
    run.method = Composite([Method()])
    return run


@pytest.mark.parametrize("mode", ["generic", "online"])
def test_online_ewc_sums_the_fishers_of_every_task_and_generic_keeps_the_last(fake_batch, mode):
    torch.manual_seed(0)
    model = build_model(["rgb", "lidar", "mmwave", "wifi-csi"], dim=8)
    batches = []
    for seed in (1, 2):
        b = fake_batch(6)
        b["gt"] = torch.randn(6, 17, 3, generator=torch.Generator().manual_seed(seed)) + torch.tensor([0, 0, 3.0])
        batches.append(b)
    ewc = EWC(mode=mode, fisher_frames=6)
    firsts = []
    for task, b in enumerate(batches):
        ewc.on_task_end(_fake_run(model, b, task))
        firsts.append(fisher_generic(model, [b]).values)
        with torch.no_grad():  # the model moves between tasks
            for p in model.parameters():
                p.add_(0.05)
    for name, value in ewc.fisher["model"].values.items():
        expected = firsts[0][name] + firsts[1][name] if mode == "online" else firsts[1][name]
        assert torch.allclose(value, expected, rtol=1e-5, atol=1e-12), name
    assert not torch.equal(firsts[0][name], firsts[1][name])  # the two tasks' Fishers differ


def test_a_restored_ewc_moves_its_fisher_and_anchor_to_the_parameters_once(fake_batch):
    """Set up, then train: a Fisher and anchor restored from a checkpoint (on the CPU, float32) are moved onto
    each parameter's device and dtype by ``setup``, not copied in every step (float64 stands in for a GPU)."""
    model = build_model(["rgb", "lidar", "mmwave", "wifi-csi"], dim=8)
    batch = fake_batch(6)
    batch["gt"] = torch.randn(6, 17, 3) + torch.tensor([0, 0, 3.0])
    saved = EWC(mode="online", fisher_frames=6)
    saved.on_task_end(_fake_run(model, batch, 0))
    restored = EWC(mode="online", fisher_frames=6)
    restored.load_state_dict(saved.state_dict())
    model.double()
    restored.setup(_fake_run(model, batch, 1))
    params = dict(model.named_parameters())
    for name, value in restored.fisher["model"].values.items():
        assert value.dtype == params[name].dtype == restored.anchor["model"][name].dtype == torch.float64, name


# ----------------------------------------------------------------------------------------------------------------
# streams


def test_a_setting1_method_runs_inside_a_stream_with_ours(stream_root, tmp_path):
    run = run_continual(small(data=str(stream_root), out=str(tmp_path), method="awc", noisy_modality="rgb",
                              ratio=0.4, relearn={"relearn_epoch": 0}), progress=False)
    for record in run.records:  # AWC (window 1 of 3 epochs) constrains epoch index 1 of every task
        active = [row["awc_active"] for row in record["epochs"]]
        assert active == [0, 1, 0] and record["epochs"][1]["awc_penalty"] > 0
        assert record["relearn"]["epoch"] == 0  # re-learning, in the same phase
    assert "nis" in run.records[1] and run.records[1]["fisher"]["beta"] == 0.3  # and ours' strategies
    assert run.dir.name == "continual-ours-awc-P1-raw0.4-rgb-seed0"


def test_nis_names_against_held_back_clean_frames_and_can_answer_none(stream_root, tmp_path):
    """NIS's reference is frames of whole first-task sequences that no task trains on; on a clean stream with a
    threshold no drop reaches, NIS answers "none" and the task trains on every frame (separate: named), while
    ``separate: always`` splits it anyway (Algorithm 2 as written)."""
    config = dict(data=str(stream_root), ablate=["relearn"], noise="none")
    run = run_continual(small(out=str(tmp_path / "named"), nis={"threshold": {m: 1e3 for m in ALL}}, **config),
                        progress=False)
    held = run.reference_rows
    assert len(held) and not np.isin(held, np.concatenate(run.train_tasks)).any()
    sequences = set(run.train.sequence_of(held).tolist())
    assert not sequences & set(run.train.sequence_of(run.train_tasks[0]).tolist())  # whole sequences held back
    assert {run.train.sequences[s].action for s in sequences} <= set(tasks.tasks("P1")[0])  # of the first task
    probe = run.records[1]["nis"]
    assert probe["named"] == "none" and not probe["separated"] and run.records[1]["noise"] is None
    assert run.records[1]["trained_frames"] == run.records[1]["train_frames"]
    assert run.records[1]["fisher"]["branch"] == []  # nothing named: adaptive EWC has no noisy branch
    assert set(probe["scores_reference"]) == set(ALL)
    for m in ALL:
        assert probe["drops"][m] == pytest.approx(probe["scores_reference"][m] - probe["scores_after"][m])
    always = run_continual(small(out=str(tmp_path / "always"), nis={"threshold": {m: 1e3 for m in ALL},
                                                                      "separate": "always"}, **config), progress=False)
    split = always.records[1]
    assert split["nis"]["named"] == "none" and split["nis"]["separated"]
    gmm = np.load(always.dir / "losses-task1.npz")  # the GMM's losses; its mask is what the task trained on
    assert split["trained_frames"] == split["nis"]["kept"] <= split["train_frames"] == len(gmm["nis"])


def test_the_config_says_what_a_run_does_with_strategies():
    """The recipe switches the strategies; each strategy key holds its class's full parameters (or false);
    a strategy set by hand gets its own run folder; every key round-trips and errors name it."""
    ours = ContinualConfig()
    assert [switch_of(k, getattr(ours, k)) for k in ("nis", "relearn", "ewc", "peers")] == [True, True, "adaptive",
                                                                                          "none"]
    assert ours.nis == {"on": True, **NIS().params()} and ours.peers is False
    assert ours.relearn == {"on": True, **methods.get("relearn").params()}
    assert ours.ewc == EWC(mode="adaptive").params()
    assert ContinualConfig(recipe="dividemix").peers == {"mode": "dividemix", "lambda_u": 1.0, "warmup": 1}
    assert ContinualConfig(recipe="coteaching", ratio=0.4).peers == {"mode": "coteaching", "forget_rate": None}  # the ratio
    assert ContinualConfig(recipe="ewc").ewc["mode"] == "online"
    assert ContinualConfig(ablate=["adaptive_ewc"]).ewc["mode"] == "generic"
    assert ContinualConfig(ewc={"lam": "5e3"}).ewc["lam"] == 5000.0  # a mapping without a mode: the recipe's
    custom = ContinualConfig(ewc="online")  # a strategy switched by hand: its own run folder, round-trips
    assert custom.run_name == "continual-ours-ewc_online-P1-raw0.2-seed0"
    assert ContinualConfig.from_dict(custom.to_dict()) == custom
    assert ContinualConfig(recipe="naive", nis=True).run_name == "continual-naive-nis_true-P1-raw0.2-seed0"
    auto = ContinualConfig(recipe="naive", method="ogm_ge", optimizer="auto")
    assert auto.optimizer_name == "sgd" and auto.lr == 0.3  # the balancing method's reference optimiser and its lr
    assert auto.run_name == "continual-naive-ogm_ge-P1-raw0.2-seed0"
    for kw, key in ((dict(method="gblending"), "'method'"), (dict(method="relearn"), "'method'"),
                    (dict(ewc="online", ablate=["adaptive_ewc"]), "'ablate'"), (dict(nis={"gamma": 100}), "'nis'"),
                    (dict(method="awc", method_params={"alpha": 1}), "'method_params'.*alpha_s"),
                    (dict(recipe="naive", ewc={"lam": 1.0}), "'ewc'.*mode"), (dict(ewc="sometimes"), "'ewc'"),
                    (dict(nis={"gama": 2}), "'nis'.*'gamma'"), (dict(relearn="yes"), "'relearn'"),
                    (dict(holdout=0.2), "'holdout'.*reference_holdout"), (dict(recipe="best"), "'recipe'")):
        with pytest.raises(PoiseError, match=key):
            ContinualConfig(**kw)
