// Package redistest runs a real redis-server for tests: [Start] launches one
// on a free 127.0.0.1 port with persistence switched off, waits until it
// answers PING, and stops it when the test ends, so every test gets an empty
// server of its own that no other test or machine can reach.
//
// When no redis-server binary is on PATH, [Start] skips the test with a
// message saying how to install one, except under CI (the environment
// variable CI is "true"), where a missing server fails the test: CI must not
// pass by silently running nothing against real Redis.
//
// [StartCluster] starts a one-node Redis Cluster instead: one server that
// owns every hash slot, so a cluster client routes commands as on a real
// cluster and the server rejects multi-key commands across slots
// (CROSSSLOT). It takes about two seconds longer to start, because Redis
// holds a fresh cluster node unwritable for that long.
//
// [StartClusterOf] starts a real cluster of several masters (each on free
// loopback ports, with a directory of its own for nodes.conf), splits the
// hash slots between them and waits until every node reports
// cluster_state:ok and knows all slots; [LaunchCluster] does the same
// without a test, so that TestMain can share one cluster (it takes a few
// seconds to form) among a package's tests.
//
// [StartSentinel] starts a Redis Sentinel watching a master, and
// [Server.ReplicaOf] makes a server its replica, for tests through
// redis.NewFailoverClient.
//
// [StartTLS] starts a server that accepts only TLS, with a CA and a server
// certificate generated for the test, and clients that trust that CA.
//
// A [Server] can be killed ([Server.Kill]), stopped gracefully
// ([Server.Stop]) and started again on the same port ([Server.Restart]), which
// lets tests show how a client behaves while Redis is down and after it comes
// back. Nothing survives a restart, since the server keeps no data on disk.
// A hung server is made with [Server.Suspend] (SIGSTOP) and
// [Server.Resume], or with [Server.Pause] (CLIENT PAUSE ALL), and
// [Server.WaitAnswering] waits until it serves again.
// The server's log is kept in the test's temporary directory and printed when
// the test fails.
package redistest
