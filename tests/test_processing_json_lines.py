"""JSON lines from pandas' writer, split by the first column's key instead of pandas' byte walker."""
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processing.json_lines import json_lines, json_lines_text

TRICKY = ['},{"feedback_id":"x"}', 'quote " and \\ backslash', "new\nline", "\u2028 separator", "", "ünïcödé 😀"]


def _pandas_lines(frame: pd.DataFrame) -> str:
    text = frame.to_json(orient="records", lines=True, force_ascii=False)
    return text if text.endswith("\n") else text + "\n"


def test_same_text_as_pandas_lines_writer_for_values_that_look_like_boundaries():
    frame = pd.DataFrame({
        "feedback_id": [f"f{i}" for i in range(len(TRICKY))],
        "text": TRICKY,
        "star_rating": pd.array([1, None, 3, 4, None, 5], dtype="Int64"),
        "score": [0.5, np.nan, 1e-9, 2.0, 3.25, -1.0],
        "aspects": [["sizing_fit"], [], ["a", "b"], ["x"], [], ["packaging"]],
    })
    assert json_lines_text(frame) == _pandas_lines(frame)
    assert [json.loads(line)["text"] for line in json_lines(frame)] == TRICKY


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.sampled_from(list('ab},{":\\\n\u2028é') + ['"feedback_id":']), max_size=12).map("".join),
                min_size=1, max_size=8))
def test_any_text_values_round_trip_one_line_per_row(texts):
    frame = pd.DataFrame({"feedback_id": [f"id{i}" for i in range(len(texts))], "text": texts})
    lines = json_lines(frame)
    assert [json.loads(line) for line in lines] == frame.to_dict("records")
    assert json_lines_text(frame) == _pandas_lines(frame)


def test_empty_frame_gives_no_lines():
    assert json_lines_text(pd.DataFrame({"feedback_id": []})) == ""
    assert json_lines(pd.DataFrame({"feedback_id": []})) == []


def test_a_nested_record_that_mimics_a_boundary_is_an_error_not_a_wrong_file():
    frame = pd.DataFrame({"feedback_id": ["a"], "nested": [[{"x": 1}, {"feedback_id": 2}]]})
    with pytest.raises(RuntimeError, match="2 lines for 1 rows"):
        json_lines_text(frame)
