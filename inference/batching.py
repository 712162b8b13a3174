"""Merge texts from concurrent requests into one model call (dynamic micro-batching).

One worker task owns the model: it takes the oldest waiting request, then keeps taking
requests until the batch holds `max_batch_size` texts or the oldest request has waited
`max_wait_s`. While a batch runs (in a single worker thread, so ONNX Runtime keeps its own
threads to itself), new requests queue up and form the next batch; under load, batches
fill without any waiting, and a lone request pays at most `max_wait_s`. With `adaptive_wait`
it pays nothing while traffic is sequential: the wait applies only after a batch that held
more than one request, i.e. once requests overlap.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

logger = logging.getLogger(__name__)

PredictFn = Callable[[Sequence[str], bool], list[dict[str, Any]]]
BatchObserver = Callable[[int, float], None]


class QueueFullError(RuntimeError):
    """More texts are waiting than the batcher accepts; the caller should answer 503."""


@dataclass
class _Pending:
    texts: list[str]
    include_embedding: bool
    future: asyncio.Future
    enqueued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Async front of a blocking `predict(texts, include_embedding)` function."""

    def __init__(
        self,
        predict: PredictFn,
        max_batch_size: int,
        max_wait_s: float,
        max_queue_texts: int,
        on_batch: BatchObserver | None = None,
        adaptive_wait: bool = False,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(0.0, max_wait_s)
        self.max_queue_texts = max_queue_texts
        self.on_batch = on_batch
        self.adaptive_wait = adaptive_wait
        self._requests_overlap = False
        """Whether the last batch merged several requests (adaptive_wait waits only then)."""
        self.queued_texts = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        if self._worker is not None:
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._worker = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        while self._queue is not None and not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("server shutting down"))

    async def submit(self, texts: Sequence[str], include_embedding: bool = False) -> list[dict[str, Any]]:
        """Predictions for texts, in order; long requests are split into batch-sized chunks."""
        if self._queue is None:
            await self.start()
        if self.queued_texts + len(texts) > self.max_queue_texts:
            raise QueueFullError(
                f"{self.queued_texts} texts are already waiting (limit {self.max_queue_texts}); retry shortly"
            )
        loop = asyncio.get_running_loop()
        chunks = [list(texts[i : i + self.max_batch_size]) for i in range(0, len(texts), self.max_batch_size)]
        futures = []
        for chunk in chunks:
            future = loop.create_future()
            self.queued_texts += len(chunk)
            self._queue.put_nowait(_Pending(chunk, include_embedding, future))
            futures.append(future)
        results: list[dict[str, Any]] = []
        for chunk_results in await asyncio.gather(*futures):
            results.extend(chunk_results)
        return results

    async def _collect(self) -> list[_Pending]:
        assert self._queue is not None
        first = await self._queue.get()
        batch, size = [first], len(first.texts)
        wait = self.max_wait_s if self._requests_overlap or not self.adaptive_wait else 0.0
        deadline = first.enqueued_at + wait
        while size < self.max_batch_size:
            if not self._queue.empty():
                candidate = self._queue._queue[0]  # peek: a request that does not fit starts the next batch
                if size + len(candidate.texts) > self.max_batch_size:
                    break
                batch.append(self._queue.get_nowait())
                size += len(candidate.texts)
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                nxt = await asyncio.wait_for(self._queue.get(), timeout=remaining)
            except asyncio.TimeoutError:
                break
            if size + len(nxt.texts) > self.max_batch_size:
                # Already dequeued: it cannot go back to the front, so it rides in this batch
                # (the model call is at most one chunk larger than max_batch_size).
                batch.append(nxt)
                size += len(nxt.texts)
                break
            batch.append(nxt)
            size += len(nxt.texts)
        self._requests_overlap = len(batch) > 1
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            texts = [t for pending in batch for t in pending.texts]
            self.queued_texts -= len(texts)
            include_embedding = any(p.include_embedding for p in batch)
            started = time.perf_counter()
            try:
                predictions = await loop.run_in_executor(self._executor, self.predict, texts, include_embedding)
            except asyncio.CancelledError:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(RuntimeError("server shutting down"))
                raise
            except Exception as error:
                logger.exception("model call on a batch of %d texts failed", len(texts))
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            elapsed = time.perf_counter() - started
            if self.on_batch is not None:
                self.on_batch(len(texts), elapsed)
            offset = 0
            for pending in batch:
                part = predictions[offset : offset + len(pending.texts)]
                offset += len(pending.texts)
                if not pending.include_embedding:
                    for item in part:
                        item.pop("embedding", None)
                if not pending.future.done():
                    pending.future.set_result(part)
