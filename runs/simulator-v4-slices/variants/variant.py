"""Write the demo preset with patched simulator pieces: python variant.py OUT NAME."""
import sys
from pathlib import Path
import importlib
out, name = Path(sys.argv[1]), sys.argv[2]
sys.path.insert(0, __import__("os").path.dirname(__file__))
importlib.import_module(f"variant_{name}")  # patches
from poise.data.synth.writer import simulate
simulate(out, preset="demo", seed=0, force=True)
