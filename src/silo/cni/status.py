"""STATUS (CNI 1.1): ready when silod answers; "plugin not available" (50) when it does not."""

from __future__ import annotations

from silo.cni import common
from silo.errors import SiloError, Timeout, Unavailable
from silo.schema import cni

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def run(call: common.Call) -> dict[str, Any] | None:
    try:
        call.client.list_networks({"Name": call.network})
    except (Unavailable, Timeout) as err:
        raise cni.CniError(cni.NOT_AVAILABLE, f"silod does not answer: {err.message}",
                           f"silod at {call.host}") from None
    except SiloError as err:
        raise common.translate(err, "asking silod") from None
    return None
