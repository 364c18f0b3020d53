"""Which versions a model's base path holds, and which of them its version policy wants.

TF Serving's `FileSystemStoragePathSource` side of loading: only
subdirectories named by an integer are versions (so an export written to a
temporary non-numeric directory and renamed into place is never seen
half-written), and the policy picks the aspired ones: `latest {
num_versions }` (default 1), `all {}`, `specific { versions }`.

Example:

>>> list_versions("/nonexistent") is None
True
"""

from __future__ import annotations

import os

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def dir_key(path: str):
    """(inode, mtime) of a version directory: a replaced directory gets a new key; None if missing."""
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


def no_versions_message(name: str, base_path: str) -> str:
    """TF Serving's warning for a base path without versions, and a hint when it is a version itself.

    >>> no_versions_message("m", "/nonexistent/m")
    "No versions of servable m found under base path /nonexistent/m. Did you forget to name your leaf directory as a number (eg. '/1/')?"
    """
    message = (
        f"No versions of servable {name} found under base path {base_path}. "
        "Did you forget to name your leaf directory as a number (eg. '/1/')?"
    )
    if any(os.path.exists(os.path.join(base_path, f)) for f in SAVED_MODEL_FILES):
        parent = os.path.dirname(os.path.normpath(base_path))
        if os.path.basename(os.path.normpath(base_path)).isdigit():
            message += (
                f" {base_path} looks like a version directory; pass its parent {parent} as the base path."
            )
        else:
            message += (
                f" {base_path} looks like a version directory; pass its parent as the base path, "
                f"with the version directory named by an integer (e.g. {os.path.join(base_path, '1')} "
                "holding the SavedModel)."
            )
    return message
