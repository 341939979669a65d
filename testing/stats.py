"""Summary figures of measured samples."""


def percentile(values, fraction):
    """The nearest-rank ``fraction`` percentile (0.5: the median) of ``values``; NaN when empty."""
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)] if ordered else float("nan")
