"""Which model versions are loaded: polling, version policies, labels, load / warmup / unload.

Mirrors TF Serving's `ServerCore` + `FileSystemStoragePathSource` +
`AspiredVersionsManager` with the availability-preserving policy:

- every `file_system_poll_wait_seconds` each model's `base_path` is listed;
  only directories named by an integer are versions (so an export in
  progress, written to a non-numeric temporary directory, is never seen);
- the version policy picks the aspired versions: `latest { num_versions }`
  (default 1), `all {}`, `specific { versions }`;
- a new aspired version goes START -> LOADING -> (warmup) -> AVAILABLE; a
  load or warmup failure leaves it at END with the error in its status, and
  it is not retried until its directory is replaced;
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
import logging
import os
import threading
import time

from tensorflow_serving.config import model_server_config_pb2

from rnnserve.serving.config import read_model_config_file, validate_model_server_config
from rnnserve.serving.errors import ServingError, tf_error, truncate
from rnnserve.serving.servable import Servable
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


def _dir_key(path: str):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns)


def list_versions(base_path: str) -> dict[int, str] | None:
    """Integer-named subdirectories of `base_path` (version -> path); None if it is missing."""
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return None
    return {
        int(entry.name): entry.path
        for entry in entries
        if entry.name.isdigit() and entry.name.isascii() and entry.is_dir()
    }


def aspired_versions(model_config, on_disk: dict[int, str]) -> set[int]:
    """The versions a model's version policy wants loaded, out of those on disk."""
    policy = model_config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(on_disk)
    if choice == "specific":
        return set(policy.specific.versions) & set(on_disk)
    count = max(1, policy.latest.num_versions) if choice == "latest" else 1
    return set(sorted(on_disk, reverse=True)[:count])


def _load_error(error: Exception) -> ServingError:
    if isinstance(error, ServingError):
        return error
    if hasattr(error, "error_code"):  # tf.errors.OpError
        return tf_error(error)
    message = truncate(str(error).strip().split("\n")[0] or type(error).__name__)
    if isinstance(error, FileNotFoundError):
        return ServingError("NOT_FOUND", message)
    if isinstance(error, OSError):
        return ServingError("DATA_LOSS", message)
    return ServingError("INTERNAL", message)


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
        for name in removed:
            for record in list(self._records[name].values()):
                if record.state == AVAILABLE:
                    self._unload(record)
        for model in configs.values():
            self._poll_model(model)

    def _poll_model(self, model) -> None:
        on_disk = list_versions(model.base_path)
        if not on_disk:
            if model.name not in self._warned:
                log.warning(
                    "No versions of servable %s found under base path %s", model.name, model.base_path
                )
                self._warned.add(model.name)
            if on_disk is None:
                return  # a missing base path changes nothing (TF Serving keeps what it serves)
        else:
            self._warned.discard(model.name)
        aspired = aspired_versions(model, on_disk)
        with self._lock:
            records = self._records.setdefault(model.name, {})
            to_load = [
                version
                for version in sorted(aspired, reverse=True)
                if not (
                    version in records
                    and (
                        records[version].state in (LOADING, AVAILABLE)
                        or (records[version].error and records[version].dir_key == _dir_key(on_disk[version]))
                    )
                )
            ]
        for version in to_load:
            self._load(model.name, version, on_disk[version])
        with self._lock:
            serving_aspired = any(records[v].state == AVAILABLE for v in aspired if v in records)
            to_unload = [
                record
                for version, record in records.items()
                if record.state == AVAILABLE and version not in aspired and (serving_aspired or not aspired)
            ]
        for record in to_unload:
            self._unload(record)

    def _load(self, name: str, version: int, path: str) -> None:
        record = VersionRecord(version, path, LOADING, dir_key=_dir_key(path))
        with self._lock:
            self._records[name][version] = record
        log.info("Loading servable: {name: %s version: %d} from %s", name, version, path)
        started = time.monotonic()
        try:
            servable = Servable(
                name, version, path, self._options.intra_op_threads, self._options.inter_op_threads
            )
        except Exception as error:  # any load failure is reported, never raised
            self._metrics.load_attempt_count.labels(model_path=path, status="fail").inc()
            return self._fail(record, _load_error(error))
        self._metrics.load_attempt_count.labels(model_path=path, status="success").inc()
        self._metrics.load_latency.labels(model_path=path).inc((time.monotonic() - started) * 1e6)
        warmup_started = time.monotonic()
        try:
            count = run_warmup(servable)
        except Exception as error:  # a failing warmup request fails the load
            failure = _load_error(error)
            self._metrics.warmup_latency.labels(model_path=path, status=failure.code).observe(
                (time.monotonic() - warmup_started) * 1e6
            )
            servable.close(timeout=0)
            return self._fail(record, failure)
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
        config = read_model_config_file(self._options.model_config_file)
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
        version = self.resolve_version(model_spec) if name else None
        with self._lock:
            records = self._records.get(name, {})
            if version is not None:
                if version not in records:
                    raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
                return [dataclasses.replace(records[version])]
            if not records:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
            return [dataclasses.replace(records[v]) for v in sorted(records, reverse=True)]


def _as_list(configs: dict):
    config_list = model_server_config_pb2.ModelConfigList()
    config_list.config.extend(configs.values())
    return config_list
