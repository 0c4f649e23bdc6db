"""`syncd demo` end to end: the zero-config run lands everything but the two items the
simulator always rejects, drains the outbox and says what still differs."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_summary_accounts_for_every_item(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "syncd.cli", "demo", "--items", "300", "--dir",
                           str(tmp_path / "demo"), "--json"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["pushed"] == summary["pulled"] == 298
    assert summary["dead_letters"] == 2 and summary["outbox_pending"] == 0
    assert summary["platform_applied_twice"] == 0
    assert summary["faults_injected"] > 0
    # the two dead letters are missing on the platform and in the portal DB
    assert summary["remaining_differences"] == 4 and summary["items_differing"] == 2
    assert (tmp_path / "demo" / "syncd.toml").exists()
