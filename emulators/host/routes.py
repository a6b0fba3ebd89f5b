"""HTTP trigger route templates (`runs/{runId}`): matching a request path and naming its route parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["RouteTemplate"]

_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\??\}")


@dataclass(frozen=True)
class RouteTemplate:
    """A template of literal segments and `{name}` parameters; a parameter matches one non-empty segment."""

    template: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        """Compile a template; literals match case-insensitively, as ASP.NET routing does."""
        pieces: list[str] = []
        position = 0
        for match in _PARAMETER.finditer(template):
            pieces.append(re.escape(template[position:match.start()]))
            pieces.append(f"(?P<{match.group(1)}>[^/]+)")
            position = match.end()
        pieces.append(re.escape(template[position:]))
        return cls(template, re.compile("".join(pieces).strip("/"), re.IGNORECASE))

    def match(self, path: str) -> dict[str, str] | None:
        """The route parameters (percent-decoded) when the raw path below the prefix matches, else None."""
        found = self.pattern.fullmatch(path.strip("/"))
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}
