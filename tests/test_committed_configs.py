"""Committed runs re-read through changes of the config vocabulary (issue 30): every ``config.yaml`` under
``runs/`` loads with today's config classes and names the folder it is in, and a continual config of an earlier
poise (``method`` = the recipe, ``balance``, flat strategy keys) translates to the run it was."""

from pathlib import Path

import pytest
import yaml

from poise.config import TrainConfig
from poise.continual.config import ContinualConfig, switch_of, tuned
from poise.continual.earlier import upgrade
from poise.errors import PoiseError

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(ROOT.glob("runs/**/config.yaml"))


def test_there_are_committed_runs_to_re_read():
    assert len(COMMITTED) > 300 and any("continual" in str(p) for p in COMMITTED)


@pytest.mark.parametrize("kind", ["train", "continual"])
def test_every_committed_config_loads_and_names_its_folder(kind):
    checked = 0
    for path in COMMITTED:
        values = yaml.safe_load(path.read_text())
        continual = "noise" in values
        if continual != (kind == "continual"):
            continue
        config = (ContinualConfig if continual else TrainConfig).load(path)
        if not values.get("name"):
            assert config.run_name == path.parent.name, path
        assert type(config).from_dict(config.to_dict()) == config, path
        checked += 1
    assert checked


EARLIER = dict(data="d", protocol="P1", split="S2", method="ours", ablate=["relearn"], nis=True, relearn=False,
               ewc="adaptive", peers="none", balance="awc", balance_params={"window": 1}, tasks=4, noise="raw",
               noisy_modality="", ratio=0.2, epochs=5, gamma=2, naming="absolute", naming_threshold={"rgb": 3.0},
               separate="always", reference_holdout=0.1, compare_gradient_stop=True, relearn_epoch=1, alpha_s=0.5,
               alpha_i=0.7, lam=5000.0, beta=0.3, ewc_decay=1.0, fisher="batched", fisher_frames=64, lambda_u=1.0,
               warmup=1, fusion="concat", modalities=["rgb", "lidar", "mmwave", "wifi-csi"], encoder="lite", dim=64,
               lidar_points=128, mmwave_points=64, train_stride=2, batch_size=32, on_error="raise",
               optimizer="adam", lr=0.001, assess_frames=512, seed=0, device="auto", out="runs", name="")


def test_an_earlier_continual_config_translates_to_the_same_run():
    config = ContinualConfig.from_dict(EARLIER)
    assert (config.recipe, config.ablate, config.method, config.method_params) == ("ours", ["relearn"], "awc",
                                                                                   {"window": 1})
    assert config.nis == {"on": True, "gamma": 2, "naming": "absolute", "threshold": {"rgb": 3.0}, "separate": "always",
                          "compare_gradient_stop": True}
    assert config.relearn is False and config.peers is False  # off: their earlier defaults are dropped
    assert config.ewc == {"lam": 5000.0, "mode": "adaptive", "beta": 0.3, "decay": 1.0, "per_sample": False,
                          "fisher_frames": 64, "naming": "absolute"}
    assert config.run_name == "continual-ours-no_relearn-awc-separate_always-P1-raw0.2-seed0"  # as it was named
    assert set(upgrade(EARLIER)) == set(config.to_dict())  # every key of today's, so a bench accepts the run
    assert ContinualConfig.from_dict({**EARLIER, "method": "dividemix", "ablate": [], "nis": False,
                                      "relearn": False, "ewc": "online", "peers": "dividemix",
                                      "separate": "named", "naming_threshold": {},
                                      "compare_gradient_stop": False}).peers == {"mode": "dividemix",
                                                                                 "lambda_u": 1.0, "warmup": 1}
    short = ContinualConfig.from_dict({"method": "naive", "balance": "ogm_ge"})  # a hand-written earlier file
    assert (short.recipe, short.method) == ("naive", "ogm_ge")
    assert [switch_of(k, getattr(short, k)) for k in ("nis", "relearn", "ewc", "peers")] == [False, False, "none",
                                                                                             "none"]


def test_earlier_hand_written_configs_translate_or_are_refused_by_name(tmp_path):
    assert ContinualConfig.from_dict({"method": "ours", "ablate": "adaptive_ewc"}).ewc["mode"] == "generic"
    mixed = ContinualConfig.from_dict({"method": "ours", "gamma": 2, "nis": {"separate": "always"}})
    assert (mixed.nis["gamma"], mixed.nis["separate"]) == (2, "always")  # the flat key and today's mapping
    alone = ContinualConfig.from_dict({"naming": "relative"})
    assert alone.nis["naming"] == alone.ewc["naming"] == "relative"
    with pytest.raises(PoiseError, match="'nis' sets parameters .* that is off"):
        ContinualConfig.from_dict({"method": "naive", "gamma": 2})  # not dropped: NIS is off in naive
    with pytest.raises(PoiseError, match="'method'"):
        ContinualConfig.from_dict({"method": ["ours"]})


def test_a_strategy_set_in_the_file_and_on_the_command_line_keeps_the_file_parameters(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("recipe: ours\nnis: {threshold: {rgb: 3.0}}\newc: {mode: adaptive, lam: 5000}\n")
    config = ContinualConfig.load(path, nis={"separate": "always"}, ewc="online")
    assert (config.nis["threshold"], config.nis["separate"]) == ({"rgb": 3.0}, "always")
    assert (config.ewc["mode"], config.ewc["lam"]) == ("online", 5000.0)
    assert ContinualConfig.load(path, ewc="none").ewc is False


def test_shared_strategy_parameters_apply_under_what_a_run_sets_itself():
    values = tuned({"recipe": "ours", "nis": {"separate": "never"}, "ablate": "relearn"},
                   {"nis": {"separate": "named", "gamma": 2}, "relearn": {"relearn_epoch": 1}})
    assert values["nis"] == {"separate": "never", "gamma": 2, "on": True} and "relearn" not in values

