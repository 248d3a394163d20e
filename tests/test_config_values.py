"""Config values as people write them: numbers in every YAML spelling parse, and every wrong type or range is a
one-line error naming the key, before any data is read, through the command line as a user meets it."""

import dataclasses
import typing

import pytest
import yaml

from poise import methods
from poise.cli import main
from poise.config import TrainConfig
from poise.continual.config import ContinualConfig

NOT_DATA = "does not exist or is not a folder"  # the reader's message: the config itself was accepted


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("1.0e-3", 1e-3), ("1E-3", 1e-3), ("0.001", 1e-3),
                                         (".001", 1e-3), ("'1e-3'", 1e-3), ("1", 1.0)])
def test_a_learning_rate_in_any_yaml_spelling_is_a_float(tmp_path, text, value):
    path = tmp_path / "c.yaml"
    path.write_text(f"lr: {text}\nepochs: 1e1\nmethod: awc\nmethod_params: {{alpha_s: 2e4, window: 3.0}}\n")
    config = TrainConfig.load(path)
    assert config.lr == pytest.approx(value) and isinstance(config.lr, float)
    assert config.epochs == 10 and isinstance(config.epochs, int)
    assert config.method_params == {"alpha_s": 20000.0, "window": 3}
    assert type(config.method_params["window"]) is int


def test_modalities_as_one_string_are_names_not_letters():
    assert TrainConfig(modalities="lidar").modalities == ["lidar"]
    assert TrainConfig(modalities="rgb, wifi-csi").modalities == ["rgb", "wifi-csi"]
    assert ContinualConfig(modalities="rgb,lidar").modalities == ["rgb", "lidar"]
    with pytest.raises(ValueError, match="'modalities'.*'lidr'"):
        TrainConfig(modalities="lidr")


BAD = ["abc", -3, 2.5, float("nan"), float("inf"), [1], {"a": 1}, None, True]


def scalar_keys(cls):
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if hints[f.name] in (int, float, str, bool, float | None)]


@pytest.mark.parametrize("cls", [TrainConfig, ContinualConfig])
def test_every_scalar_key_rejects_wrong_values_by_name_or_accepts_them(cls):
    for key in scalar_keys(cls):
        for value in BAD:
            try:
                config = cls(**{key: value})
            except ValueError as err:
                assert repr(key) in str(err), (key, value, str(err))
                continue
            kind = typing.get_type_hints(cls)[key]
            assert isinstance(getattr(config, key), typing.get_args(kind) or kind), (key, value)


@pytest.mark.parametrize("name", methods.available())
def test_every_method_parameter_rejects_wrong_values_by_name_or_accepts_them(name):
    cls = type(methods.get(name))
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        for value in BAD + ["1e4", -1]:
            try:
                method = methods.get(name, **{f.name: value})
            except ValueError as err:
                assert f.name in str(err), (name, f.name, value, str(err))
                continue
            kind = hints[f.name]
            assert isinstance(getattr(method, f.name), typing.get_args(kind) or kind), (name, f.name, value)


@pytest.mark.parametrize("param, message", [("window=abc", "'window' must be a number"),
                                            ("window=-3", "window must be an integer >= 0"),
                                            ("alpha_s=1e4", NOT_DATA), ("alpha_S=1", "did you mean 'alpha_s'"),
                                            ("nonsense", "write NAME=VALUE"), ("window=[1", "cannot read the value")])
def test_train_checks_method_parameters_before_reading_data(tmp_path, capsys, param, message):
    out = tmp_path / "runs"
    code = main(["train", "--data", str(tmp_path / "nowhere"), "--method", "awc", "--param", param, "--out", str(out)])
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists()  # a start that fails leaves no run folder


def test_a_config_file_with_a_bad_value_names_the_key(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": str(tmp_path / "nowhere"), "batch_size": "many"}))
    assert main(["train", "--config", str(path)]) == 2
    assert "'batch_size' must be a number, got 'many'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../..", "a/b", ".."])
def test_a_run_name_that_would_write_outside_out_is_refused(tmp_path, capsys, name):
    code = main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "runs"), "--name", name])
    assert code == 2 and "single folder name" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_negative_threads_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--threads", "-3"])
    assert exit_.value.code == 2 and "--threads" in capsys.readouterr().err


def test_resume_refuses_options_it_would_ignore(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--lr", "0.1", "--data", "x"]) == 2
    err = capsys.readouterr().err
    assert "--data, --lr would change that run" in err
    assert main(["train", "--resume", str(tmp_path), "--overwrite"]) == 2  # which would it be? neither
    assert "--overwrite would change that run" in capsys.readouterr().err
    assert main(["continual", "--resume", str(tmp_path), "--overwrite"]) == 2
    assert "--overwrite would change that run" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["   ", "run\x01", "a\tb", "x\x7f"])
def test_a_run_name_with_control_characters_or_blank_is_refused(name):
    from poise.config import TrainConfig

    with pytest.raises(ValueError, match="visible folder name"):
        TrainConfig(name=name)


def test_a_bug_is_not_disguised_as_a_user_error(monkeypatch):
    """Only PoiseError (and OSError) become one-line messages; any other exception keeps its traceback."""
    import poise.train

    def broken(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(poise.train, "train", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["train", "--epochs", "1"])


def test_ctrl_c_says_what_is_saved_instead_of_a_traceback(monkeypatch, capsys):
    import poise.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(poise.train, "train", interrupted)
    assert main(["train", "--epochs", "1"]) == 130
    assert "interrupted; what finished is saved" in capsys.readouterr().err


@pytest.mark.parametrize("key, value", [("lidar_points", 10_000_000), ("dim", 200_000), ("batch_size", 10**7)])
def test_sizes_no_model_needs_are_refused_before_any_allocation(key, value):
    from poise.config import TrainConfig
    from poise.continual.config import ContinualConfig

    for kind in (TrainConfig, ContinualConfig):
        with pytest.raises(ValueError, match=rf"'{key}' = {value:,} is beyond what poise will allocate"):
            kind(**{key: value})
