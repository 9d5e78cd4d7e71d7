"""The vendor registry: adding a vendor is one module in this package and one line in ``_MODULES``."""

from __future__ import annotations

from importlib import import_module

from poller.vendors.base import Vendor

_MODULES = (
    "alibaba_aiccs",
    "alibaba_outboundbot",
    "byrobot",
    "huawei_aicc",
    "tencent_ccc",
)


def _load() -> dict[str, Vendor]:
    specs = [import_module(f"poller.vendors.{name}").VENDOR_SPEC for name in _MODULES]
    return {spec.name: spec for spec in specs}


VENDORS: dict[str, Vendor] = _load()
