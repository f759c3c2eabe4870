"""How ShopFlow's real servers are fetched and started as local processes (no Docker here).

``versions.toml`` pins every server; ``pom.xml`` resolves the Java ones from Maven Central;
``servers.py`` says how each one starts and when it is ready; ``stack.py`` starts, stops and
reports them in dependency order (``shopflow stack up|down|status``).
"""


class StackError(Exception):
    """A failure of the stack with a one-line reason and what to do next."""
