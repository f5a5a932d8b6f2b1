"""`python -m localpach` is the same as the `localpach` console script."""

from localpach.cli import main

raise SystemExit(main())
