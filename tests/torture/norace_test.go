//go:build torture && !race

package torture

// raceEnabled: the relay processes are built with the race detector when the tests are.
const raceEnabled = false
