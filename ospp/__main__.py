"""``python -m ospp``: the same as the ``ospp`` command, ending the way any Python program
does, so that ``python -m cProfile -m ospp`` and debuggers see the whole run."""

from ospp.cli import main

main()
