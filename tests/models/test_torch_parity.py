"""`Recurrent` + `load_torch_weights` reproduce torch's nn.RNN/LSTM/GRU, and
`torch_state_dict` loads back into torch with the same outputs."""

import sys

import numpy as np
import pytest
import torch

from rnnserve.models import Recurrent
from rnnserve.models.convert import load_torch_weights, torch_state_dict

TOL = 1e-5
INPUT, HIDDEN, BATCH, STEPS = 5, 7, 3, 6

# (our cell, cell kwargs, torch class, torch kwargs)
MODES = {
    "rnn_tanh": ("rnn", {}, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": ("rnn", {"activation": "relu"}, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": ("lstm", {}, torch.nn.LSTM, {}),
    "gru": ("gru", {}, torch.nn.GRU, {}),
}


def _pair(mode, num_layers, bidirectional, batch_first=True):
    cell, cell_kwargs, torch_class, torch_kwargs = MODES[mode]
    torch.manual_seed(num_layers * 10 + bidirectional)
    module = torch_class(
        INPUT,
        HIDDEN,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        **torch_kwargs,
    )
    layer = Recurrent(
        cell,
        HIDDEN,
        num_layers=num_layers,
        bidirectional=bidirectional,
        time_major=not batch_first,
        **cell_kwargs,
    )
    return module, layer


def _as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def _assert_close(ours, theirs):
    np.testing.assert_allclose(np.asarray(ours), theirs.detach().numpy(), atol=TOL, rtol=0)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_outputs_and_final_states_equal_torch(
    mode, num_layers, bidirectional, batch_first, with_initial_state, rng
):
    module, layer = _pair(mode, num_layers, bidirectional, batch_first)
    load_torch_weights(layer, module)
    x = rng.standard_normal((BATCH, STEPS, INPUT) if batch_first else (STEPS, BATCH, INPUT)).astype("float32")
    states = None
    if with_initial_state:
        shape = (num_layers * (2 if bidirectional else 1), BATCH, HIDDEN)
        states = tuple(rng.standard_normal(shape).astype("float32") for _ in layer.state_names)
    with torch.no_grad():
        torch_states = None if states is None else tuple(torch.from_numpy(s) for s in states)
        if torch_states is not None and len(torch_states) == 1:
            torch_states = torch_states[0]
        expected_out, expected_state = module(torch.from_numpy(x), torch_states)
    initial = None if states is None else (states if len(states) > 1 else states[0])
    outputs, final_state = layer(x, initial_state=initial)
    _assert_close(outputs, expected_out)
    for ours, theirs in zip(_as_tuple(final_state), _as_tuple(expected_state), strict=True):
        assert tuple(ours.shape) == tuple(theirs.shape)
        _assert_close(ours, theirs)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_state_dict_loads_back_into_torch(mode, bidirectional, rng):
    """Our randomly initialised weights, exported, drive torch to our outputs."""
    module, layer = _pair(mode, 2, bidirectional)
    x = rng.standard_normal((BATCH, STEPS, INPUT)).astype("float32")
    outputs, final_state = layer(x)
    module.load_state_dict(torch_state_dict(layer))  # strict: every key, every shape
    with torch.no_grad():
        expected_out, expected_state = module(torch.from_numpy(x))
    _assert_close(outputs, expected_out)
    for ours, theirs in zip(_as_tuple(final_state), _as_tuple(expected_state), strict=True):
        _assert_close(ours, theirs)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_loading_a_state_dict_of_numpy_arrays_equals_loading_the_module(mode, rng):
    module, from_module = _pair(mode, 2, True)
    _, from_arrays = _pair(mode, 2, True)
    load_torch_weights(from_module, module)
    load_torch_weights(from_arrays, {k: v.numpy() for k, v in module.state_dict().items()})
    for a, b in zip(from_module.weights, from_arrays.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_masked_right_padded_batch_equals_torch_packed_sequence(mode, bidirectional, rng):
    """Masks give torch's packed-sequence semantics: padded outputs are zero
    and each direction's final state is taken at the sequence's real end."""
    module, layer = _pair(mode, 2, bidirectional)
    load_torch_weights(layer, module)
    lengths = np.array([STEPS, 4, 2])
    x = rng.standard_normal((BATCH, STEPS, INPUT)).astype("float32")
    mask = np.arange(STEPS)[None, :] < lengths[:, None]
    x[~mask] = 0.0
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True
    )
    with torch.no_grad():
        packed_out, expected_state = module(packed)
    expected_out, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_out, batch_first=True, total_length=STEPS)
    outputs, final_state = layer(x, mask=mask)
    _assert_close(outputs, expected_out)
    for ours, theirs in zip(_as_tuple(final_state), _as_tuple(expected_state), strict=True):
        _assert_close(ours, theirs)


def test_parameter_counts_follow_the_seed_arithmetic():
    """torch counts b_ih and b_hh; ours keeps their sum (one bias) for the
    Elman RNN and LSTM, and both for the reset-after GRU."""

    def torch_count(module):
        return sum(p.numel() for p in module.parameters())

    def our_count(cell, **kwargs):
        layer = Recurrent(cell, 20, **kwargs)
        layer.build((None, None, 10))
        return layer.count_params()

    assert torch_count(torch.nn.RNN(10, 20)) == 640 == 20 * 10 + 20 * 20 + 20 + 20
    assert our_count("rnn") == 620 == 640 - 20
    assert our_count("lstm") == torch_count(torch.nn.LSTM(10, 20)) - 4 * 20
    assert our_count("gru") == torch_count(torch.nn.GRU(10, 20))
    assert our_count("lstm", num_layers=2, bidirectional=True) == (
        torch_count(torch.nn.LSTM(10, 20, num_layers=2, bidirectional=True)) - 4 * 20 * 4
    )


def _lstm_state_dict():
    return {k: v.clone() for k, v in torch.nn.LSTM(INPUT, HIDDEN).state_dict().items()}


def test_missing_key_is_named():
    state = _lstm_state_dict()
    del state["bias_hh_l0"]
    with pytest.raises(ValueError, match="missing key 'bias_hh_l0'"):
        load_torch_weights(Recurrent("lstm", HIDDEN), state)


def test_unexpected_key_is_named():
    state = _lstm_state_dict()
    state["weight_hr_l0"] = torch.zeros(HIDDEN, HIDDEN)
    with pytest.raises(ValueError, match="unexpected key 'weight_hr_l0'"):
        load_torch_weights(Recurrent("lstm", HIDDEN), state)


def test_wrong_shape_is_named_with_both_shapes():
    state = _lstm_state_dict()
    state["weight_hh_l0"] = torch.zeros(4 * HIDDEN, HIDDEN + 1)
    with pytest.raises(ValueError, match=r"'weight_hh_l0' has shape \(28, 8\), expected \(28, 7\)"):
        load_torch_weights(Recurrent("lstm", HIDDEN), state)


def test_nothing_is_assigned_when_a_check_fails(rng):
    layer = Recurrent("lstm", HIDDEN)
    layer.build((None, None, INPUT))
    before = [w.numpy().copy() for w in layer.weights]
    state = _lstm_state_dict()
    state["bias_ih_l0"] = torch.zeros(3)
    with pytest.raises(ValueError):
        load_torch_weights(layer, state)
    for old, weight in zip(before, layer.weights, strict=True):
        np.testing.assert_array_equal(old, weight.numpy())


@pytest.mark.parametrize(
    "layer, module, message",
    [
        (
            lambda: Recurrent("lstm", HIDDEN, num_layers=2),
            lambda: torch.nn.LSTM(INPUT, HIDDEN),
            "num_layers=1",
        ),
        (lambda: Recurrent("gru", HIDDEN), lambda: torch.nn.LSTM(INPUT, HIDDEN), "mode 'LSTM'"),
        (
            lambda: Recurrent("rnn", HIDDEN),
            lambda: torch.nn.RNN(INPUT, HIDDEN, nonlinearity="relu"),
            "nonlinearity='relu'",
        ),
        (lambda: Recurrent("lstm", HIDDEN), lambda: torch.nn.LSTM(INPUT, HIDDEN, proj_size=3), "proj_size=3"),
        (
            lambda: Recurrent("peephole_lstm", HIDDEN),
            lambda: torch.nn.LSTM(INPUT, HIDDEN),
            "no PyTorch counterpart",
        ),
        (
            lambda: Recurrent("coupled_lstm", HIDDEN),
            lambda: torch.nn.LSTM(INPUT, HIDDEN),
            "no PyTorch counterpart",
        ),
        (
            lambda: Recurrent("gru", HIDDEN, reset_after=False),
            lambda: torch.nn.GRU(INPUT, HIDDEN),
            "reset_after=True",
        ),
    ],
)
def test_incompatible_modules_are_refused_with_the_reason(layer, module, message):
    with pytest.raises(ValueError, match=message):
        load_torch_weights(layer(), module())


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_one_step_of_inference_equals_torch(mode, bidirectional, rng):
    """A single time step in inference (each token of `generate`) calls the
    cells directly, without a time loop; it is still torch's function."""
    module, layer = _pair(mode, 2, bidirectional)
    load_torch_weights(layer, module)
    x = rng.standard_normal((BATCH, 1, INPUT)).astype("float32")
    shape = (2 * (2 if bidirectional else 1), BATCH, HIDDEN)
    states = tuple(rng.standard_normal(shape).astype("float32") for _ in layer.state_names)
    with torch.no_grad():
        torch_states = tuple(torch.from_numpy(s) for s in states)
        expected_out, expected_state = module(
            torch.from_numpy(x), torch_states if len(states) > 1 else torch_states[0]
        )
    outputs, final_state = layer(x, initial_state=states if len(states) > 1 else states[0], training=False)
    _assert_close(outputs, expected_out)
    for ours, theirs in zip(_as_tuple(final_state), _as_tuple(expected_state), strict=True):
        _assert_close(ours, theirs)


def test_without_torch_numpy_state_dicts_still_load_and_export_says_how_to_install(monkeypatch, rng):
    arrays = {k: v.numpy() for k, v in torch.nn.GRU(INPUT, HIDDEN).state_dict().items()}
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    layer = Recurrent("gru", HIDDEN)
    load_torch_weights(layer, arrays)
    with pytest.raises(
        ImportError,
        match=r"torch_state_dict needs PyTorch; install it with `pip install 'rnnserve\[torch\]'`",
    ):
        torch_state_dict(layer)
