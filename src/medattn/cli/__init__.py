"""The ``medattn`` command line (typer). One module per verb; ``main.py`` wires them."""
