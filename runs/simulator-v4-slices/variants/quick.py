"""Quick calibration slice: python quick.py DATA OUT SETS(e.g. M,W,R) [seeds]."""
import sys
from pathlib import Path
from poise.bench.presets import Preset, BASELINE, SHARED, CONVERGED_EPOCHS, ALL
from poise.bench.runs import plan, execute
R, L, M, W = ALL
NAMES = {"R": R, "L": L, "M": M, "W": W}
def main():
    data, out, sets = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split(",")
    seeds = tuple(int(s) for s in (sys.argv[4].split(",") if len(sys.argv) > 4 else ["0"]))
    subsets = tuple(tuple(NAMES[c] for c in s.split("+")) if s != "all" else ALL for s in sets)
    p = Preset(variants=(BASELINE,), fusions=("concat",), subsets=subsets, seeds=seeds, epochs=CONVERGED_EPOCHS,
               train={**SHARED, **__import__("json").loads(__import__("os").environ.get("EXTRA", "{}"))}, about="quick")
    rows = execute(plan(p, data, out), jobs=int(__import__('os').environ.get('JOBS', '1')), threads=1, progress=False)
    for r in rows:
        print(f"{r['subset']:8s} seed{r['seed']} MPJPE {r['test_mpjpe_mm']:6.1f} PA {r['test_pa_mpjpe_mm']:6.1f} "
              f"rootrel {r['test_rootrel_mpjpe_mm']:6.1f}")

if __name__ == '__main__':
    main()
