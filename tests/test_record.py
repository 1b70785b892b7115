"""ospp.core.record.Record behaves as the frozen dataclasses it stands in for."""

from __future__ import annotations

import pytest

from ospp.core.record import Record


class Point(Record):
    x: int
    y: int
    label: str = ""

    @property
    def total(self) -> int:
        return self.x + self.y


class Other(Record):
    x: int
    y: int
    label: str = ""


def test_construction_positional_keyword_and_defaults() -> None:
    assert Point(1, 2).label == ""
    assert Point(1, y=2, label="a") == Point(1, 2, "a") == Point(label="a", y=2, x=1)
    assert Point(1, 2).total == 3


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1,), {}), ((1, 2, "a", 4), {}), ((1, 2), {"x": 1}), ((1, 2), {"z": 0})],
)
def test_wrong_arguments_are_refused(args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        Point(*args, **kwargs)  # type: ignore[arg-type]


def test_frozen() -> None:
    p = Point(1, 2)
    with pytest.raises(AttributeError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.x
    assert p.x == 1


def test_equality_and_hash_by_value_within_one_class() -> None:
    assert Point(1, 2) == Point(1, 2) and hash(Point(1, 2)) == hash(Point(1, 2))
    assert Point(1, 2) != Point(2, 1)
    assert Point(1, 2) != Other(1, 2)  # as dataclasses: another class is never equal
    assert len({Point(1, 2), Point(1, 2), Point(1, 3)}) == 2


def test_repr_and_replace() -> None:
    p = Point(1, 2, "a")
    assert repr(p) == "Point(x=1, y=2, label='a')"
    assert repr(Point(label="a", y=2, x=1)) == repr(p)  # fields in declaration order
    assert p._replace(y=5) == Point(1, 5, "a") and p == Point(1, 2, "a")


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError):

        class Bad(Record):
            a: int = 0
            b: int  # type: ignore[misc]  # mypy refuses it too
