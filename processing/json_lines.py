"""DataFrame rows as JSON lines, from pandas' C JSON writer without its slow line splitter.

`DataFrame.to_json(orient="records", lines=True)` spends about half its time in pandas'
`convert_to_line_delimits`, which walks the finished JSON array byte by byte to find where one
record ends. Here the array is split with one `str.replace` instead: every record starts with
the first column's key, so records are separated by `},{"<first column>":`. That sequence can
never occur inside a value, because a JSON string holds a `"` only as `\\"`.
"""
from __future__ import annotations

import json

import pandas as pd


def json_lines_text(frame: pd.DataFrame) -> str:
    """The rows as newline-terminated JSON lines ("" for no rows), ready to append to a .jsonl file.

    A value holding a dict whose first key is the first column's name would look like a record
    boundary; the line count check turns that into an error rather than a wrong file.
    """
    if frame.empty:
        return ""
    separator = "},{" + json.dumps(str(frame.columns[0]), ensure_ascii=False) + ":"
    array = frame.to_json(orient="records", force_ascii=False)
    text = array[1:-1].replace(separator, "}\n{" + separator[3:]) + "\n"
    lines = text.count("\n")  # the writer escapes newlines inside values
    if lines != len(frame):
        raise RuntimeError(f"JSON lines: {lines} lines for {len(frame)} rows")
    return text


def json_lines(frame: pd.DataFrame) -> list[str]:
    """One JSON object per row (NaN/None -> null, lists as arrays), in row order."""
    return json_lines_text(frame).split("\n")[:-1]
