"""The Markdown sections of a sweep report, each made from the summary alone.

Over the ~400-line guide (about 470 lines) because it is one section function per report
section, each short, which a reader looks up by the section's title; splitting it would
separate sections that share the table and interval formatters at the top.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sbil.experiments.sweeps.common import (
    ALGO_NAMES,
    BASELINE,
    COMPARISONS,
    _display,
    _envs,
    _f,
    _key,
    _learner_scope_labels,
    _scope_labels,
)
from sbil.experiments.sweeps.figures import _MAX_BANDED_PROFILES, _profile_variants

if TYPE_CHECKING:
    pass


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(_cell_text(c) for c in r) + " |" for r in rows]
    return [*out, ""]


def _cell_text(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _ci(entry: Mapping[str, Any] | None, digits: int, key: str = "iqm") -> str:
    if not entry or entry.get(key) is None:
        return "—"
    return f"{_f(entry[key], digits)} [{_f(entry['low'], digits)}, {_f(entry['high'], digits)}]"


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _protocol_section(summary: Mapping[str, Any]) -> list[str]:
    spec = summary["protocol"]["spec"]
    boot = summary["bootstrap"]
    rows = [[key, f"`{_json_text(spec[key])}`"] for key in spec if key != "options"]
    for key, value in (spec.get("options") or {}).items():
        rows.append([f"options.{key}", f"`{_json_text(value)}`"])
    for algo, opts in summary["protocol"]["row_options_by_algo"].items():
        if opts:
            shown = ", ".join(f"{k}={_json_text(v)}" for k, v in opts.items())
            rows.append([f"learner options in {algo} rows", f"`{shown}`"])
    commits = summary["protocol"]["git_commits"]
    rows.append(["git commit(s) of the rows", ", ".join(f"`{c}`" for c in commits) or "—"])
    versions = summary["protocol"]["sbil_versions"]
    rows.append(["sbil version(s)", ", ".join(versions) or "—"])
    cpus = summary["protocol"].get("cpus") or []
    if cpus:  # rows from before the field have none, and their reports stay as they were
        rows.append(["CPU(s) that wrote the rows", ", ".join(f"`{c}`" for c in cpus)])
    return [
        "## Protocol",
        "",
        "From `sweep.json` and the rows. A run's score is its mean undiscounted return over the "
        "evaluation episodes; the normalised score puts the random policy at 0 and the expert at "
        "1. Intervals are 95% stratified bootstrap percentile intervals "
        f"({boot['n_resamples']} resamples, seed {boot['seed']}; runs resampled within each "
        "task, as rliable does); point estimates are interquartile means (IQM).",
        "",
        *_table(["setting", "value"], rows),
    ]


def _references_section(summary: Mapping[str, Any]) -> list[str]:
    rows = []
    for env, ref in summary["references"].items():
        rnd, exp = ref.get("random", {}), ref.get("expert", {})
        rows.append(
            [
                env,
                f"{_f(rnd.get('mean'), 1)} ({rnd.get('episodes', '—')} ep.)" if rnd else "—",
                f"{_f(exp.get('mean'), 1)} ({exp.get('episodes', '—')} ep.)" if exp else "—",
                str(exp.get("name", "—")) if exp else "—",
                "yes" if ref["usable"] else f"no: {ref['problem']}",
            ]
        )
    if not rows:
        return []
    return [
        "## Normalisation references",
        "",
        *_table(["env", "random policy return", "expert return", "expert", "usable"], rows),
    ]


def _per_env_section(
    summary: Mapping[str, Any], figures: Mapping[str, str], names: Mapping[str, str]
) -> list[str]:
    lines = ["## Return and normalised score against k", ""]
    if not summary["cells"]:
        return [*lines, "No finished cells yet.", ""]
    if figures:
        lines += [
            "Each figure plots, per learner, the IQM over seeds at each k with its 95% "
            "stratified bootstrap interval (the numbers of the table under it). Its y-axis "
            "spans the IQMs and the reference lines (random policy, expert), so that one "
            "seed's extreme return cannot flatten it: an interval reaching more than a quarter "
            "of that span beyond is cut at the axis, its cut end marked with a triangle (the "
            "table gives its ends).",
            "",
        ]
    for env in _envs(summary):
        cells = [c for c in summary["cells"] if c["env_id"] == env]
        lines += [f"### {env}", ""]
        if env in figures:
            lines += [f"![return against k on {env}]({figures[env]})", ""]
        lines += _table(
            ["algorithm", "k", "seeds", "IQM return [95% CI]", "IQM normalised [95% CI]"],
            [
                [
                    names[c["variant"]],
                    str(c["k"]),
                    str(len(c["seeds"])),
                    _ci(c["return"], 1),
                    _ci(c["normalised"], 3),
                ]
                for c in cells
            ],
        )
    return lines


def _aggregate_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    entries = summary["aggregate"]
    lines = ["## Aggregate normalised score", ""]
    if not entries:
        return [
            *lines,
            "No finished cell has a normalised score (no finished cells, or no usable references).",
            "",
        ]
    scopes = _scope_labels(entries)
    variants = [v for v in names if any(e["variant"] == v for e in entries)]
    rows = []
    for variant in variants:
        row = [names[variant]]
        for key in scopes:
            e = next((x for x in entries if x["variant"] == variant and _key(x) == key), None)
            row.append(f"{_ci(e, 3)} ({e['n_tasks']}×{len(e['seeds'])})" if e else "—")
        rows.append(row)
    dropped = sum(e["runs_dropped"] for e in entries)
    note = (
        f" {dropped} run-entries were left out because their seed is missing on another task "
        "of the same aggregate (the matrices must be rectangular)."
        if dropped
        else ""
    )
    return [
        *lines,
        "IQM of the normalised score over seeds and environments (tasks) at each k, and over "
        "all (environment, k) tasks, with 95% stratified bootstrap intervals; "
        f"(tasks×seeds) in brackets.{note}",
        "",
        *_table(["algorithm", *scopes.values()], rows),
    ]


def _improvement_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    entries = summary["improvement"]
    lines = ["## Probability of improvement", ""]
    if not entries:
        baseline = ALGO_NAMES[BASELINE]
        pairs = " or ".join(
            f"{ALGO_NAMES[x]} vs {ALGO_NAMES[y]}" for x, y in COMPARISONS if y != BASELINE
        )
        return [
            *lines,
            f"Not computable: no finished runs of both sides of any comparison (each learner "
            f"vs {baseline}, {pairs}).",
            "",
        ]
    scopes = _scope_labels(entries)
    pairs = list(dict.fromkeys((e["x"], e["y"]) for e in entries))
    by_key = {(e["x"], e["y"], _key(e)): e for e in entries}
    rows = []
    for x, y in pairs:
        row = [f"P({names[x]} > {names[y]})"]
        for key in scopes:
            e = by_key.get((x, y, key))
            row.append(f"{_ci(e, 3, key='p')} ({e['n_tasks']}×{e['n_x']}/{e['n_y']})" if e else "—")
        rows.append(row)
    return [
        *lines,
        "P(X > Y): the probability that a run of X scores above a run of Y on the same task "
        "(ties count one half), averaged over the tasks (environments at one k, or all "
        "(environment, k) pairs); 0.5 means no difference. 95% intervals resample each "
        "algorithm's runs independently within each task (rliable). In brackets: tasks × runs "
        "per task of X / of Y.",
        "",
        *_table(["comparison", *scopes.values()], rows),
    ]


def learner_table(
    data: Mapping[str, Any],
    names: Mapping[str, str],
    *,
    all_label: str,
    value: str,
    shown: Callable[[Mapping[str, Any]], str],
) -> tuple[dict[str, str], list[str], list[list[str]]]:
    """The per-learner table of a summary's ``learners`` (:func:`summarise_sweep`, or the
    held-out report's): per scope the IQM (``value`` names it, ``shown`` formats it) and
    P(X > baseline). Returns the scopes' labels, the headers and the rows."""
    baseline = ALGO_NAMES.get(data["baseline"], data["baseline"])
    several = len(data.get("baseline_variants", ())) > 1
    labels = _learner_scope_labels(data, all_label=all_label)
    headers = ["learner"]
    for s in data["scopes"]:
        headers += [f"{value}, {labels[s['name']]}", f"P(X > {baseline}), {labels[s['name']]}"]
    rows = []
    for row in data["rows"]:
        cells = [names.get(row["variant"], row["name"])]
        for s in data["scopes"]:
            part = row[s["name"]]
            norm = part["normalised"]
            cells.append(f"{shown(norm)} ({norm['n_tasks']}×{len(norm['seeds'])})" if norm else "—")
            if row["algo"] == data["baseline"]:
                cells.append("(the baseline)")
            elif not part["vs_baseline"]:
                cells.append("—")
            else:
                cells.append(
                    "; ".join(
                        _ci(e, 3, key="p") + (f" vs {names[e['y']]}" if several else "")
                        for e in part["vs_baseline"]
                    )
                )
        rows.append(cells)
    return labels, headers, rows


def _has_learner_figures(data: Mapping[str, Any]) -> bool:
    """Whether a summary's ``learners`` holds any IQM or P(X > BC) to tabulate and draw."""
    return bool(data["scopes"]) and any(
        row[s["name"]]["normalised"] or row[s["name"]]["vs_baseline"]
        for row in data["rows"]
        for s in data["scopes"]
    )


def _learner_section(
    summary: Mapping[str, Any], names: Mapping[str, str], figure: str | None = None
) -> list[str]:
    data = summary["learners"]
    lines = ["## Per learner", ""]
    if not _has_learner_figures(data):
        return [*lines, "No finished cell has a normalised score yet.", ""]
    baseline = ALGO_NAMES.get(data["baseline"], data["baseline"])
    labels, headers, rows = learner_table(
        data, names, all_label="all (env, k)", value="IQM normalised", shown=lambda e: _ci(e, 3)
    )
    few = next((s for s in data["scopes"] if s["name"] == "few"), None)
    listed = (
        f"k ∈ {{{', '.join(str(k) for k in few['ks'])}}}, " if few and len(few["ks"]) > 1 else ""
    )
    scope_text = (
        f"at {labels['few']} ({listed}the smaller half of this sweep's k values: the scope of "
        "the EDM claim above) and over all (environment, k) tasks"
        if few
        else "over all (environment, k) tasks"
    )
    return [
        *lines,
        "One row per learner: the IQM normalised score (random policy 0, expert 1) over seeds "
        f"and tasks, and P(X > {baseline}), the probability that a run of the learner scores "
        f"above a {baseline} run on the same task (0.5: no difference), each with its 95% "
        f"stratified bootstrap interval, {scope_text}; (tasks×seeds) in brackets. The same "
        "figures, per k, are in the aggregate and improvement tables below.",
        "",
        *_table(headers, rows),
        *_interval_figure_text(summary, figure, labels, baseline),
    ]


def _interval_figure_text(
    summary: Mapping[str, Any], figure: str | None, labels: Mapping[str, str], baseline: str
) -> list[str]:
    if figure is None:
        return []
    beside = [b["env_id"] for b in summary.get("beside", [])]
    pooled = (
        "pooled, as the table is, over the EDM paper's control tasks "
        f"({', '.join(summary['headline_envs'])}), not {', '.join(beside)}"
        if beside
        else "pooled over the tasks as the table is"
    )
    scopes = " and ".join(labels.values())
    return [
        f"The table's intervals in rliable's style: per learner, the IQM normalised score "
        f"(left) and P(X > {baseline}) (right) at {scopes}, {pooled}; the bar is the 95% "
        "stratified bootstrap interval, the black tick the point estimate, the dashed and "
        "dotted lines the random policy and the expert (left) and no difference (right).",
        "",
        f"![interval estimates per learner]({figure})",
        "",
    ]


def _headline_note(summary: Mapping[str, Any]) -> list[str]:
    beside = [b["env_id"] for b in summary.get("beside", [])]
    if not beside:
        return []
    head = ", ".join(summary["headline_envs"])
    return [
        f"The verdict, the per-learner table, the aggregates, the probabilities of improvement "
        f"and the performance profiles pool the EDM paper's control tasks ({head}); "
        f"{', '.join(beside)}, which the paper did not run, is reported beside them "
        '("Beside the verdict" below) and in the per-task tables, never pooled.',
        "",
    ]


def _beside_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    lines = []
    for entry in summary.get("beside", []):
        env = entry["env_id"]
        lines += [f"## Beside the verdict: {env}", ""]
        for v in entry["claim"]["verdicts"]:
            x, y = names[v["x"]], names[v["y"]]
            ks = ", ".join(str(k) for k in v["ks"])
            lines += [
                f"On {env} alone, at k ∈ {{{ks}}} ({v['n_x']} {x} and {v['n_y']} {y} runs per "
                f"k): P({x} > {y}) = {_f(v['p'], 2)} (95% CI {_f(v['low'], 2)}–"
                f"{_f(v['high'], 2)}). This figure is not part of the verdict above.",
                "",
            ]
        if entry["learners"]["scopes"]:
            _, headers, rows = learner_table(
                entry["learners"],
                names,
                all_label="all (env, k)",
                value="IQM normalised",
                shown=lambda e: _ci(e, 3),
            )
            lines += [f"Per learner on {env} alone (the columns of the table above):", ""]
            lines += _table(headers, rows)
    return lines


def _profile_section(
    summary: Mapping[str, Any], figure: str | None, per_learner: str | None = None
) -> list[str]:
    if figure is None:
        return []
    banded = len(_profile_variants(summary)) <= _MAX_BANDED_PROFILES
    bands = (
        "with pointwise 95% stratified bootstrap bands"
        if banded
        else f"without their bands, which would overlap with {len(_profile_variants(summary))} "
        "learners (the next figure draws those over all tasks, one learner per panel)"
    )
    lines = [
        "## Performance profiles",
        "",
        "Fraction of runs (pooled over the tasks) whose normalised score exceeds tau, over all "
        f"(environment, k) tasks and at each k, {bands}; a curve above another is better "
        "everywhere.",
        "",
        f"![performance profiles]({figure})",
        "",
    ]
    if per_learner is not None:
        baseline = ALGO_NAMES.get(summary["learners"]["baseline"], summary["learners"]["baseline"])
        lines += [
            "The profiles over all (environment, k) tasks again, one panel per learner: its "
            f"curve with its pointwise 95% band, {baseline}'s curve dashed in black for "
            "comparison and the other learners' in grey.",
            "",
            f"![performance profiles, one panel per learner]({per_learner})",
            "",
        ]
    return lines


def _action_match_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    cells = [c for c in summary["cells"] if c["action_match"] is not None]
    lines = ["## Action match on held-out episodes", ""]
    if not cells:
        return [
            *lines,
            "Not measured: no finished cell reports an action-match rate (the datasets had no "
            "held-out episodes).",
            "",
        ]
    variants = [v for v in names if any(c["variant"] == v for c in cells)]
    by_key = {(c["env_id"], c["k"], c["variant"]): c for c in cells}
    rows = []
    for env, k in sorted(
        {(c["env_id"], c["k"]) for c in cells}, key=lambda ek: (_envs(summary).index(ek[0]), ek[1])
    ):
        row = [env, str(k)]
        for variant in variants:
            c = by_key.get((env, k, variant))
            row.append(f"{_ci(c['action_match'], 3)} ({c['action_match']['n']})" if c else "—")
        rows.append(row)
    episodes = sorted({n for c in cells for n in c["action_match_episodes"]})
    return [
        *lines,
        "Fraction of the expert's actions the learner picks on dataset episodes it never "
        "trained on (held-out episodes per run: "
        f"{', '.join(str(n) for n in episodes) or '—'}); IQM over seeds [95% CI] (seeds).",
        "",
        *_table(["env", "k", *[names[v] for v in variants]], rows),
    ]


def _problems_section(summary: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    lines = ["## Failed and missing cells", ""]
    failed, missing = summary["failed"], summary["missing"]
    outside = summary.get("outside_grid", [])
    if not (failed or missing or summary["duplicates"] or summary["excluded"] or outside):
        return [*lines, "None: every cell of the grid has a finished row.", ""]
    if failed:
        lines += [f"{len(failed)} failed cell{'s' if len(failed) != 1 else ''}:", ""]
        lines += _table(
            ["cell", "env", "algorithm", "k", "seed", "error"],
            [
                [
                    f"`{f.get('cell_id')}`",
                    f["env_id"],
                    names.get(f["variant"], f["variant"]),
                    str(f["k"]),
                    str(f["seed"]),
                    f.get("error") or "(no error recorded)",
                ]
                for f in failed
            ],
        )
    if missing:
        n = sum(len(m["seeds"]) for m in missing)
        lines += [f"{n} cell{'s' if n != 1 else ''} of the grid have no row yet:", ""]
        lines += _table(
            ["env", "algorithm", "k", "missing seeds"],
            [
                [
                    m["env_id"],
                    names.get(m["variant"], _display(m["variant"], m["algo"])),
                    str(m["k"]),
                    ", ".join(str(s) for s in m["seeds"]),
                ]
                for m in missing
            ],
        )
    if summary["duplicates"]:
        lines += [
            "Rows repeating an (env, algorithm, k, seed) already seen were ignored: "
            + ", ".join(f"`{d.get('row_file')}`" for d in summary["duplicates"])
            + ".",
            "",
        ]
    if summary["excluded"]:
        lines += [
            "Finished rows without a finite mean return were left out: "
            + ", ".join(f"`{d.get('cell_id')}`" for d in summary["excluded"])
            + ".",
            "",
        ]
    if outside:
        n = len(outside)
        lines += [
            f"{n} row file{'s' if n != 1 else ''} in `rows/` {'are' if n != 1 else 'is'} outside "
            "the sweep's grid (`sweep.json`) and left out of every figure (left over from an "
            "earlier grid, or copied in; move them out of `rows/` to silence this):",
            "",
            *_table(["row file", "reason"], [[f"`{r['row_file']}`", r["reason"]] for r in outside]),
        ]
    return lines
