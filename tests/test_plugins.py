"""Methods from outside poise (issue 31, item 3): a module named with ``--plugin`` (kept in the run's config, so
every later reader imports it again) or an installed package's ``poise.methods`` entry point registers its
methods; one that cannot be loaded is an error naming it."""

import importlib.metadata
import json
import sys

import pytest

from poise import methods
from poise.cli import main
from poise.errors import PoiseError

PLUGIN = '''
import dataclasses

from poise.methods import register
from poise.methods.base import Method


@register("half_pose_loss")
@dataclasses.dataclass
class HalfPoseLoss(Method):
    """The pose loss at weight ``weight``: a method from outside poise."""

    weight: float = 0.5

    def pose_loss_weight(self, run) -> float:
        return self.weight
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A module ``my_plugin`` on sys.path; forgotten afterwards, as a fresh process would not know it."""
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_plugin"
    forget()


def forget():
    """What a new process knows: neither the module nor its method."""
    sys.modules.pop("my_plugin", None)
    methods._REGISTRY.pop("half_pose_loss", None)


def test_a_plugin_method_trains_resumes_and_is_read_back_in_a_fresh_registry(tiny, tmp_path, plugin, capsys):
    out = tmp_path / "runs"
    args = ["train", "--data", str(tiny), "--split", "S3", "--epochs", "1", "--plugin", plugin, "--method",
            "half_pose_loss", "--param", "weight=0.25", "--out", str(out), "--name", "mine", "--quiet", "--no-report"]
    assert main(args) == 0
    run_dir = out / "mine"
    assert json.loads((run_dir / "method.json").read_text())["module"] == "my_plugin"
    forget()  # as in a new process: resume imports the plugin again from config.yaml
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--quiet", "--no-report"]) == 0
    assert len(json.loads((run_dir / "metrics.json").read_text())) == 2
    forget()
    from poise.train import load_run

    run = load_run(run_dir)  # what robust, report and bench read a run with
    assert run.method.name == "half_pose_loss" and run.method.weight == 0.25
    forget()
    capsys.readouterr()
    assert main(["methods", "--plugin", plugin]) == 0 and "half_pose_loss" in capsys.readouterr().out


def test_without_its_plugin_the_method_is_unknown_and_a_missing_plugin_is_named(tiny, tmp_path, capsys):
    forget()
    common = ["train", "--data", str(tiny), "--split", "S3", "--epochs", "1", "--out", str(tmp_path), "--quiet"]
    assert main([*common, "--method", "half_pose_loss"]) == 2
    assert "'method' is 'half_pose_loss'" in capsys.readouterr().err
    assert main([*common, "--plugin", "no_such_plugin", "--method", "baseline"]) == 2
    assert "plugin 'no_such_plugin' cannot be imported" in capsys.readouterr().err


def test_installed_packages_register_through_entry_points(tmp_path, plugin, monkeypatch):
    forget()
    found = [importlib.metadata.EntryPoint("half", "my_plugin", methods.ENTRY_POINTS)]
    monkeypatch.setattr(methods.importlib.metadata, "entry_points",
                        lambda group: found if group == methods.ENTRY_POINTS else [])
    monkeypatch.setattr(methods, "_loaded", False)
    assert "half_pose_loss" in methods.available()
    forget()
    found[0] = importlib.metadata.EntryPoint("broken", "no_such_package.methods", methods.ENTRY_POINTS)
    monkeypatch.setattr(methods, "_loaded", False)
    with pytest.raises(PoiseError, match="entry point 'broken' .*no_such_package.methods.* cannot be loaded"):
        methods.available()
    monkeypatch.setattr(methods.importlib.metadata, "entry_points", lambda group: [])
    assert "baseline" in methods.available()  # loading is tried again, not left half-done
