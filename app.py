"""RLT Workbench app, from a clone: `python app.py [flags]` is `workbench app [flags]`.

The app lives in the package, `workbench/app/` (see its docstring); this file re-exports its names, so
`import app; app.build_app(...)` keeps working.
"""

import sys

from workbench.app import *  # noqa: F403
from workbench.app import __all__, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
