// Package invalidate carries key invalidations between the replicas of a
// tier cache over Redis pub/sub, so that every replica drops its near copy
// of a key that another replica (or an operator) changed. A message only
// ever says "drop": no value travels in it.
//
// It guarantees that every message received on the channel is passed to
// the [Handler], in the order it arrived, unless the receiving Bus
// published it itself; that a malformed message is counted and ignored,
// never a crash; and that a subscription that was lost (its connection
// failed, or the server unsubscribed the Bus), or that stops answering its
// health check, is reported (Handler.Disconnected) within
// 2×Options.HealthInterval, and every confirmation of the subscription, the
// first and each after a loss, is reported too (Handler.Connected), so that
// the handler can drop what it cached while messages may have been lost.
//
// # Payloads
//
// A payload on the channel is one of:
//
//	"*"            drop every key
//	"=" KEY        drop KEY, exactly as written after the "=" (any key)
//	"#" CLOCK ":" TAG
//	               drop the entries of TAG born before CLOCK, a decimal
//	               tag clock (empty: read TAG's marker from Redis)
//	"\x00" FRAME   a library frame (below)
//	KEY            drop KEY: the whole payload, less one trailing
//	               newline, when it starts with none of the above
//
// So an operator drops a key by publishing the key itself:
//
//	redis-cli PUBLISH users:invalidate user:42
//
// A trailing newline is dropped from the plain form because
// `echo user:42 | redis-cli -x PUBLISH users:invalidate` adds one; the "="
// form keeps every byte, for the empty key, the key "*", and keys that
// start with "=", "#" or NUL or end with a newline. [OperatorPayload] returns
// the payload for any key. An empty payload is malformed.
//
// A library frame, as [AppendFrame] writes it, is:
//
//	0x00                  marker
//	0x01                  version; other versions are malformed
//	flags                 0x01: drop every key; 0x04: a send time follows
//	                      the origin; 0x08: a sync (Bus.Sync), which drops
//	                      nothing and carries one token as its key; 0x02
//	                      (written by older versions): each key is followed
//	                      by a value, which is skipped
//	origin [16]byte       the publishing Bus's ID
//	sent [8]byte          with flag 0x04: Unix nanoseconds, big-endian
//	uvarint len, bytes    namespace
//	uvarint count         number of keys: at least 1 unless flags has 0x01
//	count × (uvarint len, bytes)  the keys
//
// with no byte after the last key. No payload may exceed
// Options.MaxMessageBytes; Publish splits many keys into several frames.
//
// # Lost messages
//
// Pub/sub delivers at most once: a message published while a replica's
// subscription is down never reaches it. A Bus notices the loss when the
// connection fails, when the server unsubscribes it (a cluster node does so
// for the subscribers of a shard channel whose slot moved), or when a PING
// sent after HealthInterval of silence gets no reply within another
// HealthInterval. It then calls Handler.Disconnected, subscribes again with
// a backoff of at most HealthInterval, and calls Handler.Connected once
// Redis confirms the new subscription.
package invalidate
