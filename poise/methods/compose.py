"""``Composite``: several method plugins run as one, so a continual strategy (NIS, re-learning, EWC, a
two-network baseline) and a Setting-1 balancing method share one training phase.

Hooks run in the parts' order. Losses add up (``extra_loss``), pose-loss weights multiply, metrics, modules and
networks merge (a name used twice is an error). A hook that decides something alone (``predict``,
``epoch_samples``, ``test_model``) may be answered by one part at most: two answers are an error rather than
one of them silently winning. The composite's reference optimiser is that of ``reference`` (default: the
first part), the balancing method whose recipe the optimiser belongs to.
"""

from __future__ import annotations

from poise.errors import PoiseError
from poise.methods.base import Method


class Composite(Method):
    def __init__(self, parts: list[Method], reference: Method | None = None):
        if not parts:
            raise ValueError("a Composite needs at least one method")
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise PoiseError(f"the methods {names} name one twice; combine each method once")
        self.parts = list(parts)
        self.name = "+".join(names)
        self.needs = tuple(dict.fromkeys(c for p in parts for c in p.needs))  # every part's model capabilities
        self.reference_optimizer = (reference or parts[0]).reference_optimizer
        self.reference_lr = (reference or parts[0]).reference_lr

    def params(self) -> dict:
        return {p.name: p.params() for p in self.parts}

    def _merged(self, hook: str, *args) -> dict:
        out = {}
        for part in self.parts:
            values = getattr(part, hook)(*args)
            clash = set(values) & set(out)
            if clash:
                raise PoiseError(f"methods {self.name}: {hook}() of {part.name!r} reuses the names {sorted(clash)}")
            out.update(values)
        return out

    def _single(self, hook: str, *args):
        answers = [(p.name, a) for p in self.parts if (a := getattr(p, hook)(*args)) is not None]
        if len(answers) > 1:
            raise PoiseError(f"methods {', '.join(n for n, _ in answers)} each decide {hook}(); they cannot be "
                             f"combined in one run")
        return answers[0][1] if answers else None

    def setup(self, run) -> None:
        for p in self.parts:
            p.setup(run)

    def modules(self) -> dict:
        return self._merged("modules")

    def networks(self) -> dict:
        return self._merged("networks")

    def on_epoch_start(self, run) -> None:
        for p in self.parts:
            p.on_epoch_start(run)

    def epoch_samples(self, run):
        return self._single("epoch_samples", run)

    def predict(self, run, batch, features):
        return self._single("predict", run, batch, features)

    def pose_loss_weight(self, run) -> float:
        weight = 1.0
        for p in self.parts:
            weight *= p.pose_loss_weight(run)
        return weight

    def extra_loss(self, run, step):
        total = None
        for p in self.parts:
            extra = p.extra_loss(run, step)
            if extra is not None:
                total = extra if total is None else total + extra
        return total

    def after_backward(self, run, step) -> None:
        for p in self.parts:
            p.after_backward(run, step)

    def on_epoch_end(self, run) -> None:
        for p in self.parts:
            p.on_epoch_end(run)

    def epoch_metrics(self, run) -> dict:
        return self._merged("epoch_metrics", run)

    def test_model(self, run):
        return self._single("test_model", run)

    def probes(self, run) -> list:
        return [probe for p in self.parts for probe in p.probes(run)]

    def on_task_start(self, run) -> None:
        for p in self.parts:
            p.on_task_start(run)

    def on_task_end(self, run) -> None:
        for p in self.parts:
            p.on_task_end(run)

    def state_dict(self) -> dict:
        return {p.name: p.state_dict() for p in self.parts}

    def load_state_dict(self, state: dict) -> None:
        missing = [p.name for p in self.parts if p.name not in state]
        if missing:
            raise PoiseError(f"the checkpoint has no state for the methods {missing} (it was written by other "
                             f"methods: {sorted(state)}); start the run again")
        for p in self.parts:
            p.load_state_dict(state[p.name])
