"""Shared training pieces: atomic state saves that survive a crash, save timing all processes agree on, and
wall-clock budgets that drive the learning-rate schedule."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from tts.errors import TimbreError
from tts.training import (
    BatchPrefetcher,
    Budget,
    append_metrics,
    batch_source,
    learning_rate,
    resumable_state,
    save_due,
    save_state,
)


@pytest.fixture(scope="module")
def accelerator() -> Accelerator:
    return Accelerator(cpu=True)


def test_save_state_survives_a_crash_mid_swap(tmp_path, accelerator):
    """A run killed between the two renames resumes from the previous complete save."""
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    state_dir = tmp_path / "state"
    assert resumable_state(state_dir) is None
    save_state(accelerator, state_dir)
    assert resumable_state(state_dir) == state_dir
    with torch.no_grad():
        model.weight.fill_(3.0)
    save_state(accelerator, state_dir, before_swap=lambda tmp: (tmp / "marker").write_text("new"))
    assert (state_dir / "marker").read_text() == "new" and not (tmp_path / "state.tmp").exists()
    state_dir.rename(tmp_path / "state.old")  # killed after moving the old save aside, before the swap
    assert resumable_state(state_dir) == tmp_path / "state.old"


def test_save_due(accelerator):
    assert save_due(accelerator, 100, 100, last_save=0.0, save_every_minutes=60)  # the last step always saves
    assert save_due(accelerator, 40, 100, last_save=0.0, save_every_minutes=60, save_every_steps=20)
    assert not save_due(accelerator, 41, 100, last_save=0.0, save_every_minutes=0, save_every_steps=20)
    assert not save_due(accelerator, 15, 100, last_save=0.0, save_every_minutes=0)  # clock read every 10 steps
    assert save_due(accelerator, 20, 100, last_save=0.0, save_every_minutes=0)
    import time

    assert not save_due(accelerator, 20, 100, last_save=time.monotonic(), save_every_minutes=5)


def test_append_metrics(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    append_metrics(path, {"step": 1, "loss": 0.5})
    append_metrics(path, {"step": 2, "loss": 0.25})
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]


SCHEDULE = SimpleNamespace(learning_rate=1.0, warmup_steps=10, final_lr_fraction=0.1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_budget_without_minutes_is_the_step_schedule():
    budget = Budget(max_steps=100)
    budget.start_loop()
    assert budget.tick() == 0.0
    for step in (0, 5, 10, 50, 99):
        assert budget.learning_rate(SCHEDULE, step) == learning_rate(SCHEDULE, step, 100)
        assert not budget.done(step)
    assert budget.fraction(25) == 0.25 and budget.done(100)
    assert learning_rate(SCHEDULE, 100, 100) == pytest.approx(0.1)


def test_budget_time_drives_the_decay_and_ends_the_run():
    clock = FakeClock()
    budget = Budget(max_steps=10**6, max_minutes=1.0, clock=clock)
    clock.now += 20  # loading took a third of the budget: the schedule spans the 40 s left
    budget.start_loop()
    assert budget.learning_rate(SCHEDULE, 0) == pytest.approx(0.1)  # warm-up stays in steps
    clock.now += 20
    assert budget.tick() == pytest.approx(0.5)
    assert budget.fraction(10) == pytest.approx(0.5) and not budget.done(10)
    assert budget.learning_rate(SCHEDULE, 10) == pytest.approx(0.1 + 0.9 * 0.5)  # mid-cosine after half the time
    clock.now += 19.6
    budget.tick()
    assert not budget.done(11) and budget.learning_rate(SCHEDULE, 11) == pytest.approx(0.1, abs=1e-3)
    clock.now += 1
    budget.tick()
    assert budget.done(12) and budget.learning_rate(SCHEDULE, 12) == pytest.approx(0.1)
    # Steps still end a run that has time left, and drive the schedule when they are ahead.
    quick = Budget(max_steps=30, max_minutes=60.0, clock=clock)
    quick.start_loop()
    quick.tick()
    assert quick.learning_rate(SCHEDULE, 20) == learning_rate(SCHEDULE, 20, 30) and quick.done(30)


def test_budget_spent_before_the_loop_still_runs_one_step():
    clock = FakeClock()
    budget = Budget(max_steps=100, max_minutes=0.5, clock=clock)
    clock.now += 60
    budget.start_loop()
    assert not budget.done(0)
    budget.tick()
    assert budget.done(1)


class TwoProcesses:
    """An accelerator stand-in whose other process reports `other` to a max reduction."""

    num_processes = 2
    device = torch.device("cpu")

    def __init__(self, other: float) -> None:
        self.other = other
        self.reductions: list[str] = []

    def reduce(self, tensor, reduction):
        self.reductions.append(reduction)
        return torch.maximum(tensor, torch.tensor(self.other))


def test_budget_agrees_on_the_slowest_process_clock():
    clock = FakeClock()
    budget = Budget(max_steps=100, max_minutes=1.0, clock=clock)
    budget.start_loop()
    clock.now += 6
    accelerator = TwoProcesses(other=1.5)
    assert budget.tick(accelerator) == pytest.approx(1.5) and budget.done(1)
    assert accelerator.reductions == ["max"]
    assert budget.tick(TwoProcesses(other=0.0)) == pytest.approx(0.1)


def test_budget_refuses_nonsense():
    with pytest.raises(TimbreError, match="max-minutes"):
        Budget(max_steps=10, max_minutes=0)
    with pytest.raises(TimbreError, match="max-steps"):
        Budget(max_steps=0)


def test_prefetched_batches_come_in_a_fixed_order():
    """Worker w makes batches w, w + W, ...: the sequence is the same however the threads are scheduled."""

    def maker(rng):
        def make():
            time.sleep(float(rng.uniform(0, 0.003)))  # uneven work
            return float(rng.random())

        return make

    expected = []
    makers = [maker(np.random.default_rng([7, w])) for w in range(3)]
    for _ in range(5):
        expected += [make() for make in makers]
    for _ in range(2):
        next_batch, close = batch_source(maker, (7,), workers=3)
        assert [next_batch() for _ in range(15)] == expected
        close()
    direct, close = batch_source(maker, (7,), workers=0)
    assert direct() == maker(np.random.default_rng([7]))()
    close()


def test_prefetcher_raises_a_makers_error_and_closes():
    calls = []

    def failing():
        calls.append(1)
        if len(calls) > 2:
            raise ValueError("bad item")
        return len(calls)

    with BatchPrefetcher([failing]) as prefetcher:
        assert prefetcher() == 1 and prefetcher() == 2
        with pytest.raises(ValueError, match="bad item"):
            prefetcher()
    endless = BatchPrefetcher([lambda: 0, lambda: 1], depth=1)
    assert [endless() for _ in range(4)] == [0, 1, 0, 1]
    endless.close()
    assert not any(thread.name.startswith("batches-") and thread.is_alive() for thread in threading.enumerate())


def test_train_log_averages_counts_rates_and_writes_records(tmp_path):
    from tts.training import TrainLog

    now = [100.0]
    seen = []
    log = TrainLog(tmp_path / "run" / "metrics.jsonl", main=True, on_log=seen.append, processes=2,
                   per_second=("frames",), clock=lambda: now[0])
    assert log.last == [{}]
    with pytest.raises(ValueError):
        log.emit(0, 0.1)
    log.add(loss=1.0, frames=100)
    log.add(loss=3.0, frames=300)
    now[0] += 4.0
    record = log.emit(2, 0.5)
    assert record == {"step": 2, "lr": 0.5, "loss": 2.0, "frames_per_s": 200.0, "steps_per_s": 0.5}
    assert seen == [record] and log.last == [record] and log.pending == 0
    log.add(loss=5.0, frames=10)
    now[0] += 1.0
    assert log.emit(3, 0.25)["loss"] == 5.0  # the window restarts after each record
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 3]
    quiet = TrainLog(tmp_path / "other.jsonl", main=False)
    quiet.add(loss=1.0)
    quiet.emit(1, 0.1)
    assert not (tmp_path / "other.jsonl").exists() and len(quiet.history) == 1


def test_split_validation_without_voices_holds_out_a_share_reproducibly():
    from tts.training import split_validation

    training, validation = split_validation(50, count=20, seed=3, divisor=5)
    assert len(validation) == 10 and sorted(training + validation) == list(range(50))  # at most a fifth
    assert split_validation(50, 20, 3, 5) == (training, validation)
    assert split_validation(50, 20, 4, 5) != (training, validation)
    assert split_validation(7, 3, 0, 10)[1].__len__() == 1  # at least one
    assert split_validation(1, 3, 0, 10) == ([0], [0])  # a single item serves both


def test_split_validation_by_voice_keeps_every_voice_in_training():
    from tts.training import split_validation

    voices = ["a"] * 10 + ["b"] * 2 + ["c"] * 8
    training, validation = split_validation(len(voices), count=5, seed=0, divisor=10, voices=voices)
    assert len(validation) == 2  # at most a tenth of 20
    assert all(voices[i] != "b" for i in validation)  # a voice with two items gives none
    assert {voices[i] for i in training} == {"a", "b", "c"} and 0 in training and 12 in training  # first items stay
    assert sorted(training + validation) == list(range(20))
    assert split_validation(6, 4, 0, 10, ["a"] * 6) == (list(range(6)), [])  # six items: nothing to spare
    with pytest.raises(ValueError):
        split_validation(3, 1, 0, 10, ["a", "b"])


def test_run_bounds_of_concatenated_runs():
    from tts.files import run_bounds

    assert run_bounds([2, 0, 3]) == [(0, 2), (2, 2), (2, 5)]
    assert run_bounds(torch.tensor([1, 4])) == [(0, 1), (1, 5)] and run_bounds([]) == []
