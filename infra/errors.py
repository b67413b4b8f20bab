"""The kit's error tree. Nothing above ``infra`` sees botocore; adapters translate at the edge.

KitError
 ├── ConfigError          bad settings or config file (operator must fix)
 ├── BackendError         an AWS call failed after retries (retrying later may work)
 │    ├── ResourceMissing a bucket, table, queue or stream does not exist (run bootstrap)
 │    └── Unsupported     the endpoint lacks the operation asked for (also a ConfigError:
 │                        retrying cannot help, e.g. enhanced fan-out on moto)
 ├── NotFound             the thing asked for (event, replay, ...) does not exist
 └── Conflict             a write refused by what is stored (a schema it is incompatible with)
"""

from __future__ import annotations


class KitError(Exception):
    """Root of every error the kit raises on purpose."""


class ConfigError(KitError):
    pass


class BackendError(KitError):
    def __init__(self, message: str, *, service: str = "", code: str = "") -> None:
        super().__init__(message)
        self.service = service
        self.code = code


class ResourceMissing(BackendError):
    pass


class Unsupported(BackendError, ConfigError):
    pass


class NotFound(KitError):
    pass


class Conflict(KitError):
    pass
