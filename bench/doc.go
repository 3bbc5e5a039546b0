// Package bench compares tier with its peers and with the floors that no
// cache can beat, measured in the same run on the same machine. It is a
// module of its own so that the peers never enter the go.mod of tier.
//
// The whole comparison, written to RESULTS.md:
//
//	cd bench && go run ./cmd/report
//
// The CI smoke run (every row, small figures, nothing written):
//
//	cd bench && go run ./cmd/report -quick
//
// One row under the profiler (IDs from `go run ./cmd/report -list`):
//
//	cd bench && go test -run x -bench 'Report/near-100k-1g/tier$' -cpuprofile cpu.out
//
// The near-tier comparison with otter alone, as go test benchmarks:
//
//	cd bench && go test -run x -bench Near -benchmem -count 5 .
package bench
