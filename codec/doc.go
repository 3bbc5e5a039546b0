// Package codec turns cache values into the bytes that tier stores in Redis
// and back. It guarantees three things:
//
//  1. Every stored value carries a versioned header, and values written by
//     any version of tier that knows the header's version stay readable.
//  2. Any bytes that are not a valid value decode to an error matching
//     [ErrCorrupt]: never a panic, and never an allocation out of proportion
//     to the input (see [Msgpack] and [Options.MaxSize]).
//  3. A [Format] reads what any Format with the same codecs wrote: Decode
//     takes the codec and the compression from each value's header, not
//     from its own options, so replicas of different versions or settings
//     share one Redis.
//
// A Format, made by [New], writes values with one [Codec]: [Msgpack] by
// default, [JSON], or a codec of your own (see the example of [Codec]). It
// can compress large values with S2. [Tombstone] gives the bytes that
// record "the source said there is no such value", for negative caching.
//
// # Byte layout
//
// Every stored value is a 3-byte header followed by a payload:
//
//	offset  size  field
//	0       1     format version: 0x01, the only version so far
//	1       1     codec ID: 0x01 msgpack, 0x02 JSON, 0x80 to 0xff user
//	              codecs, 0x00 in a tombstone; 0x03 to 0x7f are reserved
//	              for codecs this package may add
//	2       1     flags:
//	                bits 0-3 (0x0f)  compression ID: 0 none, 1 S2
//	                bit 4    (0x10)  expiry: an 8-byte expiry field follows
//	                bit 5    (0x20)  tags: a tags field follows (not in a
//	                                 tombstone)
//	                bit 6    (0x40)  reserved, always 0
//	                bit 7    (0x80)  tombstone
//	3       8     only with the expiry flag: the time the value expires,
//	              as Unix milliseconds, big-endian, never 0
//	then    var   only with the tags flag: uvarint born, uvarint count,
//	              count × (uvarint length, bytes) of the tags
//	then    rest  payload: the codec's bytes, compressed if the compression
//	              ID says so; empty in a tombstone
//
// An S2 payload is one S2 block (github.com/klauspost/compress/s2 block
// format, not the framed stream format), which starts with the length of
// the uncompressed bytes as an unsigned varint. A tombstone is exactly the
// three bytes 01 00 80, or 01 00 90 and an expiry field. So in redis-cli a
// msgpack value shows as "\x01\x01\x00\x82\xa4name...", a JSON value as
// "\x01\x02\x00{\"name\":...}" and a tombstone as "\x01\x00\x80".
//
// The expiry field lets a reader learn from the value alone how long it has
// left to live (see [Expiry]), so that a far hit needs no PTTL. It is
// written from the writer's clock and judged by the reader's; Redis's own
// TTL on the key remains the authority on when the key disappears.
//
// There is no checksum: Redis is trusted to return the bytes it was given.
// Bytes changed inside a payload are detected only where they break the
// codec's or S2's structure; elsewhere they decode to a different value.
//
// # Compatibility
//
// A change to the header layout gets a new format version; later versions
// of this package keep reading version 1. A reader that meets a format
// version, codec ID or compression ID it does not know returns an error
// matching [ErrCorrupt], so during a rolling upgrade new writers should not
// use a new codec or compression (or a larger MaxSize) until every reader
// knows it. The encodings of the built-in codecs are fixed for their IDs;
// see [Msgpack] and [JSON] for how each treats integers, times, nil and
// struct fields.
package codec
