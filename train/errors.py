"""The trainer's error types: problems a user can fix, each reported as one line."""


class TrainingError(ValueError):
  """A problem the user can fix: the message is one line naming the file or flag at fault."""


class NonFiniteError(TrainingError):
  """The loss or the weights became NaN or infinite."""


class DeadNetworkError(TrainingError):
  """A layer of the network stopped firing for every image: it cannot learn any more."""


class DataError(ValueError):
  """The dataset cannot feed the trainer as asked; the message names the file or flag."""


class CorruptDataError(DataError):
  """A shard could not be read or one of its records could not be decoded."""
