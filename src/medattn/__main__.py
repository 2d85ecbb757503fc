"""``python -m medattn`` (also what ``torchrun -m medattn`` runs)."""

import sys

from medattn.cli.main import main

sys.exit(main())
