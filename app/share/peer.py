"""The client side of `seachat share`: list a peer's models, pull one of them.

A peer is a one-repository Hub (see server.py), so pulling from it is `seachat pull` with the
peer as endpoint. The Hugging Face token is never sent to a peer: only the share's own
`--token`, when one is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from seachat.app.hub.pull import PullOptions, PullOutcome, pull
from seachat.app.hub.repo import PullSpec
from seachat.app.share.server import INDEX_PATH, SHARE_REPO
from seachat.convert.errors import UserError


def peer_index(url: str, token: str | None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """[{name, file, size}] of what the peer at `url` offers."""
    import httpx2
    from huggingface_hub import get_session

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = get_session().get(url.rstrip("/") + INDEX_PATH, headers=headers, timeout=timeout)
    except httpx2.TransportError as exc:
        raise UserError(
            f"{url}: cannot reach the peer ({exc}); is `seachat share` running there?"
        ) from exc
    if resp.status_code == 401:
        raise UserError(
            f"{url}: the peer needs a token; add --token (ask whoever runs `seachat share`)."
        )
    try:
        resp.raise_for_status()
        models = resp.json()["models"]
        return [
            {"name": str(m["name"]), "file": str(m["file"]), "size": int(m["size"])} for m in models
        ]
    except (httpx2.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{url}: this is not a `seachat share` peer ({exc}).") from exc


def selector_for(name: str, index: list[dict[str, Any]]) -> str:
    """A model name (general.name) the peer lists becomes its file; anything else is a file name."""
    files = [m["file"] for m in index if m["name"].casefold() == name.casefold()]
    return files[0] if len(set(files)) == 1 else name


def pull_from_peer(
    url: str,
    name: str,
    models,
    options: PullOptions,
    note: Callable[[str], None],
    progress_factory: Callable[..., Any] | None = None,
) -> PullOutcome:
    token = options.token if isinstance(options.token, str) else None
    spec = PullSpec(SHARE_REPO, selector_for(name, peer_index(url, token)))
    peer_options = dataclasses.replace(options, endpoint=url.rstrip("/"), token=token or False)
    return pull(spec, models, peer_options, note=note, progress_factory=progress_factory)
