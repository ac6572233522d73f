"""`env status`'s synclocal line, read without importing synclocal, says what synclocal's
own reading of its node notes says."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mmerep.environments import synclocal_nodes
from mmerep.synclocal import node

datasets = st.dictionaries(st.sampled_from(["olci", "slstr", "era5", "a-b"]),
                           st.fixed_dictionaries({"complete": st.booleans()}), max_size=3)
annotation = st.one_of(st.none(), st.just("not json"), st.just('{"x": 1}'),
                       datasets.map(lambda d: json.dumps({"datasets": d})))


def _node(note: str | None) -> dict[str, Any]:
    return {"metadata": {"name": "n", "annotations": {} if note is None else {
        node.ANNOTATION: note}}}


def test_same_annotation() -> None:
    assert synclocal_nodes.ANNOTATION == node.ANNOTATION


@settings(max_examples=200, deadline=None)
@given(notes=st.lists(annotation, max_size=6))
def test_same_line_for_any_nodes(notes: list[str | None]) -> None:
    nodes = [_node(n) for n in notes]
    assert synclocal_nodes.status_line(nodes) == node.status_line(nodes)
