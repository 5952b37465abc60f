"""Sparse index maps of linear and convolutional layers.

A layer with weight W and bias b maps its input (flattened in C order) to its output
(flattened) by ``out[r] = sum W[v] in[c] + b[w]`` over its entries. These helpers list
the entries as integer arrays ``(out_flat, in_flat, var)``, where ``var`` is the flat
index of the weight entry, optionally restricted to some output features and some
input features (the channel axis of a convolution, the last axis of a linear layer).
"""

import functools
import itertools
import math

import numpy as np

__all__ = ["weight_entries", "bias_entries", "channel_of_units"]


def weight_entries(
    attrs,
    out_features=None,
    in_features=None,
    first_row=False,
    out_positions=None,
    in_positions=None,
):
    """Return the entries ``(out_flat, in_flat, var)`` of a layer's weight.

    Parameters
    ----------
    attrs : dict
        The graph node's attributes (``kind``, ``layer``, ``in_shape``,
        ``out_shape``).
    out_features, in_features : sequence of int, optional
        Keep only these output / input features (channels for a convolution, the
        last axis for a linear layer).
    first_row : bool
        For a linear layer on inputs with leading axes (tokens), keep only the
        first token: every token uses the same weight entries.
    out_positions, in_positions : sequence of int, optional
        Keep only entries whose output (input) unit is at one of these positions:
        flat spatial positions of a convolution, tokens of a linear layer.

    Returns
    -------
    tuple of ndarray
        Three int64 arrays of equal length.
    """
    if attrs["kind"] == "linear":
        return _linear_entries(
            attrs, out_features, in_features, first_row, out_positions, in_positions
        )
    return _conv_entries(attrs, out_features, in_features, out_positions, in_positions)


def bias_entries(attrs, out_features=None, first_row=False, out_positions=None):
    """Return ``(out_flat, var)`` for the bias of a layer (see `weight_entries`)."""
    out_shape = attrs["out_shape"]
    if attrs["kind"] == "linear":
        lead = 1 if first_row else math.prod(out_shape[:-1])
        width = out_shape[-1]
        features = np.arange(width) if out_features is None else np.array(out_features)
        t, o = np.meshgrid(np.arange(lead), features, indexing="ij")
        out_flat, var, pos = (t * width + o).ravel(), o.ravel(), t.ravel()
    else:
        positions = math.prod(out_shape[1:])
        features = np.arange(out_shape[0]) if out_features is None else out_features
        o, p = np.meshgrid(np.asarray(features), np.arange(positions), indexing="ij")
        out_flat, var, pos = (o * positions + p).ravel(), o.ravel(), p.ravel()
    if out_positions is not None:
        keep = np.isin(pos, out_positions)
        out_flat, var = out_flat[keep], var[keep]
    return out_flat, var


def channel_of_units(attrs):
    """Return, for each output unit (flat), its feature: the sharing class."""
    out_shape = attrs["out_shape"]
    if attrs["kind"] == "linear":
        return np.tile(np.arange(out_shape[-1]), math.prod(out_shape[:-1]))
    return np.repeat(np.arange(out_shape[0]), math.prod(out_shape[1:]))


def _linear_entries(
    attrs, out_features, in_features, first_row, out_positions=None, in_positions=None
):
    in_shape, out_shape = attrs["in_shape"], attrs["out_shape"]
    tokens = np.arange(1 if first_row else math.prod(in_shape[:-1]))
    for chosen in (out_positions, in_positions):
        if chosen is not None:
            tokens = tokens[np.isin(tokens, chosen)]
    n_in, n_out = in_shape[-1], out_shape[-1]
    outs = np.arange(n_out) if out_features is None else np.asarray(out_features)
    ins = np.arange(n_in) if in_features is None else np.asarray(in_features)
    t, o, i = np.meshgrid(tokens, outs, ins, indexing="ij")
    return (t * n_out + o).ravel(), (t * n_in + i).ravel(), (o * n_in + i).ravel()


def _conv_entries(
    attrs, out_features, in_features, out_positions=None, in_positions=None
):
    layer, in_shape, out_shape = attrs["layer"], attrs["in_shape"], attrs["out_shape"]
    kernel, stride = layer.option("kernel"), layer.option("stride")
    padding = layer.option("padding")
    c_in, c_out = in_shape[0], out_shape[0]
    outs = np.arange(c_out) if out_features is None else np.asarray(out_features)
    ins = np.arange(c_in) if in_features is None else np.asarray(in_features)

    pos, off, src = _conv_triples(
        tuple(in_shape[1:]),
        tuple(out_shape[1:]),
        tuple(kernel),
        tuple(stride),
        tuple(padding),
    )
    n_out_pos, n_in_pos = math.prod(out_shape[1:]), math.prod(in_shape[1:])
    k_size = math.prod(kernel)
    triples = np.ones(len(pos), dtype=bool)
    if out_positions is not None:
        triples &= np.isin(pos, out_positions)
    if in_positions is not None:
        triples &= np.isin(src, in_positions)
    o, i, j = np.meshgrid(outs, ins, np.flatnonzero(triples), indexing="ij")
    out_flat = o * n_out_pos + pos[j]
    in_flat = i * n_in_pos + src[j]
    var = (o * c_in + i) * k_size + off[j]
    return out_flat.ravel(), in_flat.ravel(), var.ravel()


@functools.lru_cache(maxsize=64)
def _conv_triples(in_sizes, out_sizes, kernel, stride, padding):
    """List the valid (output position, kernel offset, input position) triples."""
    triples = []
    for pos in itertools.product(*(range(n) for n in out_sizes)):
        for off in itertools.product(*(range(k) for k in kernel)):
            src = [
                p * s + k - pad
                for p, s, k, pad in zip(pos, stride, off, padding, strict=True)
            ]
            if all(0 <= x < n for x, n in zip(src, in_sizes, strict=True)):
                triples.append(
                    (
                        np.ravel_multi_index(pos, out_sizes),
                        np.ravel_multi_index(off, kernel),
                        np.ravel_multi_index(src, in_sizes),
                    )
                )
    if not triples:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return tuple(np.array(col) for col in zip(*triples, strict=True))
