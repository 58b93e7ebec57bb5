"""Values as spreadsheet cells: the one rule for every CSV DevMetrics writes (the metrics
API's exports, Studio's), so text never runs as a formula when the file is opened."""

from __future__ import annotations

import math

# A cell starting with one of these is run as a formula by spreadsheets (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ""
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        value = ";".join(cell(v) for v in value)
    text = str(value)
    # Text from GitHub (logins, titles, repository names) is data, never a formula.
    return "'" + text if text.startswith(FORMULA_START) else text
