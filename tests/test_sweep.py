"""The sweep runner (lad_ref/sweep.py): submission order, a failed job named, workers stopped."""

from __future__ import annotations

import os
import time

import pytest

from lad_ref.sweep import Job, default_jobs, run_jobs


def _square(x):
    time.sleep(0.05 * (3 - x % 3))  # later jobs finish first
    return x * x


def _fail_on_two(x):
    if x == 2:
        raise ValueError("two is bad")
    time.sleep(30)  # the others run on: the runner must stop them, not wait
    return x


def _pid(_):
    return os.getpid()


@pytest.mark.parametrize("jobs", [1, 2])
def test_results_in_submission_order(jobs):
    assert run_jobs([Job(f"j{i}", _square, i) for i in range(7)], jobs, progress=False) == [i * i for i in range(7)]


def test_jobs_run_in_workers_and_fresh_workers_are_new_processes():
    pids = run_jobs([Job(f"j{i}", _pid) for i in range(3)], 2, progress=False, fresh=True)
    assert os.getpid() not in pids and len(set(pids)) == 3


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_job_is_named_and_stops_the_others(jobs):
    t0 = time.time()
    with pytest.raises((ValueError, RuntimeError), match="two is bad") as err:
        run_jobs([Job(f"job {i}", _fail_on_two, i) for i in (2, 3, 4)], jobs, progress=False)
    text = str(err.value) + " ".join(getattr(err.value, "__notes__", []))
    assert "job 2" in text
    assert time.time() - t0 < 20


def test_bad_jobs_and_default_jobs():
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        run_jobs([], 0)
    assert default_jobs(1) == 1 and 1 <= default_jobs(100) <= (os.cpu_count() or 1)
