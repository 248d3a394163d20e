"""What an epoch of ``poise train`` spends beyond training, against a hand-written loop over the same model.

    python benchmarks/epoch_cost.py [--data data/mmfi-demo] [--epochs 48] [--repeats 3] [--threads 1]

Builds a run with the bench's shared settings (``poise.bench.SHARED``: concat, all four modalities, Adam,
every 4th training frame, 10 % of the sequences held out) and times, each as the median of ``--repeats``:

- the hand-written loop: the same model and optimiser over the epoch's batches, collated before the clock
  starts (encode, decode, MPJPE, backward, step; nothing else): the limit;
- ``train_epoch``, the loop's training part (batching, method hooks, bookkeeping);
- the per-epoch evaluation (validation, every ``eval_stride``-th test frame) at several batch sizes, the last
  epoch's whole test split, the contribution assessment (512 frames: one encoder pass, or ``ASSESS_CHUNK``
  chunks), the checkpoint and metric files, and the two plots.

Then it prints each part's share of the average epoch of an ``--epochs`` run and the ratio of the hand-written
loop to that average epoch, as the loop ran before (evaluation and assessment every epoch at batch 256 and in
one 512-frame pass, plots every epoch) and as it runs now (``poise.train.evaluates``' cadence, evaluation at
``poise.runtime.EVAL_BATCH``, the assessment in chunks, plots once at the end). The average is the sum of the
measured parts weighted by how many epochs run them. Needs the demo data (``poise simulate --preset demo``).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poise import train as loop  # noqa: E402
from poise.bench import SHARED  # noqa: E402
from poise.config import TrainConfig  # noqa: E402
from poise.metrics import mpjpe_loss  # noqa: E402
from poise.runtime import EVAL_BATCH, batches, evaluate  # noqa: E402
from shapley_overhead import timed  # noqa: E402  (the median of repeats, after a warm-up call)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/mmfi-demo")
    parser.add_argument("--epochs", type=int, default=48, help="the run length the average epoch is of (bench: 48)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the bench runs 1 per process)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    out = Path(tempfile.mkdtemp(prefix="poise-epoch-cost-"))
    config = TrainConfig(data=args.data, epochs=args.epochs, out=str(out), name="run", **SHARED,
                         lr_step=round(0.6 * args.epochs), lr_gamma=0.1)
    run = loop.build_run(config, out / "run", progress=False)
    (out / "run").mkdir(parents=True, exist_ok=True)

    # the hand-written loop: a copy of the model, the same optimiser, batches collated beforehand
    model = copy.deepcopy(run.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    samples, order = loop.epoch_order(run)
    collated = [run.train.batch(samples[p]) for p in batches(order, config.batch_size)]

    def hand_written():
        model.train()
        for batch in collated:
            loss = mpjpe_loss(model.decode(model.encode(batch)), batch["gt"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def poise_training():
        loop.train_epoch(run, progress=False)

    test_rows = torch.arange(0, len(run.test), config.eval_stride).numpy()

    def evaluation(batch_size):
        def go():
            evaluate(run.model, run.train, run.val_rows, batch_size=batch_size, prefix="val")
            evaluate(run.model, run.test, test_rows, batch_size=batch_size)
        return go

    def last_test(batch_size):
        return lambda: evaluate(run.model, run.test, batch_size=batch_size)

    def assessment(chunk):
        def go():
            loop.ASSESS_CHUNK = chunk
            loop.assess(run)
        return go

    def files():
        loop.save_checkpoint(run)
        run.epoch = 1  # not finished: CSV and JSON only
        loop.write_reports(run)

    def plots():
        run.epoch = config.epochs  # finished: the plots too
        loop.write_reports(run)

    chunk = loop.ASSESS_CHUNK
    t = {"hand-written loop": timed(hand_written, args.repeats), "train_epoch": timed(poise_training, args.repeats)}
    run.history = [{"epoch": 1, "lr": 1e-3, "train_mpjpe_mm": 1.0, "val_mpjpe_mm": 1.0, "test_mpjpe_mm": 1.0,
                    "test_pa_mpjpe_mm": 1.0, **{f"shapley_{m}": 1.0 for m in run.model.modalities}}] * 4
    sizes = sorted({32, 64, 128, 256, EVAL_BATCH})
    for size in sizes:
        t[f"evaluation, batch {size}"] = timed(evaluation(size), args.repeats)
    t["last-epoch test, batch 256"] = timed(last_test(256), args.repeats)
    t[f"last-epoch test, batch {EVAL_BATCH}"] = timed(last_test(EVAL_BATCH), args.repeats)
    t["assessment, one 512-frame pass"] = timed(assessment(len(run.assess["gt"])), args.repeats)
    t[f"assessment, chunks of {chunk}"] = timed(assessment(chunk), args.repeats)
    loop.ASSESS_CHUNK = chunk
    t["checkpoint + metric files"] = timed(files, args.repeats)
    t["two plots"] = timed(plots, args.repeats)

    print(f"demo data, bench settings (concat, 4 modalities, batch {config.batch_size}, every {config.train_stride}th "
          f"frame): {len(collated)} steps per epoch, {len(run.val_rows)} validation and {len(test_rows)} of "
          f"{len(run.test)} test frames per evaluation; {torch.get_num_threads()} thread(s), median of {args.repeats}")
    for name, seconds in t.items():
        print(f"  {name:34s} {seconds * 1e3:8.0f} ms")

    n = args.epochs
    evaluated = sum(loop.evaluates(loop.Run(config, None, run.model, run.method, run.train, run.test, run.train_rows,
                                            run.val_rows, run.assess, epoch=e)) for e in range(n))
    before = {"training": t["train_epoch"], "evaluation": t["evaluation, batch 256"],
              "last-epoch test (extra)": (t["last-epoch test, batch 256"] - t["evaluation, batch 256"]) / n,
              "assessment": t["assessment, one 512-frame pass"], "files": t["checkpoint + metric files"],
              "plots": t["two plots"]}
    now = {"training": t["train_epoch"], "evaluation": t[f"evaluation, batch {EVAL_BATCH}"] * evaluated / n,
           "last-epoch test (extra)": (t[f"last-epoch test, batch {EVAL_BATCH}"]
                                       - t[f"evaluation, batch {EVAL_BATCH}"]) / n,
           "assessment": t[f"assessment, chunks of {chunk}"] * evaluated / n, "files": t["checkpoint + metric files"],
           "plots": t["two plots"] / n}
    print(f"\nthe average epoch of a {n}-epoch run (now: {evaluated} of {n} epochs evaluated and assessed)")
    print(f"  {'part':26s} {'before':>16s} {'now':>16s}")
    for part in before:
        print(f"  {part:26s} {before[part] * 1e3:7.0f} ms {100 * before[part] / sum(before.values()):5.1f} % "
              f"{now[part] * 1e3:7.0f} ms {100 * now[part] / sum(now.values()):5.1f} %")
    hand = t["hand-written loop"]
    print(f"  {'epoch':26s} {sum(before.values()) * 1e3:7.0f} ms {'':7s} {sum(now.values()) * 1e3:7.0f} ms")
    print(f"\ntraining alone: {hand / t['train_epoch']:.2f} of the hand-written loop")
    print(f"the whole epoch: {hand / sum(before.values()):.2f} before, {hand / sum(now.values()):.2f} now "
          f"(target >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
