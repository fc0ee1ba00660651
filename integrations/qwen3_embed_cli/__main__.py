"""python -m qwen3_embed_cli: the qwen3-embed command."""

import sys

from . import main

sys.exit(main())
