"""`python -m autoprune`: an environment without the search stack (a device with only
autoprune[bench]) gets one line saying what to install, exit status 2."""

from __future__ import annotations

import subprocess
import sys

from tests.fixtures.processes import env

WITHOUT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # not importable, as in an environment without it
sys.argv = ["autoprune", "search", "hardware=cpu"]
from autoprune.__main__ import main
main()
"""


def test_without_the_search_stack_the_commands_say_what_to_install():
    result = subprocess.run([sys.executable, "-c", WITHOUT, "hydra,mlflow"], capture_output=True,
                            text=True, timeout=120, env=env())
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "autoprune: error: the commands need hydra, mlflow, which this environment lacks; "
        'install them with: pip install "autoprune[search]" (autoprune[bench] alone serves a '
        "device that measures for a study, with no commands)"]
    assert result.stdout == ""
