"""The ``syncd`` command line.

Exit codes scripts can rely on:
  0  ok
  1  partial: the run finished but some items were quarantined, left in the outbox,
     became dead letters or conflicts, or were not found
  2  bad config, mapping or usage (one line on stderr names file, line and field)
  3  the run failed or was stopped by its error threshold
  4  the job is already running
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from syncd.config import Config, load_config
from syncd.errors import ConfigError, JobBusyError, MappingError, SyncdError

EXIT_OK, EXIT_PARTIAL, EXIT_CONFIG, EXIT_FAILED, EXIT_BUSY = 0, 1, 2, 3, 4


def _exit_code(exc: SyncdError) -> int:
    if isinstance(exc, ConfigError | MappingError):
        return EXIT_CONFIG
    if isinstance(exc, JobBusyError):
        return EXIT_BUSY
    return EXIT_FAILED


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a SyncdError into one clear line on stderr and its exit code (no traceback)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SyncdError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(_exit_code(exc))

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def _config_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    if env := os.environ.get("SYNCD_CONFIG"):
        return Path(env)
    return Path("syncd.toml")


class Ctx:
    """What every command shares: the config path, loaded lazily."""

    def __init__(self, config_path: Path, log_level: str) -> None:
        self.config_path, self.log_level = config_path, log_level
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            if not self.config_path.exists():
                raise ConfigError("config file not found (pass --config or set SYNCD_CONFIG; "
                                  "`syncd demo` needs none)", file=str(self.config_path))
            self._config = load_config(self.config_path, os.environ)
            from syncd import log
            log.configure(secrets=self._config.secrets(), level=self.log_level)
        return self._config

    def store(self) -> Any:
        from syncd.state.store import open_store
        return open_store(self.config.state_db, max_attempts=self.config.retry.outbox_attempts)


@click.group()
@click.option("--config", "config_path", help="config file (default $SYNCD_CONFIG or ./syncd.toml)")
@click.option("--log-level", default="INFO", show_default=True)
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_level: str) -> None:
    """syncd — keeps government service items in sync across channels."""
    ctx.obj = Ctx(_config_path(config_path), log_level.upper())


@main.command()
@click.argument("job")
@click.option("--full", is_flag=True, help="scan everything and re-send every item")
@click.option("--item", "items", multiple=True, metavar="CODE", help="resync just this item (repeatable)")
@click.option("--dry-run", is_flag=True, help="show what would change, write nothing")
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
@click.pass_obj
@guarded
def sync(obj: Ctx, job: str, full: bool, items: tuple[str, ...], dry_run: bool,
         as_json: bool) -> None:
    """Run JOB once now (a manual resync)."""
    from syncd.engine import RunRequest
    from syncd.runner import run_via_daemon_or_locally

    obj.config.job(job)
    result = run_via_daemon_or_locally(obj, RunRequest(job, trigger="cli", full=full,
                                                       items=items, dry_run=dry_run))
    _print_result(result, as_json)
    sys.exit(EXIT_OK if result["outcome"] == "ok" else
             EXIT_PARTIAL if result["outcome"] == "partial" else EXIT_FAILED)


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(result).decode())
        return
    counts = result["counts"]
    click.echo(f"run {result['run_id']} job={result['job']} outcome={result['outcome']}")
    click.echo("  " + "  ".join(f"{k}={v}" for k, v in counts.items()))
    if result.get("missing_items"):
        click.echo(f"  not found in source: {', '.join(result['missing_items'])}")
    if result.get("error"):
        click.echo(f"  {result['error']}")


@main.command()
@click.pass_obj
@guarded
def status(obj: Ctx) -> None:
    """Jobs, their last runs, outbox and dead letters."""
    store = obj.store()
    try:
        counts = store.outbox_counts()
        click.echo(f"outbox: pending={counts.get('pending', 0)} dead={counts.get('dead', 0)}")
        for name, job in obj.config.jobs.items():
            runs = store.runs(name, limit=1)
            last = runs[0] if runs else None
            desc = (f"last={last['started_at']} outcome={last['outcome']} "
                    f"delivered={last['delivered']} quarantined={last['quarantined']}"
                    if last else "never run")
            click.echo(f"{name}: {job.source} -> {', '.join(job.targets)} "
                       f"schedule={job.schedule or '-'} {desc}")
    finally:
        store.close()


@main.command()
@click.option("--job")
@click.pass_obj
@guarded
def vanished(obj: Ctx, job: str | None) -> None:
    """Items a full run found gone from their source (delivered before, now absent)."""
    store = obj.store()
    try:
        rows = store.vanished(job)
    finally:
        store.close()
    if not rows:
        click.echo("vanished: none")
    for r in rows:
        click.echo(f"{r['job']} {r['channel']} {r['item_code']} "
                   f"detected={r['detected_at']:%Y-%m-%d %H:%M:%S} run={r['run_id']}")


@main.command()
@click.argument("job")
@click.argument("codes", nargs=-1, required=True, metavar="CODE...")
@click.option("--reason", default="事项已在来源系统取消", show_default=True)
@click.pass_obj
@guarded
def cancel(obj: Ctx, job: str, codes: tuple[str, ...], reason: str) -> None:
    """Cancel items in every target of JOB (a status update to 取消, never a delete)."""
    from syncd.cancel import cancel_items

    outcome = cancel_items(obj.config, obj.store, job, list(codes), reason)
    for target, code, found in outcome:
        click.echo(f"{'cancelled' if found else 'not found'} {code} in {target}")
    sys.exit(EXIT_OK if all(found for _, _, found in outcome) else EXIT_PARTIAL)


@main.command()
@click.option("--job")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@guarded
def conflicts(obj: Ctx, job: str | None, as_json: bool) -> None:
    """Items a two-way job found changed on both sides (newest first)."""
    store = obj.store()
    try:
        rows = store.conflicts(job=job)
    finally:
        store.close()
    if not rows and not as_json:
        click.echo("conflicts: none")
    for r in rows:
        if as_json:
            click.echo(orjson.dumps(r, default=str).decode())
        else:
            click.echo(f"{r['created_at']:%Y-%m-%d %H:%M:%S} {r['job']} -> {r['target']} "
                       f"{r['item_code']} {r['detail']}")


@main.command("run")
@click.option("--drain-timeout", default=25.0, show_default=True, metavar="SECONDS",
              help="on SIGTERM, how long running jobs get to finish their current page")
@click.pass_obj
@guarded
def run_daemon(obj: Ctx, drain_timeout: float) -> None:
    """Run the daemon: scheduled jobs, outbox replay, reports and the admin API."""
    from syncd.daemon import serve

    sys.exit(serve(obj.config, drain_timeout=drain_timeout))


@main.group()
def mappings() -> None:
    """Mapping files."""


@mappings.command("check")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@guarded
def mappings_check(paths: tuple[Path, ...]) -> None:
    """Validate mapping files (default: every file under mappings/)."""
    from syncd.codes import MAPPINGS_DIR
    from syncd.mapping import load_mapping, mapping_files

    files: list[Path] = []
    for p in paths or (MAPPINGS_DIR,):
        files.extend(mapping_files(p) if p.is_dir() else [p])
    errors = 0
    for f in files:
        try:
            m = load_mapping(f)
            click.echo(f"ok    {f} (channel {m.channel}, {len(m.fields)} fields)")
        except MappingError as exc:
            errors += 1
            click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_CONFIG if errors else EXIT_OK)


@main.group()
def db() -> None:
    """The state DB."""


@db.command("upgrade")
@click.pass_obj
@guarded
def db_upgrade(obj: Ctx) -> None:
    """Apply the state DB migrations."""
    obj.store().close()
    click.echo("state DB is at the newest schema")


@main.group()
def outbox() -> None:
    """Transfers waiting for a retry, and dead letters."""


@outbox.command("list")
@click.option("--job")
@click.option("--status", type=click.Choice(["pending", "dead"]))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@guarded
def outbox_list(obj: Ctx, job: str | None, status: str | None, as_json: bool) -> None:
    """List outbox rows."""
    store = obj.store()
    try:
        rows = store.outbox(job=job, status=status)
    finally:
        store.close()
    if not rows and not as_json:
        click.echo("outbox: empty")
    for r in rows:
        if as_json:
            r.pop("payload")
            click.echo(orjson.dumps(r, default=str).decode())
        else:
            detail = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in r["error_details"])
            click.echo(f"{r['status']:7} {r['job']} -> {r['target']} {r['item_code']} "
                       f"attempts={r['attempts']} next={r['next_attempt_at']:%Y-%m-%d %H:%M:%S} "
                       f"error={r['last_error']}" + (f" [{detail}]" if detail else ""))


@outbox.command("replay")
@click.option("--job")
@click.option("--item", "items", multiple=True, metavar="CODE")
@click.option("--all", "include_dead", is_flag=True, help="dead letters too, not only due rows")
@click.pass_obj
@guarded
def outbox_replay(obj: Ctx, job: str | None, items: tuple[str, ...], include_dead: bool) -> None:
    """Re-send outbox items now (their latest content from the source)."""
    from syncd.runner import replay_via_daemon_or_locally

    results = replay_via_daemon_or_locally(obj, job=job, items=list(items),
                                           include_dead=include_dead or bool(items))
    if not results:
        click.echo("nothing to replay")
    for result in results:
        _print_result(result, False)
    sys.exit(EXIT_OK if all(r["outcome"] == "ok" for r in results) else EXIT_PARTIAL)


@outbox.command("discard")
@click.option("--job")
@click.option("--item", "items", multiple=True, metavar="CODE")
@click.option("--all", "everything", is_flag=True, help="required to discard without --item")
@click.pass_obj
@guarded
def outbox_discard(obj: Ctx, job: str | None, items: tuple[str, ...], everything: bool) -> None:
    """Drop outbox rows (by item, or all with --all)."""
    if not items and not everything:
        raise click.UsageError("give --item CODE or --all")
    store = obj.store()
    try:
        click.echo(f"discarded {store.discard(job=job, items=list(items))} rows")
    finally:
        store.close()


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@main.group()
def report() -> None:
    """Reconciliation and inspection reports."""


@report.command("reconcile")
@click.option("--channels", required=True, help="channels to compare, comma-separated")
@click.option("--reference", help="the channel the others should agree with (default: the first)")
@click.option("--items", "items", default="", help="only these item codes, comma-separated")
@click.option("--format", "formats", default="html,xlsx,json,csv", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports"), show_default=True)
@click.option("--fix", is_flag=True, help="resync differing items from the reference channel")
@click.option("--dry-run", is_flag=True, help="with --fix: show what would be resynced, write nothing")
@click.pass_obj
@guarded
def report_reconcile(obj: Ctx, channels: str, reference: str | None, items: str, formats: str,
                     out_dir: Path, fix: bool, dry_run: bool) -> None:
    """Every difference between channels, per item and field; exit 1 when any remain.

    Values are compared as each channel holds them, even where they break a rule
    (a placeholder, a bad code): `syncd report inspect` reports the rules."""
    from syncd.report import write_reports
    from syncd.report.build import reconcile_channels

    names = _csv(channels)
    reference = reference or (names[0] if names else "")
    store = obj.store()
    try:
        result, data = reconcile_channels(obj.config, store, names, reference,
                                          items=_csv(items))
        paths = write_reports(data, _csv(formats), out_dir)
        rates = ", ".join(f"{n} {s.rate:.1%}" for n, s in result.stats.items())
        click.echo(f"reconcile {result.run_id}: {result.items} items, {result.total_diffs} "
                   f"differences; consistency vs {reference}: {rates}")
        for channel, code, reason in result.unreadable[:20]:
            click.echo(f"  unreadable in {channel}: {code}: {reason}")
        for path in paths:
            click.echo(f"  {path}")
        if fix:
            _fix(obj, store, result, dry_run)
    finally:
        store.close()
    sys.exit(EXIT_OK if not result.diffs and not result.unreadable else EXIT_PARTIAL)


def _fix(obj: Ctx, store: Any, result: Any, dry_run: bool) -> None:
    from syncd.repair import plan, repair

    plans = plan(result, obj.config)
    for p in plans:
        click.echo(f"{'would resync' if dry_run else 'resync'} {len(p.items)} items "
                   f"{result.reference} -> {p.channel} (job {p.job.name})"
                   + (f"; {len(p.extra)} only in {p.channel}, left for its owners to cancel"
                      if p.extra else ""))
    for run in repair(obj.config, store, plans, dry_run=dry_run):
        _print_result(dataclasses.asdict(run), False)


@report.command("inspect")
@click.option("--channel", required=True, help="the channel whose guides are inspected")
@click.option("--items", "items", default="", help="only these item codes, comma-separated")
@click.option("--promise-cut-ratio", type=float, default=None,
              help="the province's required cut of promised vs legal limit (e.g. 0.6)")
@click.option("--format", "formats", default="html,xlsx,json,csv", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports"), show_default=True)
@click.pass_obj
@guarded
def report_inspect(obj: Ctx, channel: str, items: str, promise_cut_ratio: float | None,
                   formats: str, out_dir: Path) -> None:
    """Every guide that breaks the reform's rules; exit 1 when there are findings."""
    import uuid

    from syncd.report import write_reports
    from syncd.report.build import inspect_channel

    try:
        outcome = inspect_channel(obj.config, channel, items=_csv(items),
                                  promise_cut_ratio=promise_cut_ratio, run_id=str(uuid.uuid4()))
    except ValueError as exc:
        raise ConfigError(str(exc), key="--promise-cut-ratio") from None
    data = outcome.report
    paths = write_reports(data, _csv(formats), out_dir)
    flagged = len({f.item_code for f in data.findings})
    click.echo(f"inspect {data.run_id}: {channel}: {len(data.findings)} findings in {flagged} "
               f"items")
    for code, reason in outcome.unreadable[:20]:
        click.echo(f"  unreadable: {code}: {reason}")
    for path in paths:
        click.echo(f"  {path}")
    sys.exit(EXIT_OK if not data.findings and not outcome.unreadable else EXIT_PARTIAL)


@main.command()
@click.option("--items", default=2000, show_default=True, help="generated items in the department DB")
@click.option("--dir", "workdir", type=click.Path(path_type=Path), default=Path("syncd-demo"),
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the summary as one JSON object")
@guarded
def demo(items: int, workdir: Path, as_json: bool) -> None:
    """Zero-config demo on the embedded defaults."""
    from syncd.demo import run_demo

    summary = run_demo(workdir, items=items, as_json=as_json, echo=click.echo)
    if as_json:
        click.echo(orjson.dumps(summary).decode())


@main.command("platform-sim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8480, show_default=True)
@click.option("--db", "db_path", type=click.Path(dir_okay=False),
              help="keep items in this SQLite file (default: memory)")
@click.option("--app-key", default="syncd-demo", show_default=True,
              help="the application allowed to call; its secret comes from $SYNCD_SIM_SECRET")
@click.option("--scheme", type=click.Choice(["hmac-sha256", "sm3", "token"]),
              default="hmac-sha256", show_default=True)
@guarded
def platform_sim(host: str, port: int, db_path: str | None, app_key: str, scheme: str) -> None:
    """Serve the provincial platform simulator (faults via POST /_sim/faults)."""
    from syncd.sim import run_simulator

    secret = os.environ.get("SYNCD_SIM_SECRET")
    if not secret:
        raise ConfigError("set SYNCD_SIM_SECRET to the app secret the simulator should accept "
                          "(kept out of the command line, where ps would show it)",
                          key="SYNCD_SIM_SECRET")
    from syncd import log
    log.configure(secrets=[secret])
    run_simulator(host, port, db_path, {app_key: secret}, scheme)


if __name__ == "__main__":  # pragma: no cover
    main()

