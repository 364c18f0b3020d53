"""The client commands: `rnnserve predict`, `status`, `metadata`, `generate`.

Each takes the parsed flags of `serving.cli`, talks to the server through
`PredictionClient` (or `RestClient` with `--rest`) and prints plain text.
Server errors and bad flags become one-line `UserError`s (exit status 2).

Example::

    $ rnnserve status --server 127.0.0.1:8500 --model charlm
    version 1: AVAILABLE
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

import numpy as np

from rnnserve import contract
from rnnserve.errors import UserError
from rnnserve.serving.errors import ServingError

MAX_GENERATE_TOKENS = 100_000  # a CLI run never asks for more than this


def _client(args: argparse.Namespace):
    if args.rest:
        from rnnserve.serving.rest_client import RestClient

        return RestClient(args.server, timeout=args.timeout)
    from rnnserve.serving.client import PredictionClient, tls_credentials

    credentials = None
    if args.ca:
        try:
            with open(args.ca, "rb") as handle:
                credentials = tls_credentials(handle.read())
        except OSError as error:
            raise UserError(f"--ca file '{args.ca}' cannot be read ({error.strerror}).") from None
    return PredictionClient(args.server, timeout=args.timeout, credentials=credentials)


def _user_error(error: ServingError, args: argparse.Namespace) -> UserError:
    from rnnserve.serving.client import HttpPortError
    from rnnserve.serving.rest_client import NotHttpError

    if isinstance(error, HttpPortError):
        return UserError(f"{args.server}: this is an HTTP port; use --rest or the gRPC port.")
    if isinstance(error, NotHttpError):
        return UserError(
            f"{args.server}: this is not an HTTP port (gRPC?); drop --rest or use the REST port."
        )
    return UserError(f"{args.server}: {error.code}: {error.message}")


def _parse_inputs(specs: list[str], signature) -> dict:
    inputs = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise UserError(f"--input '{spec}' is not NAME=VALUE; e.g. --input tokens='[[5,6,7]]'.")
        if name not in signature.inputs:
            raise UserError(
                f"--input {name}: the signature has no such input; it takes {sorted(signature.inputs)}."
            )
        dtype = signature.inputs[name].dtype
        if value.startswith("@"):
            try:
                inputs[name] = np.load(value[1:], allow_pickle=False)
            except (OSError, ValueError) as error:
                raise UserError(f"--input {name}: cannot load '{value[1:]}' as .npy ({error}).") from None
            continue
        try:
            parsed = json.loads(value)
        except ValueError:
            raise UserError(
                f"--input {name}: '{value}' is not JSON; quote strings, e.g. '[\"text\"]'."
            ) from None
        try:
            if dtype == object:
                flat = np.asarray(parsed, dtype=object)
                inputs[name] = (
                    np.vectorize(lambda s: str(s).encode("utf-8"), otypes=[object])(flat)
                    if flat.size
                    else flat
                )
            else:
                inputs[name] = np.asarray(parsed, dtype=dtype)
        except (TypeError, ValueError) as error:
            raise UserError(f"--input {name}: cannot convert '{value}' to {dtype} ({error}).") from None
    return inputs


def _print_array(name: str, array: np.ndarray) -> None:
    print(f"{name}: {array.dtype} {list(array.shape)}")
    print(np.array2string(array, threshold=200, edgeitems=4))


def predict(args: argparse.Namespace) -> int:
    """`rnnserve predict`: run one signature and print its outputs."""
    client = _client(args)
    try:
        metadata = client.metadata(args.model, version=args.version, version_label=args.label)
        if args.signature not in metadata.signatures:
            raise UserError(
                f"model {args.model} has no signature '{args.signature}'; it has {sorted(metadata.signatures)}."
            )
        inputs = _parse_inputs(args.input, metadata.signatures[args.signature])
        outputs = client.predict(
            args.model,
            inputs,
            signature_name=args.signature,
            output_filter=args.output_filter,
            version=args.version,
            version_label=args.label,
        )
    except ServingError as error:
        raise _user_error(error, args) from None
    if args.json:

        def plain(array):
            if array.dtype == object:
                return np.vectorize(lambda b: bytes(b).decode("utf-8", "replace"), otypes=[object])(
                    array
                ).tolist()
            return array.tolist()

        print(json.dumps({name: plain(value) for name, value in sorted(outputs.items())}))
    else:
        for name, value in sorted(outputs.items()):
            _print_array(name, value)
    return 0


def status(args: argparse.Namespace) -> int:
    """`rnnserve status`: one line per version."""
    try:
        versions = _client(args).status(args.model, version=args.version, version_label=args.label)
    except ServingError as error:
        raise _user_error(error, args) from None
    for entry in versions:
        line = f"version {entry.version}: {entry.state}"
        if entry.error_code != "OK":
            line += f" ({entry.error_code}: {entry.error_message})"
        print(line)
    return 0


def metadata(args: argparse.Namespace) -> int:
    """`rnnserve metadata`: each signature's inputs and outputs."""
    try:
        info = _client(args).metadata(args.model, version=args.version, version_label=args.label)
    except ServingError as error:
        raise _user_error(error, args) from None
    print(f"model {info.name} version {info.version}")
    for name in sorted(info.signatures):
        signature = info.signatures[name]
        print(f"signature {name} ({signature.method_name or 'no method'})")
        for kind, tensors in (("input ", signature.inputs), ("output", signature.outputs)):
            for alias, tensor in sorted(tensors.items()):
                shape = (
                    "unknown rank"
                    if tensor.shape is None
                    else "(" + ", ".join("?" if d is None else str(d) for d in tensor.shape) + ")"
                )
                dtype = "string" if tensor.dtype == object else tensor.dtype
                print(f"  {kind} {alias}: {dtype} {shape}")
    return 0


def generate(args: argparse.Namespace) -> int:
    """`rnnserve generate`: stream text through the server's streaming API, else one `generate` call per chunk."""
    from rnnserve.serving.session import Session

    if not args.prompt:
        raise UserError("--prompt must not be empty: generation continues a text.")
    if not 1 <= args.max_new_tokens <= MAX_GENERATE_TOKENS:
        raise UserError(f"--max-new-tokens must be in [1, {MAX_GENERATE_TOKENS}], got {args.max_new_tokens}.")
    if args.temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {args.temperature}.")
    if args.top_k < 0:
        raise UserError(f"--top-k must be >= 0, got {args.top_k}.")
    if args.chunk < 1:
        raise UserError(f"--chunk must be >= 1, got {args.chunk}.")
    if any(not stop for stop in args.stop):
        raise UserError("--stop must not be empty: give the text that ends the generation.")
    try:
        with Session(_client(args), args.model, seed=args.seed, server_state=args.server_state) as session:
            if not session.has_text:
                raise UserError(
                    f"model {args.model} has no encode/decode signatures, so it cannot take a text prompt."
                )
            tokens = session.encode(args.prompt)
            note = unknown_prompt_note(args.prompt, tokens[0], unknown_token_id(session))
            if note:
                print(f"rnnserve generate: note: {note}", file=sys.stderr)
            session.feed(tokens)
            _stream(session, args)
    except ServingError as error:
        raise _user_error(error, args) from None
    except ValueError as error:
        raise UserError(str(error)) from None
    return 0


def unknown_token_id(session) -> int:
    """The model's `[UNK]` id, asked of its `decode` signature: 0, or 1 when id 0 is the padding token.

    The vocabulary is inside the SavedModel, so the client asks the server:
    `[UNK]` decodes to itself, and a vocabulary holds it once, at id 0 or 1
    (docs/savedmodel.md).
    """
    padded_unk_id = contract.UNK_TOKEN_ID + 1
    (text,) = session.decode([[padded_unk_id]])
    return padded_unk_id if text == contract.UNK_TOKEN else contract.UNK_TOKEN_ID


def unknown_prompt_note(prompt: str, tokens, unk_id: int = contract.UNK_TOKEN_ID) -> str | None:
    """What of `prompt` the model's `encode` turned into [UNK] (id `unk_id`), in one sentence (None if nothing).

    Names the distinct characters, in order of appearance, for a
    character-level vocabulary (one token per character); with a word-level
    one the tokens are words, so it counts them.

    Example:

    >>> unknown_prompt_note("café", [3, 1, 6, 0])   # 0 is [UNK]
    "the model's vocabulary has no 'é'; the prompt feeds it as [UNK]."
    """
    tokens = [int(token) for token in tokens]
    count = tokens.count(unk_id)
    if not count:
        return None
    if len(tokens) != len(prompt):
        if count == 1:
            return "1 word of the prompt is not in the model's vocabulary; it is fed as [UNK]."
        return f"{count} words of the prompt are not in the model's vocabulary; they are fed as [UNK]."
    unknown = list(dict.fromkeys(c for c, token in zip(prompt, tokens) if token == unk_id))
    them = "it" if len(unknown) == 1 else "them"
    return f"the model's vocabulary has no {', '.join(map(repr, unknown))}; the prompt feeds {them} as [UNK]."


def _stream(session, args: argparse.Namespace) -> None:
    """Writes the prompt, then the text as it comes; always ends the line.

    The text comes piece by piece from the server's streaming API when it
    offers one (asked once), else a chunk at a time from `generate` calls
    (`--no-stream` forces those); both give the same text for a seed. The
    final newline is written even when a call fails or the user presses
    Ctrl-C (which cancels the stream), so an error message (on stderr)
    starts on a line of its own.
    """
    sys.stdout.write(args.prompt)  # the text continues the prompt, as it will be read
    sys.stdout.flush()
    pieces = session.stream_text(
        args.max_new_tokens,
        args.chunk,
        stop=args.stop,
        streaming=False if args.no_stream else None,
        temperature=args.temperature,
        top_k=args.top_k,
    )
    try:
        with contextlib.closing(pieces):  # leaving early cancels the stream on the server
            for text in pieces:
                sys.stdout.write(text)
                sys.stdout.flush()
    finally:
        sys.stdout.write("\n")
        sys.stdout.flush()
