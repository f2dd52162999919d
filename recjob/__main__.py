import sys

from recjob.cli import main

sys.exit(main())
