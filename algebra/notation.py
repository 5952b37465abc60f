"""Compact matrix notation for laws, for people to read.

Sums of squares over a slice of a tensor are written as squared norms of the slice,
sums of products of two slices as inner products:
``‖fc2.weight[:,1]‖² − ‖fc1.weight[1,:]‖² − fc1.bias[1]²``.
Terms that fit no such
pattern are written out one by one.

Examples
--------
>>> from algebra.polynomial import Polynomial
>>> from blocks.block import Block
>>> block = Block("b", "pair", (), (("u", (2,)), ("v", (2, 3))))
>>> law = Polynomial({((0, 2),): 1, ((2, 2),): -1, ((3, 2),): -1, ((4, 2),): -1})
>>> compact_law(law, block)
'u[0]² − ‖v[0,:]‖²'
"""

import math

__all__ = ["compact_law", "slice_notation"]


def compact_law(law, block):
    """Write one law (a polynomial in block variables) in compact notation.

    Parameters
    ----------
    law : Polynomial
        The law, in the block's variables.
    block : Block
        The block, for parameter names and shapes.

    Returns
    -------
    str
    """
    squares, products, others = {}, {}, []
    for mono, c in law.terms.items():
        entries = [(block.entry(v), e) for v, e in mono]
        if len(entries) == 1 and entries[0][1] == 2:
            (name, index), _ = entries[0]
            squares.setdefault((name, c), []).append(index)
        elif len(entries) == 2 and all(e == 1 for _, e in entries):
            (na, ia), (nb, ib) = (entry for entry, _ in entries)
            products.setdefault((na, nb, c), []).append((ia, ib))
        else:
            others.append((_term(entries), c))

    shapes = _full_shapes(block)
    parts = [(_norm(name, idx, shapes[name]), c) for (name, c), idx in squares.items()]
    for (na, nb, c), pairs in products.items():
        parts.extend(_inner(na, nb, pairs, shapes, c))
    parts.extend(others)
    return _join(parts)


def _full_shapes(block):
    return {name: shape for name, shape in block.parameters}


def _norm(name, indices, shape):
    text = slice_notation(name, indices, shape)
    if len(indices) == 1:
        return f"{text}²"
    if text.startswith("["):
        return f"‖({text[1:-1]})‖²"
    return f"‖{text}‖²"


def _inner(na, nb, pairs, shapes, c):
    """Render sum of x[a] y[b] as inner products of slices where possible."""
    lefts = [a for a, _ in pairs]
    rights = [b for _, b in pairs]
    if len(pairs) == 1:
        return [(f"{_entry(na, lefts[0])}·{_entry(nb, rights[0])}", c)]
    left = slice_notation(na, lefts, shapes[na])
    right = slice_notation(nb, rights, shapes[nb])
    # An inner product of two slices pairs their entries in order, one to one.
    aligned = sorted(pairs) == list(zip(sorted(lefts), sorted(rights), strict=True))
    distinct = len(set(lefts)) == len(set(rights)) == len(pairs)
    if left.startswith("[") or right.startswith("[") or not (aligned and distinct):
        return [(f"{_entry(na, a)}·{_entry(nb, b)}", c) for a, b in pairs]
    return [(f"⟨{left}, {right}⟩", c)]


def slice_notation(name, indices, shape):
    """Write a set of indices of a tensor as one slice, if it is one.

    Returns ``name[j,:]`` style text when the indices are a product of single
    values and full ranges, else the bracketed list of entries.
    """
    values = [sorted({index[k] for index in indices}) for k in range(len(shape))]
    if len(set(indices)) != math.prod(len(v) for v in values):
        return "[" + ", ".join(_entry(name, i) for i in indices) + "]"
    axes = []
    for vals, n in zip(values, shape, strict=True):
        if len(vals) == 1:
            axes.append(str(vals[0]))
        elif vals == list(range(n)):
            axes.append(":")
        elif vals == list(range(vals[0], vals[-1] + 1)):
            axes.append(f"{vals[0]}:{vals[-1] + 1}")
        else:
            return "[" + ", ".join(_entry(name, i) for i in indices) + "]"
    if all(a == ":" for a in axes):
        return name
    return f"{name}[{','.join(axes)}]"


def _entry(name, index):
    return f"{name}[{','.join(str(i) for i in index)}]"


def _term(entries):
    return "·".join(
        _entry(name, index) + (f"^{e}" if e > 1 else "") for (name, index), e in entries
    )


def _join(parts):
    text = ""
    for body, c in sorted(parts, key=lambda p: -float(p[1]) if p[1] > 0 else 0):
        sign = "−" if c < 0 else "+"
        magnitude = abs(c)
        coefficient = "" if magnitude == 1 else f"{magnitude}·"
        if not text:
            text = ("−" if c < 0 else "") + coefficient + body
        else:
            text += f" {sign} {coefficient}{body}"
    return text or "0"
