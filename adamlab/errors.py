"""The one exception a user's mistake raises, at the bottom of adamlab: every layer imports it.

The CLI prints it on one line and exits with code 2.
"""

_MESSAGE_ONLY = object()


class ConfigError(ValueError):
  """A bad config value: names the field, the value and what is allowed.

  ConfigError(field, value, allowed), or ConfigError(message) for a ready sentence.
  """

  def __init__(self, field: str, value=_MESSAGE_ONLY, allowed=None):
    if value is _MESSAGE_ONLY:
      super().__init__(field)
      self.field = None
      return
    if isinstance(allowed, (tuple, list)):
      allowed = "one of " + ", ".join(repr(a) for a in allowed)
    super().__init__(f"{field} = {value!r}: must be {allowed}")
    self.field = field


def check_one_of(field: str, value, allowed) -> None:
  """ConfigError unless value is one of `allowed`."""
  if value not in allowed:
    raise ConfigError(field, value, tuple(allowed))
