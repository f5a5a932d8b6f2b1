"""A stand-in for `stages`: fast, dependency-free, and steerable from tests through a control folder.

    fake_stage.py NAME --input DIR [--input DIR ...] --output DIR

Writes `result.json` (its name, job and commit variables, and a digest of every input file it saw; the files of the
previous output commit when the spec asked for it; with FAKE_UNIQUE set, `results/<datum id>.json` instead) and one
`<file>.seen` per input file. Control files in $FAKE_CONTROL:
  fail-NAME       exit 1 with a message (the step fails)
  slow-NAME       write a partial file, touch started-NAME, then sleep that many seconds (or until slow-NAME is
                  removed) before finishing
  conflict-NAME   every datum writes the same path with different content
  fifo-NAME       leave a named pipe in the output
  scribble-NAME   try to overwrite the input files
"""

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("name")
parser.add_argument("--input", action="append", default=[])
parser.add_argument("--output", required=True)
args = parser.parse_args()
control = Path(os.environ.get("FAKE_CONTROL", "/nonexistent"))
out = Path(args.output)

seen = {}
for directory in args.input:
    root = Path(directory)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        seen[f"{root.name}/{path.relative_to(root).as_posix()}"] = hashlib.sha256(path.read_bytes()).hexdigest()

print(f"{args.name}: {len(seen)} input file(s)")
if (control / f"scribble-{args.name}").exists():  # a misbehaving step that writes to its input
    for directory in args.input:
        for path in Path(directory).rglob("*"):
            if path.is_file():
                try:
                    path.write_text("scribbled")
                except OSError as error:
                    print(f"{args.name}: could not scribble on {path.name}: {error}")
if (control / f"fail-{args.name}").exists():
    print(f"{args.name}: boom, failing on purpose", file=sys.stderr)
    sys.exit(1)
slow = control / f"slow-{args.name}"
if slow.exists():
    (out / "partial.bin").write_bytes(b"x" * 1024)
    (control / f"started-{args.name}").write_text(os.environ["PACH_JOB_ID"])
    for _ in range(int(float(slow.read_text() or "30") * 10)):
        if not slow.exists():  # the test ended the wait early
            break
        time.sleep(0.1)
    print(f"{args.name}: slow step done")

job = os.environ.get("PACH_JOB_ID")
variables = {
    key: value
    for key, value in os.environ.items()
    if key.startswith(("PACH_", "PPS_"))
    or key.endswith("_COMMIT")
    or key in ("raw_data", "split", "pre_process", "train", "build", "images", "labels")
}
result = out / "result.json"
if os.environ.get("FAKE_UNIQUE"):
    result = out / "results" / f"{os.environ['PACH_DATUM_ID']}.json"
result.parent.mkdir(parents=True, exist_ok=True)
previous = Path(os.environ["LOCALPACH_PREVIOUS_OUTPUT"]) if os.environ.get("LOCALPACH_PREVIOUS_OUTPUT") else None
report = {"name": args.name, "job": job, "env": variables, "seen": seen}
if previous is not None:  # the previous output commit the spec asked for (ISSUE_TITLES_PREVIOUS_OUTPUT)
    report["previous_files"] = sorted(p.relative_to(previous).as_posix() for p in previous.rglob("*") if p.is_file())
result.write_text(json.dumps(report, indent=1, sort_keys=True))
for key in seen:
    target = out / "seen" / (key.replace("/", "__") + ".seen")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"{job}\n")
if (control / f"conflict-{args.name}").exists():
    (out / "same.txt").write_text(os.environ.get("PACH_DATUM_ID", "x"))
if (control / f"fifo-{args.name}").exists():
    os.mkfifo(out / "pipe")
for epoch in range(1, 3):
    print(f"Epoch {epoch}/2 - loss {1 / epoch:.3f}")
