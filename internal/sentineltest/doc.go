// Package sentineltest runs tier, through its public API only, behind
// Redis Sentinel: one master, one replica and one sentinel on loopback,
// reached through redis.NewFailoverClient. tier needs no change for it: a
// failover client is a *redis.Client, so the cache treats it as a single
// server; and after a SENTINEL FAILOVER the caches write to the new master
// and their invalidations reach each other again.
//
// The package has no non-test code.
package sentineltest
