"""The ``scrm`` command line: tenants, migrations, topics, serving a service, and the local stack."""

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from scrm_ingest.entrypoints.cli import import_app
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.settings import ServiceSettings
from scrm_kit.tenancy import TenantDirectory
from scrm_profile.entrypoints.cli import clv_app

app = typer.Typer(help="SCRM: private-domain customer operations platform.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants and their credentials.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
channels_app = typer.Typer(help="Notify channel configuration.", no_args_is_help=True)
callbacks_app = typer.Typer(help="Channel provider callbacks into ingest.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(db_app, name="db")
app.add_typer(topics_app, name="topics")
app.add_typer(channels_app, name="channels")
app.add_typer(callbacks_app, name="callbacks")
app.add_typer(clv_app, name="clv")
app.add_typer(import_app, name="import")
console = Console(stderr=True)

SERVICES = ("ingest", "profile", "journey", "notify")


def _migration_dirs() -> list[tuple[str, Path]]:
    import scrm_ingest
    import scrm_journey
    import scrm_kit
    import scrm_notify
    import scrm_profile

    def root(module: object) -> Path:
        return Path(module.__file__).resolve().parents[2] / "migrations"  # type: ignore[attr-defined]

    return [
        ("tenancy", root(scrm_kit)),
        ("profile", root(scrm_profile)),
        ("journey", root(scrm_journey)),
        ("notify", root(scrm_notify)),
        ("ingest", root(scrm_ingest)),
    ]


@db_app.command("upgrade")
def db_upgrade(
    only: Annotated[str | None, typer.Option(help="Migrate one schema (tenancy, profile, ...)")] = None,
) -> None:
    """Apply every schema's migrations up to head (idempotent)."""
    from scrm_kit.migrate import upgrade

    url = ServiceSettings().db.url.get_secret_value()
    for name, path in _migration_dirs():
        if only and name != only:
            continue
        upgrade(path, url)
        console.print(f"migrated {name}")


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Option(help="Display name of the tenant")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only")] = False,
) -> None:
    """Create a tenant; prints its id, write key (ingest) and API token (other services) once."""

    async def create() -> dict[str, str]:
        engine = build_engine(ServiceSettings().db)
        try:
            created = await TenantDirectory(build_sessionmaker(engine)).create(name)
        finally:
            await engine.dispose()
        return {"tenant_id": created.tenant_id, "write_key": created.write_key, "api_token": created.api_token}

    try:
        tenant = asyncio.run(create())
    except ValueError as exc:
        console.print(f"[red]name: {exc}[/red]")
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(tenant))
    else:
        for key, value in tenant.items():
            print(f"{key:10} {value}")


@tenant_app.command("rate-limit")
def tenant_rate_limit(
    tenant_id: Annotated[str, typer.Option(help="Tenant to configure")],
    events_per_second: Annotated[
        int | None, typer.Option(help="Events per second per ingest replica; omit to use the service default")
    ] = None,
) -> None:
    """Set a tenant's ingest rate limit (answers 429 with Retry-After beyond it)."""

    async def configure() -> bool:
        engine = build_engine(ServiceSettings().db)
        try:
            return await TenantDirectory(build_sessionmaker(engine)).set_rate_limit(tenant_id, events_per_second)
        finally:
            await engine.dispose()

    try:
        found = asyncio.run(configure())
    except ValueError as exc:
        console.print(f"[red]events-per-second: {exc}[/red]")
        raise typer.Exit(2) from exc
    if not found:
        console.print(f"[red]tenant-id: no tenant {tenant_id!r}[/red]")
        raise typer.Exit(2)
    print(json.dumps({"tenant_id": tenant_id, "events_per_second": events_per_second}))


@tenant_app.command("exists")
def tenant_exists(tenant_id: str) -> None:
    """Exit 0 if the tenant exists, 1 if not."""
    from sqlalchemy import select

    from scrm_kit.tenancy import tenants

    async def check() -> bool:
        engine = build_engine(ServiceSettings().db)
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(select(tenants.c.tenant_id).where(tenants.c.tenant_id == tenant_id))).first()
        finally:
            await engine.dispose()
        return row is not None

    raise typer.Exit(0 if asyncio.run(check()) else 1)


@topics_app.command("create")
def topics_create(
    partitions: Annotated[int, typer.Option(help="Partitions per topic")] = 8,
    replication: Annotated[int, typer.Option(help="Replication factor")] = 1,
) -> None:
    """Create the platform's topics and dead-letter topics (idempotent)."""
    from scrm_stack.topics import ensure_topics

    created = asyncio.run(ensure_topics(ServiceSettings().kafka.bootstrap_servers, partitions, replication))
    console.print(f"created: {', '.join(created) or 'nothing (all present)'}")


@channels_app.command("webhook")
def channels_webhook(
    tenant_id: Annotated[str, typer.Option(help="Tenant to configure")],
    url: Annotated[str, typer.Option(help="Where touches are POSTed")],
    secret: Annotated[str | None, typer.Option(help="HMAC secret (generated when omitted)")] = None,
) -> None:
    """Point a tenant's webhook channel at a URL."""
    from scrm_notify.service.channels import configure_webhook

    async def configure() -> tuple[str, str]:
        engine = build_engine(ServiceSettings().db)
        try:
            return await configure_webhook(build_sessionmaker(engine), tenant_id, url, secret)
        finally:
            await engine.dispose()

    configured_url, configured_secret = asyncio.run(configure())
    print(json.dumps({"channel": "webhook", "url": configured_url, "secret": configured_secret}))


@callbacks_app.command("set")
def callbacks_set(
    provider: Annotated[str, typer.Argument(help="wecom, wechat-oa, aliyun-sms, tencent-sms, sendgrid or generic")],
    tenant_id: Annotated[str, typer.Option(help="Tenant to configure")],
    public_url: Annotated[str, typer.Option(envvar="SCRM_CALLBACK_PUBLIC_URL", help="Base URL of ingest")] = (
        "http://127.0.0.1:8001"
    ),
    corp_id: Annotated[str | None, typer.Option(help="wecom: corp id")] = None,
    appid: Annotated[str | None, typer.Option(help="wechat-oa: appid")] = None,
    token: Annotated[str | None, typer.Option(help="wecom/wechat-oa: Token (generated when omitted)")] = None,
    encoding_aes_key: Annotated[str | None, typer.Option(help="wecom/wechat-oa: EncodingAESKey (generated)")] = None,
    secret: Annotated[str | None, typer.Option(help="generic: HMAC secret (generated when omitted)")] = None,
    verification_key: Annotated[str | None, typer.Option(help="sendgrid: Signed Event Webhook key")] = None,
) -> None:
    """Configure a provider's callbacks for a tenant; prints the callback URL(s) and the secrets once (JSON)."""
    from scrm_ingest.adapters.callback_store import CallbackConfigStore
    from scrm_ingest.domain.callbacks_config import ConfigError, Provider, callback_urls, configure

    if provider not in {p.value for p in Provider}:
        console.print(f"[red]provider: must be one of {', '.join(p.value for p in Provider)}[/red]")
        raise typer.Exit(2)
    values = {"corp_id": corp_id, "appid": appid, "token": token, "encoding_aes_key": encoding_aes_key}
    try:
        configured = configure(
            tenant_id, Provider(provider), secret=secret, verification_key=verification_key, **values
        )
    except ConfigError as exc:
        console.print(f"[red]{exc.field}: {exc.message}[/red]")
        raise typer.Exit(2) from exc

    async def save() -> None:
        engine = build_engine(ServiceSettings().db)
        try:
            await CallbackConfigStore(build_sessionmaker(engine)).save(configured.config)
        finally:
            await engine.dispose()

    asyncio.run(save())
    urls = callback_urls(public_url, tenant_id, Provider(provider), configured.url_secret)
    print(json.dumps({"provider": provider, "urls": urls, "secrets": configured.shown}, ensure_ascii=False))


@app.command("serve")
def serve(
    service: Annotated[str, typer.Argument(help="ingest, profile, journey or notify")],
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8001-8004 by service)")] = None,
    host: Annotated[str, typer.Option(help="Bind address")] = "0.0.0.0",
    roles: Annotated[str | None, typer.Option(help="Comma list of api,consumer,scheduler (default all)")] = None,
) -> None:
    """Run one service process (its API and/or its consumers and scheduler)."""
    import uvicorn

    if service not in SERVICES:
        console.print(f"[red]service: must be one of {', '.join(SERVICES)}[/red]")
        raise typer.Exit(2)
    if roles:
        os.environ["SCRM_ROLES"] = roles
    uvicorn.run(
        f"scrm_{service}.entrypoints.api:app",
        factory=True,
        host=host,
        port=port or 8001 + SERVICES.index(service),
        access_log=False,
        timeout_graceful_shutdown=20,
    )


@app.command("run")
def run_stack() -> None:
    """Start everything locally (Postgres, Kafka, migrations, topics, the four services); Ctrl-C stops it all."""
    from scrm_notify.service.channels import configure_webhook
    from scrm_stack.launcher import SERVICES as STACK_SERVICES
    from scrm_stack.launcher import Stack, demo_tenant

    stack = Stack(log=lambda line: console.print(line, highlight=False))
    if stack.all_ready():
        console.print("[yellow]The stack is already running (all four services answer /readyz).[/yellow]")
        saved = stack.config.state_dir / "demo-tenant.json"
        if saved.exists():
            _print_banner(stack, json.loads(saved.read_text()))
        return

    def _interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        stack.start_infrastructure()
        tenant = demo_tenant(stack)
        os.environ.update(stack.service_env())

        async def point_webhook_at_sink() -> None:
            engine = build_engine(ServiceSettings().db)
            try:
                await configure_webhook(
                    build_sessionmaker(engine),
                    tenant["tenant_id"],
                    f"{stack.url('sink')}/hooks/demo",
                    stack.config.sink_secret,
                )
            finally:
                await engine.dispose()

        asyncio.run(point_webhook_at_sink())
        stack.start_sink()
        stack.start_services()
        stack.wait_ready(("sink", *STACK_SERVICES))
        console.print(f"[green]All four services ready in {time.monotonic() - started:.1f}s.[/green]")
        _print_banner(stack, tenant)
        while True:
            time.sleep(1)
            for name, process in list(stack.processes.items()):
                if process.poll() is not None:
                    console.print(f"[red]{name} exited with {process.returncode}; see {stack.log_dir}/{name}.log[/red]")
                    stack.processes.pop(name)
    except KeyboardInterrupt:
        console.print("\nStopping...")
    except Exception as exc:
        console.print(f"[red]{exc}[/red]")
        stack.stop()
        raise typer.Exit(1) from exc
    stack.stop()
    console.print("Stopped every process this run started.")


@app.command("demo-env")
def demo_env() -> None:
    """Print shell exports for the demo tenant of `scrm run`: eval "$(.venv/bin/scrm demo-env)"."""
    from scrm_stack.launcher import Stack

    stack = Stack()
    saved = stack.config.state_dir / "demo-tenant.json"
    if not saved.exists():
        console.print("[red]no demo tenant yet: start the stack with `make run` first[/red]")
        raise typer.Exit(1)
    tenant = json.loads(saved.read_text())
    exports = {
        "SCRM_TENANT_ID": tenant["tenant_id"],
        "SCRM_WRITE_KEY": tenant["write_key"],
        "SCRM_API_TOKEN": tenant["api_token"],
        **{f"SCRM_{name.upper()}_URL": stack.url(name) for name in (*SERVICES, "sink")},
    }
    print("\n".join(f"export {key}={value}" for key, value in exports.items()))


def _print_banner(stack: object, tenant: dict[str, str]) -> None:
    from scrm_stack.launcher import Stack

    assert isinstance(stack, Stack)
    lines = [
        "",
        *(f"  {name:8} {stack.url(name)}   (docs: {stack.url(name)}/docs)" for name in SERVICES),
        f"  webhook sink  {stack.url('sink')}/received",
        f"  logs     {stack.log_dir}",
        "",
        "Demo tenant (also in .local/demo-tenant.json):",
        f"  SCRM_TENANT_ID={tenant['tenant_id']}",
        f"  SCRM_WRITE_KEY={tenant['write_key']}",
        f"  SCRM_API_TOKEN={tenant['api_token']}",
        "",
        'Try the flow from the README: eval "$(.venv/bin/scrm demo-env)" sets these in your shell.',
        "Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(app())
