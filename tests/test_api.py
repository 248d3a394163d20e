"""The Python API on a user's model: a three-modality toy (``audio`` 8-d, ``imu`` 6-d, ``text`` 5-d) with a (B, 4)
target, as a new user would bring it. Every registered method trains on it and resumes exactly, or (on a model
that has only the contract) refuses with the capability it needs; the objective, the data protocol and the
errors behave as ``docs/api.md`` says."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import poise
from poise import methods
from poise.errors import PoiseError
from poise.metrics import sample_mpjpe
from poise.objective import euclidean, regression

NAMES = methods.available()
SIZES = {"audio": 8, "imu": 6, "text": 5}


def toy_data(n: int = 240, seed: int = 0) -> poise.ArrayData:
    """y (n, 4); audio sees all of y, imu half of it, text a noisy first coordinate; 12 groups of 20 frames."""
    mixing = torch.randn(8, 8, generator=torch.Generator().manual_seed(99))  # the sensor: the same in every draw
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, 4, generator=g)
    inputs = {"audio": torch.cat([y, 0.3 * torch.randn(n, 4, generator=g)], 1) @ mixing,
              "imu": torch.cat([y[:, :2], torch.randn(n, 4, generator=g)], 1),
              "text": torch.randn(n, 5, generator=g) + y[:, :1]}
    return poise.ArrayData(inputs, y, groups=np.arange(n) // 20)


def toy_model(seed: int = 0, fusion: str = "concat") -> poise.MultiModalRegressor:
    torch.manual_seed(seed)
    encoders = {m: nn.Sequential(nn.Linear(d, 16), nn.ReLU()) for m, d in SIZES.items()}
    return poise.MultiModalRegressor(encoders, dim=16, out_shape=4, fusion=fusion)


class ContractOnly(nn.Module):
    """A model with the four members of the contract and nothing else."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.modalities = tuple(SIZES)
        self.nets = nn.ModuleDict({m: nn.Linear(d, 8) for m, d in SIZES.items()})
        self.out = nn.Linear(8 * len(SIZES), 4)

    def encode(self, batch):
        return {m: torch.relu(self.nets[m](batch[m])) for m in self.modalities}

    def decode(self, features, present=None):
        ref = next(iter(features.values()))
        if present is None or torch.is_tensor(present):
            mask = torch.ones(len(ref), len(self.modalities)) if present is None else present
        else:
            mask = torch.tensor([[float(m in present) for m in self.modalities]]).expand(len(ref), -1)
        parts = [features[m] * mask[:, i:i + 1] if m in features else torch.zeros_like(ref)
                 for i, m in enumerate(self.modalities)]
        return self.out(torch.cat(parts, 1))

    def forward(self, batch):
        return self.decode(self.encode(batch))

    def modality_parameters(self):
        return {**{m: list(self.nets[m].parameters()) for m in self.modalities}, "fusion": list(self.out.parameters())}


def method_for(name: str, teacher=None):
    """The registered method with its smoke parameters (those that make it act within a few epochs); MMANet
    with ``teacher``, a trained model."""
    cls = type(methods.get(name))
    params = dict(cls.smoke_params)
    if "teacher" in cls.smoke_needs:
        return cls(teacher=teacher, **params)
    return methods.get(name, **params)


def settings_for(name: str) -> dict:
    cls = type(methods.get(name))
    return dict(epochs=cls.smoke_epochs, batch_size=32, lr_step=1, assess_frames=64, eval_every=1, seed=0,
                holdout=0.25 if cls.needs_holdout else 0.0)


@pytest.fixture(scope="module")
def teacher():
    model = toy_model(seed=5)
    poise.fit(model, toy_data(), "baseline", epochs=2, batch_size=32, progress=False)
    return model


def comparable(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("name", NAMES)
def test_every_method_trains_and_resumes_exactly_on_a_user_model(name, tmp_path, teacher):
    """Trained straight through, and cut then resumed from its checkpoint: the same history and weights."""
    cls = type(methods.get(name))
    settings = settings_for(name)
    model = toy_model(fusion=cls.smoke_fusion)
    before = [p.detach().clone() for p in model.parameters()]
    run = poise.fit(model, toy_data(), method_for(name, teacher), test_data=toy_data(seed=1), progress=False,
                    out=tmp_path / "whole", **settings)
    assert len(run.history) == settings["epochs"]
    assert all(math.isfinite(row["train_l2"]) for row in run.history)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), "nothing trained"
    assert {"test_l2", "test_mae", "test_mse"} <= set(run.history[-1])

    cut = cls.smoke_cut or settings["epochs"] - 1

    def interrupt(row):
        if row["epoch"] == cut:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        poise.fit(toy_model(fusion=cls.smoke_fusion), toy_data(), method_for(name, teacher),
                  test_data=toy_data(seed=1), progress=False, out=tmp_path / "cut", on_epoch=interrupt, **settings)
    again = toy_model(seed=9, fusion=cls.smoke_fusion)  # other weights: the checkpoint must restore them
    finished = poise.fit(again, toy_data(), method_for(name, teacher), test_data=toy_data(seed=1), progress=False,
                         out=tmp_path / "cut", resume=True, **settings)
    assert comparable(finished.history) == comparable(run.history)
    for (key, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("name", NAMES)
def test_a_contract_only_model_trains_or_names_the_capability_it_lacks(name, teacher):
    """A method that needs nothing beyond the contract trains on a bare model; one that does refuses before
    training with an error naming each capability it lacks (never a traceback from deep inside)."""
    cls = type(methods.get(name))
    model = ContractOnly()
    if not cls.needs:
        try:
            poise.fit(model, toy_data(), method_for(name, teacher), progress=False, **settings_for(name))
        except PoiseError as err:  # only ARL's and DGL's own unimodal heads (their default) ask for more
            assert "own unimodal heads (heads='own') needs the model capability" in str(err), str(err)
            shared = type(methods.get(name))(**{**cls.smoke_params, "heads": "shared"})
            poise.fit(ContractOnly(), toy_data(), shared, progress=False, **settings_for(name))
        return
    with pytest.raises(PoiseError, match="needs the model capability") as err:
        poise.fit(model, toy_data(), method_for(name, teacher), progress=False, **settings_for(name))
    for capability in cls.needs:
        if capability in poise.CAPABILITIES and not all(hasattr(model, a) for a in poise.CAPABILITIES[capability][0]):
            assert f"'{capability}'" in str(err.value)


def test_the_contract_only_model_trains_with_the_baseline_and_is_scored():
    model = ContractOnly()
    run = poise.fit(model, toy_data(), epochs=3, batch_size=32, progress=False)
    assert run.history[-1]["train_l2"] < run.history[0]["train_l2"]
    scores = poise.contributions(model, toy_data()).scores
    assert set(scores) == set(SIZES)
    assert set(poise.evaluate(model, toy_data())) == {"l2", "mae", "mse"}


def test_contributions_rank_the_informative_modality_first():
    """audio carries all four coordinates, imu two, text one, noisily: after training, Shapley-Pearson ranks
    them in that order."""
    model = toy_model()
    poise.fit(model, toy_data(n=600), epochs=15, batch_size=32, progress=False)
    scores = poise.contributions(model, toy_data(n=600, seed=3)).scores
    assert scores["audio"] > scores["imu"] > scores["text"], scores


def test_a_pose_only_profit_or_a_python_trained_teacher_is_refused_with_what_to_do(tmp_path, teacher):
    """neg_mpjpe would read a (B, 4) batch as one pose's joints; a poise.fit folder cannot rebuild its user's
    model for MMANet: both say what to use instead."""
    with pytest.raises(PoiseError, match="neg_mpjpe profit scores poses.*use neg_mse or pearson"):
        poise.contributions(teacher, toy_data(), profit="neg_mpjpe")
    poise.fit(toy_model(seed=5), toy_data(), "baseline", epochs=1, batch_size=32, progress=False,
              out=tmp_path / "t")
    with pytest.raises(PoiseError, match=r"trained from Python.*teacher=model"):
        poise.fit(toy_model(), toy_data(), "mmanet", method_params={"teacher": str(tmp_path / "t")}, epochs=8,
                  holdout=0.25, batch_size=32, progress=False)


def test_the_euclidean_loss_is_mpjpe_on_poses_and_absolute_error_on_scalars():
    pred, gt = torch.randn(5, 17, 3), torch.randn(5, 17, 3)
    assert torch.allclose(euclidean(pred, gt), sample_mpjpe(pred, gt))
    a, b = torch.randn(7), torch.randn(7)
    assert torch.allclose(euclidean(a, b), (a - b).abs(), atol=1e-5)
    v, w = torch.randn(6, 4), torch.randn(6, 4)
    assert torch.allclose(euclidean(v, w), (v - w).norm(dim=1))
    with pytest.raises(ValueError, match="same shape"):
        euclidean(torch.randn(6, 4), torch.randn(6))


def test_metric_names_carry_a_unit_only_when_there_is_one():
    assert list(regression().metrics) == ["l2", "mae", "mse"]
    metres = regression(unit="mm", scale=1000.0)
    assert list(metres.metrics) == ["l2_mm", "mae_mm", "mse_mm2"]
    pred, gt = torch.zeros(2, 4), torch.full((2, 4), 0.001)
    values = metres.sample_metrics(pred, gt)
    assert torch.allclose(values["mae_mm"], torch.ones(2, dtype=torch.float64))
    assert torch.allclose(values["mse_mm2"], torch.ones(2, dtype=torch.float64))
    assert regression("mse", unit="mm", scale=1000.0).loss_name == "mse_mm2"
    assert list(poise.POSE.metrics) == ["mpjpe_mm", "pa_mpjpe_mm", "rootrel_mpjpe_mm"]
    with pytest.raises(PoiseError, match="unknown loss 'l3'"):
        regression("l3")


def test_a_custom_per_sample_loss_trains():
    def huber(pred, target):
        return torch.nn.functional.huber_loss(pred, target, reduction="none").mean(1)

    run = poise.fit(toy_model(), toy_data(), objective=regression(huber), epochs=2, batch_size=32, progress=False)
    assert "train_huber" in run.history[0]


def test_the_pose_objective_names_metrics_in_millimetres():
    g = torch.Generator().manual_seed(0)
    pose = torch.randn(120, 17, 3, generator=g) * 0.1
    data = poise.ArrayData({"a": pose.flatten(1) + 0.01 * torch.randn(120, 51, generator=g),
                            "b": torch.randn(120, 3, generator=g)}, pose)
    model = poise.MultiModalRegressor({"a": nn.Linear(51, 8), "b": nn.Linear(3, 8)}, dim=8, out_shape=(17, 3))
    run = poise.fit(model, data, objective=poise.POSE, test_data=data, epochs=2, batch_size=32, progress=False)
    names = {"train_mpjpe_mm", "test_mpjpe_mm", "test_pa_mpjpe_mm", "unimodal_std_mm_a", "gt_std_mm"}
    assert names <= set(run.history[-1])


def test_the_regressor_centres_a_fresh_model_on_the_mean_target():
    data = toy_data()
    data.target += 5.0
    model = toy_model()
    poise.fit(model, data, epochs=1, batch_size=32, progress=False)
    assert torch.allclose(model.offset, data.target.mean(0), atol=1e-5)


@pytest.mark.parametrize("settings, message", [
    (dict(fusion="mlp"), "configure the MM-Fi pipeline"),
    (dict(data="x"), "configure the MM-Fi pipeline"),
    (dict(epoch=3), "unknown key 'epoch' \\(did you mean 'epochs'\\?\\)"),
    (dict(method="awcc"), "did you mean 'awc'"),
    (dict(epochs=0), "'epochs' must be a positive integer"),
])
def test_bad_settings_name_the_key(settings, message):
    method = settings.pop("method", "baseline")
    with pytest.raises(PoiseError, match=message):
        poise.fit(toy_model(), toy_data(), method, progress=False, **settings)


def test_bad_data_is_named():
    with pytest.raises(PoiseError, match="non-finite"):
        poise.ArrayData({"a": [[1.0], [float("nan")]]}, [0.0, 1.0])
    with pytest.raises(PoiseError, match="inputs\\['a'\\] has 3 frames and target 2"):
        poise.ArrayData({"a": np.zeros((3, 2))}, np.zeros(2))
    with pytest.raises(PoiseError, match="lack \\['text'\\]"):
        poise.fit(toy_model(), poise.ArrayData({"audio": np.zeros((4, 8)), "imu": np.zeros((4, 6))}, np.zeros((4, 4))),
                  progress=False)
    with pytest.raises(PoiseError, match="DataLoader is not enough"):
        poise.fit(toy_model(), torch.utils.data.DataLoader(range(4)), progress=False)
    with pytest.raises(PoiseError, match="their target is \\(2, 3\\).*out_shape=\\(3,\\)"):
        poise.fit(toy_model(), poise.ArrayData({m: np.zeros((8, d)) for m, d in SIZES.items()}, np.zeros((8, 3))),
                  epochs=1, batch_size=4, progress=False)
    with pytest.raises(PoiseError, match="not a poise model"):
        poise.fit(nn.Linear(2, 2), toy_data(), progress=False)


def test_items_of_a_torch_dataset_become_array_data():
    data = toy_data(n=40)
    items = [{**{m: data.inputs[m][i] for m in SIZES}, "gt": data.target[i]} for i in range(40)]
    again = poise.ArrayData.from_items(items)
    assert again.modalities == tuple(SIZES) and torch.equal(again.target, data.target)


def test_a_saved_run_is_never_overwritten_and_resumes_only_with_its_settings(tmp_path):
    poise.fit(toy_model(), toy_data(), epochs=1, batch_size=32, progress=False, out=tmp_path)
    with pytest.raises(FileExistsError, match="already holds a run"):
        poise.fit(toy_model(), toy_data(), epochs=1, batch_size=32, progress=False, out=tmp_path)
    with pytest.raises(PoiseError, match="batch_size differ"):
        poise.fit(toy_model(), toy_data(), epochs=2, batch_size=16, progress=False, out=tmp_path, resume=True)
    run = poise.fit(toy_model(), toy_data(), epochs=2, batch_size=32, progress=False, out=tmp_path, resume=True)
    assert [h["epoch"] for h in run.history] == [1, 2]
    assert (tmp_path / "metrics.csv").is_file() and (tmp_path / "env.json").is_file()


class Unregistered(methods.Method):
    """A method of one's own, built in Python and never registered: a constant extra loss."""

    name = "mine"

    def extra_loss(self, run, step):
        return 0.0 * step.loss


def test_a_method_object_trains_registered_or_not(tmp_path):
    from poise.methods.compose import Composite

    run = poise.fit(toy_model(), toy_data(), Unregistered(), epochs=1, batch_size=32, progress=False, out=tmp_path / "a")
    assert run.method.name == "mine" and len(run.history) == 1
    both = Composite([methods.get("ogm_ge"), methods.get("relearn", relearn_epoch=0)])
    run = poise.fit(toy_model(), toy_data(), both, epochs=2, batch_size=32, lr=0.01, progress=False)
    assert any("ogm_ge_coef_audio" in k or k.startswith("ogm_ge") for k in run.history[-1])
    with pytest.raises(PoiseError, match="method_params goes with a method's name"):
        poise.fit(toy_model(), toy_data(), Unregistered(), method_params={"x": 1}, progress=False)


def test_targets_of_any_shape_and_type():
    """A scalar target with the default out_shape, an integer target (a float regression target then), and a
    model whose output does not fit the target refused before anything trains."""
    data = toy_data()
    scalar = poise.ArrayData(data.inputs, data.target[:, 0])
    run = poise.fit(toy_model_of(()), scalar, epochs=1, batch_size=32, progress=False)
    assert math.isfinite(run.history[0]["train_l2"])
    counts = poise.ArrayData(data.inputs, (data.target[:, :2] * 3).round().long())
    assert counts.target.dtype == torch.float32
    poise.fit(toy_model_of(2), counts, epochs=1, batch_size=32, eval_every=1, progress=False)
    with pytest.raises(PoiseError, match="the model predicts \\(2, 4\\) for 2 frames and their target is \\(2, 2\\)"):
        poise.fit(toy_model(), counts, epochs=1, progress=False)


def toy_model_of(out_shape) -> poise.MultiModalRegressor:
    torch.manual_seed(0)
    encoders = {m: nn.Sequential(nn.Linear(d, 16), nn.ReLU()) for m, d in SIZES.items()}
    return poise.MultiModalRegressor(encoders, dim=16, out_shape=out_shape)


def test_resume_keeps_the_saved_epochs_unless_more_are_asked_for(tmp_path):
    def stop(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        poise.fit(toy_model(), toy_data(), epochs=2, batch_size=32, progress=False, out=tmp_path, on_epoch=stop)
    with pytest.raises(PoiseError, match="epochs=1: the run .* is set to 2 epochs"):
        poise.fit(toy_model(), toy_data(), epochs=1, batch_size=32, progress=False, out=tmp_path, resume=True)
    run = poise.fit(toy_model(), toy_data(), batch_size=32, progress=False, out=tmp_path, resume=True)
    assert len(run.history) == 2  # the saved 2, not the config default
    run = poise.fit(toy_model(), toy_data(), epochs=3, batch_size=32, progress=False, out=tmp_path, resume=True)
    assert len(run.history) == 3 and "epochs: 3" in (tmp_path / "config.yaml").read_text()
    with pytest.raises(PoiseError, match="started with another objective"):
        poise.fit(toy_model(), toy_data(), objective=poise.regression("mse"), epochs=4, batch_size=32,
                  progress=False, out=tmp_path, resume=True)


def test_out_is_never_a_folder_of_someone_else_and_the_cli_refuses_a_python_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PoiseError, match="holds files poise did not write"):
        poise.fit(toy_model(), toy_data(), epochs=1, progress=False, out=tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1
    poise.fit(toy_model(), toy_data(), epochs=1, batch_size=32, progress=False, out=tmp_path / "run")
    from poise.train import load_run

    with pytest.raises(PoiseError, match="trained from Python"):
        load_run(tmp_path / "run")


def test_the_package_offers_what_the_api_exports():
    import poise.api

    assert set(poise.API) == set(poise.api.__all__)


def test_import_poise_stays_light():
    import subprocess
    import sys

    code = "import sys, poise; assert 'torch' not in sys.modules; poise.fit; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docs_api_example_runs_as_written():
    """docs/api.md's worked example, run as written (it asserts what it claims)."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(example, "docs/api.md", "exec"), {"__name__": "docs_api_example"})
