import sys

from oversight.app.report import main

sys.exit(main())
