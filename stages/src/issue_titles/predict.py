"""`stages predict`: titles for every body of a CSV, written next to the input's columns.

Every column and every row of the input comes back, in order, plus `predicted_title`, so predictions join back to
whatever the rows carry (an id, a label). An empty body gets an empty title and is counted (`empty_bodies`); rows
that cannot be given back (broken quoting, the wrong number of fields) are counted under `skipped`."""

import csv
from pathlib import Path

from issue_titles.atomic import atomic_output_file, check_output_file
from issue_titles.csvio import BODY, ReadReport, read_table
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
    header, rows = read_table(input_csv, report, require=(BODY,), label=input_csv.name)
    body_column = [name.strip() for name in header].index(BODY)
    bodies = [row[body_column].strip() for row in rows]
    wanted = [index for index, body in enumerate(bodies) if body]
    titles = [""] * len(rows)
    predictor = TitlePredictor.load(model_dir, beam_width=beam_width, length_penalty=length_penalty,
                                    copy_bias=copy_bias)  # fmt: skip
    predicted = predictor.predict([bodies[index] for index in wanted], chunk_size=batch_size)
    for index, title in zip(wanted, predicted, strict=True):
        titles[index] = title
    with atomic_output_file(target) as staging:
        with open(staging, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([*header, "predicted_title"])
            for row, title in zip(rows, titles, strict=True):
                writer.writerow([*row, title])
    return {"rows_read": report.rows_read, "rows_written": len(rows), "titles_written": len(wanted),
            "empty_bodies": len(rows) - len(wanted), "skipped": dict(report.skipped),
            "output": str(output_csv)}  # fmt: skip
