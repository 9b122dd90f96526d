"""The report's table: which settings tell its rows apart, and each row's figures in words."""

import csv
import io
from collections import Counter

from rich.table import Table

from cnnlab.results.progress import Progress
from cnnlab.results.rows import METRICS, Options, Row
from cnnlab.results.significance import Summary, placed, seeds_needed, summary, verdict, welch_p

ABSENT = "—"  # a setting one row has and another lacks (a callback, say)
# A study's published figure, and the metric of a row it is placed against (a study's
# validation accuracy, often its last epoch's, against the best epoch's).
MEASURED_AS = {"val_acc": "best_val_acc"}
NOT_RECIPES = {"logger", "paths", "hydra"}  # groups that hold no setting (cnnlab.config.settings)


class Report:
    """The table of ``rows`` (ranked by ``sort``); each is compared with the best of n >= 2."""

    def __init__(self, rows: list[Row], sort: str, options: Options, now: Progress | None):
        self.rows, self.sort, self.options, self.now = rows, sort, options, now
        self.columns = columns(rows)
        self.top = next((r for r in rows if r.values(sort)), None)
        self.anchor = next((r for r in rows if len(r.values(sort)) > 1), None)
        self.best = self.anchor.values(sort) if self.anchor else None
        self.cells = [self._cells(r) for r in rows]

    @property
    def titles(self) -> list[str]:
        """The columns to show: the settings, and the figures some row has."""
        figures = [t for t in self.cells[0] if t not in self.columns]
        return self.columns + [t for t in figures if any(c[t] for c in self.cells)]

    def markdown(self) -> str:
        titles = self.titles
        lines = [f"_{self.now.line()}_", ""] if self.now else []
        lines += ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
        lines += ["| " + " | ".join(c[t] for t in titles) + " |" for c in self.cells]
        lines += ["", self._legend()]
        said = self._curves_said()
        if said:
            lines += ["", "## What the curves say", "", *said]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        """The raw numbers, for other tools."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        stats = [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "n", "ci_low", "ci_high")]
        writer.writerow(
            [*self.columns, *stats, f"p_vs_best_{self.sort}", "verdict", "seeds_needed"]
            + ["reference", "curves", "finished", "jobs"]
        )
        for row, cells in zip(self.rows, self.cells, strict=True):
            figures = []
            for metric in METRICS:
                values = row.values(metric)
                s = summary(values, self.options.alpha) if values else None
                figures += [s.mean, s.std, s.n, s.low, s.high] if s else ["", "", 0, "", ""]
            writer.writerow(
                [cells[c] for c in self.columns]
                + figures
                + [self._p(row), cells[self._verdict_title], cells.get("seeds needed", "")]
                + [cells["published"], cells["curves say"], len(row.finished), len(row.jobs)]
            )
        return buffer.getvalue()

    def rich(self) -> Table:
        titles = self.titles
        table = Table(*titles, title="results", caption=self.now.line() if self.now else None)
        for cells in self.cells:
            table.add_row(*(cells[t] for t in titles))
        return table

    @property
    def _verdict_title(self) -> str:
        return f"vs best ({METRICS[self.sort]})"

    def _cells(self, row: Row) -> dict[str, str]:
        cells = {column: value(row, column) for column in self.columns}
        for key, title in METRICS.items():
            values = row.values(key)
            cells[title] = _figure(summary(values, self.options.alpha)) if values else ""
        values = row.values(self.sort)
        cells[self._verdict_title] = self._verdict(row, values)
        if self.options.min_seeds is not None:
            cells["seeds needed"] = self._seeds(row, values)
        cells["published"] = self._published(row)
        cells["curves say"] = _curves(row)
        for key in ("epochs", "params"):
            numbers = [j.metrics[key] for j in row.finished if key in j.metrics]
            cells[key] = f"{round(sum(numbers) / len(numbers)):,}" if numbers else ""
        times = [j.metrics["wall_time_s"] for j in row.finished if "wall_time_s" in j.metrics]
        cells["wall time"] = f"{sum(times) / len(times) / 60:.1f} min" if times else ""
        statuses = Counter(job.status for job in row.jobs)
        cells["jobs"] = ", ".join(f"{n} {status}" for status, n in statuses.items())
        return cells

    def _verdict(self, row: Row, values: list[float]) -> str:
        if not values:
            metric = METRICS[self.sort]
            return f"no {metric}: not compared" if row.finished else "no finished run"
        if len(values) == 1:
            return "best (one run: no interval)" if row is self.top else "one run: no interval"
        if row is self.anchor:
            return "best" if row is self.top else "best of the rows with n >= 2"
        return verdict(values, self.best, False, self.options.alpha)

    def _seeds(self, row: Row, values: list[float]) -> str:
        if row is self.anchor or self.best is None or len(values) < 2:
            return ""
        most = self.options.min_seeds
        n = seeds_needed(values, self.best, most, self.options.alpha)
        return f"> {most}" if n is None else str(n)

    def _p(self, row: Row) -> str:
        values = row.values(self.sort)
        if row is self.anchor or self.best is None or len(values) < 2:
            return ""
        return f"{welch_p(values, self.best):.4g}"

    def _published(self, row: Row) -> str:
        """The study's published figures for this recipe, each against the row's interval."""
        reference = row.reference
        if not reference:
            return ""
        said = []
        for key, figure in reference.items():
            if not isinstance(figure, float):
                continue
            values = row.values(MEASURED_AS.get(key, key))
            where = f": {placed(figure, summary(values, self.options.alpha))}" if values else ""
            said.append(f"{key} {100 * figure:.2f}{where}")
        return f"{'; '.join(said)} ({reference.get('source', 'source not given')})"

    def _legend(self) -> str:
        confidence = f"{100 * (1 - self.options.alpha):g}%"
        return (
            f"Accuracies in %: mean ± standard deviation over a row's finished runs (seeds or "
            f"folds), with the {confidence} confidence interval of the mean (Student's t) and n. "
            f"Rows are recipes: runs with the same settings but the seed and the fold. "
            f"'{self._verdict_title}' "
            f"compares each row with the best row of two runs or more by Welch's t-test at "
            f"level {self.options.alpha:g} (one test per row, not corrected for their number: "
            "with many rows, expect one in twenty to pass by chance); 'published' places the "
            "study's figure against the row's interval (a published val_acc against the best "
            "epoch's). report.csv keeps each interval as computed; here it is cut to [0, 100]."
        )

    def _curves_said(self) -> list[str]:
        lines = []
        for row, cells in zip(self.rows, self.cells, strict=True):
            seen: set[str] = set()
            for job, finding in row.findings:
                if finding.rule not in seen:  # each rule once a row, from its first job
                    seen.add(finding.rule)
                    label = ", ".join(f"{c}={cells[c]}" for c in self.columns) or "all runs"
                    lines.append(f"- {label} ({job.name}): {finding}")
        return lines


def columns(rows: list[Row]) -> list[str]:
    """The groups whose option differs between rows (and a setting under it too, or it has none),
    then the settings that differ; under such a group, only those every row has, not its name."""
    if len(rows) < 2:
        return []
    keys = list(dict.fromkeys(k for r in rows for k in r.settings))
    differ = [
        k for k in keys if not k.endswith("._partial_") and len({value(r, k) for r in rows}) > 1
    ]
    groups = []
    for group in dict.fromkeys(g for r in rows for g in r.choices):
        own = [k for k in keys if k.startswith(f"{group}.")]
        chosen = {r.choices.get(group) for r in rows}
        if group in NOT_RECIPES or len(chosen) < 2:
            continue
        if not own or any(k in differ for k in own):
            groups.append(group)
    shown = []
    for key in differ:
        group, leaf = key.split(".")[0], key.rsplit(".", 1)[-1]
        absent = any(key not in r.settings for r in rows)
        if group in groups and (leaf in ("_target_", "name") or absent):
            continue
        shown.append(key)
    return groups + shown


def value(row: Row, column: str) -> str:
    """A row's entry in a column: its group's option, or its setting."""
    if column in row.choices and column not in row.settings:
        return str(row.choices[column])
    setting = row.settings.get(column, ABSENT)
    if setting is None:
        return "null"
    return str(setting).lower() if isinstance(setting, bool) else str(setting)


def label(row: Row, shown: list[str]) -> str:
    return ",".join(f"{c}={value(row, c)}" for c in shown) or "all runs"


def _figure(s: Summary) -> str:
    text = f"{100 * s.mean:.2f}"
    if s.std is None:
        return f"{text} (n=1)"
    low, high = max(0.0, s.low), min(1.0, s.high)
    return f"{text} ± {100 * s.std:.2f} [{100 * low:.2f}, {100 * high:.2f}] (n={s.n})"


def _curves(row: Row) -> str:
    """The rules that fired, with the share of the row's jobs they fired in."""
    counts = Counter(rule for _, rule in dict.fromkeys((j.dir, f.rule) for j, f in row.findings))
    if len(row.jobs) == 1:
        return ", ".join(counts)
    return ", ".join(f"{rule} ({n}/{len(row.jobs)})" for rule, n in counts.items())
