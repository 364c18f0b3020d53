"""Server-side batching: concurrent Predict calls on one signature run as one batch.

Like TF Serving's batching session (`--enable_batching`), requests for the
same servable, signature and output aliases — and, here, the same
non-batch shapes and dtypes — wait in a queue; a batch thread takes up to
`max_batch_size` rows of them, concatenates every input along dimension 0,
pads to the next `allowed_batch_sizes` entry by repeating the first row,
runs the signature once and hands each caller its slice of every output.
A caller whose deadline passes while its request is still queued gets
DEADLINE_EXCEEDED, and the request is removed: it never runs.

| BatchingParameters field  | default here (= TF Serving's scheduler) | meaning |
|---------------------------|------------------------------------------|---------|
| `max_batch_size`          | 1000 | most rows in one run |
| `batch_timeout_micros`    | 0    | how long the oldest request may wait for company |
| `max_enqueued_batches`    | 10   | queue bound, in batches; beyond it: UNAVAILABLE |
| `num_batch_threads`       | CPU count | batches run in parallel |
| `allowed_batch_sizes`     | none | pad a batch up to one of these sizes |
| `enable_large_batch_splitting` | false | off: a request above max_batch_size is INVALID_ARGUMENT; on: it runs alone |

A signature whose inputs or outputs lack a leading batch dimension (for
example `generate`'s scalar `max_new_tokens`) is run unbatched. TF Serving
instead fails such calls ("Batching session Run() input tensors must have
at least one dimension"); docs/serving.md lists this difference.

Example:

```python
batcher = Batcher(BatchingParameters(), metrics)
outputs = batcher.run(servable, "serving_default", {"tokens": tokens}, ["logits"])
```
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

from rnnserve.serving import tensors
from rnnserve.serving.config import check_batching, read_text_proto
from rnnserve.serving.config_protos import BatchingParameters
from rnnserve.serving.errors import ConfigError, ServingError


@dataclasses.dataclass(eq=False)  # a task equals only itself (deque.remove; arrays have no ==)
class _Task:
    arrays: dict
    size: int
    future: Future
    arrived: float


class _Queue:
    def __init__(self, servable, signature_name: str, aliases: list):
        self.servable, self.signature_name, self.aliases = servable, signature_name, aliases
        self.tasks: collections.deque[_Task] = collections.deque()
        self.rows = 0


def _leading_dim_unknown(info) -> bool:
    shape = tensors.shape_of(info.tensor_shape)
    return shape is not None and len(shape) >= 1 and shape[0] < 0


class Batcher:
    """Merges concurrent requests; one instance per server.

    Args:
        parameters: a BatchingParameters message (defaults above when unset).
        metrics: the server's `Metrics` (records processed batch sizes).
    """

    def __init__(self, parameters, metrics):
        def value(field, default):
            return getattr(parameters, field).value if parameters.HasField(field) else default

        self.max_batch_size = value("max_batch_size", 1000)
        self.timeout = value("batch_timeout_micros", 0) / 1e6
        self.max_enqueued_batches = value("max_enqueued_batches", 10)
        self.num_threads = value("num_batch_threads", os.cpu_count() or 1)
        self.thread_pool_name = value("thread_pool_name", "batch_threads")
        self.allowed_sizes = list(parameters.allowed_batch_sizes)
        self.split_large = parameters.enable_large_batch_splitting.value
        self._metrics = metrics
        self._queues: dict[tuple, _Queue] = {}
        self._ready = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{self.thread_pool_name}-{i}", daemon=True)
            for i in range(self.num_threads)
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def batchable(servable, signature_name: str, arrays: dict, aliases) -> bool:
        """Whether every input and output of this call has a leading batch dimension."""
        signature = servable.signatures[signature_name]
        if not arrays or any(array.ndim == 0 for array in arrays.values()):
            return False
        return all(_leading_dim_unknown(signature.inputs[a]) for a in arrays) and all(
            _leading_dim_unknown(signature.outputs[a]) for a in aliases
        )

    def run(self, servable, signature_name: str, arrays: dict, aliases, timeout_ms: int = 0) -> dict:
        """Runs one checked request, batched with others when possible; alias -> array."""
        if not self.batchable(servable, signature_name, arrays, aliases):
            return servable.run(signature_name, arrays, aliases, timeout_ms)
        sizes = {array.shape[0] for array in arrays.values()}
        if len(sizes) != 1:
            raise ServingError(
                "INVALID_ARGUMENT", "Batching Run() input tensors must have equal 0th-dimension size"
            )
        (size,) = sizes
        if size > self.max_batch_size:
            if self.split_large:
                return servable.run(signature_name, arrays, aliases, timeout_ms)
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Task size {size} is larger than maximum input batch size {self.max_batch_size}",
            )
        key = (id(servable), signature_name, tuple(aliases)) + tuple(
            (alias, array.shape[1:], array.dtype.str) for alias, array in sorted(arrays.items())
        )
        task = _Task(arrays, size, Future(), time.monotonic())
        with self._ready:
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(servable, signature_name, list(aliases))
            if queue.rows + size > self.max_enqueued_batches * self.max_batch_size:
                raise ServingError(
                    "UNAVAILABLE", "The batch scheduling queue to which this task was submitted is full"
                )
            queue.tasks.append(task)
            queue.rows += size
            self._ready.notify()
        try:
            return task.future.result(timeout=timeout_ms / 1000 if timeout_ms > 0 else None)
        except FutureTimeout:
            with self._ready:
                if task.future.cancel():  # still queued (not taken yet): it must never run
                    queue.tasks.remove(task)
                    queue.rows -= task.size
            raise ServingError("DEADLINE_EXCEEDED", "Timed out waiting for the batch to run.") from None

    # -- batch threads ---------------------------------------------------
    def _next_batch(self):
        """Blocks until some queue has a batch due; returns (queue, tasks) or None when closed."""
        with self._ready:
            while not self._closed:
                now, wait = time.monotonic(), None
                for key, queue in list(self._queues.items()):
                    if not queue.tasks:
                        del self._queues[key]
                        continue
                    due = queue.tasks[0].arrived + self.timeout
                    if queue.rows >= self.max_batch_size or due <= now:
                        return queue, self._take(queue)
                    wait = due - now if wait is None else min(wait, due - now)
                self._ready.wait(timeout=wait)
            return None

    def _take(self, queue: _Queue) -> list[_Task]:
        """Pops the tasks of the next batch (called with the lock held).

        A caller that times out cancels its task and removes it under the
        same lock, so every queued task is still wanted; once taken it is
        running and can no longer be cancelled.
        """
        taken, rows = [], 0
        while queue.tasks and rows + queue.tasks[0].size <= self.max_batch_size:
            task = queue.tasks.popleft()
            task.future.set_running_or_notify_cancel()
            taken.append(task)
            rows += task.size
        queue.rows -= rows
        return taken

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            queue, tasks = batch
            try:
                self._run_batch(queue, tasks)
            except ServingError as error:
                for task in tasks:
                    task.future.set_exception(error)
            except Exception as error:  # a bug must not kill a batch thread or strand callers
                failure = ServingError("INTERNAL", f"Batch failed: {error}")
                for task in tasks:
                    task.future.set_exception(failure)

    def _run_batch(self, queue: _Queue, tasks: list[_Task]) -> None:
        rows = sum(task.size for task in tasks)
        padded = next((size for size in self.allowed_sizes if size >= rows), rows)
        merged = {}
        for alias in tasks[0].arrays:
            parts = [task.arrays[alias] for task in tasks]
            if padded > rows:
                parts.append(np.repeat(parts[0][:1], padded - rows, axis=0))
            merged[alias] = np.concatenate(parts, axis=0)
        self._metrics.processed_batch_size.labels(thread_pool_name=self.thread_pool_name).observe(padded)
        outputs = queue.servable.run(queue.signature_name, merged, queue.aliases)
        if any(np.ndim(value) == 0 or np.shape(value)[0] != padded for value in outputs.values()):
            raise ServingError(
                "INTERNAL",
                "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes of the input tensors",
            )
        start = 0
        for task in tasks:
            task.future.set_result(
                {alias: value[start : start + task.size] for alias, value in outputs.items()}
            )
            start += task.size

    def close(self) -> None:
        """Lets queued batches finish, then stops the batch threads."""
        with self._ready:
            while any(queue.tasks for queue in self._queues.values()):
                self._ready.wait(timeout=0.05)
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join()


PER_MODEL_BATCHING_FILE = "batching_params.pbtxt"  # TF Serving's name, in the version directory


def per_model_batcher(path: str, metrics):
    """The Batcher of a version's `batching_params.pbtxt`, or None (--enable_per_model_batching_parameters)."""
    file = os.path.join(path, PER_MODEL_BATCHING_FILE)
    if not os.path.exists(file):
        return None
    try:
        parameters = read_text_proto(file, BatchingParameters(), "--enable_per_model_batching_parameters")
        check_batching(parameters)
    except ConfigError as error:
        raise ServingError("INVALID_ARGUMENT", str(error)) from None
    return Batcher(parameters, metrics)
