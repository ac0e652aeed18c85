"""``python -m thumbor_plugins.cli``: the ``imgstack`` command."""

from thumbor_plugins.cli import main

main(prog_name="imgstack")
