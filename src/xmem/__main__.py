import sys

from xmem.launch import main

sys.exit(main())
