import sys

from ablate.bench.command import cli

sys.exit(cli())
