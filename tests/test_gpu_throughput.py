"""benchmarks/gpu_throughput.py, the script a GPU session runs unattended, works before a GPU is lent: on the
CPU it trains through the loop and the hand-written loop and reports consistent rows."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_throughput.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_throughput_script_measures_the_loop_on_the_cpu(tiny, tmp_path, capsys):
    script = load_script()
    out = tmp_path / "throughput.json"
    assert script.main(["--data", str(tiny), "--encoders", "lite", "--precisions", "float32", "bf16", "--epochs", "1",
                        "--batch-size", "16", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["tf32_matmul"] is False and isinstance(summary["tf32_cudnn"], bool)  # as torch defaults them
    rows = summary["rows"]
    assert [(r["encoder"], r["precision"]) for r in rows] == [("lite", "float32"), ("lite", "bf16")]
    for row in rows:
        assert row["device"] == "cpu" and row["ranks"] == 1
        assert row["frames_per_epoch"] > 0 and row["frames_per_epoch"] == 16 * row["steps_per_epoch"]
        assert row["loop_frames_per_s"] > 0 and row["hand_written_frames_per_s"] > 0
        assert row["loop_vs_hand_written"] == pytest.approx(row["loop_frames_per_s"] / row["hand_written_frames_per_s"])
        assert row["host_syncs_per_epoch"] is None and row["peak_memory_gib"] is None  # GPU-only figures
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and printed[0].startswith("lite  float32  on cpu x 1:")
