"""``ns-nerfloc-benchmark SPEC.yaml``: train, localize and score every (scene, method, seed) cell of
a spec, then write one comparison (``benchmark.md`` / ``.json`` / ``.csv`` and ``plots/``).

Resumable: every finished step is recorded under ``OUTPUT/steps/``; a rerun after a crash or
Ctrl-C skips them (an interrupted localization resumes its queries), and a failing cell is reported
with its error without stopping the others. See :mod:`nerfloc_plugins.benchmark.spec` for the spec,
:mod:`nerfloc_plugins.benchmark.runner` for ``--workers`` / ``--ray-address``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro
from rich.console import Console
from typing_extensions import Annotated

from nerfloc_plugins.benchmark.runner import Runner
from nerfloc_plugins.benchmark.spec import read_spec
from nerfloc_plugins.benchmark.steps import build_steps, finished
from nerfloc_plugins.benchmark.tables import markdown_table, score_cell, write_comparison
from nerfloc_plugins.localize.outputs.query_journal import check_output_dir
from nerfloc_plugins.utils.cli import run_cli
from nerfloc_plugins.utils.option_ranges import COUNT

CONSOLE = Console()


@dataclass
class Benchmark:
    """Benchmark every method of a spec on every scene (see the module docstring)."""

    spec: tyro.conf.Positional[Path]
    """The spec (YAML): scenes, methods, seeds, output_dir."""
    output_dir: Optional[Path] = None
    """Where everything goes (default: the spec's ``output_dir``)."""
    workers: Annotated[int, COUNT] = 1
    """Local steps run at the same time (each gets cores / workers threads)."""
    ray_address: Optional[str] = None
    """Run the steps as Ray tasks: ``auto`` (a running cluster), ``ray://HOST:PORT``, or ``local``
    (start a one-machine cluster here). Needs ``pip install 'nerfloc[ray]'``."""
    dry_run: bool = False
    """List the steps (and which are finished) without running any."""

    def main(self) -> dict:
        spec = read_spec(self.spec, self.output_dir.resolve() if self.output_dir else None)
        out = spec.output_dir
        check_output_dir(out)
        steps = build_steps(spec, lambda cell, meta: score_cell(out, cell, meta))
        changed = [
            s.id for s in steps.values() if s.command and (r := finished(out, s.id)) and r.get("command") != s.command
        ]
        for step_id in changed:
            CONSOLE.print(
                f"[yellow]{step_id}: finished with other options; kept (delete its record in {out / 'steps'} to redo)"
            )
        if self.dry_run:
            for step in steps.values():
                state = "finished" if finished(out, step.id) else "to run"
                CONSOLE.print(f"{state:9s} {step.id}" + (f"  <- {', '.join(step.deps)}" if step.deps else ""))
            return {}
        summary = Runner(out, self.workers, self.ray_address).run(steps)
        comparison = write_comparison(
            out,
            [m.name for m in spec.methods],
            [s.name for s in spec.scenes],
            summary.failed,
            reported={m.name: m.reported for m in spec.methods if m.reported},
            sources={m.name: m.reported_source for m in spec.methods if m.reported},
        )
        print(markdown_table(comparison["rows"] + comparison["average"]))
        CONSOLE.print(
            f"{len(summary.done)} steps run, {len(summary.kept)} kept from earlier runs, {len(summary.failed)} failed, "
            f"{len(summary.skipped)} skipped; {out / 'benchmark.md'} (and .json, .csv, plots/)"
        )
        if summary.failed:
            raise SystemExit(
                f"error: {len(summary.failed)} steps failed (listed in {out / 'benchmark.md'}); rerun to retry them"
            )
        return comparison


def entrypoint() -> None:
    run_cli(Benchmark)


if __name__ == "__main__":
    entrypoint()
