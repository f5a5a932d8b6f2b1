"""`stages predict`: titles for every body of a CSV, written next to the input's columns."""

import csv
from pathlib import Path

from issue_titles.atomic import atomic_output_file, check_output_file
from issue_titles.csvio import BODY, ReadReport, read_issue_file
from issue_titles.errors import StageError
from issue_titles.predictor import TitlePredictor


def run_predict(
    model_dir: Path,
    input_csv: Path,
    output_csv: Path,
    batch_size: int = 512,
    beam_width: int | None = None,
    length_penalty: float | None = None,
    copy_bias: float | None = None,
) -> dict:
    input_csv = Path(input_csv)
    if not input_csv.is_file():
        raise StageError("input CSV not found", path=input_csv)
    target = check_output_file(output_csv, "predict", [input_csv, model_dir], header_ends_with="predicted_title")
    report = ReadReport()
    issues = read_issue_file(input_csv, report, require=(BODY,), label=input_csv.name)
    predictor = TitlePredictor.load(model_dir, beam_width=beam_width, length_penalty=length_penalty,
                                    copy_bias=copy_bias)
    titles = predictor.predict([issue.body for issue in issues], chunk_size=batch_size)
    with atomic_output_file(target) as staging:
        with open(staging, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["issue_url", "issue_title", "body", "predicted_title"])
            for issue, title in zip(issues, titles, strict=True):
                writer.writerow([issue.issue_url, issue.issue_title, issue.body, title])
    return {"rows_read": report.rows_read, "titles_written": len(titles), "skipped": dict(report.skipped),
            "output": str(output_csv)}  # fmt: skip
