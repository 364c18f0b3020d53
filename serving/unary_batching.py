"""`--enable_batching` for language models: one-token `generate` calls decoded together.

Concurrent one-token `generate` calls (a client that drives its sequences
one token per call, with server-side or client-held state) are merged into
the decoder's shared steps (`serving.decode_lanes`), so they cost one
batched `step` call, not one each; every other call goes to the `Batcher`
as before. Each answer is the one the call gets alone: its token is drawn
with the seed pair (seed, 0), exactly as `generate` draws it.

Example:

```python
batcher = UnaryBatcher(Batcher(parameters, metrics), decoder)
batcher.run(servable, "generate", arrays, ["state", "tokens"])["tokens"].shape
# (1, 1)
```
"""

from __future__ import annotations

import numpy as np

from rnnserve import contract
from rnnserve.serving.errors import ServingError

# (temperature, top_k, seed) of the calls that check a version's `generate` against the rule.
PROBES = (
    (0.0, 0, 0),
    (1.0, 0, 1),
    (2.0, 0, 2),
    (1.0, 3, 3),
    (1.5, 5, 4),
    (0.7, 2, 5),
    (1.0, 4, 6),
    (3.0, 6, 7),
)


class UnaryBatcher:
    """`--enable_batching` for language models: one-token `generate` calls through the decoder.

    A `generate` call of one row with max_new_tokens 1 and valid inputs is
    decoded in the version's lane, with the other rows there, when the
    version's `generate` draws as the contract's rule does
    (`draws_as_generate`); anything else (and anything the
    signature itself should reject, so that it answers its own error) goes
    to the `Batcher`.

    Args:
        batcher: the server's (or the version's own) `Batcher`.
        decoder: the server's `Decoder`.
    """

    def __init__(self, batcher, decoder):
        self.batcher, self.decoder = batcher, decoder

    def run(self, servable, signature_name: str, arrays: dict, aliases, timeout_ms: int = 0) -> dict:
        """As `Batcher.run`: one checked call, batched with others; alias -> array."""
        row = self._one_token(servable, signature_name, arrays, aliases)
        if row is None:
            return self.batcher.run(servable, signature_name, arrays, aliases, timeout_ms)
        batching = (self.batcher.max_batch_size, self.batcher.timeout)
        tokens, state = self.decoder.generate_one(servable, *row, batching=batching, timeout_ms=timeout_ms)
        outputs = {contract.TOKENS: tokens, contract.STATE: state}
        return {alias: outputs[alias] for alias in aliases}

    def _one_token(self, servable, signature_name: str, arrays: dict, aliases):
        """(tokens, state, temperature, top_k, seed) of a call the decoder can take, else None."""
        wanted = {
            contract.TOKENS: np.int32,
            contract.STATE: np.float32,
            contract.MAX_NEW_TOKENS: np.int32,
            contract.TEMPERATURE: np.float32,
            contract.TOP_K: np.int32,
            contract.SEED: np.int64,
        }
        if signature_name != contract.GENERATE or set(arrays) != set(wanted):
            return None
        if not set(aliases) <= {contract.TOKENS, contract.STATE}:
            return None
        if any(arrays[name].dtype != dtype for name, dtype in wanted.items()):
            return None
        scalars = [arrays[name] for name in list(wanted)[2:]]
        if any(value.shape not in ((), (1,)) for value in scalars):
            return None
        try:
            facts = self.decoder.facts(servable)
        except ServingError:
            return None
        if not draws_as_generate(self.decoder, servable):
            return None
        max_new_tokens, temperature, top_k, seed = (value.reshape(()).item() for value in scalars)
        tokens, state = arrays[contract.TOKENS], arrays[contract.STATE]
        if (
            max_new_tokens != 1
            or tokens.ndim != 2
            or tokens.shape[0] != 1
            or tokens.shape[1] < 1
            or tokens.min() < 0
            or tokens.max() >= facts.vocab_size
            or state.shape != (1, facts.state_size)
            or not (np.isfinite(temperature) and temperature >= 0)
            or not 0 <= top_k <= facts.vocab_size
        ):
            return None
        return tokens, state, temperature, top_k, seed


def draws_as_generate(decoder, servable) -> bool:
    """Whether the version's own `generate` draws as the contract says (checked once, with probes).

    One-token `generate` calls are decoded here only then, so that a
    call answers what the version's `generate` answers even for an
    export with a sampling rule of its own.
    """
    facts = decoder.facts(servable)
    if facts.draws_as_generate is None:
        facts.draws_as_generate = _probe(decoder, servable, facts)
    return facts.draws_as_generate


def _probe(decoder, servable, facts) -> bool:
    if contract.GENERATE not in servable.signatures:
        return False
    token = np.array([[min(1, facts.vocab_size - 1)]], np.int32)
    zeros = np.zeros((1, facts.state_size), np.float32)
    try:
        ours = servable.run(
            contract.STEP,
            {contract.TOKENS: token, contract.STATE: zeros},
            [contract.LOGITS, contract.STATE],
        )
        rows = len(PROBES)
        picked = decoder.sampler(facts.masked_ids)(
            np.repeat(ours[contract.LOGITS][:, -1], rows, axis=0),  # (P, V)
            np.array([probe[0] for probe in PROBES], np.float32),
            np.array([min(probe[1], facts.vocab_size) for probe in PROBES], np.int32),
            np.array([probe[2] for probe in PROBES], np.int64),
            np.zeros(rows, np.int32),
        )
        for (temperature, top_k, seed), expected in zip(PROBES, picked.tolist()):
            inputs = {
                contract.TOKENS: token,
                contract.STATE: zeros,
                contract.MAX_NEW_TOKENS: np.array(1, np.int32),
                contract.TEMPERATURE: np.array(temperature, np.float32),
                contract.TOP_K: np.array(min(top_k, facts.vocab_size), np.int32),
                contract.SEED: np.array(seed, np.int64),
            }
            theirs = servable.run(contract.GENERATE, inputs, [contract.TOKENS, contract.STATE])
            if theirs[contract.TOKENS].tolist() != [[expected]]:
                return False
            if not np.allclose(theirs[contract.STATE], ours[contract.STATE], atol=1e-5):
                return False
    except (ServingError, KeyError, ValueError):
        return False
    return True
