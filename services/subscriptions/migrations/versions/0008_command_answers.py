"""The kernel's record of each command's answer by envelope id, so that a retried
command is answered the same and changes nothing (kernel.commands).

Revision ID: 0008
"""

from kernel.migrations import create_answers_table

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    create_answers_table()
