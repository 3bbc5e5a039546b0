// Package bench compares tier with its peers and with the floors that no
// cache can beat, measured in the same run on the same machine. It is a
// module of its own so that the peers never enter the go.mod of tier.
//
// Run the near-tier comparison with:
//
//	cd bench && go test -run x -bench Near -benchmem -count 5 .
package bench
