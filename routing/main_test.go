package routing

import (
	"flag"
	"os"
	"testing"
)

// defaultFuzzMinimizeTime replaces Go's default of 60s per input for
// -fuzzminimizetime when the flag is not given. FuzzTranslate's inputs are
// whole fixtures (kilobytes of YAML) and each run parses and translates them,
// so minimising one interesting input byte by byte would take the whole of a
// 30s fuzz run, leaving no time for fuzzing itself.
const defaultFuzzMinimizeTime = "2s"

func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.fuzzminimizetime" })
	if !given {
		if err := flag.Set("test.fuzzminimizetime", defaultFuzzMinimizeTime); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
