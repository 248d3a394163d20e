"""The packed cache: bit-identical to per-file reads, reused when nothing changed, rebuilt when anything did,
and never trusted half-built."""

import os
import pickle
import warnings

import numpy as np
import pytest
import torch

from poise.data import cache as cache_mod
from poise.data import layout
from poise.data.dataset import MMFiDataset
from poise.data.mmfi import scan

OPTS = dict(rgb_window=2, lidar_points=24, mmwave_points=6, progress=False)


def assert_same_items(a, b):
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), (i, key)
            else:
                assert x[key] == y[key], (i, key)


@pytest.mark.parametrize("part,csi_phase,epoch", [("train", False, 0), ("test", True, 3)])
def test_cache_equals_per_file_reads(mmfi_root, tmp_path, part, csi_phase, epoch):
    kw = dict(OPTS, part=part, csi_phase=csi_phase, seed=5)
    cached = MMFiDataset(mmfi_root, cache=True, cache_dir=tmp_path, **kw)
    direct = MMFiDataset(mmfi_root, cache=False, **kw)
    assert cached.cache is not None and direct.cache is None
    cached.set_epoch(epoch)
    direct.set_epoch(epoch)
    assert_same_items(cached, direct)


@pytest.mark.parametrize("cache", [True, False])
def test_batches_equal_collated_items(mmfi_root, tmp_path, cache):
    """``batch`` and ``loader`` (the vectorised path, clouds both above and below the fixed size) give what
    the default collate gives from single items."""
    ds = MMFiDataset(mmfi_root, part="all", cache=cache, cache_dir=tmp_path, seed=2, **OPTS)
    ds.set_epoch(1)
    counts = np.array([ds[i]["lidar_mask"].sum() for i in range(len(ds))])
    assert (counts == OPTS["lidar_points"]).any() and (counts < OPTS["lidar_points"]).any()
    indices = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:40].tolist()
    expected = torch.utils.data.default_collate([ds[i] for i in indices])
    got = ds.batch(indices)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(got[key], value), key
        else:
            assert got[key] == value, key
    seen = torch.cat([b["index"] for b in ds.loader(batch_size=7, shuffle=True, seed=3)])
    assert sorted(seen.tolist()) == list(range(len(ds)))


def test_cache_is_reused_then_rebuilt_when_a_file_changes(small_root, monkeypatch):
    first = MMFiDataset(small_root, part="all", **OPTS)
    assert first.cache.path.parent == small_root / cache_mod.CACHE_DIRNAME  # the default location
    calls = []
    real_build = cache_mod.build
    monkeypatch.setattr(cache_mod, "build", lambda *a, **k: (calls.append(a[0]), real_build(*a, **k)))
    again = MMFiDataset(small_root, part="all", **OPTS)
    assert calls == [] and again.cache.path == first.cache.path

    # Same size, new content: caught by mtime_ns.
    path = small_root / "E01" / "S01" / "A02" / "lidar" / layout.frame_name(0, "lidar")
    pts = np.fromfile(path).reshape(-1, 3)
    (pts + 1.0).tofile(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = MMFiDataset(small_root, part="all", **dict(OPTS, lidar_points=1000))
    assert len(calls) == 1 and changed.cache.path != first.cache.path
    n = len(pts)
    np.testing.assert_array_equal(changed[0]["lidar"][:n].numpy(), (pts + 1.0).astype(np.float32))


@pytest.mark.parametrize("option", [dict(csi_phase=True), dict(modalities=["rgb", "lidar"]),
                                    dict(on_error="skip"), dict(subjects=["S01"])])
def test_options_change_the_key(small_root, tmp_path, option):
    base = MMFiDataset(small_root, part="all", cache_dir=tmp_path, **OPTS)
    other = MMFiDataset(small_root, part="all", cache_dir=tmp_path, **OPTS, **option)
    assert other.cache.path != base.cache.path and other.cache.path.parent == tmp_path
    # Options that only shape items (window, point counts, seed) share the cache.
    same = MMFiDataset(small_root, part="all", cache_dir=tmp_path, rgb_window=0, lidar_points=5, seed=9,
                       progress=False)
    assert same.cache.path == base.cache.path


def test_fingerprint_sees_size_mtime_and_frames(small_root):
    sequences = scan(small_root)
    key = cache_mod.fingerprint(sequences, layout.MODALITIES, False, "raise")
    assert key == cache_mod.fingerprint(scan(small_root), layout.MODALITIES, False, "raise")
    sequences[0].mtimes["rgb"][3] += 1
    assert cache_mod.fingerprint(sequences, layout.MODALITIES, False, "raise") != key
    sequences = scan(small_root)
    sequences[1].sizes["wifi-csi"][0] += 1
    assert cache_mod.fingerprint(sequences, layout.MODALITIES, False, "raise") != key


def test_interrupted_build_leaves_nothing_trusted(small_root, tmp_path, monkeypatch):
    where = tmp_path / "cache"
    real = cache_mod._read_for_cache
    calls = []

    def flaky(seq, *args):
        calls.append(seq.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-build
        return real(seq, *args)

    monkeypatch.setattr(cache_mod, "_read_for_cache", flaky)
    with pytest.raises(KeyboardInterrupt):
        MMFiDataset(small_root, part="all", cache_dir=where, workers=0, **OPTS)
    assert list(where.iterdir()) == []  # no key folder, no temp folder
    monkeypatch.setattr(cache_mod, "_read_for_cache", real)
    ds = MMFiDataset(small_root, part="all", cache_dir=where, **OPTS)
    assert len(ds) == 10 and [p.name for p in where.iterdir()] == [ds.cache.path.name]


def test_a_build_the_disk_cannot_hold_is_refused_before_writing(small_root, tmp_path, monkeypatch):
    """Issue 28, item 6: the stores are memory-mapped, and a mapped write on a full disk is a SIGBUS, not an
    error; the build knows its size, so it checks the free space first, names the folder and leaves nothing."""
    from poise.errors import PoiseError

    where = tmp_path / "cache"
    needed = []
    real = cache_mod.check_free_space
    monkeypatch.setattr(cache_mod, "check_free_space", lambda folder, n: needed.append(n) or real(folder, n))
    ds = MMFiDataset(small_root, part="all", cache_dir=where, workers=0, **OPTS)
    stores = [p for p in ds.cache.path.glob("*.npy") if not p.name.endswith(("offsets.npy", "frames.npy"))]
    written = sum(p.stat().st_size for p in stores)
    assert 0 < needed[0] <= written < needed[0] + 4096  # the estimate is the stores' size, headers aside
    usage = type("Usage", (), {"free": needed[0]})  # short by the margin
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(PoiseError, match=f"no space left for the MM-Fi cache in {tmp_path / 'other'}: it needs .* MiB"):
        MMFiDataset(small_root, part="all", cache_dir=tmp_path / "other", workers=0, **OPTS)
    assert list((tmp_path / "other").iterdir()) == []  # no key folder, no temp folder


def test_falls_back_to_user_cache_when_root_is_read_only(small_root, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    real = cache_mod._writable
    monkeypatch.setattr(cache_mod, "_writable", lambda p: p.name != cache_mod.CACHE_DIRNAME and real(p))
    ds = MMFiDataset(small_root, part="all", **OPTS)
    assert ds.cache.path.parent == tmp_path / "xdg" / "poise"
    assert not (small_root / cache_mod.CACHE_DIRNAME).exists()


def test_skip_report_is_stored_and_shown_on_load(small_root, tmp_path):
    path = small_root / "E04" / "S33" / "A02" / "wifi-csi" / layout.frame_name(2, "wifi-csi")
    path.write_bytes(b"not a mat file")
    kw = dict(OPTS, part="all", on_error="skip", cache_dir=tmp_path)
    with pytest.warns(UserWarning, match="1 frames skipped"):
        built = MMFiDataset(small_root, **kw)
    with pytest.warns(UserWarning, match="1 frames skipped"):
        loaded = MMFiDataset(small_root, **kw)
    assert loaded.cache.path == built.cache.path and len(loaded) == 9
    assert loaded.report.skipped == {("wifi-csi", "unreadable .mat"): 1}
    assert str(path) in str(loaded.report)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = MMFiDataset(small_root, **dict(kw, cache=False))
    assert_same_items(loaded, direct)


def test_worker_processes_build_the_same_cache(small_root, tmp_path):
    one = MMFiDataset(small_root, part="all", cache_dir=tmp_path / "a", workers=0, **OPTS)
    two = MMFiDataset(small_root, part="all", cache_dir=tmp_path / "b", workers=2, **OPTS)
    for name in ["gt", "rgb", "lidar", "lidar_offsets", "mmwave", "mmwave_offsets", "wifi-csi"]:
        np.testing.assert_array_equal(one.cache.array(name), two.cache.array(name))


def test_dataloader_workers_read_the_cache(mmfi_root, tmp_path):
    ds = MMFiDataset(mmfi_root, part="test", cache_dir=tmp_path, **OPTS)
    ds.cache.array("gt")  # memmaps opened in this process are dropped when pickled, reopened by each worker
    assert len(pickle.dumps(ds)) < 200_000 and pickle.loads(pickle.dumps(ds)).cache._arrays is None
    loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=2)
    gts = torch.cat([b["gt"] for b in loader])
    assert gts.shape == (len(ds), 17, 3)
    assert torch.equal(gts[5], ds[5]["gt"])


def test_stale_temp_folders_of_dead_builds_are_removed(small_root, tmp_path):
    host = cache_mod._HOST
    dead = tmp_path / f".tmp-0123abcd-999999999-beef-{host}"  # pid beyond pid_max: that build is gone
    alive = tmp_path / f".tmp-0123abcd-{os.getpid()}-beef-{host}"
    elsewhere = tmp_path / ".tmp-0123abcd-999999999-beef-some_other_machine"
    for folder in (dead, alive, elsewhere):
        folder.mkdir()
    MMFiDataset(small_root, part="all", cache_dir=tmp_path, **OPTS)
    assert not dead.exists() and alive.exists() and elsewhere.exists()


@pytest.mark.parametrize("damage", ["no meta.json", "truncated lidar", "garbage meta.json", "missing gt"])
def test_a_damaged_cache_is_named_and_rebuilt(small_root, caplog, damage):
    first = MMFiDataset(small_root, part="all", **OPTS)
    expected = [first[i] for i in (0, len(first) - 1)]
    path = first.cache.path
    first.cache.close()
    if damage == "no meta.json":
        (path / "meta.json").unlink()
    elif damage == "garbage meta.json":
        (path / "meta.json").write_text("{not json")
    elif damage == "missing gt":
        (path / "gt.npy").unlink()
    else:
        data = (path / "lidar.npy").read_bytes()
        (path / "lidar.npy").write_bytes(data[: len(data) // 2])
    again = MMFiDataset(small_root, part="all", **OPTS)
    err = caplog.text  # the library logs (logging.getLogger("poise")); the command line prints it
    assert again.cache.path == path and (damage == "no meta.json" or "rebuilding a damaged cache" in err)
    assert "delete" not in err  # rebuilding it, so no advice to delete it (issue 28)
    if damage == "truncated lidar":
        assert "lidar.npy" in err
    for item, i in zip(expected, (0, len(again) - 1)):
        assert torch.equal(item["lidar"], again[i]["lidar"]) and torch.equal(item["gt"], again[i]["gt"])


@pytest.mark.parametrize("cache", [True, False])
def test_each_part_reports_only_its_own_skipped_frames(small_root, tmp_path, cache):
    """A bad frame of a training sequence is counted in the train part's report, not the test part's, cached
    or not."""
    bad = small_root / "E01" / "S01" / "A02" / "wifi-csi" / layout.frame_name(2, "wifi-csi")
    bad.write_bytes(b"not a mat file")
    kw = dict(OPTS, on_error="skip", cache=cache, cache_dir=tmp_path, protocol="P1", split="S3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = {part: MMFiDataset(small_root, part=part, **kw) for part in ("train", "test")}
    owner = next(p for p, ds in parts.items() if "E01/S01/A02" in {ds.sequences[i].name for i in set(ds.sequence_of(range(len(ds))))})
    other = "test" if owner == "train" else "train"
    assert parts[owner].report.skipped == {("wifi-csi", "unreadable .mat"): 1}
    assert parts[other].report.skipped == {} and parts[other].report.frames_skipped == 0


def test_info_lists_a_roots_caches_with_size_and_format(small_root):
    from poise.data.info import dataset_summary

    ds = MMFiDataset(small_root, part="all", **OPTS)
    text, clean = dataset_summary(small_root, full=False, progress=False)
    assert clean
    line = next(line for line in text.splitlines() if str(ds.cache.path) in line)
    assert "GiB" in line and f"format {cache_mod.CACHE_VERSION}," in line and "10 frames" in line
