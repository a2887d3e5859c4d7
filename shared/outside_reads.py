"""What a service's write rules read outside their own transaction.

The directory (who the patient is, what kind an organisation is) and the mirrored consent
view (is there a consent for this purpose?). Both exist only once the runtime has
connected to NATS, so a service's resource definitions hold this object and the runtime
fills it in when it starts (`ServiceSpec.extend`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.access.view import ConsentView
from shared.directory_client import DirectoryClient
from shared.fhir.errors import error
from shared.organisation_register import RegisterSender
from shared.transport.forwarding import Forwarder
from shared.transport.wire import Caller

if TYPE_CHECKING:
    from shared.runtime import ServiceRuntime


@dataclass
class OutsideReads:
    directory: DirectoryClient | None = None
    view: ConsentView | None = None

    def connect(self, runtime: ServiceRuntime, caller: Caller) -> None:
        """Fill in the directory client (reading as `caller`) and the consent view, once
        the runtime has connected."""
        settings, nc = runtime.settings, runtime.nc
        assert nc is not None
        self.directory = DirectoryClient(
            RegisterSender(Forwarder(nc, settings.request_timeout), runtime.organisations),
            settings.nats_prefix,
            settings.base_url,
            caller,
        )
        self.view = runtime.consent_view

    def require_directory(self) -> DirectoryClient:
        if self.directory is None:
            raise error(503, "transient", "The service is starting")
        return self.directory

    def require_view(self) -> ConsentView:
        if self.view is None:
            raise error(503, "transient", "The service is starting")
        self.view.ready()
        return self.view
