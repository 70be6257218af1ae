"""Routines (abtest.storage.routines): the statement constant and its declared parameters agree."""

from __future__ import annotations

import pytest

from abtest.storage.assignments import ENROLL
from abtest.storage.routines import Routine
from abtest.storage.schema import ROUTINES


def test_an_undeclared_or_unused_placeholder_fails_at_import() -> None:
    with pytest.raises(ValueError, match=r"undeclared: \['b'\]"):
        Routine("r", "SELECT %(a)s, %(b)s", params=(("a", "int"),))
    with pytest.raises(ValueError, match=r"unused: \['b'\]"):
        Routine("r", "SELECT %(a)s", params=(("a", "int"), ("b", "int")))
    with pytest.raises(ValueError, match="declared twice"):
        Routine("r", "SELECT %(a)s", params=(("a", "int"), ("a", "int")))
    with pytest.raises(ValueError, match="identifier"):
        Routine("Bad-Name", "SELECT 1", params=())


def test_the_call_passes_every_parameter_cast_to_its_declared_type_in_order() -> None:
    routine = Routine("r", "SELECT %(b)s + %(a)s AS s, '%%' AS p", params=(("a", "int"), ("b", "bigint")))
    assert routine.call == "SELECT * FROM r(%(a)s::int, %(b)s::bigint)"
    assert routine.body() == "SELECT $2 + $1 AS s, '%' AS p"


def test_the_digest_changes_with_the_statement_the_parameters_and_the_settings() -> None:
    base = Routine("r", "SELECT %(a)s", params=(("a", "int"),))
    assert base.digest == Routine("r", "SELECT %(a)s", params=(("a", "int"),)).digest
    assert base.digest != Routine("r", "SELECT %(a)s + 0", params=(("a", "int"),)).digest
    assert base.digest != Routine("r", "SELECT %(a)s", params=(("a", "bigint"),)).digest
    assert (
        base.digest
        != Routine("r", "SELECT %(a)s", params=(("a", "int"),), settings={"work_mem": "1MB"}).digest
    )


def test_the_enrollment_is_a_routine_the_migration_runner_installs() -> None:
    assert ENROLL in ROUTINES
    assert len({routine.name for routine in ROUTINES}) == len(ROUTINES)
    assert ENROLL.settings == {"plan_cache_mode": "force_generic_plan"}
