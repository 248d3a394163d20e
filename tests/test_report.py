"""``poise report``: one self-contained HTML page per run / continual run / bench, skeleton pictures, and the
page rendered in a real browser (headless Chromium) with every image loaded and no console error."""

from __future__ import annotations

import base64
import io
import re
import shutil

import numpy as np
import pytest

from poise.cli import main
from poise.errors import PoiseError
from poise.report import write_report
from poise.report.page import Page
from poise.report.run import chosen_rows, shown_rows
from poise.report.skeleton import _upright

IMG = re.compile(r'<img[^>]*? src="([^"]*)"')


def images_of(html: str) -> list:
    """Decoded images of a page; fails unless every one is an inlined PNG."""
    import matplotlib.image

    out = []
    for src in IMG.findall(html):
        assert src.startswith("data:image/png;base64,"), src[:60]
        out.append(matplotlib.image.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png"))
    return out


def assert_not_blank(image: np.ndarray) -> None:
    """A plot has drawn something: many pixels differ from the background colour."""
    background = image[0, 0]
    assert (np.abs(image - background).sum(-1) > 0.1).mean() > 0.01


def assert_self_contained(html: str) -> None:
    assert not re.search(r'(src|href)="(https?:)?//', html), "the page must not reach the network"
    assert "<script" not in html


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    from poise.config import TrainConfig
    from poise.train import train

    out = tmp_path_factory.mktemp("report_runs")
    config = TrainConfig(data=str(tiny), protocol="P3", split="S1", holdout=0.5, epochs=2, batch_size=64, dim=16,
                         lidar_points=64, mmwave_points=16, assess_frames=128, out=str(out), name="r", lr_step=10)
    return train(config, progress=False)


def test_a_run_report_shows_settings_curves_metrics_and_skeletons(trained):
    path = write_report(trained.dir)
    html = path.read_text()
    assert_self_contained(html)
    last = trained.history[-1]
    assert f"{last['test_mpjpe_mm']:.4g}" in html and f"{last['shapley_wifi-csi']:.4g}" in html
    assert "method baseline" in html and "lr_step" in html  # the config and the method's settings
    images = images_of(html)
    assert len(images) == 5  # curves, Shapley scores, spreads, skeletons, unimodal predictions
    for image in images:
        assert_not_blank(image)
    for name in ("skeletons", "unimodal"):
        assert (trained.dir / f"{name}.png").stat().st_size > 10_000
    # without the model: no skeletons, and the page says so
    html = write_report(trained.dir, poses=False).read_text()
    assert len(images_of(html)) == 3 and "Not drawn" in html


def test_report_command_and_its_errors(trained, tmp_path, capsys):
    assert main(["report", str(trained.dir), "--frames", "3", "--worst", "1"]) == 0
    assert str(trained.dir / "report.html") in capsys.readouterr().out
    assert main(["report", str(trained.dir), "--frames", "99999"]) == 2
    assert "--frames [99999]" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "not a poise run or bench directory" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(trained.dir, broken, ignore=shutil.ignore_patterns("checkpoint.pt", ".lock"))
    (broken / "metrics.json").write_text("[{")
    assert main(["report", str(broken)]) == 2
    assert "metrics.json is not valid JSON" in capsys.readouterr().err


def test_frames_shown_are_the_chosen_then_the_worst():
    errors = np.array([5.0, 50.0, 1.0, 70.0, 20.0])
    assert shown_rows(errors, [0, 2], 2) == [(0, "chosen"), (2, "chosen"), (3, "worst"), (1, "worst")]
    assert shown_rows(errors, [], 0) == []
    with pytest.raises(PoiseError, match="frames 0..4"):
        shown_rows(errors, [5], 1)
    assert chosen_rows(300) == [100, 200] and chosen_rows(1) == [0]


def test_skeletons_are_drawn_upright():
    pose = np.zeros((17, 3))
    pose[10] = [0.0, -0.7, 3.0]  # the head: above the pelvis, so smaller y in the camera frame (y down)
    up = _upright(pose)
    assert up[10, 2] == pytest.approx(0.7) and up[10, 1] == pytest.approx(3.0)  # plot z is up, plot y is depth


def test_a_bench_report_inlines_its_markdown_tables_and_plots(tmp_path):
    from poise.plots import plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "methods.png")
    plt.close(fig)
    (tmp_path / "report.md").write_text("# poise bench: preset `x`\n\nCommand: `poise bench`\n\n| method | MPJPE |\n"
                                        "|---|---|\n| baseline | 61.2 ± 0.3 |\n\n- a <finding> & more\n\n"
                                        "![methods](methods.png)\n")
    (tmp_path / "results.csv").write_text("variant,seed,test_mpjpe_mm,run\nbaseline,0,61.2,runs/b\n")
    html = write_report(tmp_path).read_text()
    assert_self_contained(html)
    assert "<title>poise bench: preset `x`</title>" in html
    assert "<td>baseline</td>" in html and "61.2 ± 0.3" in html and "&lt;finding&gt; &amp; more" in html
    assert len(images_of(html)) == 1
    (tmp_path / "methods.png").unlink()
    with pytest.raises(PoiseError, match="methods.png"):
        write_report(tmp_path)


def test_a_continual_run_report(stream_root, tmp_path):
    from poise.continual.config import ContinualConfig
    from poise.continual.runner import run_continual, summary

    run = run_continual(ContinualConfig(data=str(stream_root), out=str(tmp_path), split="S2", tasks=2, epochs=2,
                                        relearn={"relearn_epoch": 0}, nis={"gamma": 1}, dim=16, lidar_points=32,
                                        mmwave_points=16, train_stride=3, batch_size=32, assess_frames=128,
                                        ewc={"fisher_frames": 64},
                                        noisy_modality="rgb", ratio=0.4), progress=False)
    html = write_report(run.dir).read_text()
    assert_self_contained(html)
    s = summary(run)
    assert f"{s['avg_mpjpe_mm'][-1]:.1f}" in html and "NIS named" in html
    images = images_of(html)
    assert len(images) == 3
    for image in images:
        assert_not_blank(image)


def test_markdown_links_never_leave_the_page_and_images_stay_in_the_folder(tmp_path):
    from poise.plots import plt

    page = Page("x")
    page.markdown("[a](javascript:alert(1)) <http://example.com> [b](#here) [c](runs/r/report.html) [d](/etc/x)",
                  tmp_path)
    html = page.parts[-1]
    assert html.count("<a>") == 3 and 'href="#here"' in html and 'href="runs/r/report.html"' in html
    assert "javascript" not in html.split("<a>")[1] and 'href="http' not in html
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(tmp_path.parent / "outside.png")
    plt.close(fig)
    (tmp_path / "notes.txt").write_text("not a picture")
    for src in ("../outside.png", str(tmp_path.parent / "outside.png"), "notes.txt", "missing.png"):
        with pytest.raises(PoiseError, match="not a picture file"):
            page.markdown(f"![p]({src})", tmp_path)


PAYLOADS = ("[ctrl](\x01javascript:alert(1))", "[tab](java&#x09;script:alert(2))", "[nl](<java\nscript:alert(3)>)",
            "[sp]( \x1f JavaScript:alert(4))", "[ok](#here)")


def test_links_are_checked_as_a_browser_reads_them():
    """Browsers strip leading C0 controls and spaces and drop tabs and line breaks before reading a scheme
    (WHATWG URL): each payload is a javascript: link to them, and must lose its address here."""
    page = Page("x")
    page.markdown("\n\n".join(PAYLOADS), ".")
    body = page.parts[-1]
    hrefs = re.findall(r'<a href="([^"]*)"', body)
    assert hrefs == ["#here"], body
    assert body.count("<a>") == 4


def test_a_report_inlines_no_file_from_outside_the_run_and_no_text_as_a_picture(trained, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "metrics.json", "method.json"):
        shutil.copy(trained.dir / name, run)
    secret = tmp_path / "secret.txt"
    secret.write_text("a private key")
    (run / "robust.png").symlink_to(secret)
    with pytest.raises(PoiseError, match="robust.png: not a picture file .* inside"):
        write_report(run, poses=False)
    (run / "robust.png").unlink()
    (run / "robust.png").write_text("a private key")  # a picture's name, a text's content
    with pytest.raises(PoiseError, match="robust.png: its content is not a PNG picture"):
        write_report(run, poses=False)
    assert main(["report", str(run), "--no-poses"]) == 2
    html = run / "report.html"
    assert not html.exists() or "a private key" not in html.read_text()


def test_a_run_with_no_finished_epoch_says_so_and_a_failed_report_does_not_fail_training(trained, tmp_path,
                                                                                          capsys):
    started = tmp_path / "started"
    started.mkdir()
    shutil.copy(trained.dir / "config.yaml", started)
    with pytest.raises(PoiseError, match="no finished epoch"):
        write_report(started)
    from argparse import Namespace

    from poise.cli.commands import _report

    _report(started, Namespace(command="train", no_report=False))  # a warning, not an exception
    assert "warning: report not written" in capsys.readouterr().err


def test_page_escapes_text():
    page = Page("a <b>")
    page.text("x < y & z")
    page.table(["k"], [["<script>"]])
    html = page.html()
    assert "<script>" not in html and "x &lt; y &amp; z" in html and "&lt;script&gt;" in html


# ----------------------------------------------------------------------------------------------------------------
# in a real browser


def chromium():
    """(chromium, chromedriver) paths; CI installs both (Debian's chromium and chromium-driver)."""
    paths = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(paths):
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver; .ci/run does)")
    pytest.importorskip("selenium", reason="pip install selenium (part of the dev extra)")
    return paths


def test_the_run_report_renders_in_chromium_with_every_image_loaded(trained):
    binary, driver_path = chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    path = write_report(trained.dir)
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(path.resolve().as_uri())
        images = driver.execute_script("return Array.from(document.images).map(i => [i.alt, i.complete, "
                                       "i.naturalWidth, i.naturalHeight])")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        tables = driver.execute_script("return document.querySelectorAll('table').length")
    finally:
        driver.quit()
    assert len(images) == 5 and tables >= 3
    assert all(complete and w > 100 and h > 100 for _, complete, w, h in images), images
    assert errors == []


def test_no_link_of_a_report_runs_a_script_in_chromium(tmp_path):
    """The payloads, rendered and clicked in a real browser: no link is a javascript: one, no alert opens."""
    binary, driver_path = chromium()
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service

    page = Page("links")
    page.markdown("\n\n".join(PAYLOADS), tmp_path)
    path = page.save(tmp_path / "report.html")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.binary_location = binary
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    alerts = []
    try:
        driver.get(path.resolve().as_uri())
        protocols = driver.execute_script("return Array.from(document.links).map(a => a.protocol)")
        count = driver.execute_script("return document.querySelectorAll('a').length")
        for i in range(count):
            driver.execute_script(f"document.querySelectorAll('a')[{i}].click()")
            try:
                alerts.append(driver.switch_to.alert.text)
                driver.switch_to.alert.accept()
            except NoAlertPresentException:
                pass
    finally:
        driver.quit()
    assert count == 5 and "javascript:" not in protocols and alerts == []


# ----------------------------------------------------------------------------------------------------------------
# poise show


def test_show_draws_every_sensor_of_a_frame_and_names_what_is_missing(tiny, tmp_path, capsys):
    import matplotlib.image

    out = tmp_path / "f.png"
    assert main(["show", str(tiny), "--subject", "S01", "--action", "A02", "--frame", "120", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    image = matplotlib.image.imread(out)
    assert_not_blank(image)
    h, w = image.shape[:2]
    for rows, cols in ((slice(0, h // 2), slice(0, w // 4)), (slice(h // 2, h), slice(w // 2, w))):
        assert_not_blank(image[rows, cols])  # the RGB panel, the CSI phase panels
    assert main(["show", str(tiny), "--subject", "S01", "--action", "A02", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err  # never overwrites without --overwrite
    assert main(["show", str(tiny), "--subject", "S01", "--action", "A27", "--out", str(tmp_path / "x.png")]) == 2
    assert "S01 has A02, A03" in capsys.readouterr().err
    assert main(["show", str(tiny), "--subject", "S01", "--action", "A02", "--frame", "298",
                 "--out", str(tmp_path / "y.png")]) == 2
    assert "frames 1..297" in capsys.readouterr().err


def test_show_gif_has_one_image_per_frame(tiny, tmp_path):
    from PIL import Image

    from poise.show import show

    path = show(tiny, "S01", "A02", frame=10, gif=True, to=14, step=2, out=tmp_path / "a.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 3
    path = show(tiny, "S01", "A02", frame=290, gif=True, step=3, out=tmp_path / "b.gif")  # to: the last frame
    with Image.open(path) as gif:
        assert gif.n_frames == 3  # 290, 293, 296 of 297
    with pytest.raises(PoiseError, match="--to 9 is not after --frame 10"):
        show(tiny, "S01", "A02", frame=10, gif=True, to=9, out=tmp_path / "c.gif")
    with pytest.raises(PoiseError, match="add --gif"):
        show(tiny, "S01", "A02", frame=10, to=12, out=tmp_path / "d.png")


def test_show_names_a_damaged_file(small_root, tmp_path):
    from poise.show import show

    damaged = small_root / "E01" / "S01" / "A02" / "wifi-csi" / "frame002.mat"
    damaged.write_bytes(b"MATLAB but not really")
    with pytest.raises(PoiseError, match=r"frame002\.mat: unreadable \.mat.*cannot be drawn"):
        show(small_root, "S01", "A02", frame=2, out=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_show_reads_raw_csi_leaving_nan_and_inf_blank(small_root):
    from poise.show import read_shown, sequence_dir

    seen = [read_shown(sequence_dir(small_root, "S01", "A02"), f)["wifi-csi"]["CSIamp"] for f in range(1, 6)]
    assert all(np.isinf(a).sum() == 0 for a in seen) and any(np.isnan(a).any() for a in seen)


# ----------------------------------------------------------------------------------------------------------------
# live curves


def test_tensorboard_logs_every_per_epoch_number(tiny, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from poise.config import TrainConfig

    config = TrainConfig(data=str(tiny), protocol="P3", split="S1", holdout=0.5, epochs=2, batch_size=64, dim=16,
                         lidar_points=64, mmwave_points=16, assess_frames=128, out=str(tmp_path), name="tb",
                         method="awc", lr_step=10)
    config.save(tmp_path / "c.yaml")
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--tensorboard", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'tb' / 'report.html'}" in out  # the command ends by naming its report
    history = __import__("json").loads((tmp_path / "tb" / "metrics.json").read_text())
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    numbers = {k for k, v in history[0].items() if k != "epoch" and isinstance(v, (int, float))}
    assert len(tags) == len(numbers) and {"test/mpjpe_mm", "shapley/rgb", "awc/share_wifi-csi"} <= tags
    logged = events.Scalars("test/mpjpe_mm")
    assert [e.step for e in logged] == [1, 2]
    assert [e.value for e in logged] == pytest.approx([h["test_mpjpe_mm"] for h in history])


def test_tensorboard_missing_is_a_clear_error(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    from poise.tensorboard import TensorBoardLog

    with pytest.raises(PoiseError, match=r"pip install 'poise\[tensorboard\]'"):
        TensorBoardLog(tmp_path)
