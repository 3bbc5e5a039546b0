// Package tiertest gives the tests of code that uses tier what they need
// without a Redis server, as net/http/httptest does for HTTP: an embedded
// Redis ([NewRedis]), a fake clock that moves both tiers' TTLs together
// ([NewClock]), replicas of a cache on one Redis ([Replicas]), and a wait,
// exact and without sleeping, until a change made on one replica has
// reached the others ([Sync]). What it starts ends with the test.
package tiertest
