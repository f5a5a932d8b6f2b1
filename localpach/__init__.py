"""localpach: Pachyderm's semantics on local folders.

The embedded mode of the issue-titles platform: the same pipeline specs that the Pulumi program creates in a
cluster run here as subprocesses on one machine, with versioned repos, commits, jobs, datums and provenance kept
under one state directory (default `.pfs/`).
"""

__version__ = "0.1.0"

DEFAULT_STATE_DIR = ".pfs"
STATE_ENV_VAR = "LOCALPACH_STATE"
