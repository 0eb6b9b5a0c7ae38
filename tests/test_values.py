"""The one test of integers and real numbers: it was written in a dozen places with three
meanings (models.inventory refused numpy's integers that the rest accepted)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hffm_env.values import is_integer, is_real


@pytest.mark.parametrize("value, integer, real", [
    (3, True, True), (np.int64(3), True, True), (np.uint8(3), True, True),
    (True, False, False), (np.bool_(True), False, False), (3.0, False, True),
    (np.float32(0.5), False, True), (float("nan"), False, True), ("3", False, False),
    (None, False, False), ([3], False, False),
])
def test_integers_and_reals(value, integer, real):
    assert (is_integer(value), is_real(value)) == (integer, real)


def test_the_model_helpers_take_numpys_integers_as_the_rest_do():
    from hffm_env.models.inventory import stack_state

    stacked = stack_state({"w": torch.zeros(2)}, np.int64(3))
    assert stacked["w"].shape == (3, 2)
    with pytest.raises(ValueError, match="num_devices = True"):
        stack_state({"w": torch.zeros(2)}, True)
