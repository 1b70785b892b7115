"""Swedish and English: every message id is translated, placeholders match, and the ospp.vbs
output stays English whatever the language."""

from __future__ import annotations

import gettext
import io
import os
import re
import string

from ospp.cli import i18n
from tests.conftest import PRODUCT, Ospp

ARTICLE_TERMS = (
    "fleraktiveringsnyckel",
    "nyckelhanteringstjänsten (KMS)",
    "KMS-värd",
    "installations-ID",
    "bekräftelse-ID",
    "Licensierad produkt",
)


def _fields(text: str) -> list[str]:
    return sorted(name for _, name, _, _ in string.Formatter().parse(text) if name is not None)


def _swedish() -> dict[str, str]:
    with open(i18n.po_path("sv"), encoding="utf-8") as f:
        return i18n.parse_po(f.read())


def test_every_message_id_has_a_swedish_translation_with_the_same_placeholders() -> None:
    sv = _swedish()
    ids = i18n.message_ids()
    assert len(ids) > 50  # the extractor found the dialogues and the /ddescr descriptions
    missing = [m for m in ids if not sv.get(m)]
    assert missing == []
    wrong = [(m, sv[m]) for m in ids if _fields(m) != _fields(sv[m])]
    assert wrong == []
    stale = sorted(set(sv) - set(ids) - {""})
    assert stale == []  # a translation whose message id is gone from the code


# Where the English says this, the Swedish says the article's term (any inflection).
TERM_RULES = (
    (r"\bMAK\b|multiple activation key", "fleraktiveringsnyckel"),
    (r"Key Management Service", "nyckelhanteringstjänst"),
    (r"KMS host", "KMS-värd"),
    (r"installation ID", "installations-ID"),
    (r"confirmation ID", "bekräftelse-ID"),
    (r"\bLicensed product", "Licensierad produkt"),
)


def test_the_swedish_uses_the_articles_terms() -> None:
    text = "\n".join(_swedish().values())
    for term in ARTICLE_TERMS:
        assert term.lower() in text.lower(), term
    off = [
        (msgid, term)
        for msgid, swedish in _swedish().items()
        for english, term in TERM_RULES
        if re.search(english, msgid, re.IGNORECASE) and term.lower() not in swedish.lower()
    ]
    assert off == []
    assert len([m for m in _swedish() if re.search(r"\bMAK\b", m)]) >= 5  # the rules bite


def test_the_in_memory_catalogue_is_a_real_gettext_catalogue() -> None:
    mo = i18n.compile_mo(
        {"": "Content-Type: text/plain; charset=UTF-8\n", "Licensed product": "Licensierad produkt"}
    )
    t = gettext.GNUTranslations(io.BytesIO(mo))
    assert t.gettext("Licensed product") == "Licensierad produkt"
    assert t.gettext("unknown") == "unknown"
    assert i18n.Text("sv")("Licensed product") == "Licensierad produkt"
    assert i18n.Text("en")("Licensed product") == "Licensed product"


def test_po_parser_skips_fuzzy_and_joins_continued_lines() -> None:
    text = (
        'msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        '#, fuzzy\nmsgid "a"\nmsgstr "A"\n\n'
        'msgid "b"\nmsgstr ""\n"B1 "\n"\\"B2\\""\n'
    )
    assert i18n.parse_po(text) == {
        "": "Content-Type: text/plain; charset=UTF-8\n",
        "b": 'B1 "B2"',
    }


def test_language_comes_from_lang_option_then_environment() -> None:
    assert i18n.choose("en", {"LANG": "sv_SE.UTF-8"}) == "en"
    assert i18n.choose(None, {"LANG": "sv_SE.UTF-8"}) == "sv"
    assert i18n.choose(None, {"LC_MESSAGES": "sv_FI", "LANG": "en_US"}) == "sv"
    assert i18n.choose(None, {"LANGUAGE": "en:sv", "LANG": "sv_SE"}) == "en"
    assert i18n.choose(None, {}) == "en"


def test_language_list_and_the_c_locale_are_read_as_gettext_reads_them(ospp: Ospp) -> None:
    """LANGUAGE is a list of languages in order of preference, and is ignored when the locale
    is C or POSIX (LC_ALL=C, what scripts set to get English): it used to take only the first
    entry, and to win over LC_ALL=C."""
    ospp("install-product", PRODUCT)
    clean = {k: "" for k in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    cases = [
        ({"LANGUAGE": "nb:sv", "LANG": "nb_NO.UTF-8"}, "sv"),  # no Norwegian: Swedish next
        ({"LANGUAGE": "fi_FI:sv_FI:en", "LANG": "fi_FI.UTF-8"}, "sv"),
        ({"LANGUAGE": ":sv", "LANG": "sv_SE.UTF-8"}, "sv"),
        ({"LANGUAGE": "sv", "LC_ALL": "C"}, "en"),
        ({"LANGUAGE": "sv:en", "LC_ALL": "POSIX", "LANG": "sv_SE.UTF-8"}, "en"),
        ({"LANGUAGE": "sv", "LC_MESSAGES": "C", "LANG": "sv_SE.UTF-8"}, "en"),
        ({"LANGUAGE": "en:sv", "LANG": "sv_SE.UTF-8"}, "en"),
        ({"LANGUAGE": "sv", "LANG": "en_US.UTF-8"}, "sv"),
        ({"LANGUAGE": "fr", "LANG": "sv_SE.UTF-8"}, "en"),  # as gettext: no catalogue named
        # no locale set is the C locale (cron, env -i); Windows sets none of them
        ({"LANGUAGE": "sv"}, "sv" if os.name == "nt" else "en"),
        ({"LANGUAGE": "sv", "LANG": "C.UTF-8"}, "sv"),  # as glibc: C.UTF-8 is not C
    ]
    for env, lang in cases:
        ran = ospp.proc("service", "--notify", env={**clean, **env})
        assert ran.code == 0, (env, ran.err)
        swedish = "inte aktiverad ännu" in ran.out
        assert swedish == (lang == "sv"), (env, ran.out)


def test_ospp_vbs_output_stays_english_in_swedish(ospp: Ospp) -> None:
    ospp("install-product", PRODUCT)
    en = ospp.proc("/dstatus", env={"LANG": "en_US.UTF-8", "OSPP_NOW": "2030-01-01T00:00:00Z"})
    sv = ospp.proc("/dstatus", env={"LANG": "sv_SE.UTF-8", "OSPP_NOW": "2030-01-01T00:00:00Z"})
    assert en.out == sv.out and "LICENSE STATUS:" in sv.out
    # the reminder is on stderr, translated
    assert "not activated yet" in en.err or "Unlicensed product" in en.err
    assert "Olicensierad produkt" in sv.err or "inte aktiverad" in sv.err
    described = ospp.proc("/ddescr:0xC004C020", env={"LANG": "sv_SE.UTF-8"})
    assert "Multiple Activation Key" in described.out
    swedish = ospp.proc("/ddescr:0xC004C020", "--lang", "sv")
    assert re.search(r"ERROR DESCRIPTION: .*fleraktiveringsnyckeln \(MAK\)", swedish.out)


def test_a_marked_error_message_is_english_below_the_cli_and_translated_at_its_edge() -> None:
    import pickle

    from ospp.core.errors import N_, Cancelled

    exc = Cancelled(interrupted=False)
    assert exc.message == "cancelled: input ended; nothing was changed"  # English, as before
    assert exc.to_json()["message"] == "cancelled: input ended; nothing was changed"
    sv = i18n.Text("sv")
    assert sv.message(exc.message) == "avbrutet: indata tog slut; ingenting har ändrats"
    assert i18n.Text("en").message(exc.message) == exc.message
    assert sv.message("a peer's own words") == "a peer's own words"  # unmarked: as it is
    nested = N_("ERROR DETAIL: {detail}", detail=exc.message)
    assert nested == "ERROR DETAIL: cancelled: input ended; nothing was changed"
    assert sv.message(nested) == "FELDETALJER: avbrutet: indata tog slut; ingenting har ändrats"
    again = pickle.loads(pickle.dumps(nested))
    assert again == nested and sv.message(again) == sv.message(nested)


def test_a_built_catalogue_is_used_only_while_it_matches_its_po(tmp_path, monkeypatch) -> None:
    po = tmp_path / "sv" / "LC_MESSAGES" / "ospp.po"
    po.parent.mkdir(parents=True)
    header = 'msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n\n'
    po.write_text(header + 'msgid "Licensed product"\nmsgstr "Licensierad produkt"\n')
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    load = i18n.translations.__wrapped__  # not the cached one
    mo = po.with_suffix(".mo")
    mo.write_bytes(i18n.compiled(po.read_text()))  # what the build writes
    assert load("sv").gettext("Licensed product") == "Licensierad produkt"
    # a .mo that records this .po's checksum is read as it is (here: told apart by its text)
    digest = i18n.source_sum(po.read_text())
    mo.write_bytes(
        i18n.compile_mo(
            {
                "": f"Content-Type: text/plain; charset=UTF-8\nX-Source-CRC32: {digest}\n",
                "Licensed product": "from the .mo",
            }
        )
    )
    assert load("sv").gettext("Licensed product") == "from the .mo"
    # the .po changed after the build: the stale .mo is ignored, whatever its time stamp
    po.write_text(header + 'msgid "Licensed product"\nmsgstr "Licensierad produkt!"\n')
    os.utime(mo, (2**31, 2**31))
    assert load("sv").gettext("Licensed product") == "Licensierad produkt!"
