"""``python -m ospp``: the same as the ``ospp`` command."""

from ospp.cli import script

script()
