import sys

from xmem.cli import main

sys.exit(main())
