"""`tf.train.Example` wire format, written without TensorFlow or protobuf.

The bytes are exactly what `tf.train.Example.SerializeToString(deterministic=True)` gives for a
record of scalar features (a test compares the two on real records). The messages involved, from
tensorflow/core/example/{example,feature}.proto:

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }  // entry: string key = 1; Feature value = 2;
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                             Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    Int64List { repeated int64 value = 1 [packed = true]; }

Deterministic serialization writes map entries sorted by key, which is what makes a record's bytes
the same in every process.
"""

import operator

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_LENGTH_DELIMITED = 2  # wire type of strings, bytes, sub-messages and packed repeated fields


_ONE_BYTE = tuple(bytes((value,)) for value in range(0x80))  # most tags and lengths


def _varint(value):
  """A non-negative int as a base-128 varint, low groups first."""
  if value < 0x80:
    return _ONE_BYTE[value]
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _header(number, length):
  """Tag and length of a length-delimited field whose payload is `length` bytes."""
  return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(length)


def _field(number, payload):
  """One length-delimited field: tag, length, payload."""
  return _header(number, len(payload)) + payload


def _bytes_feature_head(value):
  """Feature{bytes_list: BytesList{value: [value]}} up to `value` itself, which follows it.

  Only the headers are built here, so an image's bytes are copied once, into the record.
  """
  value_header = _header(1, len(value))
  return _header(1, len(value_header) + len(value)) + value_header


def _int64_feature(key, value):
  """Feature{int64_list: Int64List{value: [value]}}, the list packed as proto3 writes it."""
  try:
    value = operator.index(value)  # ints and NumPy integers; not floats, which would be truncated
  except TypeError as e:
    raise ValueError(f"feature {key!r}: expected an integer, got {type(value).__name__}") from e
  if not _INT64_MIN <= value <= _INT64_MAX:
    raise ValueError(f"feature {key!r}: {value} does not fit in int64")
  # Negative values are their 64-bit two's complement, so always ten bytes, as protobuf writes them.
  return _field(3, _field(1, _varint(value & 0xFFFFFFFFFFFFFFFF)))


def _map_entry(key, feature_head, payload):
  """The `Features.feature` entry of key, as two parts; its Feature is `feature_head + payload`."""
  feature_length = len(feature_head) + len(payload)
  head = _field(1, key.encode()) + _header(2, feature_length)
  return _header(1, len(head) + feature_length) + head + feature_head, payload


def serialize_example(values, types):
  """Serializes one Example whose features each hold a single value.

  Args:
    values: a dict from feature key (str) to its value: bytes, or an int within int64.
    types: a dict from every key of `values` to `bytes` or `int`, the feature's list type.

  Returns:
    The serialized `tf.train.Example`, byte for byte what TensorFlow writes deterministically.

  Raises:
    ValueError: if the keys differ from `types`' or a value does not match its type.
  """
  if set(values) != set(types):
    raise ValueError(f"expected features {sorted(types)}, got {sorted(values)}")
  parts = []
  for key in sorted(values, key=lambda k: k.encode()):
    value = values[key]
    if types[key] is bytes:
      if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError(f"feature {key!r}: expected bytes, got {type(value).__name__}")
      value = bytes(value)
      parts.extend(_map_entry(key, _bytes_feature_head(value), value))
    else:
      parts.extend(_map_entry(key, _int64_feature(key, value), b""))
  return b"".join([_header(1, sum(map(len, parts))), *parts])
