import json
import math
from pathlib import Path

import numpy as np
import pytest

from hffm_env import jsonio


def _strict(text: str):
    def refuse(word: str) -> None:
        raise AssertionError(f"{word} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_numbers_that_are_not_finite_are_written_as_null():
    value = {"nan": float("nan"), "inf": [1.0, float("inf"), -math.inf], "ok": 0.5,
             "tuple": (1, float("nan")), "numpy": np.float32("nan"), "n": np.int64(3),
             "array": np.array([1.0, np.nan])}
    assert _strict(jsonio.dumps(value)) == {
        "nan": None, "inf": [1.0, None, None], "ok": 0.5, "tuple": [1, None], "numpy": None,
        "n": 3, "array": [1.0, None]}


def test_nulls_read_back_as_nan_and_nothing_else_changes():
    back = jsonio.nulls_to_nan(_strict(jsonio.dumps({"a": [float("nan"), 2.0], "b": "x"})))
    assert math.isnan(back["a"][0]) and back["a"][1] == 2.0 and back["b"] == "x"


def test_what_is_not_json_is_refused_not_written():
    with pytest.raises(TypeError):
        jsonio.dumps({"set": {1, 2}})


def test_the_caller_value_is_not_changed():
    value = {"a": [float("nan")]}
    jsonio.dumps(value)
    assert math.isnan(value["a"][0])


def test_digest_is_of_the_value_not_its_key_order_and_refuses_what_json_cannot_hold():
    first = jsonio.digest({"a": 1, "b": [1, 2]}, length=24)
    assert first == jsonio.digest({"b": [1, 2], "a": 1}, length=24)
    assert len(first) == 24 and jsonio.digest({"a": 1, "b": [1, 2]}, length=16) == first[:16]
    assert first != jsonio.digest({"a": 1, "b": [2, 1]}, length=24)
    assert jsonio.digest({"p": Path("x")}, length=8) == jsonio.digest({"p": "x"}, length=8)
    with pytest.raises(TypeError):
        jsonio.digest({"p": Path("x")}, length=8, default=None)
