"""What ``poise simulate --preset NAME`` writes: subjects x actions. Apart from the simulator (no numpy), so
that the command line can offer the presets without loading it."""

from __future__ import annotations

from dataclasses import dataclass

from poise.data import layout


@dataclass(frozen=True)
class Preset:
    subjects: tuple[str, ...]
    actions: tuple[str, ...]
    about: str


PRESETS = {
    "tiny": Preset(("S01", "S31"), ("A02", "A03"), "2 subjects x 2 actions: seconds, for tests"),
    "demo": Preset(("S01", "S05", "S11", "S15", "S21", "S25", "S31", "S35"), ("A03", "A13", "A17", "A19", "A21", "A27"),
                   "8 subjects (2 per environment; 4 are S2 test subjects) x 6 protocol-1 actions: the default"),
    "continual": Preset(("S01", "S05", "S11", "S15", "S21", "S25", "S31", "S35"), layout.ACTIONS,
                        "the demo's 8 subjects x all 27 actions: the P1 and P2 continual-learning task streams"),
    "tiny-continual": Preset(("S01", "S02", "S05"), ("A02", "A03", "A04", "A05", "A07", "A08", "A11", "A09", "A10"),
                             "3 subjects (S05 is an S2 test subject; two train, so that NIS's clean reference can "
                             "be held back) x the first two tasks of P1 and of P2: seconds, for tests"),
    "p1": Preset(layout.SUBJECTS, layout.PROTOCOLS["P1"],
                 "40 subjects x protocol 1's 14 actions: P1 at MM-Fi's size (split S1 trains on 32 subjects per "
                 "action); the demo's sequences are among them, identical"),
    "full": Preset(layout.SUBJECTS, layout.ACTIONS, "40 subjects x 27 actions: the real dataset's size"),
}
