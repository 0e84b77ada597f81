import sys

from rsi_plugin.cli import main

sys.exit(main())
