"""The collector's thresholds during a run: raised while any run holds them, restored after."""

import gc
import threading

import pytest

from syncd.gc_thresholds import YOUNG, fewer_collections


@pytest.fixture(autouse=True)
def default_thresholds():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_raised_inside_and_restored_after():
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_after_an_error():
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_runs_on_threads_restore_only_when_the_last_leaves():
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with fewer_collections():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second():
        first_in.wait(5)
        with fewer_collections():
            second_in.set()
            first_out.wait(5)
            seen["after the first left"] = gc.get_threshold()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen["after the first left"] == (YOUNG, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_already_set_is_kept():
    gc.set_threshold(YOUNG * 2, 20, 5)
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG * 2, 20, 5)
    assert gc.get_threshold() == (YOUNG * 2, 20, 5)
