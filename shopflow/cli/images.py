"""``shopflow images``: the image agent (streams/files.py), and ``shopflow images sweep``, which removes
uploads never confirmed now rather than at the agent's next sweep."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import typer

from shopflow.settings import get_settings

images_app = typer.Typer(help="Product images: the agent that checks and thumbnails uploads, and its sweep.")


@images_app.callback(invoke_without_command=True)
def images(ctx: typer.Context) -> None:
    """Turn confirmed uploads into product images and thumbnails (runs until interrupted)."""
    if ctx.invoked_subcommand is None:
        from shopflow.streams.files import main

        main(get_settings())


@images_app.command("sweep")
def sweep_uploads(
    older_than_s: float = typer.Option(None, "--older-than", min=0,
                                       help="Seconds past an upload's expiry (default: upload_sweep_after_s)."),
) -> None:
    """Remove the objects of uploads never confirmed, and mark them swept."""
    from shopflow.catalog.images import ProductImages
    from shopflow.catalog.store import Catalog
    from shopflow.files import ObjectStore
    from shopflow.schemas.codec import AvroCodec
    from shopflow.schemas.registry import SchemaRegistry
    from shopflow.streams.files import sweep

    settings = get_settings()
    after = timedelta(seconds=settings.upload_sweep_after_s if older_than_s is None else older_than_s)

    async def run() -> int:
        registry = SchemaRegistry(settings.registry_url)
        catalog = await Catalog.open(settings, AvroCodec(registry), cache=False, pool_size=1)
        try:
            return await sweep(ObjectStore(settings), ProductImages(catalog), older_than=after)
        finally:
            await catalog.close()
            registry.close()

    typer.echo(f"swept {asyncio.run(run())} uploads never confirmed")
