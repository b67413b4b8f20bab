"""``pik schemas list | check | register``: the schema registry folder and its compatibility checks.

The registry is a folder (default: ``[schemas] registry`` of the config file, else the one
shipped with the kit): ``<source>/<event_type>/v<N>.avsc``, ``ids.json`` (Confluent ids) and
``compatibility.json`` (mode per subject ``<source>/<event_type>``, default BACKWARD).
Exit codes: 0 compatible / done, 1 an incompatibility (one line per problem on stderr),
2 bad usage, bad schema file or malformed registry, 3 a remote registry (``check
--registry-url`` / ``--glue-registry``) could not answer.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.text import Text

from infra.errors import ConfigError, Conflict, KitError
from infra.schema_registry import check_registry_url
from pik.cli.common import commands, err, fail, load_settings, open_kit, out
from schemas.codec import schema_fingerprint
from schemas.compatibility import (
    CompatibilityError,
    Incompatibility,
    Mode,
    SubjectModes,
    check_candidate,
    check_chain,
)
from schemas.registry import IDS_FILE, MAX_SCHEMA_ID, RegistryError, SchemaEntry, SchemaRegistry

SUBJECT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)/([A-Za-z0-9][A-Za-z0-9._-]*)$")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]
RegistryOpt = Annotated[
    Path | None,
    typer.Option(
        "--registry",
        metavar="DIR",
        help="Registry folder (default: [schemas] registry of PIK_CONFIG).",
    ),
]
SubjectOpt = Annotated[
    str | None,
    typer.Option("--subject", metavar="SOURCE/EVENT_TYPE", help="The subject, e.g. shop/order."),
]


# -- the registry folder ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Folder:
    """A registry folder, loaded: schemas, and compatibility mode per subject."""

    path: Path
    registry: SchemaRegistry
    modes: SubjectModes

    @classmethod
    def load(cls, path: Path) -> Folder:
        return cls(path, SchemaRegistry.load(path), SubjectModes.load(path))

    def subjects(self) -> dict[str, list[SchemaEntry]]:
        """Each subject's versions, oldest first."""
        found: dict[str, list[SchemaEntry]] = {}
        for entry in self.registry:
            found.setdefault(f"{entry.source}/{entry.event_type}", []).append(entry)
        for versions in found.values():
            versions.sort(key=lambda e: e.version)
        return dict(sorted(found.items()))

    def versions(self, subject: str) -> list[SchemaEntry]:
        return self.subjects().get(subject, [])


def demo_registry_folder() -> Path:
    """The demo's sample schemas (orders-service/order_placed v1, v2 under ids 1, 2)."""
    return Path(str(resources.files("pik") / "demo_registry"))


def check_subject(folder: Folder, subject: str) -> list[Incompatibility]:
    """A subject's whole version chain under its mode."""
    chain = [(f"v{e.version}", e.schema) for e in folder.versions(subject)]
    return check_chain(chain, folder.modes.mode(subject))


def check_file(folder: Folder, subject: str, schema: Any) -> list[Incompatibility]:
    """A candidate schema against a subject's registered versions under its mode."""
    chain = [(f"v{e.version}", e.schema) for e in folder.versions(subject)]
    return check_candidate(schema, chain, folder.modes.mode(subject))


@dataclass(frozen=True, slots=True)
class Registration:
    subject: str
    version: int
    fingerprint: str
    schema_id: int | None
    created: bool  # False: an identical schema was already registered
    path: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "schema_id": self.schema_id,
            "created": self.created,
            "path": str(self.path),
        }


class Incompatible(Conflict):
    def __init__(self, problems: list[Incompatibility]) -> None:
        super().__init__(f"{len(problems)} incompatibilit{'y' if len(problems) == 1 else 'ies'}")
        self.problems = problems


def register_schema(
    folder: Folder, subject: str, schema: Any, *, schema_id: int | None = None
) -> Registration:
    """Write ``schema`` as the subject's next version when compatible under its mode (with a
    Confluent id in ``ids.json``); an identical schema already registered changes nothing."""
    source, event_type = _split_subject(subject)
    fingerprint = schema_fingerprint(schema)
    versions = folder.versions(subject)
    for entry in versions:
        if entry.fingerprint == fingerprint:
            return Registration(
                subject, entry.version, fingerprint, entry.schema_id, False, _file(folder, entry)
            )
    problems = check_file(folder, subject, schema)
    if problems:
        raise Incompatible(problems)
    ids = _read_ids_doc(folder.path)
    taken = {v for k, v in ids.items() if not k.startswith("_") and isinstance(v, int)}
    if schema_id is None:
        schema_id = max(taken, default=0) + 1
    elif schema_id in taken:
        raise ConfigError(f"schema id {schema_id} is already given to another schema")
    if not 0 <= schema_id <= MAX_SCHEMA_ID:
        raise ConfigError(f"schema id {schema_id} out of range [0, {MAX_SCHEMA_ID}]")
    version = (versions[-1].version if versions else 0) + 1
    target = folder.path / source / event_type / f"v{version}.avsc"
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_new(target, json.dumps(schema, indent=2) + "\n")
    ids[f"{subject}/v{version}"] = schema_id
    _write_replace(folder.path / IDS_FILE, json.dumps(ids, indent=2) + "\n")
    return Registration(subject, version, fingerprint, schema_id, True, target)


def _file(folder: Folder, entry: SchemaEntry) -> Path:
    return folder.path / entry.source / entry.event_type / f"v{entry.version}.avsc"


def _split_subject(subject: str) -> tuple[str, str]:
    found = SUBJECT.match(subject)
    if found is None:
        raise ConfigError(
            f"subject {subject!r} is not <source>/<event_type> (letters, digits, . _ -)"
        )
    return found.group(1), found.group(2)


def _read_ids_doc(path: Path) -> dict[str, Any]:
    file = path / IDS_FILE
    if not file.is_file():
        return {}
    doc: dict[str, Any] = json.loads(file.read_text("utf-8"))
    return doc


def _write_new(target: Path, text: str) -> None:
    """Create ``target``; never overwrite a version someone else wrote meanwhile."""
    try:
        with target.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise ConfigError(f"{target} appeared meanwhile: run the command again") from None


def _write_replace(target: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temp, target)


# -- command line -------------------------------------------------------------------------------
def _open_folder(given: Path | None) -> Folder:
    try:
        path = given or open_kit().config.schemas.registry
        if path is None:
            raise ConfigError(
                "no schema registry: set [schemas] registry in PIK_CONFIG or --registry"
            )
        return Folder.load(path)
    except (RegistryError, CompatibilityError, ConfigError) as exc:
        fail(str(exc), 2)


def _read_schema(file: Path) -> Any:
    try:
        schema = json.loads(file.read_text("utf-8"))
        schema_fingerprint(schema)  # parses it: a bad schema fails here, not half-way
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", 2)
    except (ValueError, TypeError, KeyError) as exc:
        fail(f"{file}: not an Avro schema: {exc}", 2)
    return schema


def _report_problems(problems: list[Incompatibility], subject: str, mode: Mode) -> NoReturn:
    _print_problems(problems, subject, mode)
    raise typer.Exit(1)


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


app = commands(
    help="The schema registry: list subjects, check compatibility, register versions.",
    no_args_is_help=True,
)


@app.command("list")
def list_(registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Every subject with its mode and versions (fingerprint, Confluent id)."""

    folder = _open_folder(registry)
    doc: dict[str, Any] = {
        "registry": str(folder.path),
        "subjects": [
            {
                "subject": subject,
                "mode": folder.modes.mode(subject).value,
                "versions": [
                    {"version": e.version, "fingerprint": e.fingerprint, "id": e.schema_id}
                    for e in versions
                ],
            }
            for subject, versions in folder.subjects().items()
        ],
    }
    if as_json:
        _print_json(doc)
        return
    out.print(f"registry {folder.path}", highlight=False, markup=False)
    for item in doc["subjects"]:
        out.print(f"{item['subject']}  [{item['mode']}]", highlight=False, markup=False)
        for v in item["versions"]:
            schema_id = "-" if v["id"] is None else v["id"]
            out.print(
                f"  v{v['version']:<3} fingerprint {v['fingerprint']}  id {schema_id}",
                highlight=False,
            )
    if not doc["subjects"]:
        out.print("no schemas registered")


@app.command()
def check(
    file: Annotated[
        Path | None, typer.Argument(help="A candidate .avsc (omit: check every subject).")
    ] = None,
    subject: SubjectOpt = None,
    registry: RegistryOpt = None,
    registry_url: Annotated[
        str | None,
        typer.Option(
            "--registry-url",
            metavar="URL",
            help="Check a Confluent-compatible Schema Registry's subjects instead of a folder "
            "(credentials: PIK_REGISTRY_USER/PIK_REGISTRY_PASSWORD or PIK_REGISTRY_TOKEN).",
        ),
    ] = None,
    glue_registry: Annotated[
        str | None,
        typer.Option(
            "--glue-registry",
            metavar="NAME",
            help="Check an AWS Glue Schema Registry's schemas instead of a folder.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check compatibility under each subject's mode; exit 1 on any incompatibility.

    Without FILE, every subject's version chain; with FILE and --subject, the candidate
    against the subject's registered versions. With --registry-url or --glue-registry the
    subjects (Glue: schemas) and their compatibility levels are the remote registry's; exit 3
    when it cannot answer.
    """

    if registry_url is not None or glue_registry is not None:
        _check_remote(file, subject, registry_url, glue_registry, as_json)
        return
    folder = _open_folder(registry)
    if file is None:
        if subject is not None:
            _check_subject(folder, subject, as_json)
            return
        results = {s: check_subject(folder, s) for s in folder.subjects()}
        bad = {s: p for s, p in results.items() if p}
        if as_json:
            _print_json(
                {
                    "compatible": not bad,
                    "subjects": {
                        s: {
                            "mode": folder.modes.mode(s).value,
                            "problems": [p.to_json() for p in problems],
                        }
                        for s, problems in results.items()
                    },
                }
            )
            if bad:
                raise typer.Exit(1)
            return
        for s, problems in results.items():
            if not problems:
                mode = folder.modes.mode(s).value
                out.print(f"ok  {s} ({mode}, {len(folder.versions(s))} versions)", markup=False)
        for s, problems in bad.items():
            _print_problems(problems, s, folder.modes.mode(s))
        if bad:
            raise typer.Exit(1)
        return
    if subject is None:
        fail("checking a FILE needs --subject SOURCE/EVENT_TYPE", 2)
    try:
        _split_subject(subject)
    except ConfigError as exc:
        fail(str(exc), 2)
    schema = _read_schema(file)
    mode = folder.modes.mode(subject)
    problems = check_file(folder, subject, schema)
    if as_json:
        _verdict_json(subject, mode, problems)
        return
    if problems:
        _report_problems(problems, subject, mode)
    versions = len(folder.versions(subject))
    out.print(
        f"compatible: {file} with {subject} ({mode.value}, {versions} versions)",
        markup=False,
    )


def _verdict_json(subject: str, mode: Mode, problems: list[Incompatibility]) -> None:
    """The ``--json`` verdict of a check; exit 1 when it found problems."""
    _print_json(
        {
            "subject": subject,
            "mode": mode.value,
            "compatible": not problems,
            "problems": [p.to_json() for p in problems],
        }
    )
    if problems:
        raise typer.Exit(1)


def _check_remote(
    file: Path | None, subject: str | None, url: str | None, glue: str | None, as_json: bool
) -> None:
    from pik.remote_subjects import confluent_subjects, glue_subjects

    if url is not None and glue is not None:
        fail("--registry-url or --glue-registry: one registry at a time", 2)
    if file is not None and subject is None:
        fail("checking a FILE needs --subject (the registry's subject or schema name)", 2)
    try:
        settings = load_settings()
        if url is not None:
            check_registry_url(url, "--registry-url")
            found = confluent_subjects(settings, url, subject)
        else:
            assert glue is not None
            found = glue_subjects(settings, glue, subject)
    except ConfigError as exc:
        fail(str(exc), 2)
    except KitError as exc:  # the registry could not answer
        fail(str(exc), 3)
    if file is not None:
        (one,) = found
        problems = check_candidate(_read_schema(file), one.versions, one.mode)
        if as_json:
            _verdict_json(one.name, one.mode, problems)
            return
        if problems:
            _report_problems(problems, one.name, one.mode)
        out.print(
            f"compatible: {file} with {one.name} ({one.mode.value}, {len(one.versions)} versions)",
            markup=False,
        )
        return
    results = {s.name: (s, check_chain(s.versions, s.mode)) for s in found}
    bad = {name: problems for name, (_, problems) in results.items() if problems}
    if as_json:
        _print_json(
            {
                "registry": url or f"glue:{glue}",
                "compatible": not bad,
                "subjects": {
                    name: {"mode": s.mode.value, "problems": [p.to_json() for p in problems]}
                    for name, (s, problems) in results.items()
                },
            }
        )
    else:
        for name, (s, problems) in results.items():
            if not problems:
                out.print(f"ok  {name} ({s.mode.value}, {len(s.versions)} versions)", markup=False)
        for name, problems in bad.items():
            _print_problems(problems, name, results[name][0].mode)
    if bad:
        raise typer.Exit(1)


def _check_subject(folder: Folder, subject: str, as_json: bool) -> None:

    if subject not in folder.subjects():
        fail(f"no schemas registered for {subject}", 2)
    problems = check_subject(folder, subject)
    mode = folder.modes.mode(subject)
    if as_json:
        _verdict_json(subject, mode, problems)
        return
    if problems:
        _report_problems(problems, subject, mode)
    out.print(
        f"ok  {subject} ({mode.value}, {len(folder.versions(subject))} versions)", markup=False
    )


@app.command("register")
def register_(
    file: Annotated[Path, typer.Argument(help="The new schema (.avsc).")],
    subject: Annotated[
        str, typer.Option("--subject", metavar="SOURCE/EVENT_TYPE", help="The subject.")
    ],
    schema_id: Annotated[
        int | None,
        typer.Option("--id", help="Confluent schema id (default: the highest in use + 1)."),
    ] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register FILE as the subject's next version, only if compatible under its mode.

    An identical schema (same fingerprint) already registered is reported, not re-added.
    """

    folder = _open_folder(registry)
    schema = _read_schema(file)
    try:
        done = register_schema(folder, subject, schema, schema_id=schema_id)
    except Incompatible as exc:
        if as_json:
            _print_json(
                {
                    "subject": subject,
                    "registered": False,
                    "problems": [p.to_json() for p in exc.problems],
                }
            )
            raise typer.Exit(1) from None
        _report_problems(exc.problems, subject, folder.modes.mode(subject))
    except ConfigError as exc:
        fail(str(exc), 2)
    if as_json:
        _print_json({**done.to_json(), "registered": True})
        return
    if not done.created:
        out.print(
            f"already registered: {subject} v{done.version} "
            f"(fingerprint {done.fingerprint}), nothing written",
            highlight=False,
            markup=False,
        )
        return
    out.print(
        f"registered {subject} v{done.version}: fingerprint {done.fingerprint}, "
        f"id {done.schema_id}, {done.path}",
        highlight=False,
        markup=False,
    )


def _print_problems(problems: list[Incompatibility], subject: str, mode: Mode) -> None:

    for problem in problems:
        line = Text.assemble(("incompatible:", "red"), f" {subject} ({mode.value}): {problem}")
        err.print(line, highlight=False)
