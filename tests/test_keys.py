"""The product-key codec: GVLKs, simulated keys, and the typo-catching check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ospp.core.catalog import Channel, catalog
from ospp.core.errors import LicensingError
from ospp.protocol import keys

products = st.sampled_from(catalog().products)
channels = st.sampled_from([Channel.MAK, Channel.KMS_HOST])
serials = st.integers(0, 2**32 - 1)
securities = st.integers(0, 2**60 - 1)


@given(products, channels, serials, securities)
def test_simulated_keys_round_trip(product, channel, serial, security):
    text = keys.encode(product, channel, serial, security)
    parsed = keys.parse(text)
    assert (parsed.product, parsed.channel, parsed.serial, parsed.security) == (
        product,
        channel,
        serial,
        security,
    )
    assert parsed.text == text


@given(products, channels, serials, securities, st.integers(0, 24), st.integers(1, 23))
def test_every_single_character_typo_is_caught(product, channel, serial, security, pos, shift):
    compact = keys.encode(product, channel, serial, security).replace("-", "")
    wrong = keys.ALPHABET[(keys.ALPHABET.index(compact[pos]) + shift) % 24]
    typo = compact[:pos] + wrong + compact[pos + 1 :]
    with pytest.raises(LicensingError) as info:
        keys.parse(typo)
    assert info.value.code == 0xC004F050


@given(products, channels, serials, securities, st.integers(0, 23))
def test_every_adjacent_swap_is_caught(product, channel, serial, security, pos):
    compact = keys.encode(product, channel, serial, security).replace("-", "")
    if compact[pos] == compact[pos + 1]:
        return  # swapping equal characters changes nothing
    swapped = compact[:pos] + compact[pos + 1] + compact[pos] + compact[pos + 2 :]
    with pytest.raises(LicensingError):
        keys.parse(swapped)


def test_every_gvlk_is_recognised_in_any_spelling():
    for product in catalog().products:
        for spelling in (product.gvlk, product.gvlk.lower(), product.gvlk.replace("-", " ")):
            parsed = keys.parse(spelling)
            assert parsed.product is product and parsed.channel is Channel.KMS_CLIENT


def test_every_gvlk_with_one_character_changed_is_rejected():
    for product in catalog().products:
        compact = product.gvlk.replace("-", "")
        for pos in range(25):
            for ch in keys.ALPHABET + "N":
                if ch == compact[pos]:
                    continue
                with pytest.raises(LicensingError) as info:
                    keys.parse(compact[:pos] + ch + compact[pos + 1 :])
                assert info.value.code == 0xC004F050


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("XQNVK-8JYDB-WJ9W3-YJ8YR", "it has 20 characters"),
        ("XQNVK-8JYDB-WJ9W3-YJ8YR-WFG99-B", "it has 26 characters"),
        ("BCDFG-HJKMP-QRTVW-XY234-6789O", "character 25 'O'"),
        ("BCDFG-HJKMP-QRTVW-XY234-67890", "character 25 '0'"),
        ("ACDFG-HJKMP-QRTVW-XY234-67891", "character 1 'A'"),
        ("BCDFG-HJKMP-QRTVW-XY234-6789B", "checksum"),
    ],
)
def test_bad_keys_say_why(raw, reason):
    with pytest.raises(LicensingError) as info:
        keys.parse(raw)
    assert reason in info.value.message


def test_repr_never_shows_the_whole_key():
    product = catalog().product("ProPlus2021")
    assert product is not None
    text = keys.encode(product, Channel.MAK, 7, 99)
    assert text[:5] not in repr(keys.parse(text))
