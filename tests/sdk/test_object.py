"""``VinrObject``: a dict that also reads by attribute, recursively."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vinr.sdk import VinrObject

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_it_is_the_same_json(data: dict[str, Any]) -> None:
    obj = VinrObject(data)
    assert obj == data
    assert orjson.dumps(obj) == orjson.dumps(data)
    assert pickle.loads(pickle.dumps(obj)) == obj


def test_nested_objects_and_lists_are_wrapped() -> None:
    obj = VinrObject({"lines": {"data": [{"price": {"id": "price_1"}}, 3]}})
    assert obj.lines.data[0].price.id == "price_1"
    assert isinstance(obj.lines.data[0], VinrObject)
    assert obj.lines.data[1] == 3


def test_missing_attributes_raise_attribute_error() -> None:
    obj = VinrObject(id="x")
    assert not hasattr(obj, "nope")
    assert getattr(obj, "nope", "default") == "default"
    with pytest.raises(AttributeError, match="nope"):
        _ = obj.nope


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
