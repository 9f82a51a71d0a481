"""``VinrObject``: a dict of the API's keys that also reads by snake_case attribute."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vinr_sdk import VinrObject

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_it_is_the_same_json(data: dict[str, Any]) -> None:
    obj = VinrObject(data)
    assert obj == data
    assert json.dumps(obj) == json.dumps(data)
    assert pickle.loads(pickle.dumps(obj)) == obj


def test_nested_objects_and_lists_are_wrapped() -> None:
    obj = VinrObject({"lines": {"data": [{"price": {"id": "price_1"}}, 3]}})
    assert obj.lines.data[0].price.id == "price_1"
    assert isinstance(obj.lines.data[0], VinrObject)
    assert obj.lines.data[1] == 3


def test_attributes_are_snake_case_and_keys_stay_the_apis() -> None:
    obj = VinrObject(
        {
            "totalUsage": 18420,
            "currentPeriodEnd": 1766592000,
            "id": "sis_1",
            "lines": {"hasMore": False, "data": [{"unitAmountDecimal": "0.2"}]},
        }
    )
    assert obj.total_usage == 18420 and obj.current_period_end == 1766592000
    assert obj.lines.has_more is False and obj.lines.data[0].unit_amount_decimal == "0.2"
    assert obj["totalUsage"] == 18420 and obj.id == "sis_1"
    assert obj.totalUsage == 18420  # a key's own spelling reads too
    assert {"total_usage", "current_period_end", "lines", "id"} <= set(dir(obj))


def test_an_exactly_named_key_wins_so_metadata_reads_as_given() -> None:
    obj = VinrObject({"metadata": {"plan_tier": "gold", "planTier": "other", "teamId": "t1"}})
    assert obj.metadata.plan_tier == "gold"
    assert obj.metadata.team_id == "t1"


def test_setting_a_snake_case_attribute_sets_the_apis_key() -> None:
    obj = VinrObject({"cancelAtPeriodEnd": False})
    obj.cancel_at_period_end = True
    obj.canceled_at = 5
    assert obj == {"cancelAtPeriodEnd": True, "canceledAt": 5}
    del obj.canceled_at
    assert obj == {"cancelAtPeriodEnd": True}


def test_missing_attributes_raise_attribute_error() -> None:
    obj = VinrObject(id="x")
    assert not hasattr(obj, "nope")
    assert getattr(obj, "nope", "default") == "default"
    with pytest.raises(AttributeError, match="nope"):
        _ = obj.nope
    with pytest.raises(AttributeError, match="total_usage"):
        _ = obj.total_usage


def test_setting_and_deleting_attributes_edits_keys() -> None:
    obj = VinrObject()
    obj.metadata = {"a": 1}
    assert obj["metadata"].a == 1
    del obj.metadata
    assert obj == {}
    with pytest.raises(AttributeError):
        del obj.metadata


def test_dict_method_names_need_subscripts() -> None:
    sub = VinrObject({"items": {"data": [{"id": "si_1"}]}})
    assert sub["items"].data[0].id == "si_1"
    assert list(sub.items()) == [("items", sub["items"])]


def test_copies_stay_vinr_objects() -> None:
    obj = VinrObject({"a": {"b": 1}})
    deep = copy.deepcopy(obj)
    assert deep == obj and isinstance(deep, VinrObject) and deep.a.b == 1
    assert repr(obj) == "VinrObject({'a': VinrObject({'b': 1})})"
