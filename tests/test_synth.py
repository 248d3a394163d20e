"""The simulator: sensor physics, the tiny preset read back by the reader, determinism, idempotence."""

from __future__ import annotations

import numpy as np
import pytest

from poise.cli import main
from poise.data import layout, mmfi
from poise.data.dataset import MMFiDataset
from poise.data.synth import lidar, mmwave, wifi, writer
from poise.data.synth.scene import Environment, Performance, Pose


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from points p (N, 3) to segments a-b (C, 3): (N, C)."""
    ab = b - a
    u = np.clip(((p[:, None] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0, 1)
    return np.linalg.norm(p[:, None] - (a + u[..., None] * ab), axis=-1)


@pytest.fixture(scope="module")
def performance():
    return Performance.build("S03", "A12", seed=5)


def test_lidar_points_lie_on_the_visible_body_surface(performance, monkeypatch):
    monkeypatch.setattr(lidar, "DROPOUT", 0.0)
    monkeypatch.setattr(lidar, "FLOOR_KEEP", 0.0)
    monkeypatch.setattr(lidar, "STRAY_POINTS", 0.0)
    env = performance.env
    joints, rot = performance.pose(np.array([0.0, 3.3]))
    ends, radii = performance.capsules(joints, rot)
    clouds = lidar.scan(ends, radii, env.lidar, env.floor_y, env.cam_rot, np.zeros((0, 3)), np.random.default_rng(0))
    for f, cloud in enumerate(clouds):
        assert len(cloud) > 300
        p = env.lidar.from_sensor(cloud)
        gap = _segment_distance(p, ends[f, :, 0], ends[f, :, 1]) - radii  # signed distance to each capsule
        nearest = gap.argmin(1)
        assert np.abs(gap.min(1)).max() < 5 * lidar.RANGE_NOISE_M  # on the surface, within noise
        # Visible side: the surface normal at each point faces the scanner.
        a, b = ends[f, nearest, 0], ends[f, nearest, 1]
        ab = b - a
        u = np.clip(((p - a) * ab).sum(-1) / (ab * ab).sum(-1), 0, 1)
        normal = p - (a + u[:, None] * ab)
        facing = (normal * (env.lidar.origin - p)).sum(-1) > 0
        assert facing.mean() > 0.97


def _rod(z0: float, dz: float) -> np.ndarray:
    """One horizontal capsule (an arm) in front of a radar at the origin looking along +z."""
    return np.array([[[-0.15, 0.0, z0 + dz], [0.15, 0.0, z0 + dz]]])


@pytest.mark.parametrize("speed, sign", [(1.0, 1), (-1.0, -1)])
def test_mmwave_doppler_sign_follows_motion_along_the_line_of_sight(monkeypatch, speed, sign):
    monkeypatch.setattr(mmwave, "GHOST_RATE", 0.0)
    monkeypatch.setattr(mmwave, "FALSE_ALARMS", 0.0)
    monkeypatch.setattr(mmwave, "angle_noise_deg", lambda snr_db, elements: np.zeros_like(snr_db))
    radar = Pose(np.zeros(3), np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]).T)  # x right, y = +z boresight
    radii = np.array([0.3])
    dz = speed * mmwave.DT_S
    rng = np.random.default_rng(0)
    points = mmwave.detect_frame(_rod(2.0, 0), _rod(2.0, -dz), _rod(2.0, dz), radii, radar, 5.0, np.eye(3), rng)
    assert len(points) > 0
    doppler = points[:, 3]
    assert np.all(np.sign(doppler) == sign)
    assert np.all(np.abs(doppler - speed) <= 0.15 * abs(speed) + mmwave.VEL_RES_MPS)
    rng_m = np.linalg.norm(points[:, :3], axis=1)
    assert (rng_m > 2.0 - 0.3 - 0.05).all() and (rng_m < 2.0 + 0.05).all()  # the radar-facing half only


def test_mmwave_angle_error_falls_with_snr_and_is_worse_in_elevation():
    snr = np.array([0.0, 10.0, 20.0, 60.0])
    az, el = mmwave.angle_noise_deg(snr, mmwave.AZ_ELEMENTS), mmwave.angle_noise_deg(snr, mmwave.EL_ELEMENTS)
    assert np.all(np.diff(az) < 0) and np.all(np.diff(el) < 0) and np.all(el > az)
    # 8 elements: beamwidth 0.886 * 2 / 8 rad = 12.69 deg; at 20 dB 12.69 / (1.6 sqrt(200)) = 0.561, with the floor 1.147
    assert az[2] == pytest.approx(np.hypot(mmwave.ANGLE_FLOOR_DEG, 0.561), abs=0.002)
    assert az[-1] == pytest.approx(mmwave.ANGLE_FLOOR_DEG, abs=0.01)  # a very strong detection: only the floor


def test_mmwave_suppresses_static_parts(monkeypatch):
    monkeypatch.setattr(mmwave, "GHOST_RATE", 0.0)
    monkeypatch.setattr(mmwave, "FALSE_ALARMS", 0.0)
    radar = Pose(np.zeros(3), np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]).T)
    still = _rod(2.0, 0)
    points = mmwave.detect_frame(still, still, still, np.array([0.3]), radar, 5.0, np.eye(3), np.random.default_rng(0))
    assert points.shape == (0, 5)


def test_mmwave_frames_hold_their_neighbours_detections_as_mmfis_enhanced_clouds_do(monkeypatch):
    """Each frame's file holds the detections of the previous, current and next radar frame (fewer at a
    sequence's ends), in time order: the merge An & Ogras's code applies (toolbox issue #15)."""
    frames = [np.full((k, 5), float(k)) for k in (1, 2, 3, 4)]
    monkeypatch.setattr(mmwave, "detect_frame", lambda *args: frames.pop(0))
    clouds = mmwave.scan(Performance.build("S02", "A27", seed=0), np.arange(4) / 10.0, np.random.default_rng(0))
    assert [c[:, 0].tolist() for c in clouds] == [[1, 2, 2], [1, 2, 2, 3, 3, 3], [2, 2, 3, 3, 3, 4, 4, 4, 4],
                                                  [3, 3, 3, 4, 4, 4, 4]]


def test_agc_gain_is_bounded_and_iq_is_8_bit():
    gain = wifi.agc_gain_db(100_000, np.random.default_rng(0))
    assert np.abs(gain).max() < 6 * wifi.AGC_JUMP_DB and 0 < np.mean(np.diff(gain) != 0) < 2 * wifi.AGC_JUMP_RATE
    amp, _ = wifi.csi(Performance.build("S02", "A27", seed=0), np.arange(20) / 10.0, np.random.default_rng(0))
    assert amp[np.isfinite(amp)].max() <= 20 * np.log10(128 * np.sqrt(2)) + 1e-9


def test_mmwave_scatterers_stay_put_when_a_bone_crosses_the_helper_switch():
    """A bone turning by 0.02 rad across |axis_y| = 0.9 must not teleport its surface samples."""
    def bone(angle):
        axis = np.array([np.cos(angle), np.sin(angle), 0.0])
        return np.array([[[0.0, 0.0, 3.0], [0.0, 0.0, 3.0] + 0.3 * axis]])
    switch = np.arcsin(0.9)
    before, after = bone(switch - 0.01), bone(switch + 0.01)
    cap, u, theta = np.zeros(50, int), np.linspace(0, 1, 50), np.linspace(0, 6, 50)
    helper = mmwave._helper(bone(switch + 0.001), cap)
    p0, _ = mmwave._place(before, np.array([0.05]), cap, u, theta, helper)
    p1, _ = mmwave._place(after, np.array([0.05]), cap, u, theta, helper)
    assert np.linalg.norm(p1 - p0, axis=1).max() < 0.3 * 0.02 + 0.05 * 0.05


def test_csi_phase_changes_with_path_length_as_2_pi_f_d_over_c():
    d, delta = 4.0, 0.013
    h0 = wifi.channel(wifi.FREQS_HZ, np.array([[d]]), np.array([[1.0]]))[0]
    h1 = wifi.channel(wifi.FREQS_HZ, np.array([[d + delta]]), np.array([[1.0]]))[0]
    change = np.angle(h1 / h0)
    expected = np.angle(np.exp(-2j * np.pi * wifi.FREQS_HZ * delta / wifi.C))
    assert np.allclose(change, expected, atol=1e-4)
    assert np.allclose(np.abs(h0), 1.0, atol=1e-5)
    # Across subcarriers the phase falls with slope 2 pi d / c per Hz.
    slope = np.polyfit(wifi.FREQS_HZ - wifi.CENTRE_HZ, np.unwrap(np.angle(h0)), 1)[0]
    assert slope == pytest.approx(-2 * np.pi * d / wifi.C, rel=1e-3)


def test_environments_share_the_sensor_platform_and_differ_in_the_room():
    """Generator v4: LiDAR and radar sit on the camera's platform (the same pose relative to the camera in every
    room, so a room's offset is what every sensor sees), the camera is nearly level at about pelvis height (MM-Fi's
    mean pelvis is at y = 0.01-0.02 m), and the rooms differ in WiFi placement, reflectors and the subject's spot."""
    envs = [Environment.build(e) for e in layout.ENVIRONMENTS]
    for sensor in ("lidar", "radar"):
        in_level = [getattr(e, sensor).origin @ e.cam_rot for e in envs]  # camera frame -> the level frame
        np.testing.assert_allclose(in_level, [in_level[0]] * 4, atol=1e-12)
        turns = [e.cam_rot.T @ getattr(e, sensor).axes for e in envs]
        np.testing.assert_allclose(turns, [turns[0]] * 4, atol=1e-12)
    assert len({tuple(np.round(e.wifi_tx, 3)) for e in envs}) == 4
    assert all(abs(e.cam_pitch) < 0.02 and 0.95 < e.cam_height < 1.05 for e in envs)
    assert envs[3].subject_xz[0] > envs[0].subject_xz[0] + 0.2  # E04's subject stands further right
    pelvis = np.array([Performance.build(s, "A03", seed=0).pose(np.array([0.0]))[0][0, 0]
                       for s in ("S01", "S12", "S23", "S34")])
    assert np.all(np.abs(pelvis[:, 1]) < 0.12)  # MM-Fi: y = 0.01-0.02 m on average; v3 reached -0.25


def test_the_ground_truth_is_an_estimate_the_sensors_do_not_see(monkeypatch):
    """The written labels are an estimate (poise.data.synth.annotation): they differ from the true joints by a
    smooth error of about SIGMA_M per axis, larger at wrists and ankles, while the sensors see the true body
    (exact labels leave every sensor's output as it was)."""
    from poise.data.synth import annotation

    truth = Performance.build("S02", "A27", seed=0).pose(np.arange(297) / 10.0)[0]
    with monkeypatch.context() as patch:  # the pose's error alone
        patch.setattr(annotation, "BODY_SIGMA_M", (0.0, 0.0, 0.0))
        error = annotation.estimated(truth, np.random.default_rng(0)) - truth
    assert np.sqrt((error ** 2).mean()) == pytest.approx(annotation.SIGMA_M, rel=0.05)
    ends = np.sqrt((error[:, list(annotation.EXTREMITIES)] ** 2).mean())
    assert ends > 1.3 * np.sqrt((error[:, [0, 7, 8]] ** 2).mean())
    step = np.diff(error, axis=0)
    assert np.sqrt((step ** 2).mean()) < 0.5 * annotation.SIGMA_M  # smooth: white noise would step by 1.4 sigma
    data = writer.render("S02", "A27", seed=0)
    assert 0.03 < np.linalg.norm(data["gt"] - truth, axis=-1).mean() < 0.07
    monkeypatch.setattr(annotation, "BODY_SIGMA_M", (0.0, 0.0, 0.0))  # exact labels: every sensor's output unchanged
    monkeypatch.setattr(annotation, "SIGMA_M", 0.0)
    exact = writer.render("S02", "A27", seed=0)
    np.testing.assert_allclose(exact["gt"], truth, atol=1e-12)
    np.testing.assert_array_equal(exact["rgb"], data["rgb"])
    assert all(np.array_equal(a, b) for a, b in zip(exact["mmwave"], data["mmwave"]))


def test_the_labels_whole_body_error_moves_every_joint_together(monkeypatch):
    """Generator v5: the labels' body position is off by a smooth error, largest in depth (the stereo camera's
    worst axis), which moves every joint of a frame alike, so Procrustes alignment (PA-MPJPE) removes it."""
    from poise.data.synth import annotation
    from poise.metrics import pa_mpjpe_mm

    monkeypatch.setattr(annotation, "SIGMA_M", 0.0)
    truth = Performance.build("S02", "A27", seed=0).pose(np.arange(297) / 10.0)[0]
    labels = annotation.estimated(truth, np.random.default_rng(0))
    error = labels - truth
    np.testing.assert_allclose(error, error[:, :1].repeat(17, axis=1), atol=1e-12)  # one shift per frame
    rms = np.sqrt((error[:, 0] ** 2).mean(0))
    np.testing.assert_allclose(rms, annotation.BODY_SIGMA_M, rtol=0.35)
    assert rms[2] > 1.4 * max(rms[0], rms[1])  # depth is the worst axis
    assert np.sqrt((np.diff(error[:, 0], axis=0) ** 2).mean()) < 0.3 * rms.mean()  # smooth over 0.5 s
    assert float(pa_mpjpe_mm(labels, truth)) < 1e-3  # mm


def test_all_27_actions_move_and_differ():
    t = np.arange(0, 30, 0.1)
    motions = {}
    for action in layout.ACTIONS:
        joints, _ = Performance.build("S07", action, seed=1).pose(t)
        motion = joints - joints[:, :1]  # root-relative
        assert np.isfinite(joints).all()
        assert motion.std(0).max() > 0.03, f"{action} barely moves"
        motions[action] = motion.std(0)
    keys = list(motions)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert np.abs(motions[a] - motions[b]).max() > 0.01, f"{a} and {b} move alike"


def test_tiny_is_written_once(tiny):
    assert writer.read_manifest(tiny)["complete"] and len(mmfi.scan(tiny)) == 4


def test_tiny_round_trip_through_the_reader(tiny):
    data = writer.render("S31", "A03", seed=3)
    seq = [s for s in mmfi.scan(tiny) if s.name == "E04/S31/A03"][0]
    assert seq.n_frames == layout.FRAMES_PER_SEQUENCE
    np.testing.assert_array_equal(mmfi.read_ground_truth(seq.gt_path), data["gt"].astype(np.float32))
    for i in (0, 150, 296):
        frame = mmfi.read_frame(seq, i, layout.MODALITIES)
        np.testing.assert_allclose(frame["rgb"], data["rgb"][i], rtol=1e-6)
        np.testing.assert_allclose(frame["lidar"], data["lidar"][i], rtol=1e-6)
        np.testing.assert_allclose(frame["mmwave"], data["mmwave"][i], rtol=1e-6)
        assert frame["wifi-csi"].shape[-3:] == layout.CSI_SHAPE
        assert np.isfinite(frame["wifi-csi"]).all()
    rgb = np.stack([mmfi.read_rgb(seq.file("rgb", i)) for i in range(seq.n_frames)])
    assert (rgb >= 0).all() and (rgb[..., 0] < 640).all() and (rgb[..., 1] < 480).all()


def test_tiny_reads_the_way_the_official_toolbox_reads(tiny):
    """The toolbox's own primitives (research/mmfi.md): listdir of the root, np.load, np.fromfile + reshape,
    scipy.io.loadmat(...)['CSIamp'], 297 files per modality folder."""
    import os

    import scipy.io

    assert sorted(e for e in os.listdir(tiny) if not e.startswith(".")) == ["E01", "E04"]
    seq = tiny / "E01" / "S01" / "A02"
    assert np.load(seq / "ground_truth.npy").shape == (297, 17, 3)
    for modality in layout.MODALITIES:
        assert len(os.listdir(seq / modality)) == 297
    assert np.load(seq / "rgb" / "frame001.npy").shape == (17, 2)
    assert np.fromfile(seq / "lidar" / "frame001.bin", dtype=np.float64).reshape(-1, 3).shape[0] > 300
    np.fromfile(seq / "mmwave" / "frame297.bin", dtype=np.float64).reshape(-1, 5)
    mat = scipy.io.loadmat(seq / "wifi-csi" / "frame150.mat")
    assert mat["CSIamp"].shape == (3, 114, 10) and mat["CSIphase"].shape == (3, 114, 10)
    assert mat["CSIamp"].dtype == np.float64


def test_the_official_toolboxs_csi_preprocessing_finds_no_nan(tiny):
    """The MM-Fi toolbox's WiFi rule (research/mmfi.md; re-implemented here): inf -> NaN, each packet's NaNs
    filled with the mean of its finite values, then min-max over the frame. A packet without one finite value
    stays NaN; the toolbox never meets one on the real files, so the simulator must not write one."""
    import scipy.io

    infinite = 0
    for path in sorted(tiny.rglob("wifi-csi/*.mat")):
        amp = scipy.io.loadmat(path)["CSIamp"].astype(np.float64)
        infinite += int(np.isinf(amp).sum())
        amp[np.isinf(amp)] = np.nan
        for k in range(amp.shape[2]):
            packet = amp[:, :, k]
            packet[np.isnan(packet)] = np.nanmean(packet) if np.isfinite(packet).any() else np.nan
        amp = (amp - amp.min()) / (amp.max() - amp.min())
        assert not np.isnan(amp).any(), path
    assert infinite > 0  # deep fades still give -inf, so the fill path above is exercised


def test_tiny_loads_as_a_dataset(tiny):
    ds = MMFiDataset(tiny, protocol="P1", part="all", cache=False, progress=False)
    assert len(ds) == 4 * layout.FRAMES_PER_SEQUENCE
    item = ds[10]
    assert item["gt"].shape == (17, 3) and item["lidar"].shape == (1024, 3) and item["mmwave"].shape == (64, 5)
    assert 2.0 < item["gt"][0, 2] < 4.5  # pelvis depth in metres, as in MM-Fi


def test_simulate_is_deterministic_by_seed():
    a, b, c = (writer.render("S12", "A17", seed=s) for s in (4, 4, 5))
    for key in ("gt", "rgb"):
        np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a[key], c[key])
    for i in (0, 100):
        np.testing.assert_array_equal(a["lidar"][i], b["lidar"][i])
        np.testing.assert_array_equal(a["mmwave"][i], b["mmwave"][i])
    np.testing.assert_array_equal(a["wifi-csi"][0], b["wifi-csi"][0])


def test_a_seed_writes_the_same_bytes(tmp_path):
    """Two writes of one seed are byte-identical, .mat files included (no creation time in their header), so a
    dataset can be checked by checksum."""
    import hashlib
    import time

    import scipy.io

    digests = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        writer.write_sequence(tmp_path / name, writer.render("S02", "A03", seed=3))
        digests.append({p.relative_to(tmp_path / name): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted((tmp_path / name).rglob("*")) if p.is_file()})
        time.sleep(1.1)  # the header's clock, had it one, would have moved on
    assert len(digests[0]) == 1 + 4 * layout.FRAMES_PER_SEQUENCE and digests[0] == digests[1]
    mat = tmp_path / "a" / "wifi-csi" / "frame001.mat"
    assert mat.read_bytes().startswith(writer.MAT_HEADER) and scipy.io.loadmat(mat)["CSIamp"].shape == (3, 114, 10)


def test_sensor_outputs_have_the_mmfi_shapes_and_quirks():
    data = writer.render("S01", "A26", seed=0)
    assert data["gt"].shape == (297, 17, 3)
    assert data["rgb"].shape == (297, 17, 2)
    assert all(c.shape[1] == 3 for c in data["lidar"]) and all(c.shape[1] == 5 for c in data["mmwave"])
    counts = np.array([len(c) for c in data["mmwave"]])
    assert counts.max() <= len(mmwave.MERGED) * mmwave.MAX_POINTS and counts.mean() > 5
    amp, phase = data["wifi-csi"]
    assert amp.shape == (297, *layout.CSI_SHAPE) and phase.shape == amp.shape
    assert np.isneginf(amp).any()  # deep fades, as in MM-Fi
    assert not np.isnan(amp).any() and (np.abs(phase) <= np.pi).all()


def test_simulate_is_idempotent_and_refuses_to_overwrite(tiny, capsys):
    assert writer.simulate(tiny, preset="tiny", seed=3, progress=False) == {"written": 0, "skipped": 4}
    with pytest.raises(FileExistsError, match="--force"):
        writer.simulate(tiny, preset="tiny", seed=4, progress=False)
    assert main(["simulate", "--preset", "tiny", "--seed", "4", "--out", str(tiny), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err


def test_simulate_never_deletes_data_it_did_not_write(tmp_path):
    root = tmp_path / "real"
    (root / "E01").mkdir(parents=True)
    (root / "E01" / "keep.txt").write_text("real data")
    for force in (False, True):
        with pytest.raises(FileExistsError, match="did not write"):
            writer.simulate(root, preset="tiny", force=force, progress=False)
    assert (root / "E01" / "keep.txt").read_text() == "real data"
    assert not (root / writer.MANIFEST).exists()


def test_force_deletes_exactly_what_the_manifest_lists(tmp_path, caplog):
    root = tmp_path / "r"
    writer.simulate(root, preset="tiny", seed=2, workers=1, progress=False)
    (root / "E01" / "notes.txt").write_text("mine")
    (root / "E01" / "S01" / "A02" / "rgb" / "mine.npy").write_text("mine")
    (root / "E02" / "S11").mkdir(parents=True)
    (root / "E02" / "S11" / "real.bin").write_text("mine")
    assert writer.simulate(root, preset="tiny", seed=2, force=True, workers=1, progress=False)["written"] == 4
    for path in ("E01/notes.txt", "E01/S01/A02/rgb/mine.npy", "E02/S11/real.bin"):
        assert (root / path).read_text() == "mine", path
    assert "kept 2 files it did not write" in caplog.text  # E02 is not the dataset's
    assert len(list((root / "E01" / "S01" / "A02" / "rgb").iterdir())) == layout.FRAMES_PER_SEQUENCE + 1


@pytest.mark.parametrize("link", ["E01", "E01/S01/A02/rgb"])
def test_simulate_never_follows_a_link_into_data_it_did_not_write(tmp_path, link):
    root, real = tmp_path / "r", tmp_path / "real"
    writer.simulate(root, preset="tiny", seed=2, workers=1, progress=False)
    import shutil

    shutil.rmtree(root / link)
    real.mkdir()
    (real / "keep.txt").write_text("real data")
    if link.endswith("rgb"):
        (real / "frame001.npy").write_text("real data")  # a name poise would delete or overwrite
    (root / link).symlink_to(real, target_is_directory=True)
    for force in (False, True):
        with pytest.raises(FileExistsError, match="symbolic link"):
            writer.simulate(root, preset="tiny", seed=2, force=force, workers=1, progress=False)
    assert all(p.read_text() == "real data" for p in real.iterdir())


def test_a_damaged_manifest_is_named_and_nothing_is_touched(tmp_path, capsys):
    from poise.cli import main

    root = tmp_path / "r"
    (root / "E01").mkdir(parents=True)
    (root / writer.MANIFEST).write_text('{"generator": "poi')
    assert main(["simulate", "--preset", "tiny", "--out", str(root), "--force", "--quiet"]) == 2
    assert writer.MANIFEST in capsys.readouterr().err and (root / "E01").is_dir()


def test_simulate_rejects_bad_arguments_before_writing(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("")
    assert main(["simulate", "--preset", "tiny", "--out", str(a_file), "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err
    for flag in (["--seed", "-1"], ["--workers", "0"]):
        with pytest.raises(SystemExit):
            main(["simulate", "--preset", "tiny", "--out", str(tmp_path / "x"), *flag])
        assert "minimum" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_simulate_repairs_and_force_rewrites_a_complete_dataset(tmp_path):
    root = tmp_path / "r"
    writer.simulate(root, preset="tiny", seed=2, progress=False)
    import shutil
    shutil.rmtree(root / "E04")
    assert writer.simulate(root, preset="tiny", seed=2, progress=False) == {"written": 2, "skipped": 2}
    assert writer.simulate(root, preset="tiny", seed=2, force=True, progress=False) == {"written": 4, "skipped": 0}


def test_simulate_resumes_an_interrupted_run(tmp_path):
    root = tmp_path / "r"
    writer.simulate(root, preset="tiny", seed=1, workers=1, progress=False)
    gt_before = np.load(root / "E01/S01/A02" / layout.GROUND_TRUTH)
    import shutil
    shutil.rmtree(root / "E04/S31/A03")  # as if killed before the last sequence was renamed into place
    manifest = writer.read_manifest(root)
    manifest["complete"] = False
    (root / writer.MANIFEST).write_text(__import__("json").dumps(manifest))
    assert writer.simulate(root, preset="tiny", seed=1, workers=1, progress=False) == {"written": 1, "skipped": 3}
    np.testing.assert_array_equal(np.load(root / "E01/S01/A02" / layout.GROUND_TRUTH), gt_before)


def test_info_summarises_a_root(tiny, capsys):
    assert main(["info", str(tiny)]) == 0
    out = capsys.readouterr().out
    assert "preset tiny, seed 3" in out and "4 sequences" in out and "mmwave" in out


def test_info_names_every_damaged_file_and_survives_a_missing_modality(tiny, tmp_path, capsys):
    import shutil
    import warnings

    root = tmp_path / "r"
    shutil.copytree(tiny, root, ignore=shutil.ignore_patterns(".poise_cache"))
    seq = root / "E01" / "S01" / "A02"
    nan_points = seq / "lidar" / "frame003.bin"
    points = np.fromfile(nan_points).reshape(-1, 3)
    points[0, 0] = np.nan
    points.tofile(nan_points)
    (seq / "wifi-csi" / "frame004.mat").write_bytes(b"not a mat file")
    (seq / "rgb" / "frame005.npy").write_bytes(b"")
    assert main(["info", str(root), "--quiet"]) == 1  # damaged files named, and a script notices
    out = capsys.readouterr().out
    for path in (nan_points, seq / "wifi-csi" / "frame004.mat", seq / "rgb" / "frame005.npy"):
        assert str(path) in out, path
    stats = [line for line in out.splitlines() if "points/frame" in line or "pelvis" in line]
    assert len(stats) == 3 and not any("nan" in line or "inf" in line for line in stats)
    assert main(["info", str(root), "--quick"]) == 0
    assert "frame004.mat" not in capsys.readouterr().out  # structure only: the frames are not read
    for folder in root.rglob("wifi-csi"):
        shutil.rmtree(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning from statistics of nothing
        assert main(["info", str(root), "--quiet"]) == 1  # every sequence skipped: said, and exit 1
    assert "wifi-csi" in capsys.readouterr().out


def test_info_on_a_missing_root_names_it(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_simulate_on_a_full_disk_names_the_sequence_and_keeps_the_finished_ones(tmp_path, monkeypatch):
    """Issue 28, item 6: `[Errno 28]` without a path was all a full disk said. Now the sequence is named, its
    partial folder goes, and a second run finishes the rest."""
    import errno

    from poise.errors import PoiseError

    real, calls = writer.write_sequence, []

    def fills_up(folder, data):
        calls.append(folder)
        if len(calls) == 2:
            (folder / "rgb").mkdir()
            raise OSError(errno.ENOSPC, "No space left on device")
        real(folder, data)

    monkeypatch.setattr(writer, "write_sequence", fills_up)
    out = tmp_path / "mmfi"
    with pytest.raises(PoiseError, match=r"E0\d/S\d\d/A\d\d: no space left on the device .* run the same command again"):
        writer.simulate(out, preset="tiny", workers=1, progress=False)
    assert not list(out.glob("E0*/S*/.*.partial"))
    monkeypatch.setattr(writer, "write_sequence", real)
    assert writer.simulate(out, preset="tiny", workers=1, progress=False) == {"written": 3, "skipped": 1}
