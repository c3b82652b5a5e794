"""``python -m classroom``: the commands behind the Makefile's targets.

Each command reads the settings from the environment (and ``.env``), refuses bad values up
front, and prints what it did in a few lines a person can read.

Each command imports what it needs when it runs (Dagster, dbt's helpers, the exercises), so
``make settings`` answers at once; no cycle hides behind these imports (tests/test_architecture.py
reads them too).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from hdb_elt.settings import Settings, SettingsError, display_path, load_settings
from hdb_elt.stage_notebooks import STAGE_NAMES, STAGES


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    """Print the resolved settings (never the API key)."""
    print(f"source:     {settings.source_label}")
    print(f"warehouse:  {display_path(settings.warehouse_path)}")
    print(f"window:     {settings.start_month}..{settings.end_month}")
    print(f"lookback:   {settings.lookback_months} month(s)")
    print(f"api key:    {'set' if settings.api_key else 'not set'}")
    return 0


def cmd_extract_load(settings: Settings, args: argparse.Namespace) -> int:
    """Run the extract-load stage alone."""
    from hdb_elt.extract_load import run_extract_load

    result = run_extract_load(settings)
    print(result.summary())
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the pipeline for the window, headless, and print a summary."""
    from classroom.runner import run_pipeline

    return run_pipeline(settings)


def cmd_download(settings: Settings, args: argparse.Namespace) -> int:
    """Download the window's months from data.gov.sg into data/raw/."""
    from hdb_elt.download import download_months

    download_months(settings, args.dest)
    return 0


def cmd_checkpoint(settings: Settings, args: argparse.Namespace) -> int:
    """Restore the reference state after a stage, or reset an exercise's workspace."""
    from classroom.checkpoints import restore_stage, stage_name
    from classroom.exercises import EXERCISES, reset_workspace

    stage, exercise = args.stage, args.exercise
    if exercise:
        ws = reset_workspace(exercise)
        print(ws.describe())
        print(
            f"The workspace is as the exercise starts. Open "
            f"notebooks/exercises/{ws.exercise.name}.ipynb and run it from the top."
        )
        return 0
    if stage:
        stage = stage_name(stage)
        print(f"Restoring the state after {stage} for {settings.describe()}...")
        checkpoint, backup = restore_stage(settings, stage)
        print(f"Done: the warehouse now holds {checkpoint.describe()}.")
        if backup is not None:
            print(f"Your previous warehouse is kept as {display_path(backup)}.")
        following = STAGES[STAGES.index(stage) + 1 :]
        if following:
            print(f"Next: notebooks/{following[0]}.ipynb.")
        return 0
    print("Say what to restore:")
    print("  make checkpoint STAGE=<stage>        the warehouse as it is after that stage notebook")
    print("      stages: " + ", ".join(STAGE_NAMES))
    print("  make checkpoint EXERCISE=<exercise>  an exercise's workspace as the exercise starts")
    print("      exercises: " + ", ".join(EXERCISES))
    return 2


def cmd_synthesize(settings: Settings, args: argparse.Namespace) -> int:
    """Write synthetic deliveries (the 2023 months spread over 1990..2025, each month in its
    resource's format) for the benchmark."""
    from pathlib import Path

    from classroom.reference_outputs import REFERENCE_DELIVERIES
    from hdb_elt.synthetic import synthesize

    source = Path(args.source) if args.source else (settings.data_dir or REFERENCE_DELIVERIES)
    done = synthesize(
        source, Path(args.out), args.rows, start=args.start, end=args.end, seed=args.seed
    )
    print(
        f"Wrote {done.rows:,} rows in {len(done.files)} monthly deliveries "
        f"({done.start}..{done.end}, seed {done.seed}) to {display_path(done.folder)}/"
    )
    return 0


def cmd_class_server(settings: Settings, args: argparse.Namespace) -> int:
    """Start (or point at) the class's PostgreSQL server: databases, roles, the .env lines."""
    from pathlib import Path

    from classroom.class_server import (
        DEFAULT_FOLDER,
        read_learners,
        run_class_server,
        stop_local,
    )

    folder = Path(args.folder) if args.folder else DEFAULT_FOLDER
    if args.stop:
        print(stop_local(folder, args.port))
        return 0
    learners_file = Path(args.learners_file) if args.learners_file else None
    learners = read_learners(args.learners, learners_file)
    print(
        run_class_server(
            learners=learners,
            dsn=args.dsn,
            folder=folder,
            port=args.port,
            class_name=args.class_name,
            data_path=Path(args.data_path) if args.data_path else None,
            dagster_url=args.dagster_url,
        )
    )
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "settings": cmd_settings,
    "extract-load": cmd_extract_load,
    "run": cmd_run,
    "download": cmd_download,
    "checkpoint": cmd_checkpoint,
    "synthesize": cmd_synthesize,
    "class-server": cmd_class_server,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m classroom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, handler in COMMANDS.items():
        command = sub.add_parser(name, help=(handler.__doc__ or "").splitlines()[0])
        if name == "download":
            command.add_argument("--dest", default=None, help="folder to write (data/raw/)")
        if name == "checkpoint":
            command.add_argument("--stage", help="restore the warehouse as it is after this stage")
            command.add_argument("--exercise", help="reset this exercise's workspace")
        if name == "synthesize":
            from hdb_elt.synthetic import DEFAULT_END, DEFAULT_SEED, DEFAULT_START

            command.add_argument("--rows", type=int, required=True, help="rows in all")
            command.add_argument("--out", required=True, help="folder to write (data/bench/...)")
            command.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
            command.add_argument("--start", default=DEFAULT_START, help="first month (YYYY-MM)")
            command.add_argument("--end", default=DEFAULT_END, help="last month (YYYY-MM)")
            command.add_argument(
                "--source", help="reference deliveries (default: ../shared/... or data/raw/)"
            )
        if name == "class-server":
            from classroom.class_server import DEFAULT_CLASS, SUPERUSER_DSN_ENV
            from classroom.postgres_server import DEFAULT_PORT

            command.add_argument("--learners", help="learners' names, comma-separated (alice,bob)")
            command.add_argument("--learners-file", help="a file of learners' names, one a line")
            command.add_argument(
                "--dsn",
                help=f"a superuser's libpq connection string to a server you have (or "
                f"{SUPERUSER_DSN_ENV}); without it, the class's own server is started",
            )
            command.add_argument(
                "--port", type=int, default=DEFAULT_PORT, help="the class's own server's port"
            )
            command.add_argument("--folder", help="where the class's own server and passwords live")
            command.add_argument(
                "--class-name", default=DEFAULT_CLASS, help="prefix of databases and roles"
            )
            command.add_argument("--data-path", help="the shared folder of the lake's data files")
            command.add_argument("--dagster-url", help="the class's Dagster UI, for learners")
            command.add_argument("--stop", action="store_true", help="stop the class's own server")
    sub.add_parser("doctor", help="Check everything a run needs, with a fix for each problem")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        # Bad settings are one of the doctor's findings, not a reason to stop before it runs.
        from classroom.doctor import main as doctor

        return doctor()
    try:
        settings = load_settings()
        return COMMANDS[args.command](settings, args)
    except SettingsError as exc:
        print(f"Settings error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Errors of this project carry a message written for a person; show it, not a traceback.
        if type(exc).__module__.startswith(("hdb_elt", "classroom", "tap_hdb_resale")):
            print(f"\n{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        raise
