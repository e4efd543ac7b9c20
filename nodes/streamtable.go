package nodes

import (
	"context"
	"strings"

	"github.com/brokerfs/brokerfs/table"
)

// Each stream of a run has, beside its directory <stream>/, its table as one file:
// <stream>.csv and <stream>.parquet (table.Table.TableCSV, table.Table.Parquet).
//
// Names: a stream's directory takes the name fileNames gives it in the run directory, and its
// tables that name plus ".csv" and ".parquet". So that no directory is ever one of those
// names, a stream whose escaped name ends in ".csv" or ".parquet" (any letter case) has that
// last '.' written %2E: a stream "primary.csv" is the directory primary%2Ecsv, beside the
// tables primary%2Ecsv.csv and primary%2Ecsv.parquet, and never shadows the table of a stream
// "primary". The run directory's own names (start.json, stop.json, files.txt) end in neither.

// tableExts are the extensions of a stream's table files.
var tableExts = []string{".csv", ".parquet"}

// streamDirNames maps a run's stream names to their directories' names.
func streamDirNames(names []string) map[string]string {
	out := fileNames(names, runReserved)
	for n, e := range out {
		lower := strings.ToLower(e)
		for _, ext := range tableExts {
			if strings.HasSuffix(lower, ext) {
				i := len(e) - len(ext)
				out[n] = e[:i] + "%2E" + e[i+1:]
				break
			}
		}
	}
	return out
}

// streamTableEntries lists the table files of the run's streams, dirs mapping each stream
// name to its directory's name.
func streamTableEntries(r *runState, dirs map[string]string) []entry {
	var es []entry
	for _, name := range r.names {
		es = append(es,
			entry{name: dirs[name] + ".csv", file: in(name, func(ctx context.Context, _ *table.Stream, t *table.Table) (content, error) {
				return t.TableCSV(ctx)
			})},
			entry{name: dirs[name] + ".parquet", file: in(name, func(ctx context.Context, _ *table.Stream, t *table.Table) (content, error) {
				return t.Parquet(ctx)
			})},
		)
	}
	return es
}
