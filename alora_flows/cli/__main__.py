"""``python -m alora_flows.cli``: the same as the ``alora-flows`` command."""

from alora_flows.cli import main

main()
