"""The one exception a user's mistake raises. The CLI prints it on one line, exit 2."""


class ConfigError(ValueError):
  """A bad config value: names the field, the value and what is allowed."""

  def __init__(self, field: str, value, allowed):
    if isinstance(allowed, (tuple, list)):
      allowed = "one of " + ", ".join(repr(a) for a in allowed)
    super().__init__(f"{field} = {value!r}: must be {allowed}")
    self.field = field
