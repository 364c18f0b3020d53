"""What to export for a run directory or a Keras file, and the hook for non-LM tasks.

- A run whose `config.json` has `model.builder == "language_model"`
  (charlm) exports the language-model contract (`language_model.py`) with
  its `vocab.json`.
- Any other task exports what its registered exporter returns
  (`register_task_exporter`), or, when none is registered, one
  `serving_default` that calls the model with its own named inputs and
  outputs (`model_endpoint`). Task modules register at import time;
  `export_run` imports `training.tasks` first.
- `export_keras_model` exports a Keras file (Keras 3 or Keras 2,
  `keras_files.py`): under the language-model contract with its vocabulary
  when it is a chain language model (`keras_import.py`), else, like the
  non-LM tasks, with one `serving_default` of its own inputs and outputs.

Example:

```python
export_run("runs/charlm-1", "exports/charlm")
# 'exports/charlm/1'
register_task_exporter("regress", my_regress_exporter)
```
"""

from __future__ import annotations

import datetime
import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import tensorflow as tf

from rnnserve import __version__
from rnnserve.errors import UserError
from rnnserve.training.export import CONTRACTS, DEFAULT_MAX_NEW_TOKENS_LIMIT, versions
from rnnserve.training.export.keras_files import custom_objects_from, load_keras_file
from rnnserve.training.export.keras_import import as_language_model
from rnnserve.training.export.keras_text import model_text
from rnnserve.training.export.language_model import LanguageModelSignatures
from rnnserve.training.export.vocab_files import read_vocabulary
from rnnserve.training.export.writer import Endpoint, write_savedmodel
from rnnserve.training.files import read_json
from rnnserve.training.run_directory import RunDirectory

LANGUAGE_MODEL_BUILDER = "language_model"
TASK_MODULES = "rnnserve.training.tasks"  # imported before a task exporter is looked up


@dataclass(frozen=True)
class TaskExport:
    """What a task exporter returns.

    Args:
        endpoints: The `Endpoint`s (one named `serving_default`).
        metadata: Extra facts for `rnnserve.json` (e.g. `start_id`).
        track: Resources the endpoints use beyond the model (lookup tables…).
    """

    endpoints: Sequence[Endpoint]
    metadata: Mapping = field(default_factory=dict)
    track: Sequence = ()


_TASK_EXPORTERS: dict[str, Callable] = {}


def register_task_exporter(task, exporter):
    """Registers how runs of `task` are exported.

    Args:
        task: The `task` of `config.json` (`"classify"`, `"seq2seq"`, …).
        exporter: `exporter(model, config, run_dir) -> TaskExport`; `model`
            is the loaded `model.keras`, `config` the parsed `config.json`.
            The model is always tracked.

    Example:

    ```python
    def export_seq2seq(model, config, run_dir):
        length = config["task_options"]["target_length"]
        def serve(source):                                         # (B, S)
            return {"tokens": greedy_decode(model, source, 1, length)}  # (B, N)
        return TaskExport([Endpoint("serving_default", serve,
                                    {"source": tf.TensorSpec((None, None), tf.int32)})])
    register_task_exporter("seq2seq", export_seq2seq)
    ```
    """
    _TASK_EXPORTERS[task] = exporter


def model_endpoint(model):
    """`serving_default` calling a functional model with its named inputs → named outputs.

    Example:

    ```python
    model_endpoint(build_regressor(3)).inputs
    # {'sequence': TensorSpec(shape=(None, None, 3), dtype=tf.float32, name=None)}
    ```
    """
    names = [tensor.name for tensor in model.inputs]
    specs = {tensor.name: tf.TensorSpec(tensor.shape, tensor.dtype) for tensor in model.inputs}
    # A Sequential has no output_names; its output is its last layer's.
    output_names = list(getattr(model, "output_names", None) or [model.layers[-1].name])

    def serve(**inputs):
        values = [inputs[name] for name in names]
        outputs = model(values[0] if len(values) == 1 else values, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return dict(zip(output_names, outputs))

    return Endpoint("serving_default", serve, specs)


def _default_exporter(model, config, run_dir):
    return TaskExport([model_endpoint(model)])


def _task_exporter(task):
    importlib.import_module(TASK_MODULES)  # the task modules register their exporters
    return _TASK_EXPORTERS.get(task, _default_exporter)


def _provenance(**source):
    return {
        "source": source,
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "rnnserve_version": __version__,
        "tensorflow_version": tf.__version__,
    }


def _unfinished(run, task):
    latest = run.latest_checkpoint()
    if latest is None:
        return UserError(
            f"{run.path} has no model.keras and no checkpoint: its training ended before the first epoch; "
            f"train it again with `rnnserve train {task}`."
        )
    return UserError(
        f"{run.path} has no model.keras: its training did not finish. Continue it with `rnnserve train "
        f"{task} --resume {run.path}`, or export its newest checkpoint (after epoch {latest[0]}) with "
        f"`rnnserve export --run {run.path} --from-checkpoint`."
    )


def _stateless(model, config):
    """A checkpoint's model, rebuilt stateless from config.json when it keeps state in variables."""
    from rnnserve.models import BUILDERS, Recurrent
    from rnnserve.training.tasks.task import copy_trainable_weights

    if not any(isinstance(layer, Recurrent) and layer.stateful for layer in model.layers):
        return model
    kwargs = {key: value for key, value in config["model"].items() if key != "builder"}
    twin = BUILDERS[config["model"]["builder"]](**kwargs)
    copy_trainable_weights(twin, model)
    return twin


def _run_model(run_dir, config, from_checkpoint):
    """The model to export: `model.keras`, or the newest checkpoint's when asked."""
    run = RunDirectory(run_dir)
    if not from_checkpoint:
        if not run.model_path.exists():
            raise _unfinished(run, config["task"])
        return load_keras_file(run.model_path), {"run": os.path.abspath(run_dir)}
    latest = run.latest_checkpoint()
    if latest is None:
        raise UserError(f"{run_dir} has no checkpoint to export (no checkpoints/epoch-NNNN.keras).")
    model = _stateless(load_keras_file(latest[1]), config)
    return model, {"run": os.path.abspath(run_dir), "checkpoint": os.path.abspath(latest[1])}


def export_language_model(
    model,
    vocabulary,
    export_base,
    task="charlm",
    version=None,
    max_new_tokens_limit=DEFAULT_MAX_NEW_TOKENS_LIMIT,
    progress=None,
    extra_metadata=None,
    verify=True,
    tables=None,
):
    """Exports a Keras language model under the language-model contract.

    Args:
        model: A chain language model of rnnserve, or a Keras model of
            the layers `keras_import.as_language_model` converts.
        vocabulary: Its `Vocabulary` (V must equal the model's).
        export_base: The base directory.
        task: Recorded in `rnnserve.json`. Default: `"charlm"`.
        version: Integer version, or `None` for the next one.
        max_new_tokens_limit: The largest `max_new_tokens` a request may ask
            for. Default: 1024.
        progress, verify: See `write_savedmodel`.
        extra_metadata: More facts for `rnnserve.json`.
        tables: The text signatures' tables (`text.py`). Default:
            `VocabularyTables(vocabulary)`.

    Returns:
        The published version directory.
    """
    if isinstance(max_new_tokens_limit, bool) or not (
        isinstance(max_new_tokens_limit, int) and max_new_tokens_limit >= 1
    ):
        raise UserError(f"--max-new-tokens-limit must be a positive integer, got {max_new_tokens_limit!r}.")
    if len(vocabulary) <= len(vocabulary.reserved_ids):
        raise UserError(
            "The vocabulary holds only [UNK] (and padding), which is never generated; build it from a "
            "real corpus."
        )
    chain = as_language_model(model, padded=vocabulary.padding_id is not None)
    embedding, logits = chain.layers[1], chain.layers[-1]
    for what, size in (("Embedding input size", embedding.input_dim), ("output Dense units", logits.units)):
        if size != len(vocabulary):
            raise UserError(
                f"The vocabulary has {len(vocabulary)} tokens but the model's {what} is {size}; "
                "export the model with the vocabulary it was trained on."
            )
    signatures = LanguageModelSignatures(chain, vocabulary, max_new_tokens_limit, tables)
    metadata = {**signatures.metadata(task), **(extra_metadata or {})}
    return write_savedmodel(
        export_base,
        signatures.endpoints(),
        metadata,
        track=signatures.track(),
        version=version,
        progress=progress,
        verify=verify,
    )


def export_run(
    run_dir,
    export_base,
    version=None,
    max_new_tokens_limit=DEFAULT_MAX_NEW_TOKENS_LIMIT,
    progress=None,
    verify=True,
    from_checkpoint=False,
):
    """Exports the `model.keras` of a run directory as `export_base/<version>`.

    Args:
        run_dir: A run directory (docs/run-directory.md).
        export_base: The base directory TF Serving polls (created if missing).
        version: Integer version, or `None` for 1 + the highest present.
        max_new_tokens_limit: Language models: the `generate` cap. Default: 1024.
        progress: Optional `progress(stage_index, stage_count, label)`.
        verify: Replay the warmup requests in the TF1 loader before
            publishing (see `write_savedmodel`). Default: `True`.
        from_checkpoint: Export the newest checkpoint instead of
            `model.keras` (a run that was interrupted). Default: `False`.

    Returns:
        The published version directory.

    Raises:
        UserError: a missing or unreadable run file, a taken version, an
            unsupported model.

    Example:

    ```python
    export_run("runs/charlm-1", "exports/charlm")
    # 'exports/charlm/1'
    ```
    """
    try:
        config = read_json(os.path.join(run_dir, "config.json"))
        task, builder = config["task"], config["model"]["builder"]
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{run_dir} is not a run directory with a valid config.json ({error}).") from error
    versions.check_version_free(export_base, version)
    model, source = _run_model(run_dir, config, from_checkpoint)
    provenance = _provenance(**source)
    if builder == LANGUAGE_MODEL_BUILDER:
        vocabulary = read_vocabulary(os.path.join(run_dir, "vocab.json"))
        return export_language_model(
            model, vocabulary, export_base, task, version, max_new_tokens_limit, progress, provenance, verify
        )
    exported = _task_exporter(task)(model, config, run_dir)
    metadata = {"task": task, **provenance, **exported.metadata}
    return write_savedmodel(
        export_base, exported.endpoints, metadata, [model, *exported.track], version, progress, verify
    )


def _plain_reason(error):
    """The first sentence of a conversion refusal, for the notice of a plain export."""
    return str(error).split(". Supported layers")[0].rstrip(".")


def export_keras_model(
    keras_path,
    vocab_path,
    export_base,
    version=None,
    max_new_tokens_limit=DEFAULT_MAX_NEW_TOKENS_LIMIT,
    progress=None,
    custom_objects=(),
    contract="auto",
    notify=None,
):
    """Exports a Keras model file (Keras 3, or Keras 2 `.keras` / `.h5`).

    Args:
        keras_path: The model file.
        vocab_path: Its vocabulary (`vocab_files` formats), or `None`: a
            language model then needs a `StringLookup` of its own; other
            models need none.
        export_base, version, max_new_tokens_limit, progress: As `export_run`.
        custom_objects: Modules (or `.py` files) defining the model's own layers.
        contract: `"auto"` (default): the language-model signatures when the
            model converts to a chain language model, else one
            `serving_default` of the model's own input and output names;
            `"language-model"`: those signatures or an error saying why not;
            `"plain"`: `serving_default` only.
        notify: Optional `notify(message)`, told which contract an `"auto"`
            export chose when it is not the language model's.

    Returns:
        The published version directory.

    Example:

    ```python
    export_keras_model("lm.keras", "vocab.json", "exports/lm")
    # 'exports/lm/1'
    export_keras_model("classifier.h5", None, "exports/classifier")   # serving_default only
    # 'exports/classifier/1'
    ```
    """
    if contract not in CONTRACTS:
        raise UserError(f"--contract must be one of {', '.join(CONTRACTS)}, got {contract!r}.")
    versions.check_version_free(export_base, version)
    vocabulary = read_vocabulary(vocab_path) if vocab_path is not None else None
    model = load_keras_file(keras_path, custom_objects_from(custom_objects))
    provenance = _provenance(keras_model=os.path.abspath(keras_path))
    chain = None
    if contract != "plain":
        try:
            chain = as_language_model(
                model, padded=vocabulary is not None and vocabulary.padding_id is not None
            )
        except UserError as error:
            if contract == "language-model":
                raise
            if notify is not None:
                unused = "; --vocab is not used" if vocab_path is not None else ""
                notify(
                    f"exporting `{model.name}` with one serving_default of its own inputs and outputs, "
                    f"not as a language model ({_plain_reason(error)}){unused}."
                )
    if chain is None:
        metadata = {"task": "keras", **provenance}
        return write_savedmodel(export_base, [model_endpoint(model)], metadata, [model], version, progress)
    vocabulary, tables, text_metadata = model_text(model, vocabulary)
    return export_language_model(
        chain,
        vocabulary,
        export_base,
        task="keras",
        version=version,
        max_new_tokens_limit=max_new_tokens_limit,
        progress=progress,
        extra_metadata={**text_metadata, **provenance},
        tables=tables,
    )
