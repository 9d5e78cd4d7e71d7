"""``poller notify``: events from the stream to the team's DingTalk, Feishu, WeCom or a webhook."""

from poller.tools.notify.config import NotifyConfig, load_notify_config, parse_notify_config
from poller.tools.notify.notifier import DeadLetter, Notifier, serve

__all__ = ["DeadLetter", "Notifier", "NotifyConfig", "load_notify_config", "parse_notify_config", "serve"]
