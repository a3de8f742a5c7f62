"""``python -m poselift.bench`` == ``poselift bench`` without the rest of the CLI (for bare machines)."""

import argparse
import sys

from .commands import register

parser = argparse.ArgumentParser(prog="python -m poselift.bench")
sub = parser.add_subparsers(dest="command")
register(sub)
args = parser.parse_args(["bench", *sys.argv[1:]])
sys.exit(args.func(args))
