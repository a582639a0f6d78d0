"""What an upgrade sends out while it runs: its metrics (served, then pushed) and its webhooks.

Both are observers: :func:`serving_outputs` registers them on the plugin manager for the length of a
run, as the configuration asks (``upgrade.metrics_address``, ``upgrade.pushgateway``,
``upgrade.webhooks``), and takes them away after it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from zdu.config import UpgradeConfig
from zdu.errors import UsageError
from zdu.metrics import UpgradeMetrics
from zdu.notify import WebhookNotifier
from zdu.registry import ZduPluginManager

__all__ = ["serving_outputs"]

log = logging.getLogger("zdu.upgrade")


@contextlib.contextmanager
def serving_outputs(
    config: UpgradeConfig, manager: ZduPluginManager, on_metrics_url: Callable[[str], None]
) -> Iterator[None]:
    """Serve metrics, push them at the end, and notify webhooks, as ``config`` asks.

    :param on_metrics_url: told where the metrics are served, once they are.
    :raises UsageError: ``upgrade.metrics_address`` cannot be served on.
    """
    metrics = UpgradeMetrics() if config.metrics_address or config.pushgateway else None
    notifier = WebhookNotifier(config.webhooks) if config.webhooks else None
    for observer, name in ((metrics, "zdu-metrics"), (notifier, "zdu-webhooks")):
        if observer is not None and not manager.has_plugin(name):
            manager.register(observer, name=name)
    try:
        if metrics is not None and config.metrics_address:
            try:
                url = metrics.serve(config.metrics_address)
            except OSError as error:
                raise UsageError(
                    f"upgrade.metrics_address: cannot serve on {config.metrics_address!r}: {error}"
                ) from None
            log.info("metrics of upgrade of %s at %s", config.target.name, url)
            on_metrics_url(url)
        yield
    finally:
        for observer in (metrics, notifier):
            if observer is not None and manager.is_registered(observer):
                manager.unregister(observer)
        if metrics is not None:
            metrics.close()
            if config.pushgateway:
                try:
                    metrics.push(config.pushgateway, config.target.name)
                except OSError as error:
                    log.warning("could not push the metrics to the Pushgateway: %s", error)
