"""What ``poise continual-bench --preset NAME`` runs: streams, recipes, seeds and shared settings, and the rows
of 001 Table 4 it runs them as. No torch, no numpy: the command line offers the presets without loading them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    streams: tuple  # (protocol, noise, ratio[, noisy modality]) each; the first also carries the ablation and Fig. 3
    recipes: tuple  # 001 Table 2 methods (ContinualConfig.recipe)
    seeds: tuple
    ablation: bool = True  # Table 4 on the first stream
    clean_control: bool = True  # ours on a clean stream: NIS's naming thresholds and its false alarms
    like_for_like: bool = True  # ours with the baselines' online EWC beside ours with a-EWC, on every stream
    diagnostics: tuple = ()  # streams only ours runs on: what NIS sees per corrupted modality and noise kind
    config: dict = field(default_factory=dict)  # ContinualConfig keys shared by every run; a strategy's key
    # (nis, relearn, ewc, peers) holds parameters for the runs whose recipe has that strategy on
    about: str = ""
    data: str = "data/mmfi-continual"  # the default MM-Fi root
    simulate: str = "continual"  # the `poise simulate` preset that writes it


_SMALL = dict(epochs=5, train_stride=2, relearn={"relearn_epoch": 1})  # re-learn after epoch index 1 (2 of 5)
PRESETS = {
    "small": Preset(
        streams=(("P1", "raw", 0.2),), recipes=("naive", "ewc", "coteaching", "dividemix", "ours"), seeds=(0, 1, 2),
        diagnostics=(("P1", "raw", 0.2, "lidar"), ("P1", "unaligned", 0.2), ("P1", "unaligned_far", 0.2)),
        config=dict(_SMALL, tasks=4),
        about="P1 with 20 % raw noise, its first 4 tasks, the five methods and ours with online EWC, the Table 4 "
              "ablation, ours on the clean stream (NIS's thresholds), and ours on three more streams for what NIS "
              "sees (LiDAR corrupted in every task as in 001 Fig. 3; unaligned and far-unaligned noise), 3 seeds",
        data="data/mmfi-p1", simulate="p1"),
    "p1": Preset(
        streams=(("P1", "raw", 0.2),), recipes=("naive", "ewc", "coteaching", "dividemix", "ours"), seeds=(0, 1, 2),
        config=dict(_SMALL),
        about="the whole 7-task P1 stream with 20 % raw noise: the five methods and ours with online EWC (001 Table 2's "
              "P1 column), the Table 4 ablation, ours on the clean stream (NIS's thresholds), 3 seeds",
        data="data/mmfi-p1", simulate="p1"),
    "paper": Preset(
        streams=tuple((p, n, r) for p in ("P1", "P2") for n in ("raw", "unaligned") for r in (0.2, 0.4)),
        recipes=("naive", "ewc", "coteaching", "dividemix", "ours"), seeds=(0, 1, 2), config=dict(_SMALL),
        about="001 Table 2's grid (P1 / P2 x raw / unaligned x 20 / 40 %), whole streams, every method and ours "
              "with online EWC, the Table 4 ablation, ours on the clean stream, 3 seeds"),
    "tiny": Preset(
        streams=(("P1", "raw", 0.4, "rgb"),), recipes=("naive", "ours"), seeds=(0, 1, 2), ablation=False,
        like_for_like=False, diagnostics=(("P1", "unaligned_far", 0.4, "rgb"),),
        config=dict(epochs=2, dim=16, lidar_points=32, mmwave_points=16, train_stride=2, batch_size=32,
                    assess_frames=128, tasks=2, relearn={"relearn_epoch": 0}, ewc={"fisher_frames": 64}),
        about="a smoke test on `poise simulate --preset tiny-continual` data (2 minutes); 3 seeds, so that each has "
              "naming thresholds from the other two's clean task",
        data="data/mmfi-tiny-continual", simulate="tiny-continual"),
}


# 001 Table 4's rows as (a-EWC, re-learning, NIS) -> the run that has exactly those parts, and one more row
ABLATION_ROWS = (
    ((False, False, False), "naive", ()),
    ((False, True, True), "ours", ("ewc",)),
    ((True, False, False), "ours", ("nis", "relearn")),
    ((True, False, True), "ours", ("relearn",)),
    ((True, True, False), "ours", ("nis",)),
    ((True, True, True), "ours", ()),
)
GENERIC_FISHER_ROW = ("ours", ("adaptive_ewc",))  # a-EWC replaced by EWC with the generic Fisher
PAPER_TABLE2_P1_RAW20 = {"naive": 168.55, "coteaching": 164.00, "dividemix": 156.76, "ours": 140.80}


LIKE_FOR_LIKE = ("ours", (), {"ewc": "online"})  # ours with the baselines' EWC (online, Fishers summed over tasks)
LIKE_FOR_LIKE_LABEL = "ours-ewc_online"  # its row (``variant_of``)
