//go:build race

package integration

// raceEnabled: the tests run under -race, so the binary is built with it too.
const raceEnabled = true
