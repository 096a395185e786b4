"""`ablate` with a pause inside the claim lock, for the kill soak (tests/test_soak.py).

Run as ``python tests/claim_pausing_worker.py SECONDS ARGS...``: the ``ablate`` command line with
ARGS, except that every ``Study.ask``, which ablate calls only inside the claim lock and before
it tags the trial with its worker, holds the lock SECONDS longer and says so on stderr, so that
the soak can kill a worker right there. The pause lives here, not in ablate: production code
carries no test hook.
"""

from __future__ import annotations

import os
import sys
import time

import optuna

from ablate.cli import main

HELD = "holds the claim lock"


def _pausing(ask, seconds: float):
    def paused_ask(self, *args, **kwargs):
        trial = ask(self, *args, **kwargs)
        print(f"ablate-test: pid {os.getpid()} {HELD} of {self.study_name}", file=sys.stderr, flush=True)
        time.sleep(seconds)
        return trial

    return paused_ask


if __name__ == "__main__":
    optuna.Study.ask = _pausing(optuna.Study.ask, float(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
