"""The command line answers ``--help`` without loading torch, numpy, scipy or matplotlib (issue 30: ``poise
simulate --help`` took 1.9 s), and ``poise methods`` names every registered method."""

import subprocess
import sys

from poise import methods
from poise.cli import main

HEAVY = ("torch", "numpy", "scipy", "matplotlib", "pandas", "sklearn")
PROBE = """
import sys
from poise.cli import build_parser, main
parser = build_parser()
for action in parser._subparsers._group_actions:
    for sub in action.choices.values():
        sub.format_help()
for argv in (["--help"], ["simulate", "--help"], ["continual", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
print("LOADED", sorted({m.split(".")[0] for m in sys.modules} & set(%r)))
""" % (HEAVY,)


def test_help_of_every_command_loads_no_heavy_library():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert "usage: poise" in out and "LOADED []" in out, out[-500:]


def test_the_probe_would_see_a_heavy_import():
    out = subprocess.run([sys.executable, "-c", PROBE.replace("import sys\n", "import sys\nimport numpy\n", 1)],
                         capture_output=True, text=True, check=True).stdout
    assert "LOADED ['numpy']" in out


def test_methods_lists_every_method_with_its_paper(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")]
    assert listed == methods.available()
    assert "paper 001" in out and "Eq." in out
