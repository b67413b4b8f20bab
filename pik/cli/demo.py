"""``pik demo``: the scripted incident, found by the investigation commands' own code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from infra.errors import KitError
from pik.cli.backend import backend
from pik.cli.common import DataDir, JsonFlag, commands, fail, load_settings, out, print_json

app = commands()


@app.command()
def demo(
    out_file: Annotated[
        Path, typer.Option("--out", help="Where to write the incident's HTML report.")
    ] = Path("pik-demo-report.html"),
    as_json: JsonFlag = False,
    data_dir: DataDir = None,
) -> None:
    """A scripted incident on the embedded backend: three days of traffic over HTTP with a
    missing window, late data, a duplicate storm and bad events planted in it, found by the code
    of `pik gaps`, `pik lag`, `pik audit` and `pik explain`, then written up as `pik report`
    does. Uses AWS_ENDPOINT_URL instead when it is set. Exits 1 if a planted problem is missed."""
    from pik.demo import run_demo  # the demo's traffic generator is only loaded for the demo

    settings = load_settings()
    if settings.dry_run:
        fail("pik demo writes its incident to the backend: unset DRY_RUN", 2)
    try:
        with backend(settings, port=0, data_dir=data_dir) as live:
            result = run_demo(live, console=None if as_json else out, out=out_file)
    except KitError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {out_file}: {exc.strerror}", 2)
    if as_json:
        print_json(result)
    if not result["ok"]:
        missed = ", ".join(name for name, ok in result["checks"].items() if not ok)
        fail(f"the demo did not find what it planted: {missed}")
