"""TF Serving's status codes, its error messages, and its gRPC -> HTTP map.

Every failure the server reports is a `ServingError(code, message)`. The
code is a canonical gRPC status name (the numbering TensorFlow's
`error::Code` shares with gRPC); the gRPC API sends it as the call's status,
the REST API turns it into an HTTP status with `HTTP_STATUS` — the table of
TF Serving's `http_server.cc` (`ToHTTPStatusCode`) — and an
`{"error": message}` body. Messages longer than 1024 characters are cut and
end in `...TRUNCATED`, as TF Serving's `ToGRPCStatus` does.

The message builders below reproduce TF Serving's wording exactly, so a
client that greps for "Servable not found for request" behaves the same
against either server.

This module imports nothing heavy: the client side uses it too.

Example:

>>> error = ServingError.not_found_latest("charlm")
>>> error.code, error.message, error.http_status
('NOT_FOUND', 'Servable not found for request: Latest(charlm)', 404)
"""

from __future__ import annotations

import grpc

# Canonical codes, in `tensorflow/core/protobuf/error_codes.proto` order.
CODES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
CODE_NUMBERS = {name: number for number, name in enumerate(CODES)}

# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc).
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

MESSAGE_LIMIT = 1024  # TF Serving's kErrorMessageLimit


def truncate(message: str) -> str:
    """Cuts a message the way TF Serving's ToGRPCStatus does."""
    if len(message) > MESSAGE_LIMIT:
        return message[:MESSAGE_LIMIT] + "...TRUNCATED"
    return message


def _set(names) -> str:
    """Formats names like TF Serving's `{a,b,c}` (a sorted std::set, comma-joined)."""
    return "{" + ",".join(sorted(names)) + "}"


class ServingError(Exception):
    """A failed request: a canonical status code and TF Serving's message.

    Args:
        code: a name from `CODES` other than "OK", e.g. "NOT_FOUND".
        message: the human-readable message sent to the client.

    Example:

    >>> raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
    Traceback (most recent call last):
      ...
    rnnserve.serving.errors.ServingError: INVALID_ARGUMENT: Missing ModelSpec
    """

    def __init__(self, code: str, message: str):
        if code not in CODE_NUMBERS or code == "OK":
            raise ValueError(f"Received an invalid status code {code!r}; expected one of {CODES[1:]}.")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def grpc_code(self) -> grpc.StatusCode:
        """The `grpc.StatusCode` with the same name."""
        return grpc.StatusCode[self.code]

    @property
    def http_status(self) -> int:
        """The HTTP status TF Serving's REST API answers with for this code."""
        return HTTP_STATUS[self.code]

    # -- TF Serving's messages, one builder each ------------------------
    @classmethod
    def not_found_latest(cls, model: str) -> ServingError:
        return cls("NOT_FOUND", f"Servable not found for request: Latest({model})")

    @classmethod
    def not_found_specific(cls, model: str, version: int) -> ServingError:
        return cls("NOT_FOUND", f"Servable not found for request: Specific({model}, {version})")

    @classmethod
    def missing_model_spec(cls) -> ServingError:
        return cls("INVALID_ARGUMENT", "Missing ModelSpec")

    @classmethod
    def missing_model_name(cls) -> ServingError:
        return cls("INVALID_ARGUMENT", "ModelSpec has no name specified.")

    @classmethod
    def unknown_label(cls, label: str) -> ServingError:
        return cls("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")

    @classmethod
    def signature_not_found(cls, name: str) -> ServingError:
        return cls("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')

    @classmethod
    def input_size_mismatch(cls, sent, expected) -> ServingError:
        sent, expected = set(sent), set(expected)
        return cls(
            "INVALID_ARGUMENT",
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({_set(sent)}) != len({_set(expected)}). "
            f"Sent extra: {_set(sent - expected)}. "
            f"Missing but required: {_set(expected - sent)}.",
        )

    @classmethod
    def unknown_input_alias(cls, alias: str, expected) -> ServingError:
        return cls(
            "INVALID_ARGUMENT",
            f"input tensor alias not found in signature: {alias}. "
            f"Inputs expected to be in the set {_set(expected)}.",
        )

    @classmethod
    def unknown_output_alias(cls, alias: str, expected) -> ServingError:
        return cls(
            "INVALID_ARGUMENT",
            f"output tensor alias not found in signature: {alias} "
            f"Outputs expected to be in the set {_set(expected)}.",
        )

    @classmethod
    def duplicate_output_alias(cls, alias: str) -> ServingError:
        return cls("INVALID_ARGUMENT", f"duplicate output tensor alias: {alias}")

    @classmethod
    def tensor_parsing(cls, alias: str) -> ServingError:
        return cls("INVALID_ARGUMENT", f"tensor parsing error: {alias}")


class ConfigError(Exception):
    """A flag or configuration file the server cannot use: one sentence naming the flag and the file.

    The `rnnserve serve` command prints it as its one-line error (exit status 2).

    Example:

    >>> raise ConfigError("--port must be in [0, 65535], got 70000.")
    Traceback (most recent call last):
    ...
    rnnserve.serving.errors.ConfigError: --port must be in [0, 65535], got 70000.
    """


def tf_error(error) -> ServingError:
    """A TensorFlow runtime error (`tf.errors.OpError`) as a ServingError with the same code.

    Only the first line that says something is kept: the Python
    session's "Graph execution error:" header and the node provenance
    (`[[{{node ...}}]]`) say nothing to a client.
    """
    code = CODES[error.error_code] if 0 < error.error_code < len(CODES) else "UNKNOWN"
    lines = [line.strip() for line in (error.message or "").split("\n")]
    useful = [
        line for line in lines if line and line != "Graph execution error:" and not line.startswith("[[")
    ]
    return ServingError(code, truncate(useful[0] if useful else type(error).__name__))


def load_error(error: Exception) -> ServingError:
    """Why a version failed to load, as a ServingError (TensorFlow's code, or NOT_FOUND / PERMISSION_DENIED / DATA_LOSS / INTERNAL)."""
    if isinstance(error, ServingError):
        return error
    if hasattr(error, "error_code"):  # tf.errors.OpError
        return tf_error(error)
    message = truncate(str(error).strip().split("\n")[0] or type(error).__name__)
    if isinstance(error, FileNotFoundError):
        return ServingError("NOT_FOUND", message)
    if isinstance(error, PermissionError):
        return ServingError("PERMISSION_DENIED", message)
    if isinstance(error, OSError):
        return ServingError("DATA_LOSS", message)
    return ServingError("INTERNAL", message)
