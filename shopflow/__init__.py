"""ShopFlow: an e-commerce backend built as a Kafka stream-processing pipeline.

The code lives in the design card's top-level folders (streams/, topologies/, schemas/,
connectors/, api/, tables/, deploy/) and is imported as ``shopflow.<folder>``; this package
holds what they share: the settings and the ``shopflow`` command.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
