// Package invalidate carries key invalidations between the replicas of a
// tier cache over Redis pub/sub, so that every replica drops its near copy
// of a key that another replica (or an operator) changed.
//
// It guarantees that every message received on the channel is applied, in
// the order it arrived, unless it is one the receiving Bus published
// itself; that a malformed message is counted and ignored, never a crash;
// and that a subscription that was lost (its connection failed, or the
// server unsubscribed the Bus), or that stops answering its health check,
// is reported to the Handler (Disconnected) within 2×HealthInterval, and
// every confirmation of the subscription, the first and each after a gap,
// is reported too (Connected), so that the handler can drop what it
// cached while messages may have been lost.
//
// # Payloads
//
// A payload on the channel is one of:
//
//   - drop every key
//     =KEY         drop KEY, exactly as written after the "=" (any key)
//     KEY          drop KEY, the whole payload, when it is not empty, not "*",
//     and does not start with "=" or a NUL byte
//     \x00 frame   a library frame (below)
//
// So an operator drops a key with redis-cli by publishing the key itself,
// and needs the "=" form only for the empty key, the key "*", and keys that
// start with "=" or NUL. [OperatorPayload] returns the payload for any key.
// An empty payload is malformed.
//
// A library frame, as [AppendFrame] writes it, is:
//
//	0x00                  marker
//	0x01                  version; other versions are counted and ignored
//	flags                 0x01: drop every key; 0x02: each key is followed
//	                      by its new value; 0x04: a send time follows the
//	                      origin; other bits must be 0
//	origin [16]byte       the publishing Bus's ID
//	sent [8]byte          with flag 0x04: when the frame was made, Unix
//	                      nanoseconds, big-endian (for Options.Observe);
//	                      distinct for each batch of one Bus, so that
//	                      with the origin it identifies the batch
//	uvarint len, bytes    namespace
//	uvarint count         number of keys: at least 1 unless flags has 0x01
//	count × (uvarint len, bytes)  the keys; with flag 0x02, each key's
//	                      (uvarint len, bytes) value follows it
//
// with no byte after the last key. No payload may exceed MaxMessageBytes
// (1 MiB by default); Publish splits many keys into several frames.
//
// A frame with values ([Bus.UpdateFrames]) is an update: it tells every
// replica the new stored bytes of its keys, so that one holding a key can
// replace its copy at once instead of dropping it and reading Redis
// later. A handler that is an [Updater] applies updates; any other drops
// their keys, as for an invalidation. Updates are only as ordered as
// their publication: tier sends them only where each write and its update
// go in one transaction, so that they arrive in the order of the writes.
//
// # Lost messages
//
// Pub/sub delivers at most once: a message published while a replica's
// subscription is down never reaches it. A Bus notices the loss when the
// connection fails, when the server unsubscribes it from its channel or
// keyspace pattern while keeping the connection (a cluster node does so
// for the subscribers of a shard channel whose slot moved to another
// master), or when a PING sent after HealthInterval of silence gets no
// reply within another HealthInterval; it then calls Handler.Disconnected
// and subscribes again, with a backoff of at most HealthInterval, and
// calls Handler.Connected once Redis confirms the new subscription. On a
// cluster whose slots moved, the Bus has a *redis.ClusterClient reload its
// map of slots, so that the new subscription goes to the channel's new
// owner.
package invalidate
