"""python -m enp: the same as the enp command."""

from enp.cli import main

raise SystemExit(main())
