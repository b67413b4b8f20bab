"""pik/http.py ``split_json_array``: a batch body is cut into the exact text of each element."""

from __future__ import annotations

import json

import pytest

from pik.http import split_json_array


def test_element_texts_are_exact_including_inner_whitespace() -> None:
    text = '[ {"a" : 1,\n  "b": [ 1 , 2 ]} ,\t"x" ,3.50, null ]'
    assert split_json_array(text) == ['{"a" : 1,\n  "b": [ 1 , 2 ]}', '"x"', "3.50", "null"]


def test_elements_are_the_events_of_a_batch_byte_for_byte() -> None:
    events = ['{"source": "demo",  "payload": {"steps": 10}}', '{"source":"demo"}']
    parts = split_json_array("[" + ",".join(events) + "]")
    assert parts == events
    assert [json.loads(p) for p in parts] == [json.loads(e) for e in events]


def test_strings_with_brackets_and_commas_stay_whole() -> None:
    assert split_json_array('["a,]b", "[", [1,[2,"]"]]]') == ['"a,]b"', '"["', '[1,[2,"]"]]']


@pytest.mark.parametrize("text", ["[]", "[ ]", " \n[\t]\n ", "[\r\n]"])
def test_empty_array(text: str) -> None:
    assert split_json_array(text) == []


def test_surrounding_json_whitespace_is_allowed() -> None:
    assert split_json_array("\n [1, 2] \r\n") == ["1", "2"]


@pytest.mark.parametrize("text", ["[1] x", "[1]]", "[1][2]", "[] 0", '[{"a":1}] ,'])
def test_trailing_garbage_is_none(text: str) -> None:
    assert split_json_array(text) is None


@pytest.mark.parametrize(
    "text",
    ['{"a": 1}', '"[1]"', "1", "null", "", "   ", "x[1]"],
)
def test_not_an_array_is_none(text: str) -> None:
    assert split_json_array(text) is None


@pytest.mark.parametrize(
    "text", ["[", "[1", "[1,", "[1,]", "[,1]", "[1 2]", "[1,,2]", '["unterminated]', "[}"]
)
def test_malformed_arrays_are_none(text: str) -> None:
    assert split_json_array(text) is None


def test_pathological_nesting_is_none_not_an_error() -> None:
    assert split_json_array("[" * 10_000) is None
    deep = "[" * 10_000 + "]" * 10_000
    assert split_json_array("[" + deep + "]") in (None, [deep])


@pytest.mark.parametrize("text", ["\x1c[1]", "[1]\u2028", "\xa0[1]\xa0"])
def test_only_json_whitespace_may_surround_the_array(text: str) -> None:
    assert split_json_array(text) is None
