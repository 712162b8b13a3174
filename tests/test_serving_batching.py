"""The micro-batcher on its own: merging, order, splitting, errors, back-pressure."""
from __future__ import annotations

import asyncio
import threading

import pytest

from inference.batching import MicroBatcher, QueueFullError


class RecordingModel:
    """A deterministic stand-in for the model call: echoes texts and records batch sizes."""

    def __init__(self, fail_on: str | None = None, gate: threading.Event | None = None):
        self.batches: list[list[str]] = []
        self.fail_on, self.gate = fail_on, gate

    def __call__(self, texts, include_embedding):
        if self.gate is not None:
            self.gate.wait(5)
        self.batches.append(list(texts))
        if self.fail_on in texts:
            raise ValueError(f"cannot score {self.fail_on!r}")
        return [{"text": t, "embedding": [1.0]} for t in texts]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_submissions_share_a_batch_and_keep_their_order():
    model = RecordingModel()

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=32, max_wait_s=0.2, max_queue_texts=100)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit([f"{i}a", f"{i}b"]) for i in range(5)))
        await batcher.stop()
        return results

    results = run(scenario())
    assert [[r["text"] for r in res] for res in results] == [[f"{i}a", f"{i}b"] for i in range(5)]
    assert len(model.batches) == 1 and len(model.batches[0]) == 10
    assert all("embedding" not in r for res in results for r in res)


def test_large_requests_are_split_into_batches_of_max_size():
    model = RecordingModel()
    observed = []

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=4, max_wait_s=0.0, max_queue_texts=100, on_batch=lambda n, s: observed.append(n))
        results = await batcher.submit([str(i) for i in range(10)], include_embedding=True)
        await batcher.stop()
        return results

    results = run(scenario())
    assert [r["text"] for r in results] == [str(i) for i in range(10)]
    assert all(r["embedding"] == [1.0] for r in results)
    assert [len(b) for b in model.batches] == [4, 4, 2] and observed == [4, 4, 2]


def test_a_failing_batch_fails_only_its_requests_and_the_worker_survives():
    model = RecordingModel(fail_on="boom")

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_s=0.0, max_queue_texts=100)
        with pytest.raises(ValueError, match="boom"):
            await batcher.submit(["boom"])
        after = await batcher.submit(["fine"])
        await batcher.stop()
        return after

    assert run(scenario())[0]["text"] == "fine"


def test_queue_limit_answers_with_back_pressure():
    gate = threading.Event()
    model = RecordingModel(gate=gate)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=2, max_wait_s=0.0, max_queue_texts=4)
        first = asyncio.create_task(batcher.submit(["a", "b", "c", "d"]))
        await asyncio.sleep(0.05)  # the worker holds the first chunk; the second still counts
        with pytest.raises(QueueFullError, match="limit 4"):
            await batcher.submit(["e", "f", "g", "h"])
        gate.set()
        done = await first
        await batcher.stop()
        return done

    assert [r["text"] for r in run(scenario())] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("adaptive", [True, False])
def test_adaptive_wait_runs_sequential_requests_at_once_and_waits_once_they_overlap(adaptive):
    model = RecordingModel()
    gap_s = 0.05  # far inside the 5 s window: a waiting batch would take the second request in

    async def arrive_apart(batcher: MicroBatcher, first: str, second: str):
        early = asyncio.create_task(batcher.submit([first]))
        await asyncio.sleep(gap_s)
        await asyncio.gather(early, batcher.submit([second]))

    async def scenario():
        batcher = MicroBatcher(model, max_batch_size=2, max_wait_s=5.0, max_queue_texts=100, adaptive_wait=adaptive)
        await batcher.start()
        await arrive_apart(batcher, "a", "b")  # sequential traffic so far
        await asyncio.gather(batcher.submit(["c"]), batcher.submit(["d"]))  # overlapping requests
        await arrive_apart(batcher, "e", "f")
        await batcher.stop()

    run(scenario())
    if adaptive:
        assert model.batches == [["a"], ["b"], ["c", "d"], ["e", "f"]]
    else:
        assert model.batches == [["a", "b"], ["c", "d"], ["e", "f"]]


def test_rejects_a_zero_batch_size():
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(RecordingModel(), max_batch_size=0, max_wait_s=0, max_queue_texts=1)
