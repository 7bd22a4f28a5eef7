"""``python -m cli ...`` runs the sfumato command (what torchrun needs: ``torchrun -m cli train``)."""

from cli.main import cli

cli(prog_name="sfumato")
