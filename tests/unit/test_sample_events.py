"""The sample events and `make seed` agree with the docs' curl walks and the server's port."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from localdev.demo import DEMO_NAME
from localdev.postgres import PROJECT_ROOT
from localdev.walks import walk_script


def test_the_sample_create_event_names_an_experiment_the_docs_walks_do_not_create() -> None:
    # Same name: the first `make invoke ... create_experiment.json` after the curl walk answered 409.
    event = json.loads((PROJECT_ROOT / "events" / "create_experiment.json").read_text(encoding="utf-8"))
    name = json.loads(event["body"])["name"]
    walks = walk_script()
    assert "/experiments" in walks  # the walks are read at all
    assert not re.search(rf"\b{re.escape(name)}\b", walks), f"a docs walk creates {name} too"
    assert name != DEMO_NAME


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_seed_prints_the_port_it_is_given() -> None:
    # The report URL `make seed` prints named port 3000 whatever PORT the server runs on.
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(PROJECT_ROOT), "seed", "PORT=3201"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (command,) = [line for line in dry.stdout.splitlines() if "-m localdev seed" in line]
    assert "--port 3201" in command
