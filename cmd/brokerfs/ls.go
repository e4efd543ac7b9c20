package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/brokerfs/brokerfs/catalog"
)

// brokerfs ls SOURCE [NAME...]: the runs of a catalog, or those the NAMEs name (as the mount's
// root resolves them: catalog.RunNames), as a table or as JSON Lines.

func cmdLs(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("ls", stderr)
	var cf catalogFlags
	cf.register(fl)
	unused := rejectUnused(fl, "ls", "include", "exclude", "cache-max", "cache-ttl")
	asJSON := fl.Bool("json", false, "print one JSON object per run and line (JSON Lines) instead of a table")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: brokerfs ls [flags] SOURCE [NAME...]\n\n"+
			"Lists the runs of SOURCE, oldest first, or the runs the NAMEs name, in their order: a scan_id\n"+
			"(the newest run with it), -1 (the newest run), -2, ..., a uid or a uid prefix of at least 5\n"+
			"characters. Exits 1 when there is no run to list or a NAME names none.\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(markRecentNames(fl, args)); err != nil {
		return err
	}
	if err := unused(); err != nil {
		return err
	}
	if fl.NArg() < 1 {
		fl.Usage()
		return usageError{"want SOURCE"}
	}
	args = unmarkRecentNames(fl.Args())
	source, names := args[0], args[1:]
	ctx := context.Background()
	log := cf.logger(stderr)
	src, err := cf.open(ctx, source, log)
	if err != nil {
		return err
	}
	defer src.cat.Close()
	starts, err := src.cat.Runs(ctx)
	if err != nil {
		return err
	}
	if len(starts) == 0 {
		switch {
		case cf.query != "":
			return fmt.Errorf("no run of %s matches the query", source)
		case len(src.dirs) > 0:
			return fmt.Errorf("no runs in %s: no *.msgpack or *.jsonl run file with a readable start document", source)
		}
		return fmt.Errorf("no runs in %s", source)
	}
	var runs []*catalog.Start
	missing := 0
	if len(names) > 0 {
		idx := catalog.NewRunNames(starts)
		byUID := make(map[string]*catalog.Start, len(starts))
		for _, s := range starts {
			byUID[s.UID] = s
		}
		for _, name := range names {
			uid, err := idx.Resolve(name)
			if err != nil {
				fmt.Fprintf(stderr, "brokerfs ls: %v\n", err)
				missing++
				continue
			}
			runs = append(runs, byUID[uid])
		}
	} else {
		runs = starts
		sort.Slice(runs, func(i, j int) bool { return catalog.Newer(runs[j], runs[i]) })
	}
	if *asJSON {
		err = listJSON(ctx, src.cat, runs, stdout)
	} else {
		err = listTable(ctx, src.cat, runs, stdout)
	}
	if err == nil && missing > 0 {
		err = fmt.Errorf("%d of %d names name no run", missing, len(names))
	}
	return err
}

// recentMark keeps a -N name from being read as a flag: pflag takes every word starting with
// "-" for one, and `brokerfs ls SOURCE -1` should need no "--".
const recentMark = "\x00"

// markRecentNames marks the words that are -N names (not the value of a flag before them).
func markRecentNames(fl *pflag.FlagSet, args []string) []string {
	out := slices.Clone(args)
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			break
		}
		if catalog.KindOf(a) == catalog.NameRecent {
			out[i] = recentMark + a
			continue
		}
		// --flag VALUE and -x VALUE: VALUE is the flag's, whatever it looks like.
		name, isLong := strings.CutPrefix(a, "--")
		if !isLong && len(a) == 2 && a[0] == '-' {
			if f := fl.ShorthandLookup(a[1:]); f != nil {
				name = f.Name
			}
		}
		if f := fl.Lookup(name); f != nil && takesValue(f) && !strings.Contains(a, "=") {
			i++
		}
	}
	return out
}

// unmarkRecentNames undoes markRecentNames on the arguments left after parsing.
func unmarkRecentNames(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.TrimPrefix(a, recentMark)
	}
	return out
}

// lsRun is a run as `ls --json` prints it.
type lsRun struct {
	UID        string           `json:"uid"`
	ScanID     *int64           `json:"scan_id"`     // null: the start has none
	PlanName   string           `json:"plan_name"`   //
	Time       *float64         `json:"time"`        // start time, s since the epoch, as stored
	TimeISO    string           `json:"time_iso"`    // the same, ISO 8601 in UTC
	Live       bool             `json:"live"`        // no stop document (yet)
	ExitStatus *string          `json:"exit_status"` // success, abort, fail; null while live
	Reason     string           `json:"reason,omitempty"`
	StopTime   *float64         `json:"stop_time"`  // null while live
	NumEvents  map[string]int64 `json:"num_events"` // per stream, from the stop; null while live
	Error      string           `json:"error,omitempty"`
}

// finite returns a pointer to f, nil for NaN and ±Inf (which JSON cannot hold).
func finite(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

// isoTime formats a Bluesky time as ISO 8601 in UTC with its offset; "" when out of range.
func isoTime(t float64) string {
	if math.IsNaN(t) || t < -9.2e9 || t > 9.2e9 {
		return ""
	}
	return time.Unix(0, int64(t*1e9)).UTC().Format("2006-01-02T15:04:05.999999-07:00")
}

// stopOf returns the run's stop document, nil while it is live.
func stopOf(ctx context.Context, cat catalog.Catalog, uid string) (*catalog.Stop, error) {
	run, err := cat.Run(ctx, uid)
	if err != nil {
		return nil, err
	}
	stop, err := run.Stop(ctx)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil, nil
	}
	return stop, err
}

func listJSON(ctx context.Context, cat catalog.Catalog, runs []*catalog.Start, w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, s := range runs {
		r := lsRun{UID: s.UID, PlanName: s.PlanName, Time: finite(s.Time), TimeISO: isoTime(s.Time)}
		if s.HasScan {
			r.ScanID = &s.ScanID
		}
		stop, err := stopOf(ctx, cat, s.UID)
		switch {
		case err != nil:
			r.Error = err.Error()
		case stop == nil:
			r.Live = true
		default:
			r.ExitStatus, r.Reason, r.StopTime, r.NumEvents = &stop.ExitStatus, stop.Reason, finite(stop.Time), stop.NumEvents
		}
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// listTable prints a header and one line per run.
func listTable(ctx context.Context, cat catalog.Catalog, runs []*catalog.Start, w io.Writer) error {
	if len(runs) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UID\tSCAN_ID\tPLAN\tSTART\tEXIT_STATUS")
	for _, s := range runs {
		scan := ""
		if s.HasScan {
			scan = fmt.Sprint(s.ScanID)
		}
		status := "live"
		stop, err := stopOf(ctx, cat, s.UID)
		switch {
		case err != nil:
			status = "error: " + err.Error()
		case stop != nil:
			status = stop.ExitStatus
		}
		start := time.Unix(0, int64(s.Time*1e9)).Local().Format("2006-01-02 15:04:05")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.UID, scan, s.PlanName, start, status)
	}
	return tw.Flush()
}
