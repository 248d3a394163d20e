"""The MM-Fi reader: index, structural and content validation, the skip policy, CSI cleaning, and the dataset's
item rules (fixed-size point clouds, masks, rgb windows, collation)."""

import shutil
import warnings

import numpy as np
import pytest
import scipy.io
import torch

from poise.cli import main
from poise.data import layout
from poise.data.dataset import MMFiDataset, fixed_size
from poise.data.mmfi import MMFiFormatError, ReadReport, clean_csi, read_csi, read_points, read_rgb, scan

SEQ = ("E01", "S01", "A02")  # in small_root


def seq_dir(root, env="E01", subject="S01", action="A02"):
    return root / env / subject / action


def frame(root, modality, i, seq=SEQ):
    return seq_dir(root, *seq) / modality / layout.frame_name(i, modality)


def read_all(root, **kw):
    """Every item of every sequence, per file (forces the content checks)."""
    kw = {"part": "all", "cache": False, "protocol": "P1", **kw}
    ds = MMFiDataset(root, **kw)
    return ds, [ds[i] for i in range(len(ds))]


# --- index ------------------------------------------------------------------------------------------------------


def test_scan_indexes_sequences_and_ignores_clutter(mmfi_root):
    sequences = scan(mmfi_root)
    assert [s.name for s in sequences] == ["E01/S05/A02", "E01/S05/A03", "E02/S12/A02", "E02/S12/A03",
                                           "E04/S33/A02", "E04/S33/A03"]
    assert all(s.n_frames == 297 and len(s.frames) == 297 for s in sequences)
    assert [s.name for s in scan(mmfi_root, actions=["A03"], subjects=["S12", "S33"])] == ["E02/S12/A03",
                                                                                         "E04/S33/A03"]


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(MMFiFormatError, match="nowhere.*does not exist"):
        scan(tmp_path / "nowhere")
    (tmp_path / "E01" / "S01").mkdir(parents=True)
    with pytest.raises(MMFiFormatError, match="no E../S../A.. sequences found"):
        scan(tmp_path)


def test_protocol_without_data_is_an_error(small_root):
    with pytest.raises(MMFiFormatError, match=r"no E.*A01"):
        scan(small_root, actions=["A01"])


def test_subject_in_wrong_environment(small_root):
    shutil.move(small_root / "E04" / "S33", small_root / "E01" / "S33")
    with pytest.raises(MMFiFormatError, match=r"E01/S33: subject S33 belongs in E04"):
        scan(small_root)


def test_unknown_subject_or_action_folder(small_root):
    (small_root / "E01" / "S01" / "A28").mkdir()
    with pytest.raises(MMFiFormatError, match=r"E01/S01/A28: unknown action 'A28'"):
        scan(small_root)


def test_missing_modality_folder(small_root):
    shutil.rmtree(seq_dir(small_root) / "lidar")
    with pytest.raises(MMFiFormatError, match=r"E01/S01/A02/lidar: missing folder 'lidar'; drop 'lidar' from "
                                              r"modalities or regenerate"):
        scan(small_root)
    assert len(scan(small_root, modalities=["rgb", "mmwave", "wifi-csi"])) == 2


def test_a_symbolic_link_that_loops_or_points_nowhere_is_named(small_root, capsys):
    """Issue 28, item 8: a link loop (or a dangling link) where the reader expects a frame, a ground truth, a
    modality folder, an environment or the root is named as such, never a bare [Errno 40] or "missing"."""
    loop = frame(small_root, "rgb", 2)
    loop.unlink()
    loop.symlink_to(loop.name)  # points at itself
    with pytest.raises(MMFiFormatError, match=r"rgb/frame003\.npy is a symbolic link that loops back on itself"):
        scan(small_root)
    with pytest.warns(UserWarning, match="skipped"):
        ds = MMFiDataset(small_root, part="all", on_error="skip", cache=False)
    assert len(ds) == 9 and "broken link: 1" in str(ds.report) and "missing file" not in str(ds.report)
    assert main(["info", str(small_root), "--quiet"]) == 1  # as a user meets it: named, and a script notices
    assert "rgb      broken link: 1 frames, e.g. " in capsys.readouterr().out
    loop.unlink()
    shutil.copy(frame(small_root, "rgb", 1), loop)

    gt = seq_dir(small_root) / layout.GROUND_TRUTH
    saved = gt.read_bytes()
    gt.unlink()
    gt.symlink_to("elsewhere.npy")
    with pytest.raises(MMFiFormatError, match=r"ground_truth\.npy is a symbolic link to 'elsewhere\.npy', which "
                                              r"does not exist; it should be the sequence's ground_truth\.npy"):
        scan(small_root)
    gt.unlink()
    gt.write_bytes(saved)
    folder = seq_dir(small_root, "E04", "S33")
    shutil.rmtree(folder / "lidar")
    (folder / "lidar").symlink_to("lidar")
    with pytest.raises(MMFiFormatError, match=r"S33/A02/lidar is a symbolic link that loops back on itself; it "
                                              r"should be the 'lidar' folder"):
        scan(small_root, subjects=["S33"])
    (folder / "lidar").unlink()
    shutil.copytree(seq_dir(small_root) / "lidar", folder / "lidar")
    (small_root / "E02").symlink_to("E02")
    with pytest.raises(MMFiFormatError, match=r"E02 is a symbolic link that loops back on itself; it should be a folder"):
        scan(small_root)
    report = ReadReport()
    assert len(scan(small_root, on_error="skip", report=report, subjects=["S01"])) == 1  # E02 holds no S01: left alone
    assert not report.skipped_sequences
    scan(small_root, on_error="skip", report=report)  # wanted: reported, the rest read
    assert "E02 is a symbolic link that loops back on itself" in str(report)
    (small_root / "E02").unlink()
    (seq_dir(small_root, "E01", "S01", "A05")).symlink_to("nowhere")  # an action the selection does not want
    assert len(scan(small_root, actions=["A02"])) == 2
    root = small_root.parent / "root-link"
    root.symlink_to(root.name)
    with pytest.raises(MMFiFormatError, match=r"root-link is a symbolic link that loops back on itself; it should be "
                                              r"the folder that holds E01\.\.E04"):
        scan(root)
    assert main(["train", "--data", str(root), "--out", str(small_root.parent / "runs")]) == 2
    assert "root-link is a symbolic link that loops back on itself" in capsys.readouterr().err


def test_frame_count_mismatch(small_root):
    frame(small_root, "lidar", 3).unlink()
    with pytest.raises(MMFiFormatError, match=r"E01/S01/A02/lidar has 4 frame files, ground_truth.npy has 5 frames "
                                              r"\(missing frame004.bin\)"):
        scan(small_root)


def test_extra_frame_file(small_root):
    shutil.copy(frame(small_root, "rgb", 0), seq_dir(small_root) / "rgb" / "frame006.npy")
    with pytest.raises(MMFiFormatError, match=r"E01/S01/A02/rgb/frame006.npy: a frame file beyond the 5 frames of "
                                              r"ground_truth.npy; move it out of the folder") as err:
        scan(small_root)
    assert "regenerate" not in str(err.value) and err.value.path.endswith("frame006.npy")


def test_truncated_bin(small_root):
    path = frame(small_root, "mmwave", 2)
    np.zeros(13).tofile(path)  # 104 bytes: not a multiple of 40
    with pytest.raises(MMFiFormatError, match=r"mmwave/frame003.bin: truncated .bin \(104 bytes"):
        scan(small_root)


@pytest.mark.parametrize("shape", [(5, 17, 2), (5, 16, 3), (17, 3)])
def test_ground_truth_wrong_shape(small_root, shape):
    np.save(seq_dir(small_root) / layout.GROUND_TRUTH, np.zeros(shape))
    with pytest.raises(MMFiFormatError, match=r"E01/S01/A02/ground_truth.npy: ground truth has shape"):
        scan(small_root)


def test_ground_truth_missing_or_non_finite(small_root):
    gt = np.load(seq_dir(small_root) / layout.GROUND_TRUTH)
    gt[2, 5, 1] = np.nan
    np.save(seq_dir(small_root) / layout.GROUND_TRUTH, gt)
    with pytest.raises(MMFiFormatError, match=r"ground_truth.npy: 1 frames hold NaN/inf.*frame 3"):
        scan(small_root)
    (seq_dir(small_root) / layout.GROUND_TRUTH).unlink()
    with pytest.raises(MMFiFormatError, match=r"E01/S01/A02/ground_truth.npy: missing"):
        scan(small_root)


# --- content (read time) ----------------------------------------------------------------------------------------


def test_nan_in_point_cloud(small_root):
    pts = np.fromfile(frame(small_root, "lidar", 1)).reshape(-1, 3)
    pts[0, 0] = np.nan
    pts.tofile(frame(small_root, "lidar", 1))
    with pytest.raises(MMFiFormatError, match=r"lidar/frame002.bin: point cloud holds NaN/inf"):
        read_all(small_root)


def test_rgb_wrong_shape_and_nan(small_root):
    np.save(frame(small_root, "rgb", 0), np.zeros((17, 3)))
    with pytest.raises(MMFiFormatError, match=r"rgb/frame001.npy: rgb keypoints have shape \(17, 3\)"):
        read_all(small_root)
    kp = np.zeros((17, 2))
    kp[4] = np.inf
    np.save(frame(small_root, "rgb", 0), kp)
    with pytest.raises(MMFiFormatError, match=r"rgb/frame001.npy: rgb keypoints hold NaN/inf"):
        read_rgb(frame(small_root, "rgb", 0))


def test_unreadable_mat_and_missing_key(small_root):
    frame(small_root, "wifi-csi", 4).write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(MMFiFormatError, match=r"wifi-csi/frame005.mat: unreadable .mat"):
        read_all(small_root)
    scipy.io.savemat(frame(small_root, "wifi-csi", 4), {"CSIphase": np.zeros(layout.CSI_SHAPE)})
    with pytest.raises(MMFiFormatError, match=r"wifi-csi/frame005.mat: missing key 'CSIamp'"):
        read_all(small_root)
    scipy.io.savemat(frame(small_root, "wifi-csi", 4), {"CSIamp": np.zeros((3, 114))})
    with pytest.raises(MMFiFormatError, match=r"wifi-csi/frame005.mat: CSIamp has shape \(3, 114\)"):
        read_all(small_root)


def test_errors_carry_path_and_reason(small_root):
    frame(small_root, "wifi-csi", 0).write_bytes(b"")
    with pytest.raises(MMFiFormatError) as info:
        read_csi(frame(small_root, "wifi-csi", 0))
    assert info.value.path.endswith("frame001.mat") and info.value.reason == "unreadable .mat"


def test_empty_point_files_are_legal(small_root):
    frame(small_root, "mmwave", 0).write_bytes(b"")
    frame(small_root, "lidar", 0).write_bytes(b"")
    assert read_points(frame(small_root, "mmwave", 0), "mmwave").shape == (0, 5)
    ds, items = read_all(small_root)
    assert len(ds) == 10 and ds.report.clean
    assert ds.report.info[("mmwave", "empty file (0 points)")] >= 1
    assert not items[0]["mmwave_mask"].any() and not items[0]["lidar_mask"].any()
    assert (items[0]["mmwave"] == 0).all()


# --- skip policy ------------------------------------------------------------------------------------------------


def damage(root):
    """Four bad frames of E01/S01/A02, one per reason, plus a bad frame of E04/S33/A02 in two modalities."""
    frame(root, "lidar", 0).unlink()  # missing file
    np.zeros(7).tofile(frame(root, "mmwave", 1))  # truncated .bin
    frame(root, "wifi-csi", 2).write_bytes(b"garbage")  # unreadable .mat
    np.save(frame(root, "rgb", 3), np.full((17, 2), np.nan))  # non-finite keypoints
    other = ("E04", "S33", "A02")
    np.save(frame(root, "rgb", 4, other), np.zeros((2, 2)))
    pts = np.fromfile(frame(root, "lidar", 4, other)).reshape(-1, 3)
    pts[:] = np.inf
    pts.tofile(frame(root, "lidar", 4, other))


@pytest.mark.parametrize("cache", [False, True])
def test_skip_policy_counts_and_reports(small_root, tmp_path, cache):
    damage(small_root)
    with pytest.raises(MMFiFormatError):
        MMFiDataset(small_root, part="all", cache=cache, cache_dir=tmp_path / "c", progress=False)
    with pytest.warns(UserWarning, match=r"5 frames skipped"):
        ds = MMFiDataset(small_root, part="all", on_error="skip", cache=cache, cache_dir=tmp_path / "c",
                         progress=False)
    report = ds.report
    assert len(ds) == 10 - 5 and report.frames_skipped == 5
    assert report.skipped == {("lidar", "missing file"): 1, ("mmwave", "truncated .bin"): 1,
                              ("wifi-csi", "unreadable .mat"): 1, ("rgb", "non-finite values"): 1,
                              ("rgb", "wrong shape"): 1, ("lidar", "non-finite values"): 1}
    assert report.examples[("skipped", "wifi-csi", "unreadable .mat")][0].endswith("E01/S01/A02/wifi-csi/frame003.mat")
    text = str(report)
    assert "E04/S33/A02/lidar/frame005.bin" in text and "truncated .bin: 1 frames" in text
    kept = {(ds[i]["subject"], ds[i]["frame"]) for i in range(len(ds))}
    assert kept == {("S01", 4), ("S33", 0), ("S33", 1), ("S33", 2), ("S33", 3)}


def test_skip_policy_skips_unusable_sequences(small_root):
    shutil.rmtree(seq_dir(small_root) / "mmwave")
    with pytest.warns(UserWarning, match="1 sequences skipped"):
        ds = MMFiDataset(small_root, part="all", on_error="skip", cache=False)
    assert len(ds) == 5 and "missing folder 'mmwave'" in str(ds.report)


def test_bad_arguments():
    with pytest.raises(ValueError, match="on_error='ignore' is not valid"):
        scan(".", on_error="ignore")
    with pytest.raises(ValueError, match="unknown modalities"):
        scan(".", modalities=["depth"])


# --- CSI cleaning -----------------------------------------------------------------------------------------------


def toolbox_clean(amp):
    """The toolbox's read_frame CSI branch (fine on frames where it does not break)."""
    data = np.array(amp, dtype=np.float64)
    data[np.isinf(data)] = np.nan
    for i in range(10):
        col = data[:, :, i]
        if np.isnan(col).any():
            col[np.isnan(col)] = col[~np.isnan(col)].mean()
    return (data - data.min()) / (data.max() - data.min())


def test_clean_csi_matches_toolbox_where_toolbox_works():
    rng = np.random.default_rng(0)
    amp = rng.uniform(1, 30, layout.CSI_SHAPE)
    amp[0, 3, 2] = -np.inf
    amp[1, :50, 7] = np.nan
    before = amp.copy()
    out = clean_csi(amp)
    np.testing.assert_array_equal(amp, before)  # input untouched
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    np.testing.assert_allclose(out, toolbox_clean(amp), rtol=0, atol=1e-6)


def test_clean_csi_never_leaves_nan():
    rng = np.random.default_rng(1)
    amp = rng.uniform(1, 30, layout.CSI_SHAPE)
    amp[..., 4] = np.nan  # an all-NaN packet: the toolbox leaves it NaN
    amp[0, 0, 0] = np.inf
    out = clean_csi(amp, normalise=False)
    finite = np.isfinite(amp)
    np.testing.assert_allclose(out[..., 4], amp[finite].mean(), rtol=1e-6)
    assert np.isfinite(clean_csi(amp)).all()
    np.testing.assert_array_equal(clean_csi(np.full(layout.CSI_SHAPE, -np.inf)), 0)  # all-NaN frame
    np.testing.assert_array_equal(clean_csi(np.full(layout.CSI_SHAPE, 7.0)), 0)  # constant frame: no 0/0
    const_with_hole = np.full(layout.CSI_SHAPE, 7.0)
    const_with_hole[1, 1, 1] = np.nan
    np.testing.assert_array_equal(clean_csi(const_with_hole), 0)


def test_csi_phase_channel(small_root):
    path = frame(small_root, "wifi-csi", 0)
    phase = np.random.default_rng(2).uniform(-np.pi, np.pi, layout.CSI_SHAPE)
    phase[2, 5, 9] = np.nan
    amp = np.random.default_rng(3).uniform(1, 9, layout.CSI_SHAPE)
    scipy.io.savemat(path, {"CSIamp": amp, "CSIphase": phase})
    out = read_csi(path, phase=True)
    assert out.shape == (2, *layout.CSI_SHAPE) and np.isfinite(out).all()
    np.testing.assert_array_equal(out[0], clean_csi(amp))
    np.testing.assert_array_equal(out[1], clean_csi(phase, normalise=False))  # radians, not min-max
    assert out[1].min() < 0
    ds = MMFiDataset(small_root, part="all", cache=False, csi_phase=True, modalities=["wifi-csi"])
    assert ds[0]["wifi-csi"].shape == (2, 3, 114, 10)


# --- dataset items ----------------------------------------------------------------------------------------------


def test_fixed_size_rule():
    pts = np.arange(30, dtype=np.float32).reshape(10, 3) + 1
    out, mask = fixed_size(pts, 16, 0)
    assert out.shape == (16, 3) and mask.sum() == 10 and not mask[10:].any()
    np.testing.assert_array_equal(out[:10], pts)
    np.testing.assert_array_equal(out[10:], 0)
    out, mask = fixed_size(pts, 4, (0, 0, 7))
    assert mask.all() and len(np.unique(out[:, 0])) == 4 and set(out[:, 0]) <= set(pts[:, 0])
    np.testing.assert_array_equal(out, fixed_size(pts, 4, (0, 0, 7))[0])  # deterministic
    assert any(not np.array_equal(out, fixed_size(pts, 4, (0, e, 7))[0]) for e in range(1, 5))
    out, mask = fixed_size(np.zeros((0, 5), np.float32), 8, 0)
    assert out.shape == (8, 5) and not mask.any()


def test_items_are_fixed_size_with_masks_and_collate(mmfi_root):
    ds = MMFiDataset(mmfi_root, part="train", cache=False, lidar_points=32, mmwave_points=8)
    seen_full = seen_padded = seen_empty = False
    for i in range(0, len(ds), 7):
        item = ds[i]
        seq = next(s for s in ds.sequences if (s.subject, s.action) == (item["subject"], item["action"]))
        for m, n in (("lidar", 32), ("mmwave", 8)):
            raw = read_points(seq.file(m, item["frame"]), m)
            assert item[m].shape == (n, layout.POINT_COLUMNS[m]) and item[f"{m}_mask"].dtype == torch.bool
            assert item[f"{m}_mask"].sum() == min(n, len(raw))
            assert (item[m][~item[f"{m}_mask"]] == 0).all()
            if len(raw) <= n:
                np.testing.assert_array_equal(item[m][: len(raw)].numpy(), raw)
            else:  # a subset of the cloud's rows
                rows = {tuple(r) for r in raw}
                assert all(tuple(r) in rows for r in item[m].numpy())
            seen_full |= len(raw) > n
            seen_padded |= 0 < len(raw) < n
            seen_empty |= len(raw) == 0
    assert seen_full and seen_padded and seen_empty
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert batch["lidar"].shape == (5, 32, 3) and batch["wifi-csi"].shape == (5, 1, 3, 114, 10)
    assert batch["gt"].dtype == torch.float32 and batch["subject"][0] == ds[0]["subject"]


def test_point_sampling_depends_on_epoch(mmfi_root):
    ds = MMFiDataset(mmfi_root, part="test", cache=False, modalities=["lidar"], lidar_points=8)
    i = next(i for i in range(len(ds)) if ds[i]["lidar_mask"].all())
    first = ds[i]["lidar"]
    assert torch.equal(first, ds[i]["lidar"])
    ds.set_epoch(1)
    assert not torch.equal(first, ds[i]["lidar"])
    ds.set_epoch(0)
    assert torch.equal(first, ds[i]["lidar"])


def test_rgb_window_replicates_edges(small_root):
    ds = MMFiDataset(small_root, part="all", cache=False, modalities=["rgb"], rgb_window=2)
    keypoints = np.stack([read_rgb(frame(small_root, "rgb", i)) for i in range(5)])
    for i, expect in [(0, [0, 0, 0, 1, 2]), (2, [0, 1, 2, 3, 4]), (4, [2, 3, 4, 4, 4])]:
        item = ds[i]
        assert item["frame"] == i and item["subject"] == "S01"
        np.testing.assert_array_equal(item["rgb"].numpy(), keypoints[expect])
    assert ds[5]["subject"] == "S33" and ds[5]["rgb"].shape == (5, 17, 2)  # windows never cross sequences


def test_rgb_window_skips_left_out_frames(small_root):
    frame(small_root, "lidar", 1).unlink()  # frame 1 is left out under skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = MMFiDataset(small_root, part="all", cache=False, on_error="skip", modalities=["rgb", "lidar"],
                         rgb_window=1)
    keypoints = np.stack([read_rgb(frame(small_root, "rgb", i)) for i in range(5)])
    assert [ds[i]["frame"] for i in range(4)] == [0, 2, 3, 4]
    np.testing.assert_array_equal(ds[0]["rgb"].numpy(), keypoints[[0, 0, 0]])  # frame 1 missing -> toward 0
    np.testing.assert_array_equal(ds[1]["rgb"].numpy(), keypoints[[2, 2, 3]])


def test_parts_follow_the_split(mmfi_root):
    train = MMFiDataset(mmfi_root, split="S3", part="train", cache=False, modalities=["rgb"])
    test = MMFiDataset(mmfi_root, split="S3", part="test", cache=False, modalities=["rgb"])
    assert len(train) == 4 * 297 and len(test) == 2 * 297 and test[0]["subject"] == "S33"
    s1 = MMFiDataset(mmfi_root, split="S1", part="test", cache=False, modalities=["rgb"])
    assert len(s1) == 297 and (s1[0]["subject"], s1[0]["action"]) == ("S12", "A03")
    assert "40 absent" not in s1.split.summary() and s1.split.absent_test == 14 * 8 - 1
    with pytest.raises(ValueError, match="split S2 of protocol P1 has no test sequence"):
        MMFiDataset(mmfi_root, split="S2", part="test", subjects=["S12", "S33"], cache=False)


def test_oversized_files_are_refused_by_their_declared_size_before_reading(small_root):
    """Issue 28, item 7: a sparse LiDAR .bin of 1.2 GB, a ground truth declaring 2.5 M frames and a .mat whose
    CSI declares a huge array are named from their headers / sizes, without reading or expanding them."""
    import numpy.lib.format as npy_format

    from poise.data.mmfi import read_csi_raw, read_ground_truth, read_points

    big = frame(small_root, "lidar", 0)
    with open(big, "wb") as f:
        f.truncate(1_200_000_008 // 24 * 24)  # sparse: no disk used
    with pytest.raises(MMFiFormatError, match=r"lidar/frame001.bin: .* points, more than a frame"):
        read_points(big, "lidar")
    gt = small_root / "E01" / "S01" / "A02" / layout.GROUND_TRUTH
    with open(gt, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (2_500_000, 17, 3)})
        f.truncate(f.tell() + 2_500_000 * 17 * 3 * 8)  # sparse
    with pytest.raises(MMFiFormatError, match=r"ground_truth.npy: ground truth declares 2,500,000 frames"):
        read_ground_truth(gt)
    mat = frame(small_root, "wifi-csi", 0)
    scipy.io.savemat(mat, {"CSIamp": np.zeros((300, 114, 10))}, do_compression=True)
    with pytest.raises(MMFiFormatError, match=r"CSIamp has shape \(300, 114, 10\) \(as declared; not read\)"):
        read_csi_raw(mat)
