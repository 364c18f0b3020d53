"""The SavedModel contract's names, in one place (docs/savedmodel.md).

`rnnserve.training.export` writes SavedModels with these signature, input
and output names, `assets.extra` files and metadata keys; `rnnserve.serving`
(server, clients, `Session`) reads them. This module imports nothing, so
both sides, and a client-only install, can use it.

Example:

>>> from rnnserve import contract
>>> contract.GENERATE, contract.STATE, contract.METADATA_FILE
('generate', 'state', 'assets.extra/rnnserve.json')
"""

# Signatures of a language-model export.
SERVING_DEFAULT = "serving_default"  # tokens (B, T) -> logits (B, T, V)
STEP = "step"  # tokens, state -> logits, state
GENERATE = "generate"  # tokens, state, max_new_tokens, temperature, top_k, seed -> tokens, state
GENERATE_TEXT = "generate_text"  # prompt, max_new_tokens, temperature, top_k, seed -> text
ENCODE = "encode"  # text -> tokens, lengths
DECODE = "decode"  # tokens -> text
LANGUAGE_MODEL_SIGNATURES = (SERVING_DEFAULT, STEP, GENERATE, GENERATE_TEXT, ENCODE, DECODE)

# Text signatures of task exports trained on a vocabulary (beside their serving_default).
TRANSLATE_TEXT = "translate_text"  # seq2seq: text -> text
CLASSIFY_TEXT = "classify_text"  # classify: text -> label, probabilities

# Input and output names.
TOKENS = "tokens"  # int32 (B, T) or (B, N)
STATE = "state"  # float32 (B, S): the whole stack's recurrent state, packed
LOGITS = "logits"  # float32 (B, T, V)
MAX_NEW_TOKENS = "max_new_tokens"  # int32 ()
TEMPERATURE = "temperature"  # float32 (); 0 = greedy
TOP_K = "top_k"  # int32 (); 0 = no truncation
SEED = "seed"  # int64 ()
PROMPT = "prompt"  # string (B,)
TEXT = "text"  # string (B,)
LENGTHS = "lengths"  # int32 (B,): tokens per row of `encode`
# `[UNK]`, what `encode` gives an unknown character or word, is id 0, or id 1
# when id 0 is the padding token "" (TextVectorization's layout); rnnserve.json
# says which (`unk_id`, `padding_id`), and `decode` of that id gives UNK_TOKEN.
UNK_TOKEN = "[UNK]"
UNK_TOKEN_ID = 0  # `[UNK]`'s id in the vocabularies rnnserve builds
LABEL = "label"  # string (B,): the predicted class of `classify_text`
PROBABILITIES = "probabilities"  # float32 (B, C): softmax of a classifier's logits

# Files in a version directory's assets.extra/ (paths relative to the version).
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = f"{ASSETS_EXTRA}/tf_serving_warmup_requests"  # TF Serving's name and format
METADATA_FILE = f"{ASSETS_EXTRA}/rnnserve.json"

# Keys of rnnserve.json.
FORMAT = "format"
TASK = "task"
VOCAB_SIZE = "vocab_size"
VOCAB_LEVEL = "vocab_level"
UNK_ID = "unk_id"
PADDING_ID = "padding_id"  # 0, or null when the vocabulary has no padding token
STATE_SIZE = "state_size"
STATE_LAYOUT = "state_layout"
MAX_NEW_TOKENS_LIMIT = "max_new_tokens_limit"

# Server-side sequences on `step` / `generate` (an extra of the embedded
# server, OpenVINO Model Server's request inputs; docs/serving.md).
SEQUENCE_ID = "sequence_id"  # uint64 (1,): which sequence; 0 at start = let the server pick one
SEQUENCE_CONTROL_INPUT = "sequence_control_input"  # uint32 (1,): one of the controls below
SEQUENCE_CONTINUE = 0  # no control: continue the sequence
SEQUENCE_START = 1  # start a sequence (zeros, or the request's `state` to resume a snapshot)
SEQUENCE_END = 2  # the sequence's last request
SEQUENCE_FORK = 3  # a new sequence from a copy of this one's state (ours, beyond OVMS)
SEQUENCE_SIGNATURES = (STEP, GENERATE)
