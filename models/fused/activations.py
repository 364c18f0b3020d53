"""The activations the fused kernels support, each with its derivative written
as a function of its *output* y = φ(z), so backward needs only what forward
kept:

    tanh     φ'(z) = 1 − y²
    sigmoid  σ'(z) = y (1 − y)
    relu     φ'(z) = [y > 0]
    linear   φ'(z) = 1

Any other activation (hard_sigmoid, a custom callable, …) makes a cell
ineligible for the fused path, and `Recurrent` runs it through the cell.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _linear(z):
    return z


def _tanh_derivative(y):
    return 1.0 - y * y


def _sigmoid_derivative(y):
    return y * (1.0 - y)


def _relu_derivative(y):
    return tf.cast(y > 0.0, y.dtype)


def _linear_derivative(y):
    return tf.ones_like(y)


# Keras activation function → (forward in TF ops, derivative from the output).
ACTIVATIONS = {
    keras.activations.tanh: (tf.tanh, _tanh_derivative),
    keras.activations.sigmoid: (tf.sigmoid, _sigmoid_derivative),
    keras.activations.relu: (tf.nn.relu, _relu_derivative),
    keras.activations.linear: (_linear, _linear_derivative),
}


def supported(activation):
    """Whether `activation` (a Keras activation function) has a fused form."""
    return activation in ACTIVATIONS


def forward_and_derivative(activation):
    """`(φ, φ'∘φ⁻¹)`: the activation and its derivative from its output.

    Example:

    >>> phi, dphi = forward_and_derivative(keras.activations.tanh)
    >>> float(dphi(phi(0.0)))
    1.0
    """
    return ACTIVATIONS[activation]
