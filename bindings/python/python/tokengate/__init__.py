"""tokengate for Python: the Rust pipeline of ``tokengate serve`` in-process.

>>> gate = tokengate.Gate.from_file("tokengate.yaml")
>>> principal = await gate.authenticate(request.headers, method="GET", path="/v1/models")

Adapters: :mod:`tokengate.asgi` (Starlette/any ASGI app), :mod:`tokengate.fastapi`,
:mod:`tokengate.flask`, :mod:`tokengate.strawberry`; :mod:`tokengate.headers` reads the
``X-Auth-*`` headers ``tokengate serve`` sets for an app behind a proxy.
"""

from ._errors import AuthError, ConfigError
from ._tokengate import Gate, Principal, __version__

__all__ = ["AuthError", "ConfigError", "Gate", "Principal", "__version__"]
