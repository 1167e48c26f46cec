"""``python3 -m civic_services`` is the same as ``bin/civic-services``."""

from __future__ import annotations

import sys

from civic_services.cli import main

sys.exit(main())
