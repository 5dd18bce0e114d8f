"""The examples run as scripts against the live cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_gocrms_session(address, dev_worker):
    r = run("gocrms_session.py", address, dev_worker)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("workers: {") and repr(dev_worker) in lines[0]
    assert lines[1].startswith("created job ") and lines[1].endswith(": HELD")
    job_id = lines[1].split()[2].rstrip(":")
    assert lines[2].startswith("jobs: {") and f"'{job_id}': 'HELD'" in lines[2]
    assert lines[3] == f"run job {job_id} on {dev_worker}: PENDING"
    assert lines[4] == f"job {job_id} on {dev_worker}: SUCCEEDED (exit code 0)"
    assert lines[5] == "stdouterr: 'crms version 0.1\\nPicked up options: none\\n'"


def test_gocrms_session_picks_a_worker_itself(address):
    r = run("gocrms_session.py", address)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCEEDED" in r.stdout


def test_conformance_script(address):
    r = run("conformance.py", address)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    assert json.loads(lines[0]) == {
        "client": "python",
        "final_state": "SUCCEEDED",
        "output": "conformance\n",
        "killed_state": "KILLED",
        "unknown_code": "NOT_FOUND",
        "invalid_code": "INVALID_ARGUMENT",
    }
    assert lines[0] == (
        '{"client":"python","final_state":"SUCCEEDED","output":"conformance\\n",'
        '"killed_state":"KILLED","unknown_code":"NOT_FOUND","invalid_code":"INVALID_ARGUMENT"}'
    )


def test_examples_need_an_address():
    assert run("conformance.py").returncode == 2
    assert run("gocrms_session.py").returncode == 2
