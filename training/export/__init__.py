"""rnnserve.training.export: SavedModels under the serving contract (docs/savedmodel.md).

| module | one idea |
|---|---|
| `runs` | what to export for a run directory or a Keras file; the task-exporter hook |
| `language_model` | the six language-model signatures |
| `text` | the vocabulary in-graph (encode / decode) |
| `checks` | in-graph input checks (INVALID_ARGUMENT naming the input) |
| `keras_files` | a user's Keras file → a Keras 3 model (custom layers, clear errors) |
| `keras2` | Keras 2 (tf.keras) `.keras` / `.h5` files made loadable by Keras 3 |
| `keras_import` | Keras built-in LMs → chains of rnnserve's layers |
| `keras_text` | a Keras LM's own StringLookup / TextVectorization as its vocabulary and text signatures |
| `vocab_files` | vocabulary files: rnnserve's format, token lists, `{token: id}` mappings |
| `writer` | endpoints → verified SavedModel → published version |
| `versions` | atomic, concurrent-safe version directories |
| `warmup` / `verify` | TF Serving's warmup records; loading as TF Serving does |
| `inspect` | `rnnserve inspect` |
| `cli` | `rnnserve export`, `rnnserve inspect` |

The public functions are re-exported here (each module imported on first use):

```python
from rnnserve.training.export import export_run
export_run("runs/charlm-1", "exports/charlm")
# 'exports/charlm/1'
```
"""

from __future__ import annotations

import importlib

# The largest `max_new_tokens` a `generate` request may ask for, unless the
# export says otherwise (`--max-new-tokens-limit`).
DEFAULT_MAX_NEW_TOKENS_LIMIT = 1024
# `export_keras_model(contract=…)` / `--contract`: which signatures a Keras file gets.
CONTRACTS = ("auto", "language-model", "plain")

_PUBLIC = {
    "export_run": "rnnserve.training.export.runs",
    "export_keras_model": "rnnserve.training.export.runs",
    "export_language_model": "rnnserve.training.export.runs",
    "register_task_exporter": "rnnserve.training.export.runs",
    "model_endpoint": "rnnserve.training.export.runs",
    "TaskExport": "rnnserve.training.export.runs",
    "Endpoint": "rnnserve.training.export.writer",
    "write_savedmodel": "rnnserve.training.export.writer",
    "read_metadata": "rnnserve.training.export.writer",
    "existing_versions": "rnnserve.training.export.versions",
    "as_language_model": "rnnserve.training.export.keras_import",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'rnnserve.training.export' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
