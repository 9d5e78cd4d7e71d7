"""The vendor registry: adding a vendor is one module in this package and one line here."""

from __future__ import annotations

from poller.vendors.base import Vendor
from poller.vendors.tencent_ccc import VENDOR_SPEC as TENCENT_CCC

VENDORS: dict[str, Vendor] = {spec.name: spec for spec in (TENCENT_CCC,)}
