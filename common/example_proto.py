"""`tf.train.Example` wire format, written and read without TensorFlow or protobuf.

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
the same in every process. `parse_example` reads what any protobuf writer may produce (fields in any
order, int64 lists packed or not, fields it does not know), as `tf.io.parse_single_example` does.
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


# Wire types (https://protobuf.dev/programming-guides/encoding/): what follows a field's tag.
_VARINT, _FIXED64, _FIXED32 = 0, 1, 5


def _read_varint(buffer, position, where):
  """The varint at `position` of a memoryview and the position after it."""
  value, shift = 0, 0
  while True:
    if position >= len(buffer) or shift > 63:
      raise ValueError(f"{where}: truncated or overlong varint")
    byte = buffer[position]
    value |= (byte & 0x7F) << shift
    position, shift = position + 1, shift + 7
    if byte < 0x80:
      return value, position


def _fields(buffer, where):
  """Yields (field number, wire type, value) of a message: a memoryview for length-delimited
  fields, an int for varints, and None for fixed-width fields, whose bytes are skipped."""
  position = 0
  while position < len(buffer):
    tag, position = _read_varint(buffer, position, where)
    number, wire_type = tag >> 3, tag & 7
    if wire_type == _VARINT:
      value, position = _read_varint(buffer, position, where)
    elif wire_type == _LENGTH_DELIMITED:
      length, position = _read_varint(buffer, position, where)
      if position + length > len(buffer):
        raise ValueError(f"{where}: field {number} runs past the end of its message")
      value, position = buffer[position:position + length], position + length
    elif wire_type in (_FIXED64, _FIXED32):
      value, position = None, position + (8 if wire_type == _FIXED64 else 4)
      if position > len(buffer):
        raise ValueError(f"{where}: field {number} runs past the end of its message")
    else:
      raise ValueError(f"{where}: unsupported wire type {wire_type} in field {number}")
    yield number, wire_type, value


def _int64s(buffer, where):
  """The values of an Int64List, packed (as proto3 writes them) or one field per value."""
  values = []
  for number, wire_type, value in _fields(buffer, where):
    if number != 1:
      continue
    if wire_type == _VARINT:
      values.append(value)
    elif wire_type == _LENGTH_DELIMITED:
      position = 0
      while position < len(value):
        item, position = _read_varint(value, position, where)
        values.append(item)
  # Two's complement back to a signed int64.
  return [v - (1 << 64) if v > _INT64_MAX else v for v in values]


def _feature(buffer, where):
  """A Feature as (list type, values): bytes for a BytesList, int for an Int64List."""
  kind, values = None, []
  for number, wire_type, value in _fields(buffer, where):
    if wire_type != _LENGTH_DELIMITED:
      continue
    if number == 1:  # BytesList; a oneof's last field wins, as in protobuf.
      kind = bytes
      values = [bytes(v) for n, t, v in _fields(value, where) if n == 1 and t == _LENGTH_DELIMITED]
    elif number == 2:
      kind, values = float, None  # FloatList: no feature of ours has it; named in the error.
    elif number == 3:
      kind, values = int, _int64s(value, where)
  return kind, values


def parse_example(serialized, types, where="record"):
  """Parses one serialized Example whose features each hold a single value.

  The inverse of `serialize_example`, with the rules of `tf.io.parse_single_example` given a
  scalar `FixedLenFeature` per key: every key of `types` must hold exactly one value of its type;
  features not in `types` are ignored.

  Args:
    serialized: the Example's bytes (bytes, bytearray or memoryview).
    types: a dict from each wanted key to `bytes` or `int`.
    where: what to name in errors (a file and byte offset, say).

  Returns:
    A dict from each key of `types` to its value: bytes, or a Python int.

  Raises:
    ValueError: malformed bytes, a missing key, or a feature of another type or length.
  """
  buffer = memoryview(serialized).cast("B")
  entries = {}
  for number, wire_type, features in _fields(buffer, where):
    if number != 1 or wire_type != _LENGTH_DELIMITED:
      continue
    for entry_number, entry_type, entry in _fields(features, where):
      if entry_number != 1 or entry_type != _LENGTH_DELIMITED:
        continue
      key, feature = b"", memoryview(b"")
      for field, field_type, value in _fields(entry, where):
        if field_type == _LENGTH_DELIMITED and field == 1:
          key = bytes(value)
        elif field_type == _LENGTH_DELIMITED and field == 2:
          feature = value
      entries[key.decode("utf-8", "replace")] = feature  # a map's last entry for a key wins
  values = {}
  for key, kind in types.items():
    if key not in entries:
      raise ValueError(f"{where}: feature {key!r} is missing")
    found, items = _feature(entries[key], where)
    if found is not kind:
      name = {bytes: "bytes", int: "int64", float: "float", None: "no"}
      raise ValueError(f"{where}: feature {key!r} holds a {name[found]} list, expected "
                       f"{name[kind]}")
    if len(items) != 1:
      raise ValueError(f"{where}: feature {key!r} holds {len(items)} values, expected 1")
    values[key] = items[0]
  return values
