"""Which model versions are loaded: polling, version policies, labels, load / warmup / unload.

Mirrors TF Serving's `ServerCore` + `FileSystemStoragePathSource` +
`AspiredVersionsManager` with the availability-preserving policy:

- every `file_system_poll_wait_seconds` each model's `base_path` is listed;
  only directories named by an integer are versions (so an export in
  progress, written to a non-numeric temporary directory, is never seen);
- the version policy picks the aspired versions: `latest { num_versions }`
  (default 1), `all {}`, `specific { versions }`;
- a new aspired version goes START -> LOADING -> (warmup) -> AVAILABLE; a
  failed load or warmup is retried `--max_num_load_retries` times,
  `--load_retry_interval_micros` apart, then left at END with the error in
  its status, and not tried again until its directory is replaced;
- `--num_load_threads` / `--num_unload_threads` versions load / unload at
  once (0: one after another);
- a base path without integer subdirectories logs TF Serving's warning,
  with a hint when it is itself a version directory (GetModelStatus says so);
- a version no longer aspired is unloaded (UNLOADING -> END) only once an
  aspired version is AVAILABLE, so a broken new version never takes the old
  one out of service; in-flight requests finish before a session closes;
- "latest" requests go to the highest AVAILABLE version; `version_labels`
  map names to versions.

States are kept after unloading (END), as TF Serving's state monitor does,
and reported by `status()` highest version first.

Example:

```python
manager = ModelManager(options, Metrics())
manager.apply_config(options.model_config, startup=True)
with manager.lease(model_spec) as servable:
    servable.version
# 1
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
from concurrent import futures

from tensorflow_serving.config import model_server_config_pb2

from rnnserve.serving.batching import per_model_batcher
from rnnserve.serving.config import (
    read_model_config_file,
    validate_model_server_config,
)
from rnnserve.serving.errors import ConfigError, ServingError, load_error
from rnnserve.serving.servable import Servable
from rnnserve.serving.version_source import aspired_versions, dir_key, list_versions, no_versions_message
from rnnserve.serving.warmup import run_warmup

log = logging.getLogger("rnnserve.serving")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclasses.dataclass
class VersionRecord:
    """One version's place in its lifecycle.

    Attributes:
        version: the version number.
        path: its directory.
        state: START, LOADING, AVAILABLE, UNLOADING or END.
        error: why it failed to load (END with an error), else None.
        servable: the loaded model while AVAILABLE / UNLOADING.
        dir_key: (inode, mtime) of the directory it was loaded from.
    """

    version: int
    path: str
    state: str = START
    error: ServingError | None = None
    servable: Servable | None = None
    dir_key: tuple | None = None


class ModelManager:
    """Loads, serves and unloads the versions of every configured model.

    Args:
        options: the server's `ServerOptions`.
        metrics: where load attempts, load and warmup latencies are recorded.
    """

    def __init__(self, options, metrics):
        self._options = options
        self._metrics = metrics
        self._lock = threading.Lock()  # guards the three maps below
        self._poll_lock = threading.Lock()  # one load/unload round at a time
        self._configs: dict = {}
        self._records: dict[str, dict[int, VersionRecord]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._warned: set[str] = set()
        self._no_versions: dict[str, str] = {}  # model -> why nothing is listed (for status)
        # (name, version) -> whether something else needs it loaded (the server's sequences)
        self.keep_loaded = lambda name, version: False

    # -- configuration ---------------------------------------------------
    def apply_config(self, config, startup: bool = False) -> None:
        """Makes `config` the served model list (HandleReloadConfigRequest semantics).

        Loads what the new config aspires to, unloads models left out, then
        sets the version labels. Models new to the server that have versions on
        disk but none AVAILABLE afterwards are an error (UNKNOWN); at startup
        a label naming a version that is not AVAILABLE is one too.

        Raises:
            ServingError: the config is invalid or the transition failed.
        """
        validate_model_server_config(config)
        models = {model.name: model for model in config.model_config_list.config}
        allow = self._options.allow_version_labels_for_unavailable_models
        with self._poll_lock:
            with self._lock:
                new_names = set(models) - set(self._configs)
                self._configs = models
            self._poll_locked()
            with self._lock:
                for name, model in models.items():
                    for _label, version in model.version_labels.items():
                        if not allow and self._state(name, version) != AVAILABLE:
                            raise ServingError(
                                "FAILED_PRECONDITION",
                                f"Request to assign label to version {version} of model {name}, "
                                "which is not currently available for inference",
                            )
                self._labels = {name: dict(model.version_labels) for name, model in models.items()}
                failed = [
                    f"{{name: {name} version: {max(self._records.get(name, {0: None}))}}}, "
                    for name in sorted(new_names)
                    if list_versions(models[name].base_path) and self._latest(name) is None
                ]
            if failed:
                raise ServingError(
                    "UNKNOWN", "Some models did not become available: {" + "".join(failed) + "}"
                )

    def _state(self, name: str, version: int) -> str | None:
        record = self._records.get(name, {}).get(version)
        return record.state if record else None

    # -- polling ---------------------------------------------------------
    def poll(self) -> None:
        """One round: list every base path, load aspired versions, unload the rest."""
        with self._poll_lock:
            self._poll_locked()

    def _poll_locked(self) -> None:
        with self._lock:
            configs = dict(self._configs)
            removed = [name for name in self._records if name not in configs]
        self._run_all(
            [
                functools.partial(self._unload, record)
                for name in removed
                for record in list(self._records[name].values())
                if record.state == AVAILABLE
            ],
            self._options.num_unload_threads,
        )
        plans = [(model, self._versions_to_load(model)) for model in configs.values()]
        self._run_all(
            [
                functools.partial(self._load, model.name, version, path)
                for model, (_, to_load) in plans
                for version, path in to_load
            ],
            self._options.num_load_threads,
        )
        unloads = []
        for model, (aspired, _) in plans:
            if aspired is not None:
                unloads += self._versions_to_unload(model.name, aspired)
        self._run_all(
            [functools.partial(self._unload, record) for record in unloads], self._options.num_unload_threads
        )

    @staticmethod
    def _run_all(jobs: list, threads: int) -> None:
        """Runs jobs one after another (threads 0 or 1) or `threads` at a time (--num_load_threads)."""
        if threads <= 1 or len(jobs) <= 1:
            for job in jobs:
                job()
            return
        with futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rnnserve-load") as pool:
            for done in [pool.submit(job) for job in jobs]:
                done.result()

    def _versions_to_load(self, model) -> tuple[set[int] | None, list[tuple[int, str]]]:
        """(aspired versions or None if the base path is missing, [(version, path) to load])."""
        on_disk = list_versions(model.base_path)
        if not on_disk:
            if model.name not in self._warned:
                self._no_versions[model.name] = no_versions_message(model.name, model.base_path)
                log.warning("%s", self._no_versions[model.name])
                self._warned.add(model.name)
            if on_disk is None:
                return None, []  # a missing base path changes nothing (TF Serving keeps what it serves)
        else:
            self._warned.discard(model.name)
            self._no_versions.pop(model.name, None)
        aspired = aspired_versions(model, on_disk)
        with self._lock:
            records = self._records.setdefault(model.name, {})
            to_load = [
                (version, on_disk[version])
                for version in sorted(aspired, reverse=True)
                if not (
                    version in records
                    and (
                        records[version].state in (LOADING, AVAILABLE)
                        or (records[version].error and records[version].dir_key == dir_key(on_disk[version]))
                    )
                )
            ]
        return aspired, to_load

    def _versions_to_unload(self, name: str, aspired: set[int]) -> list[VersionRecord]:
        """AVAILABLE versions no longer aspired, once an aspired one serves (availability preserving).

        A version `keep_loaded` names (a server-side sequence runs on it) waits
        for a later round.
        """
        with self._lock:
            records = self._records.setdefault(name, {})
            serving_aspired = any(records[v].state == AVAILABLE for v in aspired if v in records)
            return [
                record
                for version, record in records.items()
                if record.state == AVAILABLE
                and version not in aspired
                and (serving_aspired or not aspired)
                and not self.keep_loaded(name, version)
            ]

    def _load(self, name: str, version: int, path: str) -> None:
        """Loads and warms up one version, retrying as --max_num_load_retries says (TF's util/retrier.cc)."""
        record = VersionRecord(version, path, LOADING, dir_key=dir_key(path))
        with self._lock:
            self._records[name][version] = record
        description = f"Loading servable: {{name: {name} version: {version}}}"
        retries = self._options.max_num_load_retries
        for attempt in range(retries + 1):
            if attempt:
                if self._stop.wait(self._options.load_retry_interval_seconds):
                    break  # the server is stopping: the load is cancelled
                log.info("Retrying of %s retry: %d", description, attempt)
            log.info("%s from %s", description, path)
            failure = self._load_once(record, name, version, path)
            if failure is None:
                return
            log.error("%s failed: %s", description, failure)
        else:
            if retries:
                log.info("Retrying of %s exhausted max_num_retries: %d", description, retries)
        self._fail(record, failure)

    def _load_once(self, record: VersionRecord, name: str, version: int, path: str) -> ServingError | None:
        """One load + warmup attempt; makes the record AVAILABLE, or returns why it failed."""
        options = self._options
        started = time.monotonic()
        try:
            servable = Servable(name, version, path, options.session_config, options.saved_model_tags)
            if options.per_model_batching:
                servable.batcher = per_model_batcher(path, self._metrics)
        except Exception as error:  # any load failure is reported, never raised
            self._metrics.load_attempt_count.labels(model_path=path, status="fail").inc()
            return load_error(error)
        self._metrics.load_attempt_count.labels(model_path=path, status="success").inc()
        self._metrics.load_latency.labels(model_path=path).inc((time.monotonic() - started) * 1e6)
        count = 0
        if options.enable_model_warmup:
            warmup_started = time.monotonic()
            try:
                count = run_warmup(servable, options.warmup_iterations, options.method_name_check)
            except Exception as error:  # a failing warmup request fails the load
                failure = load_error(error)
                self._metrics.warmup_latency.labels(model_path=path, status=failure.code).observe(
                    (time.monotonic() - warmup_started) * 1e6
                )
                servable.close(timeout=0)
                return failure
            self._metrics.warmup_latency.labels(model_path=path, status="OK").observe(
                (time.monotonic() - warmup_started) * 1e6
            )
        with self._lock:
            record.servable, record.state = servable, AVAILABLE
        log.info(
            "Successfully loaded servable version {name: %s version: %d} (%d warmup records)",
            name,
            version,
            count,
        )
        return None

    def _fail(self, record: VersionRecord, error: ServingError) -> None:
        with self._lock:
            record.state, record.error = END, error
        log.error("Loading servable version %d from %s failed: %s", record.version, record.path, error)

    def _unload(self, record: VersionRecord) -> None:
        with self._lock:
            record.state = UNLOADING
            servable = record.servable
        servable.close()
        with self._lock:
            record.state, record.servable = END, None
        log.info("Unloaded servable version %d from %s", record.version, record.path)

    def start(self) -> None:
        """Starts the background pollers (file system, and the config file if asked)."""
        every = self._options.file_system_poll_wait_seconds
        if every > 0:
            self._spawn("fs-poll", every, self.poll)
        if self._options.model_config_file and self._options.model_config_file_poll_wait_seconds > 0:
            self._spawn(
                "config-poll", self._options.model_config_file_poll_wait_seconds, self._reread_config_file
            )

    def _spawn(self, name: str, every: float, work) -> None:
        def loop():
            while not self._stop.wait(every):
                try:
                    work()
                except Exception:  # keep polling whatever one round hit
                    log.exception("%s round failed", name)

        thread = threading.Thread(target=loop, name=f"rnnserve-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _reread_config_file(self) -> None:
        try:
            config = read_model_config_file(self._options.model_config_file)
        except ConfigError as error:  # TF Serving logs it and keeps serving the models it has
            log.error("Failed to read ModelServerConfig file: %s", error)
            return
        with self._lock:
            unchanged = config.model_config_list == _as_list(self._configs)
        if not unchanged:
            self.apply_config(config)

    def stop(self) -> None:
        """Stops polling and unloads every version."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        with self._poll_lock:
            with self._lock:
                self._configs = {}
            self._poll_locked()

    # -- lookups ---------------------------------------------------------
    def _latest(self, name: str) -> VersionRecord | None:
        available = [r for r in self._records.get(name, {}).values() if r.state == AVAILABLE]
        return max(available, key=lambda r: r.version) if available else None

    def resolve_version(self, model_spec) -> int | None:
        """The version a ModelSpec names (label resolved), or None for "latest"."""
        if not model_spec.name:
            raise ServingError.missing_model_name()
        choice = model_spec.WhichOneof("version_choice")
        if choice == "version":
            return model_spec.version.value
        if choice == "version_label":
            with self._lock:
                labels = self._labels.get(model_spec.name, {})
            if model_spec.version_label not in labels:
                raise ServingError.unknown_label(model_spec.version_label)
            return labels[model_spec.version_label]
        return None

    @contextlib.contextmanager
    def lease(self, model_spec):
        """Yields the Servable a ModelSpec names, held until the block ends.

        Raises:
            ServingError: no name (INVALID_ARGUMENT), unknown label
                (INVALID_ARGUMENT) or nothing AVAILABLE (NOT_FOUND).
        """
        version = self.resolve_version(model_spec)
        name = model_spec.name
        with self._lock:
            if version is None:
                record = self._latest(name) if name in self._configs else None
                missing = ServingError.not_found_latest(name)
            else:
                record = self._records.get(name, {}).get(version) if name in self._configs else None
                missing = ServingError.not_found_specific(name, version)
            servable = record.servable if record is not None and record.state == AVAILABLE else None
            if servable is None or not servable.acquire():
                raise missing
        try:
            yield servable
        finally:
            servable.release()

    def status(self, model_spec) -> list[VersionRecord]:
        """Version records for GetModelStatus, highest version first.

        Raises:
            ServingError: NOT_FOUND with TF Serving's messages.
        """
        name = model_spec.name
        if not name:
            raise ServingError.missing_model_name()
        # Only a version narrows the answer: a label is not resolved (get_model_status_impl.cc).
        version = model_spec.version.value if model_spec.HasField("version") else None
        with self._lock:
            records = self._records.get(name, {})
            if version is not None:
                if version not in records:
                    raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
                return [dataclasses.replace(records[version])]
            if not records:
                reason = self._no_versions.get(name)
                raise ServingError(
                    "NOT_FOUND",
                    f"Could not find any versions of model {name}" + (f": {reason}" if reason else ""),
                )
            return [dataclasses.replace(records[v]) for v in sorted(records, reverse=True)]


def _as_list(configs: dict):
    config_list = model_server_config_pb2.ModelConfigList()
    config_list.config.extend(configs.values())
    return config_list
