"""py-allow-list: a hearth-wasm-edge policy in Python, built with componentize-py.

The same policy as the Rust crate `hearth-wasm-edge new` writes: it
terminates the names in `names` into `backend` and refuses everything else.
Config (`policy.config` of the edge, `config:` of a case file): `names`
(comma-separated, `*.` matches exactly one label), `backend` (default `app`).
It targets the `policy` world of wit/edge.wit: `init` and `decide` are
methods of `WitWorld`; an `Err` raised from `init` refuses the config.
"""

from componentize_py_types import Err
from wit_world import WitWorld as Policy
from wit_world.imports import host
from wit_world.imports.types import (
    Alert,
    ClientHello,
    Decision_Reject,
    Decision_Terminate,
    Level,
    ProxyProtocol,
    Rejection,
    Route,
)

KNOWN_KEYS = ("names", "backend")

# One instance serves many decisions: the config is kept between calls.
names: list[str] = []
backend = "app"


def normalize(name: str) -> str:
    """Lowercase, without one trailing dot: the form the edge passes."""
    name = name.strip().lower()
    return name[:-1] if name.endswith(".") else name


def matches(pattern: str, sni: str) -> bool:
    """`*.example.com` matches one label under example.com, not the apex."""
    if pattern.startswith("*."):
        head, dot, rest = sni.partition(".")
        return bool(head) and bool(dot) and rest == pattern[2:]
    return sni == pattern


class WitWorld(Policy):
    def init(self, config: list[tuple[str, str]]) -> None:
        global names, backend
        for key, _ in config:
            if key not in KNOWN_KEYS:
                raise Err(f'unknown key "{key}" (known: {", ".join(KNOWN_KEYS)})')
        values = dict(config)
        names = [normalize(n) for n in values.get("names", "").split(",") if n.strip()]
        backend = values.get("backend", "app")
        host.log(Level.INFO, f"allow-list of {len(names)} names into {backend}")

    def decide(self, hello: ClientHello):
        sni = hello.server_name
        if sni is None:
            return Decision_Reject(Rejection("no-sni", Alert.UNRECOGNIZED_NAME))
        if any(matches(pattern, sni) for pattern in names):
            return Decision_Terminate(Route(backend, ProxyProtocol.BACKEND_DEFAULT))
        return Decision_Reject(Rejection("unknown-sni", Alert.UNRECOGNIZED_NAME))
