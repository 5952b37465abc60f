"""Render a report for people (text) and for papers (LaTeX).

Examples
--------
>>> from algebra.analysis import analyze
>>> report = analyze({"custom": {"parameters": {"x": [2]}, "phi": ["x_0*x_1"]}})
>>> print(render_text(report).splitlines()[0])
model model: 2 parameters, 1 law (certified)
"""

__all__ = ["render_text", "render_latex", "render_whole"]

LAWS_SHOWN = 8


def render_text(report, all_laws=False):
    """Return a short table of blocks followed by the laws in matrix notation.

    Parameters
    ----------
    report : Report
        The analysis.
    all_laws : bool
        Print every law; by default at most `LAWS_SHOWN` per block.
    """
    plural = "law" if report.laws == 1 else "laws"
    lines = [
        f"model {report.model}: {report.parameters} parameters, "
        f"{report.laws} {plural} ({report.status})",
        "",
    ]
    lines.extend(_table(report))
    if report.unblocked:
        names = ", ".join(report.unblocked)
        lines.extend(
            [
                "",
                f"parameters in no block: {names}",
                "(laws involving them are not searched, so the model's count is a "
                "lower end; --global analyses small networks as one block)",
            ]
        )
    for block in report.blocks:
        lines.extend(_block_laws(block, all_laws))
    return "\n".join(lines)


def _table(report):
    header = ("block", "kind", "activation", "D", "lie dim", "laws", "status")
    rows = [header]
    for b in report.blocks:
        low, high = b.bounds
        status = b.status if b.status == "certified" else f"bounds [{low}, {high}]"
        lie = str(b.lie_dim) if b.complete and not b.constraint else "?"
        rows.append(
            (
                b.name,
                b.block.kind,
                b.block.activation,
                str(b.parameters),
                lie,
                str(low),
                status,
            )
        )
    widths = [max(len(r[k]) for r in rows) for k in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _block_laws(block, all_laws):
    lines = ["", f"{block.name}:"]
    note = block.constraint or block.note or (
        block.to_dict(expressions=False)["note"] if block.status != "certified" else ""
    )
    if note:
        lines.append(f"  note: {note}")
    shown = covered = 0
    for text, count in block.compact_entries():
        if not all_laws and shown == LAWS_SHOWN:
            lines.append(f"  ... {block.count - covered} more (use --all-laws)")
            break
        lines.append(f"  {text}")
        shown += 1
        covered += count
    if shown == 0 and block.status == "certified":
        lines.append("  no conservation law")
    elif shown == 0 and block.complete:
        low, high = block.bounds
        lines.append(f"  no law found; between {low} and {high} laws")
    return lines


def render_latex(report):
    """Return the laws as a LaTeX ``align*`` environment, one block at a time."""
    lines = [f"% conservation laws of {report.model}: {report.laws} ({report.status})"]
    for block in report.blocks:
        lines.append(f"% block {block.name} ({block.status}, {block.count} laws)")
        laws = block.compact()
        if not laws:
            continue
        lines.append("\\begin{align*}")
        body = [f"  &{_latex(law)} && \\text{{conserved}}" for law in laws]
        lines.append(" \\\\\n".join(body))
        lines.append("\\end{align*}")
    return "\n".join(lines)


def _latex(text):
    """Translate compact notation to LaTeX."""
    replacements = {
        "‖": "\\|",
        "²": "^2",
        "−": "-",
        "·": "\\cdot ",
        "⟨": "\\langle ",
        "⟩": "\\rangle ",
        "_": "\\_",
        "ᵀ": "^\\top ",
        "≤": "\\le ",
    }
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def render_whole(result):
    """Return the text of the global analysis (``--global``)."""
    if result.block is None:
        return f"\nwhole network as one block: not analysed ({result.unavailable})"
    low, high = result.bounds
    bounds = "" if low == high else f" [{low}, {high}]"
    lines = [
        "",
        f"whole network as one block: {low} laws ({result.status}{bounds}); "
        f"{result.block.note}",
    ]
    if "realized" in result.block.note:
        lines.append(
            "(patterns come from sampled inputs: a pattern no sample reached would "
            "add components to phi, so these laws hold on the sampled patterns)"
        )
    if result.missed:
        lines.append(f"laws the blocks miss ({len(result.missed)}):")
        lines.extend(f"  {law}" for law in result.missed)
    else:
        lines.append("the blocks miss no law")
    return "\n".join(lines)
