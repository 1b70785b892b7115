"""Reminders and notices: what the user is told on a simulated day (ospp service --notify)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ospp.core.catalog import Channel, catalog
from ospp.machine import reminders
from ospp.machine.status import evaluate
from ospp.machine.store import Licence
from tests.conftest import GVLK_2021, PRODUCT, Ospp

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _at(days: float) -> str:
    return (T0 + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kms_client(activation: dict[str, str] | None) -> Licence:
    product = catalog().product(PRODUCT)
    assert product is not None
    return Licence(product.sku(Channel.KMS_CLIENT), T0, T0, GVLK_2021, T0, activation)


def test_the_notice_follows_the_grace_period_of_a_kms_client_that_never_activated() -> None:
    lic = _kms_client(None)
    kinds = {d: reminders.notice(evaluate(lic, T0 + timedelta(days=d))) for d in (1, 24, 25, 31)}
    assert kinds[1] is not None and kinds[1].kind == reminders.PENDING
    assert kinds[1].days_left == 29
    assert kinds[24] is not None and kinds[24].kind == reminders.PENDING
    assert kinds[25] is not None and kinds[25].kind == reminders.KMS_NOTIFY
    assert kinds[25].days_left == 5
    assert kinds[31] is not None and kinds[31].kind == reminders.NOT_LICENSED


def test_180_days_without_a_kms_host_is_not_licensed_but_activated_before_is_quiet() -> None:
    activated = {
        "kind": "kms",
        "activated_at": _at(0),
        "valid_until": (T0 + timedelta(days=180)).isoformat(),
    }
    lic = _kms_client(activated)
    assert reminders.notice(evaluate(lic, T0 + timedelta(days=179))) is None
    lapsed = reminders.notice(evaluate(lic, T0 + timedelta(days=181)))
    assert lapsed is not None and lapsed.kind == reminders.NOT_LICENSED


def test_swedish_reminders_reach_a_terminal_that_claims_ascii(ospp: Ospp) -> None:
    """A locale that says ASCII (PYTHONIOENCODING=ascii, LANG=C): the reminders are written
    in UTF-8 as click writes everything else, never an internal error."""
    ospp("install-product", PRODUCT, env={"OSPP_NOW": _at(0)})
    for args in (("service", "--notify", "--lang", "sv"), ("service", "--lang", "sv")):
        ran = ospp.proc(*args, env={"OSPP_NOW": _at(26), "PYTHONIOENCODING": "ascii"})
        assert ran.code != 70 and "internal error" not in ran.err, (args, ran.err)
        assert "nyckelhanteringstjänsten (KMS): 4 dagar kvar" in ran.out, (args, ran.out)


def test_service_notify_prints_what_the_user_is_told_in_either_language(ospp: Ospp) -> None:
    ospp("install-product", PRODUCT, env={"OSPP_NOW": _at(0)})
    day2 = ospp("service", "--notify", env={"OSPP_NOW": _at(2)})
    assert day2.code == 0
    assert "not activated yet" in day2.out and "(28 days of grace left)" in day2.out
    day26 = ospp("service", "--notify", "--lang", "sv", env={"OSPP_NOW": _at(26)})
    assert "nyckelhanteringstjänsten (KMS): 4 dagar kvar" in day26.out
    day40 = ospp("service", "--notify", "--json", env={"OSPP_NOW": _at(40)}).data()
    assert [r["kind"] for r in day40["reminders"]] == ["not-licensed"]
    words = ospp("service", "--notify", env={"OSPP_NOW": _at(40)}).out
    assert "Unlicensed product" in words and "all features are still available" in words
    # --notify only tells: no activation was attempted
    assert ospp("/dhistorykms", "--json").data()["entries"] == []
    # the plain service pass mentions the pending activation after its actions
    ran = ospp("service", "--json", env={"OSPP_NOW": _at(2)}).data()
    assert ran["reminders"][0]["kind"] == "pending" and ran["actions"]
